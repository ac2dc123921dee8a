"""Every way a user's input can be wrong ends as a failed run that says why, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.prepare.app import lambda_handler
from tests.conftest import Aws, load_event, sciq_row, write_jsonl

CONFIG_KEY = "configs/sciq-sample.json"


def invoke_and_get_failed_run(aws_account: Aws, context: Any) -> dict[str, Any]:
    result = lambda_handler(load_event("prepare-config-created.json"), context)  # must not raise
    runs = aws_account.runs()
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "failed"
    assert result == {"runs": [{"run_id": run["run_id"], "status": "failed", "error": run["error"]["message"]}]}
    assert aws_account.keys("datasets/") == []  # nothing that could reach OpenAI
    return run


@pytest.mark.parametrize(
    ("body", "code", "expected"),
    [
        (b"{not json", "invalid_config", "config is not valid JSON: Expecting property name"),
        (b"", "invalid_config", "config is not valid JSON: Expecting value at line 1 column 1"),
        (b"[1, 2]", "invalid_config", "config must be a JSON object"),
        (b"{}", "invalid_config", "dataset: Field required"),
        (json.dumps({"dataset": {"source": "x.jsonl"}, "epochs": 3}).encode(), "invalid_config",
         "epochs: unknown key"),
        (json.dumps({"dataset": {"source": "x.jsonl", "spilt": "train"}}).encode(), "invalid_config",
         "dataset.spilt: unknown key"),
        (json.dumps({"dataset": {"source": "x.jsonl"}, "validation_fraction": 2}).encode(), "invalid_config",
         "validation_fraction: Input should be less than or equal to 0.5"),
        (json.dumps({"dataset": {"source": "x.jsonl"}, "max_examples": 3}).encode(), "invalid_config",
         "max_examples: Input should be greater than or equal to 10"),
        (json.dumps({"dataset": {"source": "x.jsonl"},
                     "fine_tune": {"hyperparameters": {"n_epochs": 0}}}).encode(), "invalid_config",
         "fine_tune.hyperparameters.n_epochs"),
        (json.dumps({"dataset": {"source": "x.jsonl"}, "fine_tune": {"suffix": "x" * 65}}).encode(),
         "invalid_config", "fine_tune.suffix: String should have at most 64 characters"),
        (json.dumps({"dataset": {"source": "x.jsonl"}, "template": {"user": "{question!r}"}}).encode(),
         "invalid_config", "template.user: placeholder {question!r} is not a plain column name"),
    ],
    ids=["not-json", "empty", "not-object", "no-dataset", "unknown-key", "unknown-nested-key", "fraction",
         "max-examples", "epochs", "suffix", "placeholder"],
)
def test_broken_config(aws_account: Aws, lambda_context: Any, body: bytes, code: str, expected: str) -> None:
    aws_account.put_config(CONFIG_KEY, body)

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"]["code"] == code
    assert expected in run["error"]["message"]


def test_dataset_file_that_does_not_exist(aws_account: Aws, lambda_context: Any, tmp_path: Path) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": str(tmp_path / "nope.jsonl")}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"] == {"code": "invalid_dataset",
                            "message": f"dataset file '{tmp_path / 'nope.jsonl'}' does not exist"}


def test_dataset_on_the_hub_that_cannot_be_loaded(aws_account: Aws, lambda_context: Any) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": "allenai/sciq"}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"]["message"].startswith("dataset 'allenai/sciq' (split 'train') could not be read: ")


def test_missing_s3_dataset(aws_account: Aws, lambda_context: Any) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": f"s3://{aws_account.bucket}/data/missing.csv"}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert f"dataset s3://{aws_account.bucket}/data/missing.csv cannot be read" in run["error"]["message"]


def test_malformed_dataset(aws_account: Aws, lambda_context: Any, tmp_path: Path) -> None:
    data = tmp_path / "broken.jsonl"
    data.write_text(json.dumps(sciq_row(0)) + "\n{this is not json\n", encoding="utf-8")
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": str(data)}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert "could not be read" in run["error"]["message"] and "JSON" in run["error"]["message"]


def test_template_placeholder_that_is_not_a_column(aws_account: Aws, lambda_context: Any, sciq_file: Path) -> None:
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": str(sciq_file)},
                                        "template": {"assistant": "{answer} because {support}"}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"]["code"] == "invalid_dataset"
    assert run["error"]["message"].startswith("dataset has no column(s) answer used by the config's")
    assert "it has: correct_answer, distractor1" in run["error"]["message"]


def test_fewer_than_ten_examples_after_filtering(aws_account: Aws, lambda_context: Any, tmp_path: Path) -> None:
    rows = [sciq_row(i) for i in range(9)] + [sciq_row(i, support="") for i in range(9, 20)]
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": str(write_jsonl(tmp_path / "r.jsonl", rows))}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    assert run["error"] == {"code": "data_gate_failed", "message":
                            "training file failed the data gate: 9 examples; at least 10 are required"}
    assert run["counts"]["rows_read"] == 20 and run["counts"]["dropped_reasons"] == {"empty support": 11}


def test_data_gate_refuses_empty_content_and_oversized_examples(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    rows = [sciq_row(i) for i in range(12)]
    rows[3]["question"] = "   "
    rows[5]["support"] = "atom " * 70_000
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": str(write_jsonl(tmp_path / "r.jsonl", rows))}})

    run = invoke_and_get_failed_run(aws_account, lambda_context)

    message = run["error"]["message"]
    assert message.startswith("training file failed the data gate: format errors (missing_content x1; line 4: ")
    assert "1 examples exceed 65536 tokens" in message


def test_a_failed_run_is_not_redone_by_a_duplicate_event_but_is_by_a_new_upload(
    aws_account: Aws, lambda_context: Any, sciq_file: Path
) -> None:
    config = {"dataset": {"source": str(sciq_file)}, "template": {"user": "{nope}"}}
    aws_account.put_config(CONFIG_KEY, config)
    event = load_event("prepare-config-created.json")
    first = lambda_handler(event, lambda_context)
    assert lambda_handler(event, lambda_context) == first
    assert len(aws_account.runs()) == 1

    # The user fixes the dataset (here: adds the column) and uploads the same config again
    rows = [dict(sciq_row(i), nope=f"n{i}") for i in range(12)]
    write_jsonl(sciq_file, rows)
    aws_account.put_config(CONFIG_KEY, config)
    lambda_handler(event, lambda_context)

    [run] = aws_account.runs()
    assert run["status"] == "prepared"
    assert "error" not in run
