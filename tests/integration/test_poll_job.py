"""PollJobFunction with its event file: conditional writes, events, metrics, notifications, bounds."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import httpx2
import openai
import pytest
from openai import OpenAI

from functions.poll_job.app import lambda_handler as poll_handler
from functions.start_job.app import lambda_handler as start_handler
from local.openai_emulator import OpenAIEmulator
from shared.aws.runs import RunsRepository
from shared.aws.tracking import execution_name
from shared.pipeline.ask import get_run
from shared.providers.openai import gateway as openai_gateway
from shared.providers.openai.gateway import (
    MAX_EVENT_PAGES_PER_POLL,
    ForeignJobError,
    OpenAIGateway,
    OpenAITransientError,
)
from shared.settings import settings
from tests.helpers import Aws, executions, load_event, prepare_run, training_event


def started_run(aws_account: Aws, emulator: OpenAIEmulator, context: Any, tmp_path: Path) -> dict[str, Any]:
    emulator.phase_seconds = 1000  # the job stays in validating_files until a test speeds it up
    run = prepare_run(aws_account, context, tmp_path)
    start_handler(training_event(run["run_id"]), context)
    [started] = aws_account.runs()
    return started


def model_requests(emulator: OpenAIEmulator) -> list[str]:
    return [r.path for r in emulator.requests if r.path.startswith("/models/")]


def poll_event(run: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    event = load_event("poll-job.json")
    event.update(run_id=run["run_id"], job_id=run["job_id"], **overrides)
    return event


def test_poll_records_progress_then_the_outcome_and_notifies_once(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path, notifications: Any
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)

    emulator.shutdown_dates["gpt-4o-mini-2024-07-18"] = "2027-01-14"  # OpenAI's announced date
    first = poll_handler(poll_event(run), lambda_context)
    assert first["status"] == "validating_files" and first["polls"] == 1
    [running] = aws_account.runs()
    assert any(event["message"].startswith("Validating training file") for event in running["events"])
    assert notifications() == []
    assert "base_model_shutdown_date" not in running and model_requests(emulator) == []

    emulator.phase_seconds = 0
    second = poll_handler(poll_event(run, polls=1), lambda_context)

    job = emulator.jobs[run["job_id"]]
    assert second == {**poll_event(run), "polls": 2, "status": "succeeded", "error_message": ""}
    [done] = aws_account.runs()
    assert done["status"] == "succeeded"
    assert done["fine_tuned_model"] == job.fine_tuned_model and done["fine_tuned_model"].startswith("ft:")
    assert done["trained_tokens"] == job.trained_tokens
    assert set(done["metrics"]) >= {"step", "train_loss", "train_mean_token_accuracy"}
    assert done["metrics"]["step"] == job.checkpoints[-1]["step_number"]
    assert [event["id"] for event in done["events"]] == [event["id"] for event in job.events][-20:]
    assert done["event_count"] == len(job.events)
    assert done["last_event_id"] == job.events[-1]["id"]
    # The base model's shutdown date, read once, on the poll that saw the job succeed
    assert done["base_model_shutdown_date"] == "2027-01-14"
    assert model_requests(emulator) == ["/models/gpt-4o-mini-2024-07-18"]
    assert notifications() == [
        {
            "run_id": run["run_id"],
            "status": "succeeded",
            "job_id": job.id,
            "fine_tuned_model": job.fine_tuned_model,
            "error": None,
        }
    ]

    # A repeated poll changes nothing and announces nothing
    poll_handler(poll_event(run, polls=2), lambda_context)
    [again] = aws_account.runs()
    assert again["updated_at"] == done["updated_at"]
    assert notifications() == []
    assert len(model_requests(emulator)) == 1


def test_a_notice_sns_will_not_take_never_fails_the_poll_and_is_sent_by_a_later_poll(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path, notifications: Any
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    sns = boto3.client("sns")
    topic_arn = sns.list_topics()["Topics"][0]["TopicArn"]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    sns.delete_topic(TopicArn=topic_arn)  # publishing now fails: NotFound
    emulator.phase_seconds = 0

    outcome = poll_handler(poll_event(run), lambda_context)

    assert outcome["status"] == "succeeded"  # the state machine goes on to the curve and the evaluation
    [done] = aws_account.runs()
    assert done["status"] == "succeeded" and "notified_at" not in done
    assert done["notification_error"] == "The notice that the run finished was not published: SNS refused it (NotFound)"
    assert get_run(run["run_id"]).notification_error == done["notification_error"]  # GET /runs/{run_id}

    # The topic is back: the next look at the finished run sends the notice, once, and clears the error
    assert sns.create_topic(Name=topic_arn.rsplit(":", 1)[1])["TopicArn"] == topic_arn
    for subscription in subscriptions:
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol=subscription["Protocol"],
            Endpoint=subscription["Endpoint"],
            Attributes={"RawMessageDelivery": "true"},
        )
    poll_handler(poll_event(run, polls=1), lambda_context)
    poll_handler(poll_event(run, polls=2), lambda_context)

    [notice] = notifications()
    assert (notice["run_id"], notice["status"]) == (run["run_id"], "succeeded")
    [announced] = aws_account.runs()
    assert "notified_at" in announced and "notification_error" not in announced


@pytest.mark.parametrize("fault", ["status", "drop", "no date"])
def test_a_shutdown_date_that_cannot_be_read_never_fails_the_run(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    log_stream: Any,
    set_env: Any,
    fault: str,
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    emulator.phase_seconds = 0
    set_env(OPENAI_MAX_RETRIES="0")
    if fault == "no date":
        emulator.shutdown_dates["gpt-4o-mini-2024-07-18"] = None
    else:
        emulator.inject_fault("/models/.*", kind="status" if fault == "status" else "drop", status=503)

    result = poll_handler(poll_event(run), lambda_context)

    [done] = aws_account.runs()
    assert result["status"] == done["status"] == "succeeded" and done["fine_tuned_model"].startswith("ft:")
    assert "base_model_shutdown_date" not in done
    assert len(model_requests(emulator)) == 1
    warned = [json.loads(line) for line in log_stream.getvalue().splitlines() if "shutdown date" in line]
    assert [entry["level"] for entry in warned] == ([] if fault == "no date" else ["WARNING"])


def test_stale_and_post_terminal_updates_change_nothing(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    runs = RunsRepository(aws_account.runs_table)
    now = time.time_ns()

    assert runs.record_job(run["run_id"], "running", {}, observed_at=now)
    assert not runs.record_job(run["run_id"], "queued", {}, observed_at=now - 1)  # stale
    assert runs.record_job(run["run_id"], "cancelled", {}, observed_at=now + 1)
    assert not runs.record_job(run["run_id"], "running", {}, observed_at=now + 2)  # terminal stays
    assert not runs.record_failure(run["run_id"], "x", "y")
    assert runs.get(run["run_id"]).status == "cancelled"  # type: ignore[union-attr]


def test_an_unknown_status_like_paused_keeps_the_loop_going(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    # The emulator's own clock, moved by hand: its running phase is then never skipped on a busy machine.
    now = [time.time()]
    emulator.store.clock = lambda: now[0]
    emulator.phase_seconds = 10
    now[0] += 25  # past validating (10 s) and queued (10 s), halfway through running
    sdk = OpenAI(base_url=emulator.base_url, api_key="test")
    assert sdk.fine_tuning.jobs.retrieve(run["job_id"]).status == "running"
    sdk.fine_tuning.jobs.pause(run["job_id"])

    state = poll_handler(poll_event(run), lambda_context)

    assert state["status"] == "paused"
    assert aws_account.runs()[0]["status"] == "paused"


def test_failed_job_records_openais_error_and_hands_it_to_the_fail_state(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, notifications: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OpenAIEmulator(phase_seconds=0, min_training_examples=1000) as strict:
        monkeypatch.setenv("OPENAI_BASE_URL", strict.base_url)
        strict.phase_seconds = 1000
        run = prepare_run(aws_account, lambda_context, tmp_path)
        start_handler(training_event(run["run_id"]), lambda_context)
        [run] = aws_account.runs()
        strict.phase_seconds = 0

        state = poll_handler(poll_event(run), lambda_context)

    [failed] = aws_account.runs()
    job = strict.jobs[run["job_id"]]
    assert state["status"] == "failed"
    assert failed["status"] == "failed"
    # Our code says what happened to the run; OpenAI's own code is kept next to its message
    assert failed["error"] == {
        "code": "job_failed",
        "message": job.error["message"],  # type: ignore[index]
        "openai_code": "invalid_training_file",
    }
    assert state["error_message"] == failed["error"]["message"] != ""
    assert [n["status"] for n in notifications()] == ["failed"]


def test_reaching_the_poll_bound_continues_in_a_fresh_execution(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)

    state = poll_handler(poll_event(run, polls=4, max_polls=5), lambda_context)

    assert state["status"] == "continued"
    names = {execution["name"]: json.loads(execution["input"]) for execution in executions()}
    next_execution = execution_name(run["run_id"], run["job_id"], 1)
    assert names[next_execution] == {
        "run_id": run["run_id"],
        "job_id": run["job_id"],
        "generation": 1,
        "polls": 0,
        "max_polls": settings().max_polls_per_execution,
        "poll_interval_seconds": 0,
    }


def test_tracking_failure_is_recorded_without_a_stack_trace(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    cause = json.dumps(
        {
            "errorMessage": "OpenAI refused retrieving the job: No such job",
            "errorType": "OpenAIRefusedError",
            "stackTrace": ['  File "/var/task/shared/x.py", line 1'],
        }
    )

    poll_handler({"action": "record_tracking_failure", "run_id": run["run_id"], "cause": cause}, lambda_context)

    [failed] = aws_account.runs()
    assert failed["status"] == "tracking_failed"
    assert failed["error"] == {
        "code": "tracking_failed",
        "message": "Tracking the job failed: OpenAIRefusedError: OpenAI refused retrieving the job: No such job",
    }


@pytest.mark.parametrize(
    "path",
    [r"/fine_tuning/jobs/[^/]+", r"/fine_tuning/jobs/[^/]+/events", r"/fine_tuning/jobs/[^/]+/checkpoints"],
    ids=["job", "events", "checkpoints"],
)
@pytest.mark.parametrize("times", [2, 3])
@pytest.mark.parametrize("status", [429, 409])
def test_poll_faults_are_retried_then_left_to_the_state_machines_retry(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    times: int,
    status: int,
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    emulator.phase_seconds = 0
    emulator.inject_fault(path, kind="status", method="GET", status=status, times=times)

    if times == 2:  # within the SDK's retries: the poll records the outcome
        assert poll_handler(poll_event(run), lambda_context)["status"] == "succeeded"
        assert aws_account.runs()[0]["status"] == "succeeded"
    else:  # retries spent: the error's name is what the state machine's Retry matches; the run is untouched
        with pytest.raises(OpenAITransientError):
            poll_handler(poll_event(run), lambda_context)
        assert aws_account.runs()[0]["status"] == "validating_files"
        assert poll_handler(poll_event(run), lambda_context)["status"] == "succeeded"  # the Retry's next attempt


def test_a_job_that_failed_without_an_error_is_recorded_with_a_clear_one(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path, notifications: Any
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    job = emulator.jobs[run["job_id"]]
    with emulator.store.lock:  # OpenAI answers `failed` with `error: null`
        job.status, job.error, job.finished_at = "failed", None, 1_750_000_000

    state = poll_handler(poll_event(run), lambda_context)

    [failed] = aws_account.runs()
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "job_failed",
        "message": "OpenAI reported the fine-tuning job as failed without giving a reason.",
    }
    assert failed["finished_at"] == 1_750_000_000
    assert state["status"] == "failed" and state["error_message"] == failed["error"]["message"]
    [notice] = notifications()
    assert notice["error"] == failed["error"]


def test_a_finished_job_records_its_own_finish_time_and_its_checkpoints_step(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    emulator.phase_seconds = 0
    sdk = OpenAI(base_url=emulator.base_url, api_key="test")
    assert sdk.fine_tuning.jobs.retrieve(run["job_id"]).status == "succeeded"
    job = emulator.jobs[run["job_id"]]
    with emulator.store.lock:
        job.finished_at = int(time.time()) - 3600  # it finished an hour before this poll saw it
        newest = job.checkpoints[-1]
        newest["metrics"]["step"] = 7.0  # a metrics step that is not the checkpoint's

    poll_handler(poll_event(run), lambda_context)

    [done] = aws_account.runs()
    assert done["finished_at"] == job.finished_at
    assert done["metrics"]["step"] == newest["step_number"] != 7
    assert done["metrics"]["train_loss"] == newest["metrics"]["train_loss"]


def test_a_job_of_another_deployment_is_never_tracked(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path, notifications: Any
) -> None:
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    ours = emulator.jobs[run["job_id"]]
    sdk = OpenAI(base_url=emulator.base_url, api_key="another-deployments-key")
    emulator.phase_seconds = 0
    foreign = [
        sdk.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=ours.training_file, metadata=metadata).id
        for metadata in (
            {"ragtune_run_id": run["run_id"]},
            {"ragtune_run_id": run["run_id"], "ragtune_deployment": "ragtune-data-999-eu-west-1"},
        )
    ]

    for job_id in foreign:  # however the id reached the loop, the poll refuses before writing anything
        with pytest.raises(ForeignJobError, match=f"{job_id} was not created by this deployment"):
            poll_handler({**poll_event(run), "job_id": job_id}, lambda_context)

    [untouched] = aws_account.runs()
    assert untouched["status"] == "validating_files" and untouched["job_id"] == ours.id
    assert "fine_tuned_model" not in untouched and "events" not in untouched
    assert notifications() == []
    requested = [r.path for r in emulator.requests if r.method == "GET" and r.path.startswith("/fine_tuning/jobs/")]
    assert requested == [f"/fine_tuning/jobs/{job_id}" for job_id in foreign]  # no events, no checkpoints read


def test_event_paging_is_bounded_per_poll(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An API that answers one event per page and always has more costs a bounded number of GETs."""
    run = started_run(aws_account, emulator, lambda_context, tmp_path)
    job = emulator.jobs[run["job_id"]].to_json(None)
    pages: list[str] = []

    def openai_api(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.removeprefix("/v1")
        if path.endswith("/events"):
            pages.append(request.url.params.get("after", ""))
            n = len(pages)
            return httpx2.Response(
                200,
                json={
                    "object": "list",
                    "has_more": True,
                    "data": [
                        {
                            "object": "fine_tuning.job.event",
                            "id": f"ftevent-{n}",
                            "created_at": 1_750_000_000 - n,
                            "level": "info",
                            "message": f"event {n}",
                            "type": "message",
                        }
                    ],
                },
            )
        if path.endswith("/checkpoints"):
            return httpx2.Response(200, json={"object": "list", "data": [], "has_more": False})
        return httpx2.Response(200, json={**job, "status": "running"})

    sdk = OpenAI(
        api_key="test",
        base_url="http://openai.test/v1",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=httpx2.MockTransport(openai_api)),
    )
    monkeypatch.setattr(
        openai_gateway,
        "gateway",
        lambda: OpenAIGateway(sdk, upload_part_bytes=5120, retry_backoff_seconds=0, deployment=aws_account.bucket),
    )

    poll_handler(poll_event(run), lambda_context)

    assert len(pages) == MAX_EVENT_PAGES_PER_POLL
    assert pages == ["", *[f"ftevent-{n}" for n in range(1, MAX_EVENT_PAGES_PER_POLL)]]
    [running] = aws_account.runs()
    assert running["status"] == "running"
    assert running["event_count"] == MAX_EVENT_PAGES_PER_POLL
    assert running["last_event_id"] == "ftevent-1"  # the newest: the next poll reads only what is newer
    assert [e["id"] for e in running["events"]][-1] == "ftevent-1"
