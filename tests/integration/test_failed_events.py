"""FailedEventsFunction with its event file: a run whose event failed every retry ends failed, not stuck;
a run whose job exists is left to its job's tracking (started again if it stopped); an unreadable message
is dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from functions.failed_events.app import lambda_handler as failed_events_handler
from functions.poll_job.app import lambda_handler as poll_handler
from functions.prepare.app import lambda_handler as prepare_handler
from functions.start_job.app import lambda_handler as start_handler
from local.openai_emulator import OpenAIEmulator
from shared.aws.runs import RunsRepository
from shared.aws.tracking import execution_arn, execution_name
from shared.domain.run_ids import derive_run_id
from shared.settings import settings
from tests.helpers import Aws, executions, load_event, prepare_run, sciq_row, training_event, write_jsonl

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


def started_run(aws_account: Aws, emulator: OpenAIEmulator, context: Any, tmp_path: Path) -> dict[str, Any]:
    """A run whose OpenAI job is training, tracked by its generation-0 execution (which moto keeps RUNNING)."""
    emulator.phase_seconds = 1000  # the job stays in validating_files
    run = prepare_run(aws_account, context, tmp_path)
    start_handler(training_event(run["run_id"]), context)
    [started] = aws_account.runs()
    assert started["job_id"] and started["execution_arn"] == execution_arn(started["run_id"], started["job_id"], 0)
    return started


def stop_tracking(run: dict[str, Any], generation: int) -> None:
    arn = execution_arn(run["run_id"], run["job_id"], generation)
    boto3.client("stepfunctions").stop_execution(executionArn=arn)


def tracking(run: dict[str, Any]) -> dict[int, str]:
    """Each generation of the run's tracking that Step Functions knows, with its status."""
    names = {execution_name(run["run_id"], run["job_id"], generation): generation for generation in range(10)}
    return {names[execution["name"]]: execution["status"] for execution in executions()}


def decisions(log_stream: Any) -> list[dict[str, Any]]:
    logs = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    return [log for log in logs if "decision" in log]


def emitted_metrics(capsys: pytest.CaptureFixture[str]) -> dict[str, float]:
    """Each metric the invocation flushed (EMF lines on stdout), summed."""
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for line in lines for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    return {name: sum(sum(line.get(name, [])) for line in lines) for name in names}


def test_a_training_file_event_dead_lettered_while_its_job_trains_leaves_the_run_to_its_tracking(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path, log_stream: Any
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)

    response = failed_events_handler(dead_letter(training_event(run["run_id"])), lambda_context)

    assert response == {"batchItemFailures": []}
    assert aws_account.runs() == [run]  # still validating_files, nothing recorded
    assert tracking(run) == {0: "RUNNING"}  # no second execution beside the running one
    [decided] = decisions(log_stream)
    assert decided["decision"] == "tracking_running" and decided["run_id"] == run["run_id"]
    assert decided["generation"] == 0


