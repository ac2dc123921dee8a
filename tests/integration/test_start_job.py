"""StartJobFunction for openai runs, against moto and the OpenAI emulator: uploads, the job, lost answers and
faults in OpenAI's own ways. What every provider must do is in test_start_contract.py."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from functions.prepare.app import lambda_handler as prepare_handler
from functions.start_job.app import lambda_handler as start_handler
from local.openai_emulator import OpenAIEmulator
from local.openai_emulator.faults import FaultKind
from shared.aws.runs import RunsRepository
from shared.settings import settings
from tests.helpers import (
    CONFIG_KEY,
    TEST_OPENAI_KEY,
    Aws,
    SetEnv,
    executions,
    load_event,
    prepare_run,
    training_event,
)


def routes(emulator: OpenAIEmulator, route: str, method: str = "POST") -> list[Any]:
    return [r for r in emulator.requests if r.route == route and r.method == method]


def statuses(emulator: OpenAIEmulator, path: str, method: str = "POST") -> list[int | None]:
    """What each request to `path` was answered, faults included (a faulted request has no route)."""
    return [r.status for r in emulator.requests if r.path == path and r.method == method]


def test_training_file_becomes_an_openai_job_tracked_by_one_execution(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = prepare_run(
        aws_account,
        lambda_context,
        tmp_path,
        validation_fraction=0.25,
        seed=9,
        fine_tune={"suffix": "sciq", "hyperparameters": {"n_epochs": 2}},
    )
    run_id = run["run_id"]

    result = start_handler(training_event(run_id), lambda_context)

    # OpenAI received both files, byte for byte, and one job built from the run's config
    [job] = emulator.jobs.values()
    assert result == {"runs": [{"run_id": run_id, "status": "validating_files", "job_id": job.id}]}
    assert emulator.files[job.training_file].content == aws_account.read(run["files"]["train"]["key"])
    assert job.validation_file is not None
    assert emulator.files[job.validation_file].content == aws_account.read(run["files"]["validation"]["key"])
    assert emulator.files[job.training_file].obj["purpose"] == "fine-tune"
    [create] = routes(emulator, "/fine_tuning/jobs")
    assert create.body == {
        "model": "gpt-4o-mini-2024-07-18",
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "suffix": "sciq",
        "seed": 9,
        "metadata": {"ragtune_run_id": run_id, "ragtune_deployment": aws_account.bucket},
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    }
    assert create.headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"

    # The run records the ids and status; one execution named after the run tracks the job
    [recorded] = aws_account.runs()
    assert recorded["status"] == "validating_files"
    assert (recorded["job_id"], *map(recorded["provider_state"].get, ("training_file_id", "validation_file_id"))) == (
        job.id,
        job.training_file,
        job.validation_file,
    )
    [execution] = executions()
    assert execution["name"] == f"{run_id}-{hashlib.sha256(job.id.encode()).hexdigest()[:8]}-g0"
    assert recorded["execution_arn"] == execution["executionArn"]
    assert json.loads(execution["input"]) == {
        "run_id": run_id,
        "job_id": job.id,
        "generation": 0,
        "polls": 0,
        "max_polls": settings().max_polls_per_execution,
        "poll_interval_seconds": 0,
    }


def test_large_files_go_through_the_uploads_api_in_parts(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    set_env: SetEnv,
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    set_env(UPLOAD_MULTIPART_THRESHOLD_BYTES="1024", UPLOAD_PART_BYTES="5120")

    start_handler(training_event(run["run_id"]), lambda_context)

    [job] = emulator.jobs.values()
    body = aws_account.read(run["files"]["train"]["key"])
    assert emulator.files[job.training_file].content == body
    parts = routes(emulator, "/uploads/{upload_id}/parts")
    assert len(parts) == -(-len(body) // 5120) > 1
    assert not routes(emulator, "/files")


@pytest.mark.parametrize(
    ("path", "method", "kind", "status"),
    [
        ("/files", "POST", "status", 500),
        ("/files", "POST", "drop", None),
        ("/fine_tuning/jobs", "GET", "status", 429),
        ("/fine_tuning/jobs", "GET", "status", 409),
        ("/fine_tuning/jobs", "POST", "status", 503),
        ("/fine_tuning/jobs", "POST", "status", 409),
        ("/fine_tuning/jobs", "POST", "status", 408),
        ("/fine_tuning/jobs", "POST", "drop", None),
        ("/fine_tuning/jobs", "POST", "slow", None),
    ],
    ids=[
        "upload-500",
        "upload-drop",
        "lookup-429",
        "lookup-409",
        "create-503",
        "create-409",
        "create-408",
        "create-drop",
        "create-slow",
    ],
)
@pytest.mark.parametrize("times", [2, 3])
def test_faults_are_retried_a_bounded_number_of_times_then_recorded(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    set_env: SetEnv,
    path: str,
    method: str,
    kind: FaultKind,
    status: int | None,
    times: int,
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    set_env(OPENAI_TIMEOUT_SECONDS="0.5", OPENAI_RETRY_BACKOFF_SECONDS="0")
    emulator.phase_seconds = 1000  # a job found again after a lost answer is still validating
    emulator.inject_fault(path, kind=kind, method=method, status=status or 500, delay=1.0, times=times)

    start_handler(training_event(run["run_id"]), lambda_context)

    [recorded] = aws_account.runs()
    attempts = len([r for r in emulator.requests if r.path == path and r.method == method])
    if kind == "slow" and method == "POST" and path == "/fine_tuning/jobs":
        # A timed-out create still ran at OpenAI: the lookup by run id finds that job and uses it
        oldest = min(emulator.jobs.values(), key=lambda job: (job.created_at, job.id))
        assert recorded["status"] == "validating_files"
        assert recorded["job_id"] in {job.id for job in emulator.jobs.values()}
        assert oldest.metadata == {"ragtune_run_id": recorded["run_id"], "ragtune_deployment": aws_account.bucket}
        assert len(executions()) == 1
    elif times == 2:  # within the SDK's 2 retries (3 attempts): the run goes on
        assert recorded["status"] == "validating_files"
        assert len(emulator.jobs) == 1 and len(executions()) == 1
    else:  # retries spent: the run says so, nothing is left half-started
        assert recorded["status"] == "failed"
        assert recorded["error"]["code"] == "openai_unavailable"
        assert "Upload the config again to retry" in recorded["error"]["message"]
        # OpenAI's own code, when its answer had one, is kept next to the message
        openai_codes = {429: "rate_limit_exceeded", 409: "conflict", 408: "timeout"}  # the emulator's; 5xx: none
        assert recorded["error"].get("openai_code") == (openai_codes.get(status or 0) if kind == "status" else None)
        assert not emulator.jobs and not executions()
    assert attempts <= 3 + (1 if path == "/fine_tuning/jobs" and method == "GET" else 0)


def test_a_job_the_last_create_made_without_an_answer_is_found_not_left_untracked(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path, set_env: SetEnv
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    # Waits of 0.2, 0.4 and 0.8 s before each lookup: the last one comes after the late create has run
    set_env(OPENAI_TIMEOUT_SECONDS="0.5", OPENAI_RETRY_BACKOFF_SECONDS="0.2")
    emulator.phase_seconds = 1000
    emulator.inject_fault("/fine_tuning/jobs", kind="status", method="POST", status=500, times=2)  # nothing made
    emulator.inject_fault("/fine_tuning/jobs", kind="slow", method="POST", delay=1.0, times=1)  # made, answer late

    start_handler(training_event(run["run_id"]), lambda_context)

    [job] = emulator.jobs.values()
    [recorded] = aws_account.runs()
    assert (recorded["status"], recorded["job_id"]) == ("validating_files", job.id)
    assert len([r for r in emulator.requests if r.path == "/fine_tuning/jobs" and r.method == "POST"]) == 3
    [execution] = executions()
    assert json.loads(execution["input"])["job_id"] == job.id


def test_the_api_key_never_reaches_the_logs(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    log_stream: Any,
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    emulator.fine_tuning_access = False
    start_handler(training_event(run["run_id"]), lambda_context)

    logs = log_stream.getvalue()
    assert "OpenAI refused the run" in logs
    assert TEST_OPENAI_KEY not in logs


def test_a_second_upload_of_the_same_data_does_not_start_a_second_job(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    first, second = training_event(run["run_id"]), training_event(run["run_id"])
    first["Records"][0]["s3"]["object"]["versionId"] = "version-a"
    second["Records"][0]["s3"]["object"]["versionId"] = "version-b"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda event: start_handler(event, lambda_context)["runs"][0], [first, second]))

    assert sorted(bool(o.get("replayed")) for o in outcomes) == [False, True], outcomes
    assert len(emulator.jobs) == 1 and len(emulator.files) == 1 and len(executions()) == 1


def test_retrying_a_run_whose_job_failed_starts_a_fresh_job(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OpenAIEmulator(phase_seconds=0, min_training_examples=1000) as strict:
        monkeypatch.setenv("OPENAI_BASE_URL", strict.base_url)
        run = prepare_run(aws_account, lambda_context, tmp_path)
        start_handler(training_event(run["run_id"]), lambda_context)
        [failed_job] = strict.jobs.values()
        sdk = OpenAI(base_url=strict.base_url, api_key="test")
        assert sdk.fine_tuning.jobs.retrieve(failed_job.id).status == "failed"  # as the poll would see it
        RunsRepository(aws_account.runs_table).record_failure(run["run_id"], "invalid_training_file", "too few")
        strict.fine_tuning.min_examples = 10

        # The user uploads the config again: same run id, a new attempt
        aws_account.put_config(
            CONFIG_KEY, json.loads(aws_account.s3.get_object(Bucket=aws_account.bucket, Key=CONFIG_KEY)["Body"].read())
        )
        prepare_handler(load_event("prepare-config-created.json"), lambda_context)
        event = training_event(run["run_id"])
        event["Records"][0]["s3"]["object"]["versionId"] = "second-upload"
        start_handler(event, lambda_context)

        [retried] = aws_account.runs()
        assert len(strict.jobs) == 2
        assert retried["job_id"] != failed_job.id and retried["status"] == "validating_files"
        # A fresh execution tracks the new job: an execution name is never reused (on AWS a name
        # that ran with another input is refused, and the new job would go untracked)
        tracked = {json.loads(e["input"])["job_id"]: e for e in executions()}
        assert set(tracked) == {failed_job.id, retried["job_id"]}
        assert retried["execution_arn"] == tracked[retried["job_id"]]["executionArn"]


def test_an_upload_whose_answer_was_lost_is_found_again_not_repeated(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    set_env: SetEnv,
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    set_env(OPENAI_TIMEOUT_SECONDS="0.5", OPENAI_RETRY_BACKOFF_SECONDS="0.5")
    # OpenAI stores the file after 0.8 s; the client gave up at 0.5 s and looks again at 1.0 s
    emulator.inject_fault("/files", kind="slow", method="POST", delay=0.8, times=1)

    start_handler(training_event(run["run_id"]), lambda_context)

    [file_id] = emulator.files
    assert len(routes(emulator, "/files")) == 1
    assert aws_account.runs()[0]["provider_state"]["training_file_id"] == file_id
    assert emulator.files[file_id].obj["filename"].startswith(f"{aws_account.bucket}_{run['run_id']}-train-")


@pytest.mark.parametrize(
    "path", ["/uploads", r"/uploads/[^/]+/parts", r"/uploads/[^/]+/complete"], ids=["create", "part", "complete"]
)
@pytest.mark.parametrize("times", [2, 3])
def test_uploads_api_faults_are_retried_then_recorded(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    set_env: SetEnv,
    path: str,
    times: int,
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    set_env(UPLOAD_MULTIPART_THRESHOLD_BYTES="1024", UPLOAD_PART_BYTES="5120")
    emulator.inject_fault(path, kind="status", method="POST", status=500, times=times)

    start_handler(training_event(run["run_id"]), lambda_context)

    [recorded] = aws_account.runs()
    if times == 2:  # parts are bytes, safe for the SDK to send again
        assert recorded["status"] == "validating_files"
        [job] = emulator.jobs.values()
        assert emulator.files[job.training_file].content == aws_account.read(run["files"]["train"]["key"])
    else:
        assert (recorded["status"], recorded["error"]["code"]) == ("failed", "openai_unavailable")
        assert not emulator.jobs and not executions()


def test_one_409_on_create_is_retried_and_the_job_is_created(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    set_env: SetEnv,
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    set_env(OPENAI_RETRY_BACKOFF_SECONDS="0")
    emulator.inject_fault("/fine_tuning/jobs", method="POST", status=409, times=1)

    start_handler(training_event(run["run_id"]), lambda_context)

    [job] = emulator.jobs.values()
    assert statuses(emulator, "/fine_tuning/jobs") == [409, 200]
    [recorded] = aws_account.runs()
    assert (recorded["status"], recorded["job_id"]) == ("validating_files", job.id)
    assert "error" not in recorded and len(executions()) == 1


@pytest.mark.parametrize(
    ("status", "should_retry", "outcome"),
    [(400, "true", "validating_files"), (503, "false", "failed")],
    ids=["400-should-retry", "503-should-not-retry"],
)
def test_x_should_retry_decides_over_the_status_code(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    set_env: SetEnv,
    status: int,
    should_retry: str,
    outcome: str,
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    set_env(OPENAI_RETRY_BACKOFF_SECONDS="0")
    emulator.inject_fault(
        "/fine_tuning/jobs", method="POST", status=status, times=1, headers={"x-should-retry": should_retry}
    )

    start_handler(training_event(run["run_id"]), lambda_context)

    [recorded] = aws_account.runs()
    creates = statuses(emulator, "/fine_tuning/jobs")
    assert recorded["status"] == outcome
    if should_retry == "true":
        assert creates == [status, 200] and len(emulator.jobs) == 1
    else:  # OpenAI said not to retry: a refusal, recorded with its message, no second attempt
        assert creates == [status] and not emulator.jobs and not executions()
        assert recorded["error"]["code"] == "openai_refused"
        assert "overloaded" in recorded["error"]["message"]


FOREIGN_BUCKET = "ragtune-data-999999999999-eu-west-1"


def test_a_job_another_deployment_made_for_the_same_run_is_never_adopted(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    """Same config key and bytes give the same run id everywhere: only the deployment tells jobs apart."""
    run = prepare_run(aws_account, lambda_context, tmp_path)
    run_id = run["run_id"]
    emulator.phase_seconds = 1000  # the other deployment's jobs are still validating: usable, if they were ours
    sdk = OpenAI(base_url=emulator.base_url, api_key="another-deployments-key")
    their_file = sdk.files.create(
        file=("theirs.jsonl", aws_account.read(run["files"]["train"]["key"])), purpose="fine-tune"
    ).id
    foreign = {
        sdk.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=their_file, metadata=metadata).id
        for metadata in (
            {"ragtune_run_id": run_id},  # tagged the way ragtune tagged jobs before deployments
            {"ragtune_run_id": run_id, "ragtune_deployment": FOREIGN_BUCKET},
        )
    }

    start_handler(training_event(run_id), lambda_context)

    [recorded] = aws_account.runs()
    [ours] = [job for job in emulator.jobs.values() if job.id not in foreign]
    assert recorded["job_id"] == ours.id and recorded["status"] == "validating_files"
    assert ours.metadata == {"ragtune_run_id": run_id, "ragtune_deployment": aws_account.bucket}
    assert ours.training_file != their_file
    [lookup] = routes(emulator, "/fine_tuning/jobs", "GET")
    assert lookup.query["metadata[ragtune_run_id]"] == run_id
    assert lookup.query["metadata[ragtune_deployment]"] == aws_account.bucket
    [execution] = executions()
    assert json.loads(execution["input"])["job_id"] == ours.id


def test_a_file_another_deployment_uploaded_under_the_runs_name_is_never_adopted(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    set_env: SetEnv,
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    run_id, key = run["run_id"], run["files"]["train"]["key"]
    etag = aws_account.s3.head_object(Bucket=aws_account.bucket, Key=key)["ETag"].strip('"')[:12]
    body = aws_account.read(key)
    sdk = OpenAI(base_url=emulator.base_url, api_key="another-deployments-key")
    foreign = {
        sdk.files.create(file=(name, body), purpose="fine-tune").id
        for name in (f"{run_id}-train-{etag}.jsonl", f"{FOREIGN_BUCKET}_{run_id}-train-{etag}.jsonl")
    }
    set_env(OPENAI_RETRY_BACKOFF_SECONDS="0")
    # Our upload's answer is lost, so the gateway looks for the file by name and size before trying again
    emulator.inject_fault("/files", kind="drop", method="POST", times=1)

    start_handler(training_event(run_id), lambda_context)

    [recorded] = aws_account.runs()
    [job] = emulator.jobs.values()
    assert recorded["provider_state"]["training_file_id"] == job.training_file and job.training_file not in foreign
    assert emulator.files[job.training_file].obj["filename"] == f"{aws_account.bucket}_{run_id}-train-{etag}.jsonl"
    assert emulator.files[job.training_file].content == body


def test_an_upload_that_completes_expired_fails_the_run_saying_so(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    set_env: SetEnv,
) -> None:
    run = prepare_run(aws_account, lambda_context, tmp_path)
    set_env(UPLOAD_MULTIPART_THRESHOLD_BYTES="1024", UPLOAD_PART_BYTES="5120")
    # The hour an upload lives is over by the time it is completed
    real_clock = emulator.store.clock
    emulator.store.clock = lambda: real_clock() + (3600 if routes(emulator, "/uploads/{upload_id}/complete") else 0)

    start_handler(training_event(run["run_id"]), lambda_context)

    [recorded] = aws_account.runs()
    [upload] = emulator.uploads.values()
    assert upload.obj["status"] == "expired"
    assert recorded["status"] == "failed"
    assert recorded["error"] == {
        "code": "openai_refused",
        "message": f"OpenAI's upload {upload.obj['id']} of {upload.obj['filename']} expired before it was "
        "completed (an upload must be completed within an hour). Upload the config again to retry.",
    }
    assert len(routes(emulator, "/uploads/{upload_id}/complete")) == 1  # a refusal: not tried again
    assert not emulator.jobs and not executions()
