"""PrepareFunction for bedrock runs: Nova's `bedrock-conversation-2024` records, its gate and estimate."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pydantic
import pytest

from functions.prepare.app import lambda_handler
from shared.domain import dataset_source
from tests.helpers import TRICKY_ROWS, Aws, SetEnv, load_event, sciq_row, write_jsonl

NOTEBOOK_SYSTEM = "Given a science question, provide the correct answer with a detailed explanation."
CONFIG_KEY = "configs/sciq-sample.json"


def nova_line(row: dict[str, str], system: str | None = NOTEBOOK_SYSTEM) -> bytes:
    """One SciQ row as a Nova training record, byte for byte (UTF-8, not \\u escapes, one per line)."""
    record: dict[str, Any] = {"schemaVersion": "bedrock-conversation-2024"}
    if system is not None:
        record["system"] = [{"text": system}]
    record["messages"] = [
        {"role": "user", "content": [{"text": row["question"]}]},
        {"role": "assistant", "content": [{"text": row["correct_answer"] + " Explanation: " + row["support"]}]},
    ]
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def invoke(context: Any) -> dict[str, Any]:
    result: dict[str, Any] = lambda_handler(load_event("prepare-config-created.json"), context)
    return result


def only_run(aws_account: Aws) -> dict[str, Any]:
    [run] = aws_account.runs()
    return run


def put_rows(aws_account: Aws, tmp_path: Path, rows: list[dict[str, str]], **config: Any) -> None:
    source = aws_account.put_data(write_jsonl(tmp_path / "rows.jsonl", rows))
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": source}, **config})


def failed_run(aws_account: Aws, context: Any) -> dict[str, Any]:
    result = invoke(context)
    run = only_run(aws_account)
    assert run["status"] == "failed"
    assert result == {"runs": [{"run_id": run["run_id"], "status": "failed", "error": run["error"]["message"]}]}
    assert aws_account.keys("datasets/") == []  # nothing that could reach Bedrock
    return run


def test_a_bedrock_config_writes_nova_records_and_records_the_provider_and_an_estimate(
    aws_account: Aws, lambda_context: Any, sciq_file: Path
) -> None:
    # Given the notebook's SciQ rows (non-ASCII, quotes, newlines, two to drop) and a bedrock config
    source = aws_account.put_data(sciq_file)
    aws_account.put_config(CONFIG_KEY, {"provider": "bedrock", "dataset": {"source": source}})

    # When the config's S3 event arrives
    result = invoke(lambda_context)

    # Then train.jsonl holds exactly one bedrock-conversation-2024 record per kept row
    run = only_run(aws_account)
    run_id = run["run_id"]
    assert result == {"runs": [{"run_id": run_id, "status": "prepared", "train_key": f"datasets/{run_id}/train.jsonl"}]}
    body = aws_account.read(f"datasets/{run_id}/train.jsonl")
    kept = TRICKY_ROWS[:2] + [sciq_row(i) for i in range(4, 14)]
    assert body == b"".join(nova_line(row) for row in kept)
    assert (
        body.splitlines()[0]
        == (
            '{"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "Given a science question, provide '
            'the correct answer with a detailed explanation."}], "messages": [{"role": "user", "content": [{"text": '
            '"What does \\"Coriolis\\" mean — in Zürich?"}]}, {"role": "assistant", "content": [{"text": "energy 0 '
            'Explanation: Named after Gaspard-Gustave de Coriolis; 日本語 too."}]}]}'
        ).encode()
    )
    assert aws_account.keys("datasets/") == [f"datasets/{run_id}/train.jsonl"]

    # And the run records its provider, the resolved config, counts, the Nova gate and an estimate
    assert run["status"] == "prepared" and run["provider"] == "bedrock"
    assert run["config"]["provider"] == "bedrock"
    assert run["config"]["fine_tune"] == {
        "model": "amazon.nova-micro-v1:0:128k",
        "suffix": None,
        "hyperparameters": {"n_epochs": "auto", "learning_rate": "auto", "warmup_steps": "auto"},
    }
    assert run["counts"]["rows_read"] == 14 and run["counts"]["train_examples"] == 12
    assert run["gate"]["train"]["examples"] == 12 and run["gate"]["train"]["format_errors"] == {}
    tokens = run["gate"]["train"]["billing_tokens"]
    assert run["estimate"] == {
        "epochs": 2,
        "trained_tokens": tokens * 2,
        "cost_usd": round(tokens * 2 * 0.001 / 1000, 4),
        "price_per_1k_tokens": 0.001,
        "tokens_estimated": True,
        "token_counting": (
            "Nova's tokenizer is not public: token counts are estimates (o200k_base as a proxy), and so is the cost"
        ),
    }


def test_a_config_naming_no_provider_follows_the_stacks_default(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, set_env: SetEnv
) -> None:
    set_env(DEFAULT_PROVIDER="bedrock", BEDROCK_TRAINING_PRICE_PER_1K_TOKENS="0.008")
    rows = [sciq_row(i) for i in range(10)]
    put_rows(
        aws_account,
        tmp_path,
        rows,
        template={"system": None},
        validation_fraction=0.2,
        fine_tune={"model": "amazon.nova-pro-v1:0:300k", "hyperparameters": {"n_epochs": 3}},
    )

    invoke(lambda_context)

    run = only_run(aws_account)
    assert run["status"] == "prepared" and run["provider"] == "bedrock" and run["config"]["provider"] == "bedrock"
    train = aws_account.read(f"datasets/{run['run_id']}/train.jsonl")
    validation = aws_account.read(f"datasets/{run['run_id']}/validation.jsonl")
    assert len(train.splitlines()) == 8 and len(validation.splitlines()) == 2
    # a null system prompt leaves `system` out
    assert sorted(train.splitlines() + validation.splitlines()) == sorted(
        nova_line(row, system=None).rstrip(b"\n") for row in rows
    )
    assert run["gate"]["validation"]["examples"] == 2
    assert run["estimate"]["epochs"] == 3 and run["estimate"]["price_per_1k_tokens"] == 0.008


def test_rows_holding_novas_reserved_strings_are_dropped_and_counted_by_string_and_column(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    rows = [sciq_row(i) for i in range(10)] + [
        sciq_row(10, question="User: what is energy?"),
        sciq_row(11, question="User: and power?"),
        sciq_row(12, support="The [EOS] marker."),
        sciq_row(13, correct_answer="Assistant: joules"),
        sciq_row(14, support="See <image> above"),
        sciq_row(15, support="user: lower case is text"),
    ]
    put_rows(aws_account, tmp_path, rows, provider="bedrock")

    invoke(lambda_context)

    run = only_run(aws_account)
    assert run["status"] == "prepared"
    assert run["counts"]["dropped_reasons"] == {
        'reserved "User:" in question': 2,
        'reserved "[EOS]" in support': 1,
        'reserved "Assistant:" in correct_answer': 1,
        'reserved "<image>" in support': 1,
    }
    assert run["counts"]["rows_kept"] == 11 and run["counts"]["rows_dropped"] == 5
    body = aws_account.read(f"datasets/{run['run_id']}/train.jsonl")
    assert body == b"".join(nova_line(row) for row in rows[:10] + rows[15:])


def test_the_same_rows_for_openai_keep_the_reserved_strings_and_record_the_provider(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    rows = [sciq_row(i) for i in range(10)] + [sciq_row(10, question="User: what is energy?")]
    put_rows(aws_account, tmp_path, rows)

    invoke(lambda_context)

    run = only_run(aws_account)
    assert run["provider"] == "openai" and run["config"]["provider"] == "openai"
    assert run["counts"]["rows_kept"] == 11 and run["counts"]["dropped_reasons"] == {}
    assert b'"messages": [{"role": "system"' in aws_account.read(f"datasets/{run['run_id']}/train.jsonl")
    assert "tokens_estimated" not in run["estimate"] and "price_per_million_tokens" in run["estimate"]


def test_too_few_records_for_nova_fail_the_gate_and_upload_nothing(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    rows = [sciq_row(i) for i in range(7)] + [sciq_row(i, question="Bot: hi") for i in range(7, 12)]
    put_rows(aws_account, tmp_path, rows, provider="bedrock")

    run = failed_run(aws_account, lambda_context)

    assert run["error"] == {
        "code": "data_gate_failed",
        "message": "training file failed the data gate: 7 examples; at least 8 are required",
    }
    assert run["provider"] == "bedrock"
    assert run["counts"]["dropped_reasons"] == {'reserved "Bot:" in question': 5}


def test_a_record_longer_than_the_nova_variants_context_fails_the_gate_and_uploads_nothing(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    """amazon.nova-micro-v1:0:128k takes 128,000 tokens: a longer record was uploaded and trained on before."""
    long_support = " ".join(["joule"] * 130_000)  # two tokens a word: about 260,000 tokens
    rows = [sciq_row(i) for i in range(12)] + [sciq_row(12, support=long_support)]
    put_rows(aws_account, tmp_path, rows, provider="bedrock")

    run = failed_run(aws_account, lambda_context)

    assert run["error"]["code"] == "data_gate_failed"
    assert re.fullmatch(
        r"training file failed the data gate: 1 examples exceed 128,000 tokens \(longest 2\d\d,\d{3}\)",
        run["error"]["message"],
    ), run["error"]["message"]


def test_the_record_limit_is_a_setting(aws_account: Aws, lambda_context: Any, tmp_path: Path, set_env: SetEnv) -> None:
    set_env(BEDROCK_MAX_RECORDS="10")
    put_rows(aws_account, tmp_path, [sciq_row(i) for i in range(14)], provider="bedrock", validation_fraction=0.1)

    run = failed_run(aws_account, lambda_context)

    assert run["error"]["code"] == "data_gate_failed"
    assert run["error"]["message"] == "training file failed the data gate: 13 examples; at most 10 are allowed"


def test_the_validation_file_has_its_own_size_limit(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, set_env: SetEnv
) -> None:
    set_env(BEDROCK_MAX_VALIDATION_BYTES="100")
    put_rows(aws_account, tmp_path, [sciq_row(i) for i in range(14)], provider="bedrock", validation_fraction=0.1)

    run = failed_run(aws_account, lambda_context)

    assert run["error"]["code"] == "data_gate_failed"
    assert run["error"]["message"].startswith("validation file failed the data gate: ")
    assert run["error"]["message"].endswith(" bytes; at most 100 are allowed")


def test_a_bedrock_config_breaking_its_providers_rules_fails_before_reading_anything(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    put_rows(
        aws_account,
        tmp_path,
        [sciq_row(i) for i in range(12)],
        provider="bedrock",
        fine_tune={"hyperparameters": {"batch_size": 8}},
    )

    run = failed_run(aws_account, lambda_context)

    assert run["error"]["code"] == "invalid_config"
    assert (
        "fine_tune.hyperparameters.batch_size is a hyperparameter of OpenAI fine-tuning only"
        in (run["error"]["message"])
    )
    assert run["counts"] == {}


def test_a_bad_bedrock_setting_of_the_deployment_fails_a_bedrock_run_before_its_dataset_is_read(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, set_env: SetEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's mistake, not the user's: the invocation fails (retried, then the dead-letter queue marks the
    run failed) with the variable named, and nothing of the dataset is read or written first."""
    set_env(BEDROCK_MIN_RECORDS="many")
    put_rows(aws_account, tmp_path, [sciq_row(i) for i in range(12)], provider="bedrock")
    downloads: list[Any] = []
    monkeypatch.setattr(dataset_source, "download", lambda ref, destination: downloads.append(ref))

    with pytest.raises(pydantic.ValidationError, match="BEDROCK_MIN_RECORDS"):
        invoke(lambda_context)

    assert downloads == []
    assert aws_account.keys("datasets/") == []
    assert only_run(aws_account)["status"] == "preparing"  # resumed by the retry, once the setting is mended