def test_a_dead_letter_restarts_stopped_tracking_in_a_generation_that_never_ran(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    log_stream: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    poll_event = load_event("poll-job.json") | {"run_id": run["run_id"], "job_id": run["job_id"]}
    assert poll_handler(poll_event | {"polls": 4, "max_polls": 5}, lambda_context)["status"] == "continued"
    stop_tracking(run, 0)  # ended after handing over to generation 1,
    stop_tracking(run, 1)  # which then stopped without the run finishing
    [before] = aws_account.runs()
    capsys.readouterr()

    response = failed_events_handler(dead_letter(training_event(run["run_id"])), lambda_context)

    assert response == {"batchItemFailures": []}
    assert aws_account.runs() == [before]
    assert tracking(run) == {0: "ABORTED", 1: "ABORTED", 2: "RUNNING"}
    [restarted] = [e for e in executions() if e["name"] == execution_name(run["run_id"], run["job_id"], 2)]
    assert json.loads(restarted["input"]) == {
        "run_id": run["run_id"],
        "job_id": run["job_id"],
        "generation": 2,
        "polls": 0,
        "max_polls": settings().max_polls_per_execution,
        "poll_interval_seconds": 0,
    }
    [decided] = decisions(log_stream)
    assert (decided["level"], decided["decision"], decided["generation"]) == ("WARNING", "tracking_restarted", 2)
    assert decided["stopped_execution_status"] == "ABORTED"
    assert emitted_metrics(capsys) == {"TrackingRestarted": 1}


def test_a_dead_letter_starts_nothing_beside_the_generation_tracking_now(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    """The run records generation 0's ARN only: that execution has ended, yet its successor tracks the job."""
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    poll_event = load_event("poll-job.json") | {"run_id": run["run_id"], "job_id": run["job_id"]}
    poll_handler(poll_event | {"polls": 4, "max_polls": 5}, lambda_context)
    stop_tracking(run, 0)
    [before] = aws_account.runs()

    failed_events_handler(dead_letter(training_event(run["run_id"])), lambda_context)

    assert aws_account.runs() == [before]
    assert tracking(run) == {0: "ABORTED", 1: "RUNNING"}


def test_a_job_whose_tracking_never_started_is_tracked_from_generation_0(aws_account: Aws, lambda_context: Any) -> None:
    """StartJobFunction recorded the job, then died before starting its execution, on every attempt."""
    run_id, job_id = "crashed-0123456789ab", "ftjob-0123456789abcdef01234567"
    runs = RunsRepository(aws_account.runs_table)
    assert runs.claim_for_preparation(run_id, {"config_key": "configs/crashed.json", "config_version": "1"})
    assert runs.record_prepared(run_id, {}) and runs.claim_start(run_id, owner="v1")
    assert runs.record_start(run_id, {"job_id": job_id, "execution_arn": execution_arn(run_id, job_id, 0)})
    before = aws_account.runs()

    failed_events_handler(dead_letter(training_event(run_id)), lambda_context)

    assert aws_account.runs() == before  # still starting: the first poll records the job's status
    assert tracking({"run_id": run_id, "job_id": job_id}) == {0: "RUNNING"}


def test_a_run_whose_tracking_gave_up_keeps_its_own_error_and_is_not_tracked_again(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path, log_stream: Any
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    runs = RunsRepository(aws_account.runs_table)
    assert runs.record_tracking_failure(run["run_id"], "Tracking the job failed: ForeignJobError")
    stop_tracking(run, 0)
    [before] = aws_account.runs()

    failed_events_handler(dead_letter(training_event(run["run_id"])), lambda_context)

    assert aws_account.runs() == [before] and before["status"] == "tracking_failed"
    assert tracking(run) == {0: "ABORTED"}
    [decided] = decisions(log_stream)
    assert decided["message"] == "Failed delivery left its run as it is"
    assert decided["run_status"] == "tracking_failed"


def test_unreadable_dead_letters_are_logged_counted_and_dropped_beside_a_readable_one(
    aws_account: Aws, lambda_context: Any, log_stream: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = RunsRepository(aws_account.runs_table)
    assert runs.claim_for_preparation("stuck-0123456789ab", {"config_key": "configs/stuck.json", "config_version": "1"})
    assert runs.record_prepared("stuck-0123456789ab", {}) and runs.claim_start("stuck-0123456789ab", owner="v1")
    secret = "sk-not-for-the-logs"
    not_json = "not json; " + "x" * 200 + secret
    not_s3 = json.dumps({"Records": [{"s3": {"bucket": {"name": "b"}}, "note": "x" * 200 + secret}]})
    event = {
        "Records": [
            dead_letter(training_event("stuck-0123456789ab"))["Records"][0],
            dead_letter(training_event("x"))["Records"][0] | {"messageId": "not-json", "body": not_json},
            dead_letter(training_event("x"))["Records"][0] | {"messageId": "not-s3", "body": not_s3},
        ]
    }

    response = failed_events_handler(event, lambda_context)

    assert response == {"batchItemFailures": []}  # none is redelivered
    assert [run["status"] for run in aws_account.runs()] == ["failed"]
    logs = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    dropped = {log["message_id"]: log for log in logs if log["message"] == "Unreadable dead letter dropped"}
    assert dropped["not-json"]["reason"] == "the body is not JSON"
    assert dropped["not-s3"]["reason"] == "the body is not an S3 notification (at Records.0.s3.object)"
    assert dropped["not-json"]["body_prefix"] == not_json[:64]
    assert secret not in log_stream.getvalue()
    assert emitted_metrics(capsys) == {"FailedEventsUnreadable": 2}
