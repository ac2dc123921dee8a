"""The run config schema: notebook defaults, strictness, and the published JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from shared.config import RunConfig, parse_run_config, run_config_json_schema
from shared.errors import ConfigError

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "run-config.schema.json"


def test_defaults_reproduce_the_original_notebook() -> None:
    config = parse_run_config(b'{"dataset": {"source": "allenai/sciq"}}')

    assert config.model_dump(mode="json") == {
        "version": 1,
        "dataset": {"source": "allenai/sciq", "split": "train"},
        "filter": {"non_empty": ["support", "correct_answer"]},
        "template": {
            "system": "Given a science question, provide the correct answer with a detailed explanation.",
            "user": "{question}",
            "assistant": "{correct_answer} Explanation: {support}",
        },
        "validation_fraction": 0.0,
        "max_examples": None,
        "seed": 42,
        "fine_tune": {"model": "gpt-4o-mini-2024-07-18", "suffix": None,
                      "hyperparameters": {"n_epochs": "auto", "batch_size": "auto",
                                          "learning_rate_multiplier": "auto"}},
    }
    assert config.required_columns() == ["correct_answer", "question", "support"]


def test_several_problems_are_all_named() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_run_config(json.dumps({"dataset": {"source": ""}, "seed": -1, "colour": "red"}).encode())

    message = raised.value.message
    assert "dataset.source: String should have at least 1 character" in message
    assert "seed: Input should be greater than or equal to 0" in message
    assert "colour: unknown key" in message


def test_a_byte_order_mark_is_accepted_and_oversized_configs_are_not() -> None:
    assert parse_run_config(b'\xef\xbb\xbf{"dataset": {"source": "a.csv"}}').dataset.source == "a.csv"
    with pytest.raises(ConfigError, match="limit is 65536"):
        parse_run_config(b" " * 70_000)


def test_literal_braces_are_not_placeholders() -> None:
    config = RunConfig.model_validate({"dataset": {"source": "a.csv"},
                                       "template": {"user": "{{json}} {question}"}})
    assert config.template.placeholders() == ["correct_answer", "question", "support"]


def test_published_json_schema_is_current_and_accepts_the_defaults() -> None:
    published = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert published == run_config_json_schema(), "run `make schema` to refresh docs/run-config.schema.json"
    jsonschema.validate({"dataset": {"source": "allenai/sciq"}, "validation_fraction": 0.1}, published)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"dataset": {"source": "allenai/sciq"}, "surprise": 1}, published)
