"""What the tracking loop's poll promises whoever trains the run: every provider passes the same behavioural
tests through its own emulator, on a job the real StartJobFunction created. Each provider's own ways are in
test_poll_job.py (OpenAI) and test_bedrock_run.py (Bedrock)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions.poll_job.app import lambda_handler as poll_handler
from functions.start_job.app import lambda_handler as start_handler
from local.bedrock_emulator import BedrockEmulator
from local.openai_emulator import OpenAIEmulator
from local.sagemaker_emulator import SageMakerEmulator
from shared.providers import PROVIDER_NAMES
from tests.helpers import Aws, SetEnv, load_event, prepare_run, training_event


@dataclass
class Wing:
    """One provider as this suite drives it: the lever that makes its next job fail, and whether it did."""

    name: str
    fail_jobs: Callable[[], object]
    reason: Callable[[], str]  # the failed job's reason, as the provider gives it


def _openai(request: pytest.FixtureRequest) -> Wing:
    emulator: OpenAIEmulator = request.getfixturevalue("emulator")

    def fail_jobs() -> None:
        emulator.fine_tuning.min_examples = 1000  # the 40-row training file fails OpenAI's validation

    def reason() -> str:
        [job] = emulator.jobs.values()
        return str((job.error or {})["message"])

    return Wing("openai", fail_jobs, reason)


def _bedrock(request: pytest.FixtureRequest) -> Wing:
    emulator: BedrockEmulator = request.getfixturevalue("bedrock")
    return Wing(
        "bedrock",
        lambda: emulator.fail_jobs("Out of capacity for this base model"),
        lambda: "Out of capacity for this base model",
    )


def _open(request: pytest.FixtureRequest) -> Wing:
    emulator: SageMakerEmulator = request.getfixturevalue("sagemaker")
    emulator.fail_jobs("AlgorithmError: CUDA out of memory (emulated)")
    emulator.fail_jobs(None)
    return Wing(
        "open",
        lambda: emulator.fail_jobs("AlgorithmError: CUDA out of memory (emulated)"),
        lambda: "The SageMaker training job failed: AlgorithmError: CUDA out of memory (emulated)",
    )


WINGS = {"openai": _openai, "bedrock": _bedrock, "open": _open}


@pytest.fixture(params=PROVIDER_NAMES)
def wing(request: pytest.FixtureRequest, aws_account: Aws, set_env: SetEnv) -> Wing:
    return WINGS[request.param](request)


def started(wing: Wing, aws: Aws, context: Any, tmp_path: Path) -> dict[str, Any]:
    run = prepare_run(aws, context, tmp_path, provider=wing.name)
    start_handler(training_event(run["run_id"]), context)
    [recorded] = aws.runs()
    assert recorded["job_id"]
    return recorded


def poll_until_finished(run: dict[str, Any], context: Any) -> dict[str, Any]:
    state = load_event("poll-job.json") | {"run_id": run["run_id"], "job_id": run["job_id"]}
    for _ in range(10):
        result: dict[str, Any] = poll_handler(state, context)
        if result["status"] in ("succeeded", "failed", "cancelled"):
            return result
    raise AssertionError(f"the job did not finish in 10 polls: {result}")


def test_every_registered_provider_is_in_this_suite() -> None:
    assert set(WINGS) == set(PROVIDER_NAMES)


def test_a_job_that_succeeds_gives_the_run_its_model_and_one_notice(
    wing: Wing, aws_account: Aws, lambda_context: Any, tmp_path: Path, notifications: Any
) -> None:
    run = started(wing, aws_account, lambda_context, tmp_path)

    state = poll_until_finished(run, lambda_context)

    [succeeded] = aws_account.runs()
    assert state["status"] == succeeded["status"] == "succeeded"
    assert succeeded["fine_tuned_model"] and "error" not in succeeded
    assert [(notice["run_id"], notice["status"]) for notice in notifications()] == [(run["run_id"], "succeeded")]


def test_a_job_that_fails_fails_the_run_with_the_providers_reason_and_one_notice(
    wing: Wing, aws_account: Aws, lambda_context: Any, tmp_path: Path, notifications: Any
) -> None:
    wing.fail_jobs()
    run = started(wing, aws_account, lambda_context, tmp_path)

    state = poll_until_finished(run, lambda_context)

    [failed] = aws_account.runs()
    assert state["status"] == failed["status"] == "failed"
    assert failed["error"]["code"] == "job_failed"
    assert failed["error"]["message"] == state["error_message"] == wing.reason() != ""
    assert "fine_tuned_model" not in failed
    assert [(notice["run_id"], notice["status"]) for notice in notifications()] == [(run["run_id"], "failed")]
