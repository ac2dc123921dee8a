"""FailedEventsFunction with its event file: a run whose event failed every retry ends failed, not stuck."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from functions.failed_events.app import lambda_handler as failed_events_handler
from functions.prepare.app import lambda_handler as prepare_handler
from shared.run_ids import derive_run_id
from shared.runs import RunsRepository
from tests.helpers import Aws, load_event, sciq_row, write_jsonl

CONFIG_KEY = "configs/sciq-sample.json"


def dead_letter(s3_event: dict[str, Any]) -> dict[str, Any]:
    event = load_event("failed-event.json")
    event["Records"][0]["body"] = json.dumps(s3_event)
    return event


def test_a_config_event_that_failed_every_retry_fails_its_run(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "rows.jsonl", [sciq_row(i) for i in range(12)])
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(data)}})
    s3_event = load_event("prepare-config-created.json")
    prepare_handler(s3_event, lambda_context)
    [run] = aws_account.runs()
    runs = RunsRepository(aws_account.runs_table)
    assert runs.claim_for_preparation(run["run_id"], {"config_key": CONFIG_KEY, "config_version": "v2"})  # stuck

    response = failed_events_handler(dead_letter(s3_event), lambda_context)

    assert response == {"batchItemFailures": []}
    [failed] = aws_account.runs()
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "processing_failed",
        "message": f"Processing {CONFIG_KEY} failed after Lambda's retries: Task timed out after "
        "900.00 seconds. Upload the config again to retry the run.",
    }


def test_a_training_file_event_that_failed_every_retry_fails_its_run_but_never_a_finished_one(
    aws_account: Aws, lambda_context: Any
) -> None:
    runs = RunsRepository(aws_account.runs_table)
    for run_id in ("stuck-0123456789ab", "done-0123456789ab"):
        assert runs.claim_for_preparation(run_id, {"config_key": f"configs/{run_id}.json", "config_version": "1"})
        assert runs.record_prepared(run_id, {}) and runs.claim_start(run_id, owner="v1")
    assert runs.record_job("done-0123456789ab", "succeeded", {"fine_tuned_model": "ft:x"}, observed_at=1)
    event = load_event("failed-event.json")
    s3_event = json.loads(event["Records"][0]["body"])
    events = []
    for run_id in ("stuck-0123456789ab", "done-0123456789ab"):
        s3_event["Records"][0]["s3"]["object"]["key"] = f"datasets/{run_id}/train.jsonl"
        events.append(dead_letter(s3_event)["Records"][0])

    failed_events_handler({"Records": events}, lambda_context)

    statuses = {run["run_id"]: run["status"] for run in aws_account.runs()}
    assert statuses == {"stuck-0123456789ab": "failed", "done-0123456789ab": "succeeded"}


def test_an_oversized_config_event_names_the_run_prepare_named_from_its_whole_content(
    aws_account: Aws, lambda_context: Any
) -> None:
    body = b'{"dataset": {"source": "allenai/sciq"}, "template": {"system": "' + b"x" * 70_000 + b'"}}'
    aws_account.put_config(CONFIG_KEY, body)
    s3_event = load_event("prepare-config-created.json")
    prepare_handler(s3_event, lambda_context)
    [run] = aws_account.runs()
    assert run["run_id"] == derive_run_id(CONFIG_KEY, body)
    assert run["error"] == {"code": "invalid_config", "message": f"config is {len(body)} bytes; the limit is 65536"}
    RunsRepository(aws_account.runs_table).claim_for_preparation(
        run["run_id"], {"config_key": CONFIG_KEY, "config_version": "v2"}
    )

    failed_events_handler(dead_letter(s3_event), lambda_context)

    [failed] = aws_account.runs()
    assert failed["run_id"] == run["run_id"] and failed["error"]["code"] == "processing_failed"


def test_lambdas_error_is_recorded_without_the_functions_own_paths(aws_account: Aws, lambda_context: Any) -> None:
    body = json.dumps({"dataset": {"source": "allenai/sciq"}}).encode()
    aws_account.put_config(CONFIG_KEY, body)
    assert RunsRepository(aws_account.runs_table).claim_for_preparation(  # a run that crashed while preparing
        derive_run_id(CONFIG_KEY, body), {"config_key": CONFIG_KEY, "config_version": "v1"}
    )
    s3_event = load_event("prepare-config-created.json")
    event = dead_letter(s3_event)
    event["Records"][0]["messageAttributes"]["ErrorMessage"]["stringValue"] = (
        "[Errno 28] No space left on device: '/tmp/ragtune/sciq-sample-0123456789ab/all.jsonl'"
    )

    failed_events_handler(event, lambda_context)

    [failed] = aws_account.runs()
    assert failed["error"]["message"] == (
        f"Processing {CONFIG_KEY} failed after Lambda's retries: [Errno 28] No space left on device: "
        "'<internal path>'. Upload the config again to retry the run."
    )


def test_a_dead_lettered_event_names_its_object_by_the_decoded_key(
    aws_account: Aws, lambda_context: Any, tmp_path: Path
) -> None:
    key = "configs/my résumé run (2).json"  # arrives as configs/my+r%C3%A9sum%C3%A9+run+%282%29.json
    data = write_jsonl(tmp_path / "rows.jsonl", [sciq_row(i) for i in range(12)])
    aws_account.put_config(key, {"dataset": {"source": aws_account.put_data(data)}})
    s3_event = load_event("prepare-config-key-encoded.json")
    prepare_handler(s3_event, lambda_context)
    [run] = aws_account.runs()
    assert RunsRepository(aws_account.runs_table).claim_for_preparation(
        run["run_id"], {"config_key": key, "config_version": "v2"}
    )  # stuck

    failed_events_handler(dead_letter(s3_event), lambda_context)

    [failed] = aws_account.runs()
    assert failed["run_id"] == run["run_id"] and failed["status"] == "failed"
    assert failed["error"]["message"].startswith(f"Processing {key} failed after Lambda's retries")
