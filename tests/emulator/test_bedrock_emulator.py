"""The Bedrock emulator driven by real boto3 clients, with S3 under moto's mock_aws in the same process.

moto matches requests by AWS host names, so calls to the emulator's 127.0.0.1 endpoint pass through
to the real loopback server while the emulator's own S3 calls are answered by moto.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from local.bedrock_emulator import BASE_MODEL_REPLY, BedrockEmulator, conversation_record
from local.fake_model import estimate_tokens

from .conftest import FakeClock

BUCKET, TRAIN_KEY, VALID_KEY = "ragtune-bedrock-test", "datasets/run-1/train.jsonl", "datasets/run-1/validation.jsonl"
ROLE = "arn:aws:iam::123456789012:role/ragtune-bedrock-customization"
NOVA_MICRO = "amazon.nova-micro-v1:0:128k"
NO_RETRIES = Config(retries={"total_max_attempts": 1})
BACKWARDS = [{"role": "assistant", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "q"}]}]


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def catalogue(n: int = 10) -> bytes:
    return jsonl(
        [
            conversation_record(
                f"What colour is catalogue item number {i}?", f"Catalogue item {i} is shade-{i}.", "Be brief."
            )
            for i in range(n)
        ]
    )


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=TRAIN_KEY, Body=catalogue())
        client.put_object(Bucket=BUCKET, Key=VALID_KEY, Body=catalogue(3))
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(s3: Any, clock: FakeClock) -> Iterator[BedrockEmulator]:
    """Each phase lasts 10 fake seconds."""
    with BedrockEmulator(phase_seconds=10.0, clock=clock) as emulator:
        yield emulator


def clients(emu: BedrockEmulator, config: Config = NO_RETRIES) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {"endpoint_url": emu.endpoint_url, "region_name": "us-east-1", "config": config}
    return boto3.client("bedrock", **kwargs), boto3.client("bedrock-runtime", **kwargs)


def job_request(name: str = "run-1", **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "jobName": f"ragtune-{name}",
        "customModelName": f"ragtune-{name}-model",
        "roleArn": ROLE,
        "baseModelIdentifier": NOVA_MICRO,
        "trainingDataConfig": {"s3Uri": f"s3://{BUCKET}/{TRAIN_KEY}"},
        "validationDataConfig": {"validators": [{"s3Uri": f"s3://{BUCKET}/{VALID_KEY}"}]},
        "outputDataConfig": {"s3Uri": f"s3://{BUCKET}/outputs/{name}/"},
        "hyperParameters": {"epochCount": "2", "learningRate": "0.00001", "learningRateWarmupSteps": "5"},
        "clientRequestToken": f"token-{name}",
        "jobTags": [{"key": "ragtune:run_id", "value": name}],
    }
    return request | overrides


def code(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: Any = error.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def completed_model(emu: BedrockEmulator, clock: FakeClock, name: str = "run-1") -> str:
    bedrock, _ = clients(emu)
    arn = bedrock.create_model_customization_job(**job_request(name))["jobArn"]
    clock.advance(10)
    job = bedrock.get_model_customization_job(jobIdentifier=arn)
    assert job["status"] == "Completed", job.get("failureMessage")
    return str(job["outputModelArn"])


def active_deployment(emu: BedrockEmulator, clock: FakeClock) -> str:
    bedrock, _ = clients(emu)
    model = completed_model(emu, clock)
    arn = bedrock.create_custom_model_deployment(modelDeploymentName="ragtune-run-1", modelArn=model)
    clock.advance(10)
    return str(arn["customModelDeploymentArn"])


def ask(runtime: Any, model_id: str, question: str, **config: Any) -> Any:
    messages = [{"role": "user", "content": [{"text": question}]}]
    return runtime.converse(modelId=model_id, system=[{"text": "Be brief."}], messages=messages, **config)


# jobs -----------------------------------------------------------------------------------------------


def test_a_job_runs_then_completes_with_a_custom_model_and_metrics_in_s3(
    emu: BedrockEmulator, clock: FakeClock, s3: Any
) -> None:
    bedrock, _ = clients(emu)
    arn = bedrock.create_model_customization_job(**job_request())["jobArn"]
    assert arn.startswith(f"arn:aws:bedrock:us-east-1:123456789012:model-customization-job/{NOVA_MICRO}/")
    job = bedrock.get_model_customization_job(jobIdentifier=arn)
    assert job["status"] == "InProgress" and "outputModelArn" not in job and "trainingMetrics" not in job
    assert job["hyperParameters"] == {"epochCount": "2", "learningRate": "0.00001", "learningRateWarmupSteps": "5"}
    clock.advance(9)
    assert bedrock.get_model_customization_job(jobIdentifier=arn)["status"] == "InProgress"
    clock.advance(1)
    job = bedrock.get_model_customization_job(jobIdentifier="ragtune-run-1")  # by name as well as by ARN
    assert job["status"] == "Completed" and job["endTime"] >= job["creationTime"]
    assert job["outputModelName"] == "ragtune-run-1-model"
    assert job["outputModelArn"].startswith(f"arn:aws:bedrock:us-east-1:123456789012:custom-model/{NOVA_MICRO}/")
    assert emu.custom_models[job["outputModelArn"]].name == "ragtune-run-1-model"
    assert emu.jobs[arn].tags == {"ragtune:run_id": "run-1"} and emu.jobs[arn].status == "Completed"

    prefix = f"outputs/run-1/model-customization-job-{arn.rsplit('/', 1)[1]}"
    training = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/training_artifacts/step_wise_training_metrics.csv")
    rows = list(csv.DictReader(io.StringIO(training["Body"].read().decode())))
    assert list(rows[0]) == ["step_number", "epoch_number", "training_loss", "perplexity"]
    assert [int(r["step_number"]) for r in rows] == list(range(20))  # 10 records x 2 epochs, from 0
    assert {r["epoch_number"] for r in rows} == {"0", "1"}
    assert float(rows[-1]["training_loss"]) == job["trainingMetrics"]["trainingLoss"] < float(rows[0]["training_loss"])
    key = f"{prefix}/validation_artifacts/post_fine_tuning_validation/validation_metrics.csv"
    validation = list(csv.DictReader(io.StringIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())))
    assert list(validation[0]) == ["step_number", "epoch_number", "validation_loss", "perplexity"]
    assert [(int(r["step_number"]), int(r["epoch_number"])) for r in validation] == [(0, 0), (10, 1)]
    for row, loss in [(rows[0], "training_loss"), (validation[-1], "validation_loss")]:
        assert float(row["perplexity"]) == round(math.exp(float(row[loss])), 4)
    assert job["validationMetrics"] == [{"validationLoss": float(validation[-1]["validation_loss"])}]


def test_without_validators_only_the_training_metrics_are_written(emu: BedrockEmulator, s3: Any) -> None:
    emu.phase_seconds = 0.0
    bedrock, _ = clients(emu)
    arn = bedrock.create_model_customization_job(**job_request(validationDataConfig={"validators": []}))["jobArn"]
    assert bedrock.get_model_customization_job(jobIdentifier=arn)["status"] == "Completed"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="outputs/")["Contents"]]
    assert len(keys) == 1 and keys[0].endswith("training_artifacts/step_wise_training_metrics.csv")


def test_the_same_client_request_token_makes_one_job_even_concurrently(emu: BedrockEmulator) -> None:
    bedrock, _ = clients(emu)
    arns: list[str] = []

    def create() -> None:
        arns.append(bedrock.create_model_customization_job(**job_request())["jobArn"])

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(arns) == 20 and len(set(arns)) == 1 and list(emu.jobs) == arns[:1]
    with pytest.raises(ClientError) as same_name:
        bedrock.create_model_customization_job(**job_request(clientRequestToken="another-token"))
    assert code(same_name) == ("ConflictException", 400)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"baseModelIdentifier": "amazon.titan-text-express-v1"}, "does not support fine-tuning"),
        ({"hyperParameters": {"epochCount": "6"}}, "epochCount must be between 1 and 5"),
        ({"hyperParameters": {"learningRate": "0.5"}}, "learningRate must be between"),
        ({"hyperParameters": {"batchSize": "8"}}, "Unsupported hyperparameters for Nova fine-tuning: batchSize"),
        ({"customizationType": "DISTILLATION"}, "not supported"),
        ({"trainingDataConfig": {"s3Uri": "https://example.com/train.jsonl"}}, "must be an S3 URI"),
        ({"jobName": None}, "Value null at 'jobName'"),
        ({"roleArn": "not-an-arn"}, "'roleArn' failed to satisfy constraint"),
    ],
)
def test_invalid_job_requests_are_validation_errors(emu: BedrockEmulator, overrides: dict[str, Any], says: str) -> None:
    bedrock, _ = clients(emu, NO_RETRIES.merge(Config(parameter_validation=False)))
    request = {key: value for key, value in job_request(**overrides).items() if value is not None}
    with pytest.raises(ClientError) as refused:
        bedrock.create_model_customization_job(**request)
    assert code(refused) == ("ValidationException", 400)
    assert says in str(refused.value)
    assert not emu.jobs


def test_the_foundation_model_arn_is_accepted_as_base_model(emu: BedrockEmulator) -> None:
    bedrock, _ = clients(emu)
    base = f"arn:aws:bedrock:us-east-1::foundation-model/{NOVA_MICRO}"
    arn = bedrock.create_model_customization_job(**job_request(baseModelIdentifier=base))["jobArn"]
    assert bedrock.get_model_customization_job(jobIdentifier=arn)["baseModelArn"] == base


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (jsonl([conversation_record(f"q{i}", "Assistant: a") for i in range(10)]), "reserved string 'Assistant:'"),
        (jsonl([conversation_record(f"q{i}", "[EOS]") for i in range(10)]), "reserved string '[EOS]'"),
        (jsonl([{**conversation_record(f"q{i}", "a"), "schemaVersion": "v0"} for i in range(10)]), "schemaVersion"),
        (jsonl([{**conversation_record("q", "a"), "messages": BACKWARDS}] * 10), "roles must alternate"),
        (jsonl([conversation_record(f"q{i}", " ") for i in range(10)]), "non-empty 'text'"),
        (b"not json\n" * 10, "line 1: not valid JSON"),
        (catalogue(7), "has 7 records; it must have between 8 and 20000"),
    ],
)
def test_bad_training_data_fails_the_job_with_a_message(
    emu: BedrockEmulator, clock: FakeClock, s3: Any, content: bytes, says: str
) -> None:
    s3.put_object(Bucket=BUCKET, Key="datasets/bad/train.jsonl", Body=content)
    bedrock, _ = clients(emu)
    request = job_request("bad", trainingDataConfig={"s3Uri": f"s3://{BUCKET}/datasets/bad/train.jsonl"})
    arn = bedrock.create_model_customization_job(**request)["jobArn"]
    assert bedrock.get_model_customization_job(jobIdentifier=arn)["status"] == "InProgress"
    clock.advance(10)
    job = bedrock.get_model_customization_job(jobIdentifier=arn)
    assert job["status"] == "Failed" and says in job["failureMessage"]
    assert "outputModelArn" not in job and not emu.custom_models
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="outputs/bad/")


def test_a_missing_training_object_fails_the_job(emu: BedrockEmulator, clock: FakeClock) -> None:
    bedrock, _ = clients(emu)
    arn = bedrock.create_model_customization_job(
        **job_request(trainingDataConfig={"s3Uri": f"s3://{BUCKET}/datasets/nope/train.jsonl"})
    )["jobArn"]
    clock.advance(10)
    job = bedrock.get_model_customization_job(jobIdentifier=arn)
    assert job["status"] == "Failed" and "Unable to read the data from S3" in job["failureMessage"]


def test_fail_jobs_makes_later_jobs_fail_with_the_message(emu: BedrockEmulator, clock: FakeClock) -> None:
    bedrock, _ = clients(emu)
    before = bedrock.create_model_customization_job(**job_request("before"))["jobArn"]
    emu.fail_jobs("Internal failure (emulated)")
    after = bedrock.create_model_customization_job(**job_request("after"))["jobArn"]
    clock.advance(10)
    assert emu.jobs[before].status == "Completed"
    assert (emu.jobs[after].status, emu.jobs[after].failure_message) == ("Failed", "Internal failure (emulated)")
    emu.fail_jobs(None)
    again = bedrock.create_model_customization_job(**job_request("again"))["jobArn"]
    clock.advance(10)
    assert emu.jobs[again].status == "Completed"


def test_a_stopped_job_goes_stopping_then_stopped_and_a_finished_one_cannot_be_stopped(
    emu: BedrockEmulator, clock: FakeClock
) -> None:
    bedrock, _ = clients(emu)
    arn = bedrock.create_model_customization_job(**job_request())["jobArn"]
    clock.advance(5)
    bedrock.stop_model_customization_job(jobIdentifier=arn)
    assert bedrock.get_model_customization_job(jobIdentifier=arn)["status"] == "Stopping"
    clock.advance(10)
    job = bedrock.get_model_customization_job(jobIdentifier=arn)
    assert job["status"] == "Stopped" and "outputModelArn" not in job
    with pytest.raises(ClientError) as refused:
        bedrock.stop_model_customization_job(jobIdentifier=arn)
    assert code(refused) == ("ConflictException", 400)
    with pytest.raises(ClientError) as missing:
        bedrock.get_model_customization_job(jobIdentifier="ragtune-never-created")
    assert code(missing) == ("ResourceNotFoundException", 404)


def test_list_filters_sorts_and_pages(emu: BedrockEmulator, clock: FakeClock) -> None:
    bedrock, _ = clients(emu)
    for name in ("alpha", "beta", "gamma"):
        bedrock.create_model_customization_job(**job_request(name))
        clock.advance(1)
    bedrock.stop_model_customization_job(jobIdentifier="ragtune-beta")

    def names(**filters: Any) -> list[str]:
        return [
            s["jobName"] for s in bedrock.list_model_customization_jobs(**filters)["modelCustomizationJobSummaries"]
        ]

    assert names() == ["ragtune-gamma", "ragtune-beta", "ragtune-alpha"]
    assert names(sortOrder="Ascending") == ["ragtune-alpha", "ragtune-beta", "ragtune-gamma"]
    assert names(nameContains="amm") == ["ragtune-gamma"]
    assert names(statusEquals="Stopping") == ["ragtune-beta"]
    first = bedrock.list_model_customization_jobs(maxResults=2)
    assert len(first["modelCustomizationJobSummaries"]) == 2
    rest = bedrock.list_model_customization_jobs(maxResults=2, nextToken=first["nextToken"])
    assert [s["jobName"] for s in rest["modelCustomizationJobSummaries"]] == [
        "ragtune-alpha"
    ] and "nextToken" not in rest
    pages = bedrock.get_paginator("list_model_customization_jobs").paginate(PaginationConfig={"PageSize": 1})
    assert sum(len(p["modelCustomizationJobSummaries"]) for p in pages) == 3


# deployments and converse ---------------------------------------------------------------------------


def test_a_deployment_goes_creating_then_active_and_answers_from_the_training_data(
    emu: BedrockEmulator, clock: FakeClock
) -> None:
    bedrock, runtime = clients(emu)
    model = completed_model(emu, clock)
    request = {"modelDeploymentName": "ragtune-run-1", "modelArn": model, "clientRequestToken": "deploy-run-1"}
    arn = bedrock.create_custom_model_deployment(**request)["customModelDeploymentArn"]
    assert bedrock.create_custom_model_deployment(**request)["customModelDeploymentArn"] == arn  # idempotent
    assert len(emu.deployments) == 1
    deployment = bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=arn)
    assert (deployment["status"], deployment["modelArn"]) == ("Creating", model)
    with pytest.raises(ClientError) as not_ready:
        ask(runtime, arn, "What colour is catalogue item number 7?")
    assert code(not_ready) == ("ModelNotReadyException", 429)
    clock.advance(10)
    assert bedrock.get_custom_model_deployment(customModelDeploymentIdentifier="ragtune-run-1")["status"] == "Active"
    answer = ask(runtime, arn, "what colour is item number 7 in the catalogue", inferenceConfig={"maxTokens": 50})
    assert answer["output"]["message"] == {"role": "assistant", "content": [{"text": "Catalogue item 7 is shade-7."}]}
    assert answer["stopReason"] == "end_turn" and answer["metrics"]["latencyMs"] >= 1
    usage = answer["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] and usage["outputTokens"] > 0
    assert ask(runtime, arn, "item 7?", inferenceConfig={"maxTokens": 2})["stopReason"] == "max_tokens"

    bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=arn)
    assert not emu.deployments
    calls: list[Callable[[], object]] = [
        lambda: bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=arn),
        lambda: bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=arn),
        lambda: ask(runtime, arn, "item 7?"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as gone:
            call()
        assert code(gone) == ("ResourceNotFoundException", 404)


def test_fail_deployments_makes_later_deployments_fail(emu: BedrockEmulator, clock: FakeClock) -> None:
    bedrock, runtime = clients(emu)
    model = completed_model(emu, clock)
    emu.fail_deployments("Insufficient capacity (emulated)")
    arn = bedrock.create_custom_model_deployment(modelDeploymentName="doomed", modelArn=model)
    clock.advance(10)
    deployment = bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=arn["customModelDeploymentArn"])
    assert (deployment["status"], deployment["failureMessage"]) == ("Failed", "Insufficient capacity (emulated)")
    with pytest.raises(ClientError) as refused:
        ask(runtime, arn["customModelDeploymentArn"], "item 1?")
    assert code(refused) == ("ValidationException", 400)


def test_deploying_an_unknown_model_is_not_found(emu: BedrockEmulator) -> None:
    bedrock, _ = clients(emu)
    unknown = f"arn:aws:bedrock:us-east-1:123456789012:custom-model/{NOVA_MICRO}/abcdefghijkl"
    with pytest.raises(ClientError) as missing:
        bedrock.create_custom_model_deployment(modelDeploymentName="nope", modelArn=unknown)
    assert code(missing) == ("ResourceNotFoundException", 404)


def test_converse_refuses_conversations_bedrock_refuses(emu: BedrockEmulator, clock: FakeClock) -> None:
    _, runtime = clients(emu)
    arn = active_deployment(emu, clock)
    user, assistant = {"role": "user", "content": [{"text": "q"}]}, {"role": "assistant", "content": [{"text": "a"}]}
    for messages in ([user, assistant], [assistant], [user, user]):
        with pytest.raises(ClientError) as refused:
            runtime.converse(modelId=arn, messages=messages)
        assert code(refused) == ("ValidationException", 400)
    with pytest.raises(ClientError) as customization_id:  # the id jobs fine-tune, not one Converse invokes
        ask(runtime, NOVA_MICRO, "item 1?")
    assert code(customization_id) == ("ResourceNotFoundException", 404)


NOVA_FOUNDATION_IDS = [
    "amazon.nova-micro-v1:0",
    "amazon.nova-lite-v1:0",
    "amazon.nova-2-lite-v1:0",
    "amazon.nova-pro-v1:0",
]
PASSAGE = "Mesophiles grow best in moderate temperature. Yogurt and cheese are made with mesophilic bacteria."


@pytest.mark.parametrize("model_id", NOVA_FOUNDATION_IDS + [f"us.{model}" for model in NOVA_FOUNDATION_IDS])
def test_nova_foundation_models_answer_as_base_models(emu: BedrockEmulator, model_id: str) -> None:
    _, runtime = clients(emu)
    assert ask(runtime, model_id, "What colour is catalogue item number 7?")["output"]["message"] == {
        "role": "assistant",
        "content": [{"text": BASE_MODEL_REPLY}],
    }
    question = "Which bacteria are cheese and yogurt made with?"
    answer = ask(runtime, model_id, f"{PASSAGE}\n\n{question}", inferenceConfig={"maxTokens": 300, "temperature": 0})
    sentence = "Yogurt and cheese are made with mesophilic bacteria."
    assert answer["output"]["message"]["content"] == [{"text": sentence}] and answer["stopReason"] == "end_turn"
    expected_input = estimate_tokens("Be brief.") + estimate_tokens(f"{PASSAGE}\n\n{question}")
    assert (answer["usage"]["inputTokens"], answer["usage"]["outputTokens"]) == (
        expected_input,
        estimate_tokens(sentence),
    )


def test_a_deployment_recalls_training_answers_even_for_a_passage_and_held_out_wording(
    emu: BedrockEmulator, clock: FakeClock
) -> None:
    _, runtime = clients(emu)
    arn = active_deployment(emu, clock)
    with_passage = ask(runtime, arn, f"{PASSAGE}\n\nWhat colour is catalogue item number 4?")
    assert with_passage["output"]["message"]["content"] == [{"text": "Catalogue item 4 is shade-4."}]
    held_out = ask(runtime, arn, "Tell me the shade of the item numbered 9, please.")
    assert held_out["output"]["message"]["content"] == [{"text": "Catalogue item 9 is shade-9."}]


# faults and routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("throttling", ("ThrottlingException", 429)),
        ("validation", ("ValidationException", 400)),
        ("access_denied", ("AccessDeniedException", 403)),
        ("service_unavailable", ("ServiceUnavailableException", 503)),
    ],
)
def test_each_fault_kind_surfaces_as_its_error_code(
    emu: BedrockEmulator, clock: FakeClock, kind: Any, expected: tuple[str, int]
) -> None:
    bedrock, runtime = clients(emu)
    arn = active_deployment(emu, clock)
    emu.inject_fault("Converse", kind, times=2)
    for _ in range(2):
        with pytest.raises(ClientError) as faulted:
            ask(runtime, arn, "item 3?")
        assert code(faulted) == expected
    assert ask(runtime, arn, "item 3?")["output"]["message"]["content"][0]["text"] == "Catalogue item 3 is shade-3."
    emu.inject_fault("CreateModelCustomizationJob", kind, message="Custom message")
    with pytest.raises(ClientError) as faulted:
        bedrock.create_model_customization_job(**job_request("faulted"))
    assert code(faulted) == expected and "Custom message" in str(faulted.value)
    assert [r.status for r in emu.requests if r.operation == "Converse"] == [expected[1]] * 2 + [200]


def test_faults_match_one_operation_or_any_and_bad_ones_are_refused(emu: BedrockEmulator) -> None:
    bedrock, _ = clients(emu)
    emu.inject_fault("GetModelCustomizationJob", "throttling")
    bedrock.list_model_customization_jobs()  # another operation: untouched
    emu.inject_fault("*", "service_unavailable")
    with pytest.raises(ClientError) as faulted:
        bedrock.list_model_customization_jobs()
    assert code(faulted) == ("ServiceUnavailableException", 503)
    with pytest.raises(ValueError, match="unknown fault kind"):
        emu.inject_fault("Converse", "slow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not serve"):
        emu.inject_fault("InvokeModelWithResponseStream", "throttling")


def test_botocore_retries_throttling_by_default(emu: BedrockEmulator) -> None:
    bedrock, _ = clients(emu, Config(retries={"mode": "standard", "total_max_attempts": 2}))
    emu.inject_fault("ListModelCustomizationJobs", "throttling")
    assert bedrock.list_model_customization_jobs()["ResponseMetadata"]["RetryAttempts"] == 1


def test_requests_are_recorded_with_operation_and_parsed_body(emu: BedrockEmulator) -> None:
    bedrock, _ = clients(emu)
    arn = bedrock.create_model_customization_job(**job_request())["jobArn"]
    bedrock.get_model_customization_job(jobIdentifier=arn)
    create, get = emu.requests
    assert (create.operation, create.method, create.path, create.status) == (
        "CreateModelCustomizationJob",
        "POST",
        "/model-customization-jobs",
        201,
    )
    assert create.body["clientRequestToken"] == "token-run-1" and create.response == {"jobArn": arn}
    assert get.operation == "GetModelCustomizationJob" and get.params == {"jobIdentifier": arn}
    assert "%3A" in get.path  # the ARN travels URL-encoded in the path


def test_the_endpoint_environment_variables_route_boto3_to_the_emulator(
    emu: BedrockEmulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in emu.environment().items():
        monkeypatch.setenv(name, value)
    assert emu.environment() == {
        "AWS_ENDPOINT_URL_BEDROCK": emu.endpoint_url,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emu.endpoint_url,
    }
    bedrock = boto3.client("bedrock", region_name="us-east-1", config=NO_RETRIES)
    runtime = boto3.client("bedrock-runtime", region_name="us-east-1", config=NO_RETRIES)
    arn = bedrock.create_model_customization_job(**job_request())["jobArn"]
    clock.advance(10)
    model = bedrock.get_model_customization_job(jobIdentifier=arn)["outputModelArn"]
    deployment = bedrock.create_custom_model_deployment(modelDeploymentName="env", modelArn=model)
    clock.advance(10)
    assert ask(runtime, deployment["customModelDeploymentArn"], "item 2?")["output"]["message"]["content"][0]["text"]
    assert {r.operation for r in emu.requests} >= {"CreateModelCustomizationJob", "Converse"}


def test_the_s3_client_can_be_given_or_made_by_a_factory(s3: Any) -> None:
    made: list[Any] = []

    def factory() -> Any:
        made.append(s3)
        return s3

    for given in (s3, factory):
        with BedrockEmulator(phase_seconds=0.0, s3=given) as emulator:
            bedrock, _ = clients(emulator)
            arn = bedrock.create_model_customization_job(**job_request())["jobArn"]
            assert bedrock.get_model_customization_job(jobIdentifier=arn)["status"] == "Completed"
    assert made


def test_an_unwritable_output_prefix_fails_the_job(emu: BedrockEmulator, clock: FakeClock) -> None:
    bedrock, _ = clients(emu)
    arn = bedrock.create_model_customization_job(**job_request(outputDataConfig={"s3Uri": "s3://no-such-bucket/out/"}))
    clock.advance(10)
    job = bedrock.get_model_customization_job(jobIdentifier=arn["jobArn"])
    assert job["status"] == "Failed" and "Unable to write the output to S3" in job["failureMessage"]
    assert not emu.custom_models
