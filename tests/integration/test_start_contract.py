"""What StartJobFunction promises whoever trains the run: every provider passes the same behavioural tests
through its own emulator. Each provider's own ways (OpenAI's uploads, Bedrock's client tokens) are in
test_start_job.py and test_start_bedrock_job.py."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from functions.start_job.app import lambda_handler as start_handler
from local.bedrock_emulator import BedrockEmulator
from local.openai_emulator import OpenAIEmulator
from local.sagemaker_emulator import SageMakerEmulator
from shared.providers import PROVIDER_NAMES, spec
from shared.providers.bedrock.gateway import BEDROCK_ATTEMPTS
from shared.providers.open.gateway import CLIENT_CONFIG as OPEN_CLIENT_CONFIG
from tests.helpers import Aws, SetEnv, executions, prepare_run, training_event

BEDROCK_CREATE = "CreateModelCustomizationJob"


@dataclass
class Wing:
    """One provider as this suite drives it: its emulator's jobs and job-create requests, and the levers that
    make the next start fail the way that provider fails."""

    name: str
    started: str  # the run's status once its job exists
    jobs: Callable[[], int]
    creates: Callable[[], int]  # job-create requests the provider received
    refuse: Callable[[], object]
    refusal: tuple[str, str]  # the provider's own code, and words of its message
    stay_unavailable: Callable[[], object]
    attempts: int  # create requests before a transient failure is given up
    unconfigure: Callable[[], object]
    not_configured: tuple[str, str]  # the run's error code, and what its message names to fix


def _openai(request: pytest.FixtureRequest, set_env: SetEnv) -> Wing:
    emulator: OpenAIEmulator = request.getfixturevalue("emulator")
    set_env(OPENAI_TIMEOUT_SECONDS="0.5", OPENAI_RETRY_BACKOFF_SECONDS="0")

    def creates() -> int:
        return len([r for r in emulator.requests if r.path == "/fine_tuning/jobs" and r.method == "POST"])

    def refuse() -> None:
        emulator.fine_tuning_access = False

    def stay_unavailable() -> None:
        emulator.inject_fault("/fine_tuning/jobs", method="POST", status=503, times=100)

    def unconfigure() -> None:
        boto3.client("secretsmanager").delete_secret(SecretId="ragtune/openai-api-key", ForceDeleteWithoutRecovery=True)

    return Wing(
        "openai",
        "validating_files",
        lambda: len(emulator.jobs),
        creates,
        refuse,
        ("fine_tuning_not_available", "Fine-tuning job creation is not available for this organization."),
        stay_unavailable,
        3,  # the use case's own create attempts (the SDK's retries are off for creates)
        unconfigure,
        ("openai_key_unavailable", "secret 'ragtune/openai-api-key'"),
    )


def _bedrock(request: pytest.FixtureRequest, set_env: SetEnv) -> Wing:
    emulator: BedrockEmulator = request.getfixturevalue("bedrock")

    def creates() -> int:
        return len([r for r in emulator.requests if r.operation == BEDROCK_CREATE])

    return Wing(
        "bedrock",
        "running",
        lambda: len(emulator.jobs),
        creates,
        lambda: emulator.inject_fault(BEDROCK_CREATE, "validation", message="Bedrock says no to this model"),
        ("ValidationException", "Bedrock says no to this model"),
        lambda: emulator.inject_fault(BEDROCK_CREATE, "throttling", times=100),
        BEDROCK_ATTEMPTS,
        lambda: set_env(BEDROCK_CUSTOMIZATION_ROLE_ARN=""),
        ("bedrock_role_missing", "BEDROCK_CUSTOMIZATION_ROLE_ARN"),
    )


def _open(request: pytest.FixtureRequest, set_env: SetEnv) -> Wing:
    emulator: SageMakerEmulator = request.getfixturevalue("sagemaker")
    emulator.phase_seconds = 60  # a GPU job trains for a while: still InProgress when the start reads it back

    def creates() -> int:
        return len([r for r in emulator.requests if r.operation == "CreateTrainingJob"])

    return Wing(
        "open",
        "running",
        lambda: len(emulator.jobs),
        creates,
        lambda: emulator.inject_fault("CreateTrainingJob", "resource_limit"),
        ("ResourceLimitExceeded", "service limit for training job instances is 0"),
        lambda: emulator.inject_fault("CreateTrainingJob", "throttling", times=100),
        OPEN_CLIENT_CONFIG.retries["total_max_attempts"],
        lambda: set_env(OPEN_TRAINING_ROLE_ARN=""),
        ("open_not_configured", "OPEN_TRAINING_ROLE_ARN"),
    )


WINGS = {"openai": _openai, "bedrock": _bedrock, "open": _open}


@pytest.fixture(params=PROVIDER_NAMES)
def wing(request: pytest.FixtureRequest, aws_account: Aws, set_env: SetEnv) -> Wing:
    return WINGS[request.param](request, set_env)


@pytest.fixture
def run(wing: Wing, aws_account: Aws, lambda_context: Any, tmp_path: Path) -> dict[str, Any]:
    prepared = prepare_run(aws_account, lambda_context, tmp_path, provider=wing.name)
    assert prepared["provider"] == wing.name
    return prepared


def test_every_registered_provider_is_in_this_suite() -> None:
    assert set(WINGS) == set(PROVIDER_NAMES)


def test_twenty_duplicate_and_concurrent_events_start_one_job_tracked_once(
    wing: Wing, run: dict[str, Any], aws_account: Aws, lambda_context: Any
) -> None:
    event = training_event(run["run_id"])

    def deliver(_: int) -> str:
        try:
            return str(start_handler(event, lambda_context)["runs"][0]["status"])
        except IdempotencyAlreadyInProgressError:
            return "retried later by Lambda"

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(deliver, range(20)))
    replays = [deliver(0) for _ in range(3)]  # Lambda's retries of the ones that were in progress

    assert wing.started in outcomes and set(replays) == {wing.started}
    assert wing.jobs() == 1 and len(executions()) == 1
    [recorded] = aws_account.runs()
    assert recorded["status"] == wing.started and recorded["job_id"]


def test_a_training_file_deleted_before_the_start_fails_the_run_and_asks_the_provider_nothing(
    wing: Wing, run: dict[str, Any], aws_account: Aws, lambda_context: Any
) -> None:
    aws_account.s3.delete_object(Bucket=aws_account.bucket, Key=run["files"]["train"]["key"])

    [outcome] = start_handler(training_event(run["run_id"]), lambda_context)["runs"]

    [recorded] = aws_account.runs()
    assert outcome["status"] == recorded["status"] == "failed"
    assert recorded["error"]["code"] == "training_file_missing"
    assert recorded["error"]["message"].endswith(". Upload the config again to prepare the run anew.")
    assert wing.creates() == 0 and wing.jobs() == 0 and executions() == []


def test_a_refusal_fails_the_run_with_the_providers_words_and_code_and_is_not_retried(
    wing: Wing, run: dict[str, Any], aws_account: Aws, lambda_context: Any
) -> None:
    wing.refuse()

    [outcome] = start_handler(training_event(run["run_id"]), lambda_context)["runs"]

    [recorded] = aws_account.runs()
    assert outcome["status"] == recorded["status"] == "failed"
    code, words = wing.refusal
    error = recorded["error"]
    assert error["code"] == f"{wing.name}_refused"
    assert error[spec(wing.name).code_field] == code
    assert error["message"].startswith(f"{spec(wing.name).label} refused ") and words in error["message"]
    assert [field for field in error if field.endswith("_code")] == [spec(wing.name).code_field]
    assert wing.creates() == 1 and wing.jobs() == 0 and executions() == []


def test_a_provider_unavailable_past_the_retries_fails_the_run_saying_to_upload_again(
    wing: Wing, run: dict[str, Any], aws_account: Aws, lambda_context: Any
) -> None:
    wing.stay_unavailable()

    start_handler(training_event(run["run_id"]), lambda_context)

    [recorded] = aws_account.runs()
    assert (recorded["status"], recorded["error"]["code"]) == ("failed", f"{wing.name}_unavailable")
    assert recorded["error"]["message"].endswith(" are spent. Upload the config again to retry the run.")
    assert wing.creates() == wing.attempts and wing.jobs() == 0 and executions() == []


def test_a_deployment_missing_what_the_provider_needs_fails_the_run_saying_what_to_fix(
    wing: Wing, run: dict[str, Any], aws_account: Aws, lambda_context: Any
) -> None:
    wing.unconfigure()

    start_handler(training_event(run["run_id"]), lambda_context)

    [recorded] = aws_account.runs()
    code, named = wing.not_configured
    assert (recorded["status"], recorded["error"]["code"]) == ("failed", code)
    assert named in recorded["error"]["message"]
    assert recorded["error"]["message"].endswith(", then upload the config again.")
    assert wing.creates() == 0 and wing.jobs() == 0 and executions() == []
