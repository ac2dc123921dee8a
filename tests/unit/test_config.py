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
        "dataset": {"source": "allenai/sciq", "split": "train", "revision": None},
        "filter": {"non_empty": ["support", "correct_answer"]},
        "template": {
            "system": "Given a science question, provide the correct answer with a detailed explanation.",
            "user": "{question}",
            "assistant": "{correct_answer} Explanation: {support}",
        },
        "validation_fraction": 0.0,
        "max_examples": None,
        "seed": 42,
        "fine_tune": {
            "model": "gpt-4o-mini-2024-07-18",
            "suffix": None,
            "hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"},
        },
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
    assert parse_run_config(b'\xef\xbb\xbf{"dataset": {"source": "a/b"}}').dataset.source == "a/b"
    with pytest.raises(ConfigError, match="limit is 65536"):
        parse_run_config(b" " * 70_000)


def test_literal_braces_are_not_placeholders() -> None:
    config = RunConfig.model_validate({"dataset": {"source": "a/b"}, "template": {"user": "{{json}} {question}"}})
    assert config.template.placeholders() == ["correct_answer", "question", "support"]


def test_published_json_schema_is_current_and_accepts_the_defaults() -> None:
    published = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert published == run_config_json_schema(), "run `make schema` to refresh docs/run-config.schema.json"
    jsonschema.validate({"dataset": {"source": "allenai/sciq"}, "validation_fraction": 0.1}, published)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"dataset": {"source": "allenai/sciq"}, "surprise": 1}, published)
    jsonschema.validate({"dataset": {"source": "s3://ragtune-data-1-us-east-1/data/my qa.JSONL"}}, published)
    for source in ("/tmp/secret.jsonl", "file:///etc/passwd", "s3://bucket/configs/x.jsonl", "sciq"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"dataset": {"source": source}}, published)


@pytest.mark.parametrize(
    "source",
    [
        "/tmp/x/secret.jsonl",
        "../x.jsonl",
        "data/../../etc/passwd.csv",
        "x.jsonl",
        "./local/sample",
        "local/sample/sciq-sample.jsonl",
        "file:///etc/passwd",
        "file:/etc/passwd",
        "https://example.com/x.jsonl",
        "http://169.254.169.254/latest/meta-data",
        "owner/..",
        "../owner",
        "owner/name/extra",
        "sciq",
        "s3://bucket",
        "s3://bucket/",
        "s3://bucket/data/",
        "s3://bucket/configs/x.jsonl",
        "s3://bucket/data/x.txt",
        "s3://bucket/data/../configs/x.jsonl",
        "s3://Bad_Bucket/data/x.jsonl",
        "S3://bucket/data/x.jsonl",
        "s3:///data/x.jsonl",
        "hf://datasets/allenai/sciq",
        "allenai/sciq\n",
    ],
)
def test_dataset_source_is_only_a_hub_id_or_an_s3_uri_under_data(source: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_run_config(json.dumps({"dataset": {"source": source}}).encode())

    message = raised.value.message
    assert message.startswith("config is invalid: dataset.source must be a Hugging Face Hub dataset id")
    assert "s3://<data bucket>/data/" in message


@pytest.mark.parametrize(
    "source",
    [
        "allenai/sciq",
        "HuggingFaceH4/ultrachat_200k",
        "my-org/data.v2",
        "s3://ragtune-data-123456789012-us-east-1/data/my sciq.jsonl",
        "s3://any.bucket/data/nested/rows.PARQUET",
    ],
)
def test_hub_ids_and_s3_uris_under_data_are_accepted(source: str) -> None:
    assert parse_run_config(json.dumps({"dataset": {"source": source}}).encode()).dataset.source == source


def test_a_pinned_revision_is_a_hub_revision_only() -> None:
    sha = "2c94ad3e1aafab77146f384e23536f97a4849815"
    pinned = parse_run_config(json.dumps({"dataset": {"source": "allenai/sciq", "revision": sha}}).encode())
    assert pinned.dataset.revision == sha
    assert parse_run_config(b'{"dataset": {"source": "a/b", "revision": "refs/convert/parquet"}}').dataset.revision
    for revision in ["../main", "main branch", "", "a" * 300, "refs//pr", "/main"]:
        with pytest.raises(ConfigError, match=r"dataset\.revision must be"):
            parse_run_config(json.dumps({"dataset": {"source": "a/b", "revision": revision}}).encode())
    with pytest.raises(ConfigError, match=r"dataset\.revision applies only to a Hugging Face Hub dataset id"):
        parse_run_config(b'{"dataset": {"source": "s3://bucket/data/x.csv", "revision": "main"}}')


@pytest.mark.parametrize(
    ("hyperparameters", "expected"),
    [
        ({"n_epochs": 0}, 'fine_tune.hyperparameters.n_epochs must be "auto" or an integer from 1 to 50'),
        ({"n_epochs": 2.5}, 'fine_tune.hyperparameters.n_epochs must be "auto" or an integer from 1 to 50'),
        ({"n_epochs": True}, 'fine_tune.hyperparameters.n_epochs must be "auto" or an integer from 1 to 50'),
        ({"batch_size": "big"}, 'fine_tune.hyperparameters.batch_size must be "auto" or an integer from 1 to 256'),
        (
            {"learning_rate_multiplier": -1},
            'fine_tune.hyperparameters.learning_rate_multiplier must be "auto" '
            "or a number greater than 0 and at most 10",
        ),
    ],
)
def test_union_errors_read_as_sentences(hyperparameters: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_run_config(
            json.dumps({"dataset": {"source": "a/b"}, "fine_tune": {"hyperparameters": hyperparameters}}).encode()
        )

    assert raised.value.message == f"config is invalid: {expected}"


def test_union_fields_still_accept_auto_and_numbers() -> None:
    config = parse_run_config(
        json.dumps(
            {
                "dataset": {"source": "a/b"},
                "fine_tune": {
                    "hyperparameters": {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": 0.5}
                },
            }
        ).encode()
    )
    assert config.fine_tune.hyperparameters.model_dump() == {
        "n_epochs": 3,
        "batch_size": "auto",
        "learning_rate_multiplier": 0.5,
    }


def test_configs_too_deep_too_large_or_not_unicode_are_refused_with_a_reason() -> None:
    with pytest.raises(ConfigError, match="config is nested more than 32 levels deep"):
        parse_run_config(b'{"a":' * 5000 + b"1" + b"}" * 5000)
    with pytest.raises(ConfigError, match="config is nested more than 32 levels deep"):
        parse_run_config(b"[" * 60_000)
    # brackets inside strings are text, not nesting
    assert parse_run_config(
        json.dumps({"dataset": {"source": "a/b"}, "template": {"user": "[[[[" * 40 + "{question}"}}).encode()
    )
    with pytest.raises(ConfigError, match="config is 70000 bytes; the limit is 65536"):
        parse_run_config(b" " * 65537, size=70_000)
    with pytest.raises(ConfigError, match="config is not UTF-8 text"):
        parse_run_config(b'{"dataset": {"source": "a/b\xff"}}')
    with pytest.raises(ConfigError, match="config is not UTF-8 text"):
        parse_run_config('{"dataset": {"source": "a/b"}}'.encode("utf-16"))
    with pytest.raises(ConfigError, match=r"config is not valid Unicode text: \\ud800"):
        parse_run_config(b'{"dataset": {"source": "a/b"}, "template": {"system": "x\\ud800"}}')
