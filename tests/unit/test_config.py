"""The run config schema: notebook defaults, strictness, and the published JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from shared.domain.config import RunConfig, parse_run_config, run_config_json_schema
from shared.domain.errors import ConfigError
from shared.providers.bedrock import BEDROCK_MODELS
from shared.providers.bedrock.gateway import bedrock_hyperparameters
from shared.settings import settings
from tests.helpers import SetEnv

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "run-config.schema.json"


def test_defaults_reproduce_the_original_notebook() -> None:
    config = parse_run_config(b'{"dataset": {"source": "allenai/sciq"}}')

    assert config.model_dump(mode="json") == {
        "version": 1,
        "provider": "openai",
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
        "evaluation": {
            "enabled": False,  # no validation split, no held-out questions
            "max_questions": 100,
            "context_column": "support",
            "reference_column": "correct_answer",
            "match": "start",
        },
    }
    assert config.required_columns() == ["correct_answer", "question", "support"]


def test_several_problems_are_all_named() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_run_config(json.dumps({"dataset": {"source": ""}, "seed": -1, "colour": "red"}).encode())

    message = raised.value.message
    assert "dataset.source: String should have at least 1 character" in message
    assert "seed must be an integer from 0 to 2147483647" in message
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
            'fine_tune.hyperparameters.learning_rate_multiplier must be "auto" or a number from 0.001 to 10',
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


def bedrock(**fine_tune: object) -> bytes:
    return json.dumps({"provider": "bedrock", "dataset": {"source": "a/b"}, "fine_tune": fine_tune}).encode()


def refusal(raw: bytes, default_provider: str = "openai") -> str:
    with pytest.raises(ConfigError) as raised:
        parse_run_config(raw, default_provider=default_provider)
    return raised.value.message


def test_an_absent_provider_is_the_stacks_default_and_is_always_resolved() -> None:
    raw = json.dumps({"dataset": {"source": "a/b"}}).encode()

    openai = parse_run_config(raw)
    assert openai.provider == "openai" and openai.fine_tune.model == "gpt-4o-mini-2024-07-18"

    config = parse_run_config(raw, default_provider="bedrock")
    assert config.model_dump(mode="json")["provider"] == "bedrock"
    assert config.model_dump(mode="json")["fine_tune"] == {
        "model": "amazon.nova-micro-v1:0:128k",
        "suffix": None,
        "hyperparameters": {"n_epochs": "auto", "learning_rate": "auto", "warmup_steps": "auto"},
    }
    # A config naming its provider keeps it whatever the default; the recorded config re-validates as itself.
    explicit = json.dumps({"provider": "openai", "dataset": {"source": "a/b"}}).encode()
    assert parse_run_config(explicit, default_provider="bedrock").provider == "openai"
    assert RunConfig.model_validate(config.model_dump(mode="json")) == config


def test_default_provider_comes_from_the_stack_parameter(set_env: SetEnv) -> None:
    assert settings().default_provider == "openai"  # template.yaml's DefaultProvider default
    set_env(DEFAULT_PROVIDER="bedrock")
    assert settings().default_provider == "bedrock"


def test_bedrock_accepts_exactly_the_nova_models_served_on_demand() -> None:
    assert sorted(BEDROCK_MODELS) == [
        "amazon.nova-lite-v1:0:300k",
        "amazon.nova-micro-v1:0:128k",
        "amazon.nova-pro-v1:0:300k",
    ]
    for model in BEDROCK_MODELS:
        assert parse_run_config(bedrock(model=model)).fine_tune.model == model
    for model in ("gpt-4o-mini-2024-07-18", "meta.llama3-3-70b-instruct-v1:0:128k", "amazon.nova-micro-v1:0"):
        assert refusal(bedrock(model=model)) == (
            "config is invalid: fine_tune.model must be one of the Nova models Bedrock fine-tunes and serves "
            "on demand: amazon.nova-micro-v1:0:128k (Nova Micro), amazon.nova-lite-v1:0:300k (Nova Lite), "
            "amazon.nova-pro-v1:0:300k (Nova Pro)"
        )


def test_nova_2_lite_is_refused_before_anything_is_spent_saying_why() -> None:
    assert refusal(bedrock(model="amazon.nova-2-lite-v1:0:256k")) == (
        "config is invalid: fine_tune.model amazon.nova-2-lite-v1:0:256k is refused: Nova 2 Lite can be fine-tuned, "
        "but AWS documents on-demand deployment of customised Nova Micro, Lite and Pro only, so its training would "
        "be billed for a model ragtune could not serve; choose amazon.nova-micro-v1:0:128k (Nova Micro), "
        "amazon.nova-lite-v1:0:300k (Nova Lite), amazon.nova-pro-v1:0:300k (Nova Pro)"
    )


@pytest.mark.parametrize(
    ("hyperparameters", "expected"),
    [
        ({}, {}),
        ({"n_epochs": "auto", "learning_rate": "auto", "warmup_steps": "auto"}, {}),
        (
            {"n_epochs": 2, "learning_rate": 1e-5, "warmup_steps": 10},
            {"epochCount": "2", "learningRate": "1e-05", "learningRateWarmupSteps": "10"},
        ),
        (
            {"n_epochs": 5, "learning_rate": 0.0001, "warmup_steps": 0},
            {"epochCount": "5", "learningRate": "0.0001", "learningRateWarmupSteps": "0"},
        ),
        ({"learning_rate": 1e-6}, {"learningRate": "1e-06"}),
        ({"n_epochs": 1}, {"epochCount": "1"}),
    ],
)
def test_bedrock_hyperparameters_are_strings_without_the_auto_ones(
    hyperparameters: dict[str, object], expected: dict[str, str]
) -> None:
    assert bedrock_hyperparameters(parse_run_config(bedrock(hyperparameters=hyperparameters))) == expected


@pytest.mark.parametrize(
    ("hyperparameters", "expected"),
    [
        (
            {"n_epochs": 6},
            'fine_tune.hyperparameters.n_epochs must be "auto" or an integer from 1 to 5 for bedrock '
            "(Bedrock's epochCount)",
        ),
        (
            {"n_epochs": 0},
            'fine_tune.hyperparameters.n_epochs must be "auto" or an integer from 1 to 5 for bedrock '
            "(Bedrock's epochCount)",
        ),
        (
            {"learning_rate": 1e-3},
            'fine_tune.hyperparameters.learning_rate must be "auto" or a number from 1e-06 to 0.0001',
        ),
        (
            {"learning_rate": 1e-7},
            'fine_tune.hyperparameters.learning_rate must be "auto" or a number from 1e-06 to 0.0001',
        ),
        ({"warmup_steps": 101}, 'fine_tune.hyperparameters.warmup_steps must be "auto" or an integer from 0 to 100'),
        ({"warmup_steps": True}, 'fine_tune.hyperparameters.warmup_steps must be "auto" or an integer from 0 to 100'),
        (
            {"warmup_steps": None},
            'fine_tune.hyperparameters.warmup_steps must not be null: write "auto" for the '
            "provider's default, or leave it out",
        ),
        (
            {"batch_size": 8},
            "fine_tune.hyperparameters.batch_size is a hyperparameter of OpenAI fine-tuning only: Bedrock does not "
            "take it (provider is bedrock; its hyperparameters are n_epochs, learning_rate, warmup_steps)",
        ),
        (
            {"learning_rate_multiplier": "auto"},
            "fine_tune.hyperparameters.learning_rate_multiplier is a hyperparameter of OpenAI fine-tuning only: "
            "Bedrock does not take it (provider is bedrock; its hyperparameters are n_epochs, learning_rate, "
            "warmup_steps)",
        ),
    ],
)
def test_bedrock_hyperparameter_refusals_say_why(hyperparameters: dict[str, object], expected: str) -> None:
    assert refusal(bedrock(hyperparameters=hyperparameters)) == f"config is invalid: {expected}"


@pytest.mark.parametrize("name", ["learning_rate", "warmup_steps"])
def test_bedrock_hyperparameters_are_refused_for_openai_whether_named_or_defaulted(name: str) -> None:
    expected = (
        f"config is invalid: fine_tune.hyperparameters.{name} is a hyperparameter of Bedrock fine-tuning only: "
        "OpenAI does not take it (provider is openai; its hyperparameters are n_epochs, batch_size, "
        "learning_rate_multiplier)"
    )
    document = {"dataset": {"source": "a/b"}, "fine_tune": {"hyperparameters": {name: 1}}}
    assert refusal(json.dumps(document).encode()) == expected
    assert refusal(json.dumps({"provider": "openai", **document}).encode(), default_provider="bedrock") == expected
    # and openai's own are refused when the stack's default makes the run a bedrock one
    openai_only = {"dataset": {"source": "a/b"}, "fine_tune": {"hyperparameters": {"batch_size": 4}}}
    assert "batch_size is a hyperparameter of OpenAI fine-tuning only" in refusal(
        json.dumps(openai_only).encode(), default_provider="bedrock"
    )


def test_openai_keeps_its_hyperparameters_and_their_range() -> None:
    def openai(hyperparameters: dict[str, object]) -> bytes:
        return json.dumps({"dataset": {"source": "a/b"}, "fine_tune": {"hyperparameters": hyperparameters}}).encode()

    assert parse_run_config(openai({"n_epochs": 50})).fine_tune.hyperparameters.model_dump() == {
        "n_epochs": 50,
        "batch_size": "auto",
        "learning_rate_multiplier": "auto",
    }
    assert refusal(openai({"n_epochs": 51})) == (
        'config is invalid: fine_tune.hyperparameters.n_epochs must be "auto" or an integer from 1 to 50'
    )


def test_unknown_providers_and_reserved_strings_in_a_bedrock_template_are_refused() -> None:
    assert refusal(json.dumps({"provider": "azure", "dataset": {"source": "a/b"}}).encode()) == (
        "config is invalid: provider: Input should be 'openai', 'bedrock' or 'open'"
    )
    document = {"provider": "bedrock", "dataset": {"source": "a/b"}, "template": {"assistant": "Bot: {correct_answer}"}}
    assert refusal(json.dumps(document).encode()) == (
        'config is invalid: template assistant must not hold "Bot:" for bedrock: Nova reserves User:, Bot:, '
        "Assistant:, System:, <image>, <video>, [EOS] and a training file holding one fails the whole job"
    )
    # OpenAI has no such rule
    assert parse_run_config(json.dumps({**document, "provider": "openai"}).encode()).template.assistant.startswith(
        "Bot:"
    )


def test_the_json_schema_shows_the_provider_and_each_providers_hyperparameters() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["properties"]["provider"]["enum"] == ["openai", "bedrock", "open"]
    assert "DefaultProvider" in schema["properties"]["provider"]["description"]
    assert "default" not in schema["properties"]["provider"]
    hyperparameters = schema["$defs"]["Hyperparameters"]["properties"]
    assert set(hyperparameters) == {
        "n_epochs",
        "batch_size",
        "learning_rate_multiplier",
        "learning_rate",
        "warmup_steps",
        "lora_learning_rate",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "max_seq_length",
    }
    assert "amazon.nova-micro-v1:0:128k" in schema["$defs"]["FineTuneSpec"]["properties"]["model"]["description"]
    jsonschema.validate(
        {
            "provider": "bedrock",
            "dataset": {"source": "a/b"},
            "fine_tune": {"hyperparameters": {"learning_rate": 1e-5}},
        },
        schema,
    )


def config_with(**fields: object) -> RunConfig:
    return parse_run_config(json.dumps({"dataset": {"source": "a/b"}, **fields}).encode())


def test_the_evaluation_is_on_exactly_when_there_is_a_validation_split_unless_the_config_says() -> None:
    assert config_with().evaluation.enabled is False
    assert config_with(validation_fraction=0.2).evaluation.enabled is True
    assert config_with(validation_fraction=0.2, evaluation={"enabled": False}).evaluation.enabled is False
    assert config_with(validation_fraction=0.2, evaluation={"max_questions": 5}).evaluation.enabled is True
    # Resolved once: the recorded config re-validates as itself, with its boolean
    recorded = config_with(validation_fraction=0.1).model_dump(mode="json")
    assert recorded["evaluation"]["enabled"] is True
    assert RunConfig.model_validate(recorded).model_dump(mode="json") == recorded


def test_an_evaluation_without_a_validation_split_is_refused_naming_both_fields() -> None:
    assert refusal(json.dumps({"dataset": {"source": "a/b"}, "evaluation": {"enabled": True}}).encode()) == (
        "config is invalid: evaluation needs a validation split: evaluation.enabled is true but "
        "validation_fraction is 0, and the questions it asks are the held-out rows; set validation_fraction "
        "above 0 (at most 0.5) or evaluation.enabled to false"
    )
    # A broken validation_fraction is reported once, on its own field
    message = refusal(
        json.dumps({"dataset": {"source": "a/b"}, "validation_fraction": 0.9, "evaluation": {"enabled": True}}).encode()
    )
    assert message == (
        "config is invalid: validation_fraction must be 0 (no validation split) or a number from 0.0001 to 0.5"
    )


@pytest.mark.parametrize(
    ("evaluation", "expected"),
    [
        (
            {"enabled": None},
            "evaluation.enabled must be true or false; leave it out to evaluate exactly when validation_fraction > 0",
        ),
        (
            {"enabled": 1},
            "evaluation.enabled must be true or false; leave it out to evaluate exactly when validation_fraction > 0",
        ),
        ({"max_questions": 0}, "evaluation.max_questions must be an integer from 1 to 1000"),
        ({"max_questions": 1001}, "evaluation.max_questions must be an integer from 1 to 1000"),
        ({"match": "exact"}, "evaluation.match: Input should be 'start' or 'anywhere'"),
        ({"reference_column": ""}, "evaluation.reference_column: String should have at least 1 character"),
        ({"reference_column": None}, "evaluation.reference_column: Input should be a valid string"),
        ({"judge": "gpt-4o"}, "evaluation.judge: unknown key"),
    ],
)
def test_evaluation_refusals_name_the_field(evaluation: dict[str, object], expected: str) -> None:
    raw = json.dumps({"dataset": {"source": "a/b"}, "validation_fraction": 0.2, "evaluation": evaluation}).encode()
    assert refusal(raw) == f"config is invalid: {expected}"


def test_evaluation_settings_and_the_columns_it_requires() -> None:
    config = config_with(
        validation_fraction=0.2,
        template={"user": "{prompt}", "assistant": "{response}"},
        filter={"non_empty": []},
        evaluation={
            "max_questions": 1000,
            "context_column": "passage",
            "reference_column": "answer",
            "match": "anywhere",
        },
    )
    assert config.evaluation.model_dump() == {
        "enabled": True,
        "max_questions": 1000,
        "context_column": "passage",
        "reference_column": "answer",
        "match": "anywhere",
    }
    assert config.required_columns() == ["answer", "passage", "prompt", "response"]
    # No context column: no base_with_context arm, and the column is not required
    no_context = config_with(validation_fraction=0.2, evaluation={"context_column": None, "max_questions": 1})
    assert no_context.evaluation.context_column is None and no_context.evaluation.max_questions == 1
    assert no_context.evaluation.columns() == ["correct_answer"]
    # Disabled: its columns are not required either
    disabled = config_with(
        validation_fraction=0.2,
        template={"user": "{prompt}", "assistant": "{response}"},
        filter={"non_empty": []},
        evaluation={"enabled": False, "reference_column": "answer"},
    )
    assert disabled.required_columns() == ["prompt", "response"]


def test_the_json_schema_shows_the_evaluation_and_its_defaults() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    evaluation = schema["$defs"]["EvaluationSpec"]["properties"]
    assert evaluation["enabled"]["type"] == "boolean" and "default" not in evaluation["enabled"]
    assert "validation_fraction > 0" in evaluation["enabled"]["description"]
    assert (evaluation["max_questions"]["minimum"], evaluation["max_questions"]["maximum"]) == (1, 1000)
    assert evaluation["match"]["enum"] == ["start", "anywhere"]
    jsonschema.validate(
        {"dataset": {"source": "a/b"}, "validation_fraction": 0.1, "evaluation": {"context_column": None}}, schema
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"dataset": {"source": "a/b"}, "evaluation": {"enabled": None}}, schema)


ADOPTED = "ft:gpt-4o-mini-2024-07-18:my-org::abc123"


def test_an_adopt_config_names_one_openai_fine_tune_and_is_openai_whatever_the_stacks_default() -> None:
    config = parse_run_config(
        json.dumps(
            {"dataset": {"source": "allenai/sciq"}, "adopt": {"model": ADOPTED}, "validation_fraction": 0.1}
        ).encode(),
        default_provider="bedrock",
    )

    assert config.provider == "openai" and config.adopt is not None and config.adopt.model == ADOPTED
    assert config.evaluation.enabled is True
    assert config.model_dump(mode="json")["adopt"] == {"model": ADOPTED}
    assert "adopt" not in parse_run_config(b'{"dataset": {"source": "allenai/sciq"}}').model_dump(mode="json")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"adopt": {"model": "gpt-4o-mini-2024-07-18"}, "validation_fraction": 0.1},
            "adopt.model must be an OpenAI fine-tuned model id, ft:<base model>:<organisation>:<suffix>:<id> "
            "(a base model has nothing of yours to keep: train a run instead)",
        ),
        (
            {"adopt": {"model": ADOPTED}, "validation_fraction": 0.1, "fine_tune": {"suffix": "x"}},
            "config adopts a model and trains nothing, so fine_tune would be ignored: remove it, or remove adopt to "
            "train a model",
        ),
        (
            {"adopt": {"model": ADOPTED}, "validation_fraction": 0.1, "provider": "bedrock"},
            "config adopts an OpenAI fine-tuned model, so provider must be openai or left out, not 'bedrock'",
        ),
        (
            {"adopt": {"model": ADOPTED}},
            "config adopts a model, and needs held-out questions to record its answers: set validation_fraction "
            "above 0 (at most 0.5) or evaluation.questions_from, and leave evaluation.enabled out",
        ),
        (
            {"adopt": {"model": ADOPTED, "shutdown": "never"}, "validation_fraction": 0.1},
            "adopt.shutdown: unknown key",
        ),
        (
            {"evaluation": {"questions_from": "../runs/x"}},
            "evaluation.questions_from must be a run id as GET /runs lists it (lowercase letters, digits and -, up "
            "to 62)",
        ),
        (
            {"evaluation": {"questions_from": "old-0123456789ab", "enabled": False}},
            "evaluation cannot be disabled with evaluation.questions_from, whose questions the evaluation asks",
        ),
    ],
)
def test_adopt_and_questions_from_refusals_name_the_problem(extra: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_run_config(json.dumps({"dataset": {"source": "allenai/sciq"}, **extra}).encode())

    assert refused.value.message == f"config is invalid: {expected}"


def test_questions_from_needs_no_split_of_its_own() -> None:
    config = parse_run_config(b'{"dataset": {"source": "allenai/sciq"}, "evaluation": {"questions_from": "old-1a"}}')

    assert (config.validation_fraction, config.evaluation.enabled) == (0.0, True)
    assert config.evaluation.questions_from == "old-1a"
