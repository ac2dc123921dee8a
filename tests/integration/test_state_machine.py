"""The real state machine definition, executed by moto's Step Functions, with the real poll handler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from functions.poll_job import app as poll_app
from functions.start_job.app import lambda_handler as start_handler
from local.openai_emulator import OpenAIEmulator
from shared.pipeline.poll_job import poll_once
from tests.helpers import Aws, SetEnv, finished_execution, history_states, prepare_run, training_event


def test_a_succeeding_job_ends_in_succeed(
    aws_account_executing: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = prepare_run(aws_account_executing, lambda_context, tmp_path)
    emulator.phase_seconds = 0.05  # a few polls before the job is done

    start_handler(training_event(run["run_id"]), lambda_context)
    execution = finished_execution(run["run_id"])

    assert execution["status"] == "SUCCEEDED"
    states = history_states(execution["executionArn"])
    assert states[:3] == ["WaitBeforePoll", "PollJob", "JobStatus"] and states[-1] == "JobSucceeded"
    output = json.loads(execution["output"])
    assert output["status"] == "succeeded" and output["polls"] == states.count("PollJob")
    [done] = aws_account_executing.runs()
    assert done["status"] == "succeeded"
    assert done["fine_tuned_model"] == emulator.jobs[done["job_id"]].fine_tuned_model


def test_a_failed_job_ends_in_fail_carrying_the_jobs_error(
    aws_account_executing: Aws, lambda_context: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OpenAIEmulator(phase_seconds=0, min_training_examples=1000) as strict:
        monkeypatch.setenv("OPENAI_BASE_URL", strict.base_url)
        run = prepare_run(aws_account_executing, lambda_context, tmp_path)
        start_handler(training_event(run["run_id"]), lambda_context)
        execution = finished_execution(run["run_id"])

    [failed] = aws_account_executing.runs()
    assert execution["status"] == "FAILED"
    assert execution["error"] == "JobFailed"
    assert execution["cause"] == failed["error"]["message"]
    assert failed["status"] == "failed"
    assert (failed["error"]["code"], failed["error"]["openai_code"]) == ("job_failed", "invalid_training_file")


def test_transient_poll_errors_are_retried_by_the_state_machine(
    aws_account_executing: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = prepare_run(aws_account_executing, lambda_context, tmp_path)
    emulator.phase_seconds = 1000
    start_handler(training_event(run["run_id"]), lambda_context)
    emulator.phase_seconds = 0
    # 3 failures exhaust the SDK's retries inside the first task attempt; the Retry's second attempt works
    emulator.inject_fault(r"/fine_tuning/jobs/[^/]+", kind="status", method="GET", status=503, times=3)

    execution = finished_execution(run["run_id"])

    assert execution["status"] == "SUCCEEDED"
    events = boto3.client("stepfunctions").get_execution_history(executionArn=execution["executionArn"])["events"]
    assert any(e["type"] == "LambdaFunctionFailed" or e["type"] == "TaskFailed" for e in events)
    assert aws_account_executing.runs()[0]["status"] == "succeeded"


def test_a_poll_that_cannot_succeed_is_recorded_on_the_run_before_failing(
    aws_account_executing: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = prepare_run(aws_account_executing, lambda_context, tmp_path)
    emulator.phase_seconds = 1000
    emulator.inject_fault(r"/fine_tuning/jobs/[^/]+", kind="status", method="GET", status=404, times=100)

    start_handler(training_event(run["run_id"]), lambda_context)
    execution = finished_execution(run["run_id"])

    assert execution["status"] == "FAILED" and execution["error"] == "TrackingFailed"
    assert history_states(execution["executionArn"])[-2:] == ["RecordTrackingFailure", "TrackingFailed"]
    [failed] = aws_account_executing.runs()
    assert failed["status"] == "tracking_failed"
    assert failed["error"]["message"].startswith("Tracking the job failed: OpenAIRefusedError: OpenAI refused")
    assert "stackTrace" not in failed["error"]["message"]


def test_reaching_the_poll_bound_continues_in_a_fresh_execution_that_finishes_the_job(
    aws_account_executing: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    tmp_path: Path,
    set_env: SetEnv,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(MAX_POLLS_PER_EXECUTION="2")
    run = prepare_run(aws_account_executing, lambda_context, tmp_path)
    emulator.phase_seconds = 1000
    polls: list[Any] = []

    def poll_then_let_the_job_finish(request: Any) -> Any:
        """The job finishes once the first execution has used its two polls, whatever the pace of the threads."""
        polls.append(request)
        state = poll_once(request)
        if len(polls) == 2:
            emulator.phase_seconds = 0
        return state

    monkeypatch.setattr(poll_app, "poll_once", poll_then_let_the_job_finish)

    start_handler(training_event(run["run_id"]), lambda_context)
    first = finished_execution(run["run_id"])
    second = finished_execution(run["run_id"], generation=1)

    assert first["status"] == "SUCCEEDED"
    assert history_states(first["executionArn"])[-1] == "ContinuedInNewExecution"
    assert history_states(first["executionArn"]).count("PollJob") == 2
    assert second["status"] == "SUCCEEDED" and history_states(second["executionArn"])[-1] == "JobSucceeded"
    assert json.loads(second["input"])["generation"] == 1
    assert aws_account_executing.runs()[0]["status"] == "succeeded"
