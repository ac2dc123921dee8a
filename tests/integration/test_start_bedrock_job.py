"""StartJobFunction for bedrock runs, against moto and the Bedrock emulator: one customization job
built from the run, Bedrock's client tokens, its refusals and throttling. What every provider must do is in
test_start_contract.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.prepare.app import lambda_handler as prepare_handler
from functions.start_job.app import lambda_handler as start_handler
from local.bedrock_emulator import BedrockEmulator
from shared.providers.base import ForeignJobError
from shared.providers.bedrock import gateway as bedrock_gateway
from tests.helpers import CONFIG_KEY, Aws, SetEnv, executions, load_event, prepare_run, training_event

CREATE = "CreateModelCustomizationJob"
ROLE_ENV = "BEDROCK_CUSTOMIZATION_ROLE_ARN"
ROLE_ARN = "arn:aws:iam::123456789012:role/ragtune-BedrockCustomizationRole"


@pytest.fixture
def bedrock(aws_account: Aws, set_env: SetEnv) -> Iterator[BedrockEmulator]:
    """The Bedrock emulator (reading the training data from moto's S3), boto3 pointed at it."""
    with BedrockEmulator(phase_seconds=0.0) as emulator:
        set_env(**emulator.environment())
        bedrock_gateway.bedrock_client.cache_clear()
        yield emulator
    bedrock_gateway.bedrock_client.cache_clear()


def creates(emulator: BedrockEmulator) -> list[Any]:
    return [request for request in emulator.requests if request.operation == CREATE]


def bedrock_run(aws_account: Aws, context: Any, tmp_path: Path, **config: Any) -> dict[str, Any]:
    run = prepare_run(aws_account, context, tmp_path, provider="bedrock", **config)
    assert run["provider"] == "bedrock"
    return run


def test_a_bedrock_runs_training_file_becomes_one_customization_job_built_from_the_run(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = bedrock_run(
        aws_account,
        lambda_context,
        tmp_path,
        validation_fraction=0.25,
        fine_tune={"suffix": "sciq", "hyperparameters": {"n_epochs": 2}},
    )
    run_id, bucket = run["run_id"], aws_account.bucket

    event = training_event(run_id)
    result = start_handler(event, lambda_context)

    [job] = bedrock.jobs.values()
    [create] = creates(bedrock)
    body = create.body
    token = body["clientRequestToken"]
    # The token is the deployment's, the run's and the training file's (the event's version and the ETag)
    owner = event["Records"][0]["s3"]["object"].get("versionId") or "unversioned"
    etag = aws_account.s3.head_object(Bucket=bucket, Key=run["files"]["train"]["key"])["ETag"].strip('"')
    assert token == hashlib.sha256("\n".join((bucket, run_id, owner, etag)).encode()).hexdigest()
    assert body == {
        "jobName": f"{run_id}-{token[:8]}",
        "customModelName": f"{run_id}-sciq-{token[:8]}",
        "roleArn": "arn:aws:iam::123456789012:role/ragtune-BedrockCustomizationRole",
        "clientRequestToken": token,
        "baseModelIdentifier": "amazon.nova-micro-v1:0:128k",
        "customizationType": "FINE_TUNING",
        "trainingDataConfig": {"s3Uri": f"s3://{bucket}/datasets/{run_id}/train.jsonl"},
        "validationDataConfig": {"validators": [{"s3Uri": f"s3://{bucket}/datasets/{run_id}/validation.jsonl"}]},
        "outputDataConfig": {"s3Uri": f"s3://{bucket}/outputs/{run_id}/"},
        "hyperParameters": {"epochCount": "2"},
        "jobTags": [{"key": "ragtune_run_id", "value": run_id}, {"key": "ragtune_deployment", "value": bucket}],
        "customModelTags": [
            {"key": "ragtune_run_id", "value": run_id},
            {"key": "ragtune_deployment", "value": bucket},
        ],
    }
    job_arn = create.response["jobArn"]
    assert result == {"runs": [{"run_id": run_id, "status": "running", "job_id": job_arn}]}
    assert job is not None

    [recorded] = aws_account.runs()
    assert (recorded["status"], recorded["job_id"], recorded["provider"]) == ("running", job_arn, "bedrock")
    assert recorded["provider_state"]["bedrock_request_token"] == token
    assert set(recorded["provider_state"]) == {"bedrock_request_token"} and "error" not in recorded
    # The poll follows the job: one tracking execution, recorded on the run
    [execution] = executions()
    assert recorded["execution_arn"] == execution["executionArn"]


def test_a_repeated_create_with_the_same_token_is_the_same_job(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bedrock's own idempotency, without ours in front (the lookup of the run's jobs is switched off): a start
    that crashed after the create and is run again (the run still `starting`, same training file) sends the
    same request and gets the same job."""
    from shared.aws.runs import RunsRepository

    run = bedrock_run(aws_account, lambda_context, tmp_path)
    run_id = run["run_id"]
    runs = RunsRepository(aws_account.runs_table)
    assert runs.claim_start(run_id, "unversioned")
    gateway = bedrock_gateway.gateway()
    monkeypatch.setattr(gateway, "find_job_for_run", lambda run_id: None)

    def start() -> str:
        prepared = runs.get(run_id)
        assert prepared is not None
        return gateway.start_job(prepared, "unversioned", lambda fields: runs.record_start(run_id, fields)).job_id

    assert start() == start() and len(bedrock.jobs) == 1
    first, again = creates(bedrock)
    assert first.body == again.body


@pytest.mark.parametrize(
    ("kind", "code"), [("validation", "ValidationException"), ("access_denied", "AccessDeniedException")]
)
def test_a_refused_job_fails_the_run_with_bedrocks_message_and_code(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path, kind: str, code: str
) -> None:
    run = bedrock_run(aws_account, lambda_context, tmp_path)
    bedrock.inject_fault(CREATE, kind, times=1, message="Bedrock says no to this model")  # type: ignore[arg-type]

    [outcome] = start_handler(training_event(run["run_id"]), lambda_context)["runs"]

    [recorded] = aws_account.runs()
    assert recorded["status"] == "failed" and outcome["status"] == "failed"
    error = recorded["error"]
    assert (error["code"], error["bedrock_code"]) == ("bedrock_refused", code)
    assert f"Amazon Bedrock refused creating the model customization job ({code}): " in error["message"]
    assert "Bedrock says no to this model" in error["message"]
    assert "openai_code" not in error
    assert len(creates(bedrock)) == 1  # a refusal is not retried
    assert bedrock.jobs == {} and executions() == []


def test_throttling_is_retried_by_the_client_and_then_the_job_is_created(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = bedrock_run(aws_account, lambda_context, tmp_path)
    bedrock.inject_fault(CREATE, "throttling", times=2)

    [outcome] = start_handler(training_event(run["run_id"]), lambda_context)["runs"]

    assert outcome["status"] == "running"
    assert [request.status for request in creates(bedrock)][:2] == [429, 429]
    assert len(bedrock.jobs) == 1


def test_a_job_whose_create_answers_were_all_lost_is_found_and_tracked_not_failed(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    """Every attempt reached Bedrock and none was answered: the job exists, and the run follows it."""
    run = bedrock_run(aws_account, lambda_context, tmp_path)
    bedrock.customizations.phase_seconds = 1000  # still training when found
    bedrock.inject_fault(CREATE, "lost_answer", times=bedrock_gateway.BEDROCK_ATTEMPTS)

    [outcome] = start_handler(training_event(run["run_id"]), lambda_context)["runs"]

    [job] = bedrock.jobs.values()  # the retries carried the same token: one job
    assert len(creates(bedrock)) == bedrock_gateway.BEDROCK_ATTEMPTS
    assert all(request.status is None for request in creates(bedrock))  # none answered
    [recorded] = aws_account.runs()
    assert (outcome["status"], recorded["status"], recorded["job_id"]) == ("running", "running", job.arn)
    [execution] = executions()
    assert json.loads(execution["input"])["job_id"] == job.arn


def test_uploading_the_config_again_after_a_lost_create_adopts_the_job_not_a_second_one(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first start did not see the job it made in the listing (which may lag behind), so the run failed
    saying to upload again; the new training file version means a new token, yet no second job is made."""
    run = bedrock_run(aws_account, lambda_context, tmp_path)
    run_id = run["run_id"]
    bedrock.customizations.phase_seconds = 1000
    bedrock.inject_fault(CREATE, "lost_answer", times=bedrock_gateway.BEDROCK_ATTEMPTS)
    with monkeypatch.context() as lagging:
        lagging.setattr(bedrock_gateway.BedrockGateway, "find_job_for_run", lambda self, run_id: None)
        start_handler(training_event(run_id), lambda_context)
    [failed] = aws_account.runs()
    assert (failed["status"], failed["error"]["code"]) == ("failed", "bedrock_unavailable")
    [first_job] = bedrock.jobs.values()

    aws_account.put_config(CONFIG_KEY, json.loads(aws_account.read(CONFIG_KEY)))  # the advice, followed
    prepare_handler(load_event("prepare-config-created.json"), lambda_context)
    event = training_event(run_id)
    event["Records"][0]["s3"]["object"]["versionId"] = "second-upload"
    [outcome] = start_handler(event, lambda_context)["runs"]

    assert list(bedrock.jobs.values()) == [first_job]
    assert len(creates(bedrock)) == bedrock_gateway.BEDROCK_ATTEMPTS  # none more
    [recorded] = aws_account.runs()
    assert (outcome["status"], recorded["status"], recorded["job_id"]) == ("running", "running", first_job.arn)


def test_a_job_another_deployment_made_for_the_same_run_id_is_never_adopted(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = bedrock_run(aws_account, lambda_context, tmp_path)
    run_id = run["run_id"]
    theirs = bedrock_gateway.BedrockGateway(None, None, deployment="another-deployments-bucket", role_arn=ROLE_ARN)
    foreign = bedrock_gateway.bedrock_client("bedrock").create_model_customization_job(
        jobName=theirs.job_name(run_id, "f" * 8),
        customModelName=theirs.custom_model_name(run_id, None, "f" * 8),
        roleArn=ROLE_ARN,
        baseModelIdentifier=run["config"]["fine_tune"]["model"],
        trainingDataConfig={"s3Uri": f"s3://{aws_account.bucket}/{run['files']['train']['key']}"},
        outputDataConfig={"s3Uri": theirs.output_uri(run_id)},
    )["jobArn"]

    start_handler(training_event(run_id), lambda_context)

    [recorded] = aws_account.runs()
    assert recorded["job_id"] != foreign and len(bedrock.jobs) == 2
    assert bedrock.jobs[recorded["job_id"]].output_s3_uri == f"s3://{aws_account.bucket}/outputs/{run_id}/"


def test_the_gateway_follows_the_job_to_a_deployment_that_answers(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    """What the poll and the ask API will call for bedrock runs, against the emulator (jobs finish at once)."""
    run = bedrock_run(aws_account, lambda_context, tmp_path)
    run_id = run["run_id"]
    [outcome] = start_handler(training_event(run_id), lambda_context)["runs"]
    gateway = bedrock_gateway.gateway()

    job = gateway.retrieve_job(outcome["job_id"], run_id=run_id)
    assert job.status == "succeeded" and job.terminal
    model_arn = job.metadata["output_model_arn"]
    metrics = gateway.latest_metrics(job.job_id)
    assert metrics is not None and isinstance(metrics["train_loss"], float)

    deployment = gateway.create_deployment(run_id, model_arn)
    assert gateway.create_deployment(run_id, model_arn) == deployment and len(bedrock.deployments) == 1
    assert gateway.deployment_status(deployment) == ("Active", None)
    answer = gateway.answer(deployment, run["config"]["template"]["system"], "Question 3: what is measured?", 0.0, 64)
    assert answer.text and answer.refusal is None and answer.model == deployment
    assert answer.usage["total_tokens"] == answer.usage["prompt_tokens"] + answer.usage["completion_tokens"] > 0

    with pytest.raises(bedrock_gateway.BedrockRefusedError) as refused:  # a finished job cannot be stopped
        gateway.cancel_job(job.job_id)
    assert refused.value.code == "ConflictException"
    with pytest.raises(ForeignJobError):
        gateway.retrieve_job(job.job_id, run_id="another-run-0123456789ab")


def test_a_failed_job_carries_bedrocks_reason(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = bedrock_run(aws_account, lambda_context, tmp_path)
    bedrock.fail_jobs("Out of capacity for this base model")
    [outcome] = start_handler(training_event(run["run_id"]), lambda_context)["runs"]

    job = bedrock_gateway.gateway().retrieve_job(outcome["job_id"], run_id=run["run_id"])
    assert job.status == "failed"
    assert job.run_fields()["error"] == {"code": "job_failed", "message": "Out of capacity for this base model"}


def test_a_failed_deployment_carries_bedrocks_reason(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = bedrock_run(aws_account, lambda_context, tmp_path)
    [outcome] = start_handler(training_event(run["run_id"]), lambda_context)["runs"]
    gateway = bedrock_gateway.gateway()
    model_arn = gateway.retrieve_job(outcome["job_id"]).metadata["output_model_arn"]
    bedrock.fail_deployments("No on-demand capacity")

    deployment = gateway.create_deployment(run["run_id"], model_arn)

    assert gateway.deployment_status(deployment) == ("Failed", "No on-demand capacity")
