"""PrepareFunction called in-process with the same event files `sam local invoke` uses."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from botocore.exceptions import ClientError

from functions.prepare.app import lambda_handler
from shared.aws import storage
from shared.domain import tokens
from shared.pipeline import prepare
from shared.providers import spec
from tests.helpers import TRICKY_ROWS, Aws, load_event, prepare_run, sciq_row, write_jsonl

NOTEBOOK_SYSTEM = "Given a science question, provide the correct answer with a detailed explanation."
CONFIG_KEY = "configs/sciq-sample.json"


def notebook_line(row: dict[str, str]) -> bytes:
    """What the original notebook wrote for one row, byte for byte."""
    example = {
        "messages": [
            {"role": "system", "content": NOTEBOOK_SYSTEM},
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": row["correct_answer"] + " Explanation: " + row["support"]},
        ]
    }
    return (json.dumps(example, ensure_ascii=False) + "\n").encode("utf-8")


def invoke(context: Any, event_name: str = "prepare-config-created.json") -> dict[str, Any]:
    result: dict[str, Any] = lambda_handler(load_event(event_name), context)
    return result


def only_run(aws_account: Aws) -> dict[str, Any]:
    runs = aws_account.runs()
    assert len(runs) == 1, runs
    return runs[0]


def test_default_config_writes_the_notebooks_jsonl_and_records_the_run(
    aws_account: Aws, lambda_context: Any, sciq_file: Path
) -> None:
    # Given a config naming only the dataset, on SciQ-shaped rows with tricky text
    version = aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(sciq_file)}})

    # When the S3 event for it arrives
    result = invoke(lambda_context)

    # Then the training JSONL is exactly what the notebook wrote for the kept rows
    run = only_run(aws_account)
    run_id = run["run_id"]
    assert result == {"runs": [{"run_id": run_id, "status": "prepared", "train_key": f"datasets/{run_id}/train.jsonl"}]}
    kept = TRICKY_ROWS[:2] + [sciq_row(i) for i in range(4, 14)]
    body = aws_account.read(f"datasets/{run_id}/train.jsonl")
    assert body == b"".join(notebook_line(row) for row in kept)
    assert "Zürich".encode() in body and "日本語".encode() in body and b"\\u" not in body
    assert aws_account.keys("datasets/") == [f"datasets/{run_id}/train.jsonl"]

    # And the run records what happened
    assert run["status"] == "prepared"
    assert run["config_key"] == CONFIG_KEY and run["config_version"] == version
    assert run["counts"] == {
        "rows_read": 14,
        "rows_kept": 12,
        "rows_dropped": 2,
        "dropped_reasons": {"empty support": 1, "empty correct_answer": 1},
        "train_examples": 12,
        "validation_examples": 0,
    }
    assert run["files"] == {"train": {"key": f"datasets/{run_id}/train.jsonl", "bytes": len(body), "examples": 12}}
    assert run["config"]["template"] == {
        "system": NOTEBOOK_SYSTEM,
        "user": "{question}",
        "assistant": "{correct_answer} Explanation: {support}",
    }
    assert run["config"]["fine_tune"]["model"] == "gpt-4o-mini-2024-07-18"
    gate = run["gate"]["train"]
    assert gate["examples"] == 12 and gate["duplicate_examples"] == 0
    assert 12 * 20 < gate["total_tokens"] < 12 * 80
    assert run["estimate"]["epochs"] == 8  # OpenAI's auto rule: 100 // 12
    assert run["estimate"]["trained_tokens"] == gate["billing_tokens"] * 8
    assert run["estimate"]["cost_usd"] == pytest.approx(gate["billing_tokens"] * 8 * 3.0 / 1e6, abs=1e-4)


def test_validation_split_is_seeded_disjoint_and_uploaded_before_training(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_jsonl(tmp_path / "rows.jsonl", [sciq_row(i) for i in range(40)])
    config = {"dataset": {"source": aws_account.put_data(data)}, "validation_fraction": 0.25, "seed": 7}
    aws_account.put_config(CONFIG_KEY, config)
    uploads: list[tuple[str, str | None]] = []
    real_upload = storage.upload

    def recording_upload(source: Path, ref: Any, metadata: dict[str, str], content_type: str) -> None:
        status = aws_account.runs()[0]["status"]
        uploads.append((ref.key.rsplit("/", 1)[1], status))
        real_upload(source, ref, metadata, content_type)

    monkeypatch.setattr(prepare, "upload", recording_upload)

    invoke(lambda_context)

    run = only_run(aws_account)
    assert uploads == [("validation.jsonl", "preparing"), ("questions.jsonl", "preparing"), ("train.jsonl", "prepared")]
    train = aws_account.read(run["files"]["train"]["key"]).splitlines()
    validation = aws_account.read(run["files"]["validation"]["key"]).splitlines()
    assert (len(train), len(validation)) == (30, 10)
    all_lines = [notebook_line(sciq_row(i)).rstrip(b"\n") for i in range(40)]
    assert sorted(train + validation) == sorted(all_lines)
    assert train == [line for line in all_lines if line in train]  # original order kept
    assert run["counts"]["validation_examples"] == 10
    assert run["gate"]["validation"]["examples"] == 10

    # The same seed picks the same held-out rows on a fresh run of another config key
    aws_account.put_config("configs/again.json", config)
    event = load_event("prepare-config-created.json")
    event["Records"][0]["s3"]["object"]["key"] = "configs/again.json"
    lambda_handler(event, lambda_context)
    again = next(r for r in aws_account.runs() if r["config_key"] == "configs/again.json")
    assert aws_account.read(again["files"]["validation"]["key"]).splitlines() == validation


@pytest.mark.parametrize("provider", ["openai", "bedrock"])
def test_the_gate_report_of_each_file_is_what_the_gate_finds_reading_the_uploaded_bytes(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, provider: str
) -> None:
    """Prepare gates each example as it writes it; reading the files back must find the very same report."""
    rows = [sciq_row(i) for i in range(30)] + [sciq_row(i) for i in range(8)]  # 8 rows twice: duplicates
    rows[3] = sciq_row(3, support='Ünïcödé, "quotes" and a\nnewline ' * 40)
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    config = {"provider": provider, "dataset": {"source": aws_account.put_data(data)}, "validation_fraction": 0.3}
    aws_account.put_config(CONFIG_KEY, config)

    invoke(lambda_context)

    run = only_run(aws_account)
    inspect = spec(provider).records().inspect
    for name in ("train", "validation"):
        body = aws_account.read(run["files"][name]["key"])
        assert run["gate"][name] == inspect(body.splitlines(keepends=True)).as_record(), name
    assert run["gate"]["train"]["duplicate_examples"] + run["gate"]["validation"]["duplicate_examples"] > 0


def test_custom_template_filter_and_max_examples(aws_account: Aws, lambda_context: Any, tmp_path: Path) -> None:
    rows = [sciq_row(i) for i in range(30)]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    aws_account.put_config(
        CONFIG_KEY,
        {
            "dataset": {"source": aws_account.put_data(data)},
            "filter": {"non_empty": []},
            "template": {"system": None, "user": "Q: {question} {{literal}}", "assistant": "{correct_answer}"},
            "max_examples": 10,
        },
    )

    invoke(lambda_context)

    run = only_run(aws_account)
    lines = [json.loads(line) for line in aws_account.read(run["files"]["train"]["key"]).splitlines()]
    assert lines == [
        {
            "messages": [
                {"role": "user", "content": f"Q: {row['question']} {{literal}}"},
                {"role": "assistant", "content": row["correct_answer"]},
            ]
        }
        for row in rows[:10]
    ]
    assert run["counts"]["rows_read"] == 10  # reading stopped once 10 rows were kept


@pytest.mark.parametrize("file_format", ["csv", "parquet", "json"])
def test_loads_csv_parquet_and_json_files(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, file_format: str
) -> None:
    rows = [sciq_row(i) for i in range(12)]
    frame = pd.DataFrame(rows)
    path = tmp_path / f"rows.{file_format}"
    if file_format == "csv":
        frame.to_csv(path, index=False)
    elif file_format == "parquet":
        frame.to_parquet(path)
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(path)}})

    invoke(lambda_context)

    run = only_run(aws_account)
    assert run["status"] == "prepared", run.get("error")
    assert aws_account.read(run["files"]["train"]["key"]) == b"".join(notebook_line(r) for r in rows)


def test_s3_dataset_source(aws_account: Aws, lambda_context: Any, sciq_file: Path) -> None:
    aws_account.s3.put_object(Bucket=aws_account.bucket, Key="data/my sciq.jsonl", Body=sciq_file.read_bytes())
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": f"s3://{aws_account.bucket}/data/my sciq.jsonl"}})

    invoke(lambda_context)

    run = only_run(aws_account)
    assert run["status"] == "prepared"
    assert run["counts"]["rows_kept"] == 12


def test_replayed_event_gives_one_run_and_one_file(aws_account: Aws, lambda_context: Any, sciq_file: Path) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(sciq_file)}})

    first = invoke(lambda_context)
    second = invoke(lambda_context)

    run = only_run(aws_account)
    assert first == second
    assert aws_account.versions(run["files"]["train"]["key"]) == 1


def test_edited_config_is_a_new_run(aws_account: Aws, lambda_context: Any, sciq_file: Path) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(sciq_file)}})
    invoke(lambda_context)
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(sciq_file)}, "seed": 1})
    invoke(lambda_context)

    runs = aws_account.runs()
    assert len({run["run_id"] for run in runs}) == 2
    assert all(run["run_id"].startswith("sciq-sample-") for run in runs)


def test_url_encoded_key_with_spaces_and_non_ascii(aws_account: Aws, lambda_context: Any, sciq_file: Path) -> None:
    key = "configs/my résumé run (2).json"
    aws_account.put_config(key, {"dataset": {"source": aws_account.put_data(sciq_file)}})

    invoke(lambda_context, "prepare-config-key-encoded.json")

    run = only_run(aws_account)
    assert run["config_key"] == key
    assert run["status"] == "prepared"
    assert run["run_id"].startswith("my-r-sum-run-2-")


def test_transient_failure_is_retried_without_a_second_run_or_partial_file(
    aws_account: Aws, lambda_context: Any, sciq_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(sciq_file)}})
    real_upload = storage.upload

    def failing_upload(*args: Any, **kwargs: Any) -> None:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate"}}, "PutObject")

    monkeypatch.setattr(prepare, "upload", failing_upload)
    with pytest.raises(ClientError):
        invoke(lambda_context)  # S3 retries an async invocation that raises
    assert aws_account.keys("datasets/") == []

    monkeypatch.setattr(prepare, "upload", real_upload)
    invoke(lambda_context)

    run = only_run(aws_account)
    assert run["status"] == "prepared"
    assert aws_account.versions(run["files"]["train"]["key"]) == 1


def test_logs_are_json_with_the_run_id_and_metrics_are_emitted(
    aws_account: Aws,
    lambda_context: Any,
    sciq_file: Path,
    log_stream: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(sciq_file)}})
    invoke(lambda_context)

    run_id = only_run(aws_account)["run_id"]
    logs = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(log["message"] == "Run prepared" for log in logs)
    assert all(log.get("run_id") == run_id for log in logs)
    assert metrics and metrics[0]["RowsRead"] == [14.0] and metrics[0]["RowsKept"] == [12.0]
    assert metrics[0]["TrainingTokens"][0] > 0 and "PrepareSeconds" in metrics[0]


def test_numbers_and_booleans_are_written_as_text_and_nulls_or_structures_drop_their_row(
    aws_account: Aws, lambda_context: Any
) -> None:
    rows: list[dict[str, Any]] = [
        dict(
            sciq_row(i),
            year=2000 + i,
            score=i / 2,
            verified=i % 2 == 0,
            hint=f"hint {i}",
            meta={"text": f"m{i}", "lang": "en"},
        )
        for i in range(14)
    ]
    rows[12]["hint"] = None
    rows[13]["year"] = None
    body = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    aws_account.put_config(
        CONFIG_KEY,
        {
            "dataset": {"source": aws_account.put_data(body, "typed.jsonl")},
            "template": {
                "user": "{question} ({year}, score {score}, verified: {verified}, {hint})",
                "assistant": "{correct_answer} Explanation: {support}",
            },
        },
    )

    invoke(lambda_context)

    run = only_run(aws_account)
    assert run["status"] == "prepared", run.get("error")
    assert run["counts"]["dropped_reasons"] == {"missing hint": 1, "missing year": 1}
    lines = [json.loads(line) for line in aws_account.read(run["files"]["train"]["key"]).splitlines()]
    assert [line["messages"][1]["content"] for line in lines[:2]] == [
        "Question 0: what is measured in joules? (2000, score 0.0, verified: true, hint 0)",
        "Question 1: what is measured in joules? (2001, score 0.5, verified: false, hint 1)",
    ]
    assert b"None" not in aws_account.read(run["files"]["train"]["key"])

    # A template that names the structured column: every row is dropped, the reason names it, the run fails
    aws_account.put_config(
        "configs/meta.json",
        {
            "dataset": {"source": f"s3://{aws_account.bucket}/data/typed.jsonl"},
            "template": {"user": "{question}", "assistant": "{meta}"},
        },
    )
    event = load_event("prepare-config-created.json")
    event["Records"][0]["s3"]["object"]["key"] = "configs/meta.json"
    lambda_handler(event, lambda_context)
    failed = next(r for r in aws_account.runs() if r["config_key"] == "configs/meta.json")
    assert failed["status"] == "failed" and failed["error"]["code"] == "data_gate_failed"
    assert failed["counts"]["dropped_reasons"] == {"non-text meta": 14}
    assert aws_account.keys(f"datasets/{failed['run_id']}/") == []


def test_a_token_worker_that_dies_fails_the_attempt_and_the_retry_prepares_the_run(
    aws_account: Aws, lambda_context: Any, sciq_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting is infrastructure, not the user's input: the attempt raises (Lambda retries it), nothing is uploaded."""
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(sciq_file)}})
    worker = tokens._WORKER_COMMAND
    monkeypatch.setattr(tokens, "_WORKER_COMMAND", [sys.executable, "-c", "import sys; sys.exit(9)"])
    monkeypatch.setattr(tokens, "COUNTED_HERE_FIRST", 0)  # a dataset this small is otherwise counted in-process

    with pytest.raises(RuntimeError, match=r"token worker .* exit code 9"):
        invoke(lambda_context)
    assert aws_account.keys("datasets/") == []
    assert only_run(aws_account)["status"] == "preparing"

    monkeypatch.setattr(tokens, "_WORKER_COMMAND", worker)
    invoke(lambda_context)

    run = only_run(aws_account)
    assert run["status"] == "prepared" and run["gate"]["train"]["total_tokens"] > 0
    assert aws_account.versions(run["files"]["train"]["key"]) == 1


def test_the_run_records_the_version_and_etag_of_the_data_file_it_was_prepared_from(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    """Two uploads of different files under one name are two files: the run names the one it read."""
    run = prepare_run(aws_account, lambda_context, tmp_path)
    head = aws_account.s3.head_object(Bucket=aws_account.bucket, Key="data/rows.jsonl")

    aws_account.put_data(b'{"question": "a later file under the same name"}\n', name="rows.jsonl")

    assert run["dataset_object"] == {
        "uri": f"s3://{aws_account.bucket}/data/rows.jsonl",
        "version_id": head["VersionId"],
        "etag": head["ETag"].strip('"'),
    }
    assert aws_account.versions("data/rows.jsonl") == 2
