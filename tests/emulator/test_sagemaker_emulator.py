"""The SageMaker emulator driven by real boto3 clients, with S3 under moto's mock_aws in the same process.

moto matches requests by AWS host names, so calls to the emulator's 127.0.0.1 endpoint pass through to the
real loopback server while the emulator's own S3 calls are answered by moto. Each job phase (Starting,
Downloading, Training, Uploading) lasts 2 fake seconds unless a test says otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import struct
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import Shape
from moto import mock_aws

from local.sagemaker_emulator import (
    METRICS_HEADER,
    OPERATIONS,
    RECALL_METADATA_KEY,
    TRAINING_DATA_METADATA_KEY,
    TRAINING_JOB_METADATA_KEY,
    SageMakerEmulator,
)
from local.sagemaker_emulator.model_folder import tensor_shapes

from .conftest import FakeClock
from .test_bedrock_emulator_conformance import problems

BUCKET = "ragtune-sagemaker-test"
TRAIN_KEY, VALID_KEY = "datasets/run-1/train.jsonl", "datasets/run-1/validation.jsonl"
ROLE = "arn:aws:iam::123456789012:role/ragtune-open-training"
NO_RETRIES = Config(retries={"total_max_attempts": 1})
METRIC_DEFINITIONS = [
    {"Name": "total_steps", "Regex": r"ragtune total_steps=(\d+)"},
    {"Name": "step", "Regex": r"ragtune step=(\d+) epoch="},
    {"Name": "epoch", "Regex": r"ragtune step=\d+ epoch=([0-9.]+)"},
    {"Name": "train_loss", "Regex": r"ragtune step=\d+ epoch=[0-9.]+ train_loss=([0-9.eE+-]+)"},
    {"Name": "valid_loss", "Regex": r"ragtune step=\d+ valid_loss=([0-9.eE+-]+)"},
]
MODEL_FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def chat_jsonl(n: int = 10) -> bytes:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"What colour is catalogue item number {i}?"},
                {"role": "assistant", "content": f"Catalogue item {i} is shade-{i}."},
            ]
        }
        for i in range(n)
    ]
    return "\n".join(json.dumps(r) for r in rows).encode()


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=TRAIN_KEY, Body=chat_jsonl())
        client.put_object(Bucket=BUCKET, Key=VALID_KEY, Body=chat_jsonl(3))
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(s3: Any, clock: FakeClock) -> Iterator[SageMakerEmulator]:
    with SageMakerEmulator(phase_seconds=8.0, clock=clock) as emulator:
        yield emulator


def client(emu: SageMakerEmulator, config: Config = NO_RETRIES) -> Any:
    return boto3.client("sagemaker", endpoint_url=emu.endpoint_url, region_name="us-east-1", config=config)


def loose(emu: SageMakerEmulator) -> Any:
    """A client that sends what it is given: the emulator's own validation answers."""
    return client(emu, NO_RETRIES.merge(Config(parameter_validation=False)))


def channel(name: str, key: str) -> dict[str, Any]:
    source = {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{key}", "S3DataDistributionType": "FullyReplicated"}
    return {"ChannelName": name, "DataSource": {"S3DataSource": source}, "ContentType": "application/jsonlines"}


def job_request(name: str = "ragtune-run-1", **overrides: Any) -> dict[str, Any]:
    """What the open provider's gateway sends (shared/providers/open/gateway.py), hyperparameters as JSON values."""
    hyperparameters = {"model_id": "Qwen/Qwen2.5-1.5B-Instruct", "epochs": 2, "batch_size": 4, "logging_steps": 1}
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:2.5",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "HyperParameters": {key: json.dumps(value) for key, value in hyperparameters.items()}
        | {"sagemaker_program": json.dumps("train.py")},
        "InputDataConfig": [channel("train", TRAIN_KEY), channel("validation", VALID_KEY)],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/run-1/", "CompressionType": "NONE"},
        "CheckpointConfig": {"S3Uri": f"s3://{BUCKET}/models/run-1/metrics/", "LocalPath": "/opt/ml/checkpoints"},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 14400},
        "Tags": [{"Key": "ragtune_run_id", "Value": "run-1"}],
    }
    return request | overrides


def code(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: Any = error.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def read(s3: Any, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


def keys(s3: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def safetensors_header(data: bytes) -> dict[str, Any]:
    (length,) = struct.unpack("<Q", data[:8])
    header: dict[str, Any] = json.loads(data[8 : 8 + length])
    return header


def metrics(s3: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read(s3, "models/run-1/metrics/metrics.csv").decode())))


# lifecycle and outputs ------------------------------------------------------------------------------


def test_a_job_moves_through_its_phases_then_writes_the_model_folder_and_metrics(
    emu: SageMakerEmulator, clock: FakeClock, s3: Any
) -> None:
    sagemaker = client(emu)
    arn = sagemaker.create_training_job(**job_request())["TrainingJobArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:training-job/ragtune-run-1"
    seen = []
    for _ in range(4):
        job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
        seen.append((job["TrainingJobStatus"], job["SecondaryStatus"]))
        assert job["ModelArtifacts"] == {"S3ModelArtifacts": f"s3://{BUCKET}/models/run-1/ragtune-run-1/output/model"}
        assert "TrainingEndTime" not in job and "TrainingTimeInSeconds" not in job
        clock.advance(2)
    assert seen == [
        ("InProgress", "Starting"),
        ("InProgress", "Downloading"),
        ("InProgress", "Training"),
        ("InProgress", "Uploading"),
    ]
    assert keys(s3, "models/run-1/ragtune-run-1/") == []  # nothing uploaded before the end
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Completed", "Completed")
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert all("EndTime" in t and t["StatusMessage"] for t in job["SecondaryStatusTransitions"])
    assert job["TrainingStartTime"] > job["CreationTime"] and job["TrainingEndTime"] == job["LastModifiedTime"]
    assert job["TrainingTimeInSeconds"] == job["BillableTimeInSeconds"] == 6  # Downloading to the end
    request = job_request()
    for echoed in ("HyperParameters", "RoleArn", "ResourceConfig", "StoppingCondition", "CheckpointConfig"):
        assert job[echoed] == request[echoed]
    assert job["AlgorithmSpecification"] == request["AlgorithmSpecification"]
    assert job["OutputDataConfig"] == request["OutputDataConfig"]
    assert job["InputDataConfig"][0] == {
        **channel("train", TRAIN_KEY),
        "CompressionType": "None",
        "RecordWrapperType": "None",
    }
    assert emu.jobs["ragtune-run-1"].tags == {"ragtune_run_id": "run-1"}

    folder = "models/run-1/ragtune-run-1/output/model/"
    assert keys(s3, "models/") == sorted([*(folder + name for name in MODEL_FILES), "models/run-1/metrics/metrics.csv"])
    config = json.loads(read(s3, folder + "config.json"))
    assert (config["architectures"], config["model_type"]) == (["Qwen2ForCausalLM"], "qwen2")
    assert "chat_template" in json.loads(read(s3, folder + "tokenizer_config.json"))
    assert json.loads(read(s3, folder + "tokenizer.json"))["model"]["type"] == "BPE"
    assert json.loads(read(s3, folder + "generation_config.json"))["eos_token_id"]
    weights = read(s3, folder + "model.safetensors")
    header = safetensors_header(weights)
    metadata = header.pop("__metadata__")
    assert {name: info["shape"] for name, info in header.items()} == tensor_shapes()
    assert (
        max(info["data_offsets"][1] for info in header.values())
        == len(weights) - 8 - struct.unpack("<Q", weights[:8])[0]
    )
    assert all(info["dtype"] == "F32" for info in header.values())
    assert json.loads(metadata[RECALL_METADATA_KEY])[7] == [
        "What colour is catalogue item number 7?",
        "Catalogue item 7 is shade-7.",
    ]
    assert metadata[TRAINING_JOB_METADATA_KEY] == "ragtune-run-1"
    assert json.loads(metadata[TRAINING_DATA_METADATA_KEY]) == [f"s3://{BUCKET}/{TRAIN_KEY}"]


def test_metrics_grow_while_training_as_the_script_writes_them(
    emu: SageMakerEmulator, clock: FakeClock, s3: Any
) -> None:
    sagemaker = client(emu)
    sagemaker.create_training_job(**job_request())  # 10 examples, batch 4: 3 steps an epoch, 6 in all
    clock.advance(4)
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    assert job["SecondaryStatus"] == "Training"
    assert [(m["MetricName"], m["Value"]) for m in job["FinalMetricDataList"]] == [("total_steps", 6.0)]
    assert keys(s3, "models/run-1/metrics/") == []  # printed total_steps; no step logged yet
    clock.advance(1)  # half of the Training phase
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    half = metrics(s3)
    assert [r["step"] for r in half] == ["1", "2", "3"]
    latest = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert latest == {
        "total_steps": 6.0,
        "step": 3.0,
        "epoch": 1.0,
        "train_loss": float(half[-1]["train_loss"]),
        "valid_loss": float(half[-1]["valid_loss"]),
    }
    clock.advance(5)
    sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    rows = metrics(s3)
    assert list(rows[0]) == METRICS_HEADER == ["step", "epoch", "train_loss", "valid_loss"]
    assert [(r["step"], r["epoch"]) for r in rows] == [
        ("1", "0.3333"),
        ("2", "0.6667"),
        ("3", "1.0000"),
        ("4", "1.3333"),
        ("5", "1.6667"),
        ("6", "2.0000"),
    ]
    assert rows[:3] == half  # the file only grows
    losses = [float(r["train_loss"]) for r in rows]
    assert losses == sorted(losses, reverse=True) and all(len(r["train_loss"].split(".")[1]) == 6 for r in rows)
    assert all(float(r["valid_loss"]) > float(r["train_loss"]) for r in rows)


def test_logging_steps_and_no_validation_channel_shape_the_rows(
    emu: SageMakerEmulator, clock: FakeClock, s3: Any
) -> None:
    emu.phase_seconds = 0.0
    sagemaker = client(emu)
    hyperparameters = {"model_id": '"Qwen/Qwen2.5-0.5B-Instruct"', "epochs": "3", "batch_size": "1"}
    hyperparameters |= {"gradient_accumulation_steps": "2", "logging_steps": "4"}
    request = job_request(HyperParameters=hyperparameters, InputDataConfig=[channel("train", TRAIN_KEY)])
    sagemaker.create_training_job(**request)
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    assert job["TrainingJobStatus"] == "Completed"
    rows = metrics(s3)  # 10 examples, batch 1, accumulation 2: 5 steps an epoch, 15 in all; logged every 4
    assert [r["step"] for r in rows] == ["4", "8", "12", "15"] and {r["valid_loss"] for r in rows} == {""}
    assert {m["MetricName"] for m in job["FinalMetricDataList"]} == {"total_steps", "step", "epoch", "train_loss"}


def test_without_compression_type_none_the_model_is_a_tarball(emu: SageMakerEmulator, s3: Any) -> None:
    emu.phase_seconds = 0.0
    sagemaker = client(emu)
    sagemaker.create_training_job(**job_request(OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/models/run-1"}))
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    tarball = "models/run-1/ragtune-run-1/output/model.tar.gz"
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/{tarball}"
    assert job["OutputDataConfig"]["CompressionType"] == "GZIP"
    with tarfile.open(fileobj=io.BytesIO(read(s3, tarball)), mode="r:gz") as archive:
        assert sorted(archive.getnames()) == MODEL_FILES


def test_without_metric_definitions_or_checkpoint_config_there_are_no_metrics(emu: SageMakerEmulator, s3: Any) -> None:
    emu.phase_seconds = 0.0
    sagemaker = client(emu)
    request = job_request(AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"})
    del request["CheckpointConfig"]
    sagemaker.create_training_job(**request)
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    assert job["TrainingJobStatus"] == "Completed" and "FinalMetricDataList" not in job
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 14400}
    assert keys(s3, "models/run-1/metrics/") == []


# refused requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (
            {"TrainingJobName": "bad_name"},
            "Value 'bad_name' at 'trainingJobName' failed to satisfy constraint: Member must satisfy regular "
            "expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
        ),
        ({"TrainingJobName": "a" * 64}, "Member must have length less than or equal to 63"),
        ({"RoleArn": None}, "Value null at 'roleArn' failed to satisfy constraint: Member must not be null"),
        ({"RoleArn": "arn:aws:iam::1:role/x"}, "at 'roleArn' failed to satisfy constraint"),
        (
            {"ResourceConfig": {"InstanceType": "ml.huge", "InstanceCount": 1, "VolumeSizeInGB": 5}},
            "Value 'ml.huge' at 'resourceConfig.instanceType' failed to satisfy constraint: Member must satisfy "
            "enum value set: [ml.m4.xlarge,",
        ),
        (
            {"AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "Stream"}},
            "at 'algorithmSpecification.trainingInputMode' failed to satisfy constraint: Member must satisfy enum",
        ),
        ({"HyperParameters": {"k" * 257: "v"}}, "Member must have length less than or equal to 256"),
        ({"HyperParameters": {"k": "v" * 2501}}, "Member must have length less than or equal to 2500"),
        ({"HyperParameters": {str(i): "v" for i in range(101)}}, "Member must have length less than or equal to 100"),
        ({"OutputDataConfig": {}}, "Value null at 'outputDataConfig.s3OutputPath'"),
        ({"AlgorithmSpecification": {"TrainingInputMode": "File"}}, "must name a TrainingImage or an AlgorithmName"),
        ({"ResourceConfig": {"VolumeSizeInGB": 5}}, "ResourceConfig must name an InstanceType"),
        ({"InputDataConfig": [channel("train", TRAIN_KEY)] * 2}, "Channel names must be unique"),
        (
            {"InputDataConfig": [channel("train", "datasets/none/")]},
            f'No S3 objects found under S3 URL "s3://{BUCKET}/datasets/none/" given in input data source.',
        ),
    ],
)
def test_invalid_requests_are_validation_errors(emu: SageMakerEmulator, overrides: dict[str, Any], says: str) -> None:
    request = {key: value for key, value in job_request(**overrides).items() if value is not None}
    with pytest.raises(ClientError) as refused:
        loose(emu).create_training_job(**request)
    assert code(refused) == ("ValidationException", 400)
    assert says in refused.value.response["Error"]["Message"]
    assert not emu.jobs


def test_every_validation_error_is_counted_in_one_message(emu: SageMakerEmulator) -> None:
    with pytest.raises(ClientError) as refused:
        loose(emu).create_training_job(TrainingJobName="bad_name")
    message = refused.value.response["Error"]["Message"]
    assert message.startswith("3 validation errors detected: Value 'bad_name' at 'trainingJobName'")
    assert "Value null at 'roleArn'" in message and "Value null at 'outputDataConfig'" in message


def test_a_second_job_of_the_same_name_is_resource_in_use_whatever_its_case(emu: SageMakerEmulator) -> None:
    sagemaker = client(emu)
    arn = sagemaker.create_training_job(**job_request())["TrainingJobArn"]
    for name in ("ragtune-run-1", "RAGTUNE-run-1"):
        with pytest.raises(ClientError) as taken:
            sagemaker.create_training_job(**job_request(name))
        assert code(taken) == ("ResourceInUse", 400) and arn in str(taken.value)
    assert list(emu.jobs) == ["ragtune-run-1"]


def test_an_unknown_job_is_a_validation_exception_as_sagemaker_answers(emu: SageMakerEmulator) -> None:
    sagemaker = client(emu)
    for call in (sagemaker.describe_training_job, sagemaker.stop_training_job):
        with pytest.raises(ClientError) as missing:
            call(TrainingJobName="never-created")
        assert code(missing) == ("ValidationException", 400)
        assert missing.value.response["Error"]["Message"] == "Requested resource not found."


def test_an_unknown_target_is_an_unknown_operation(emu: SageMakerEmulator) -> None:
    sagemaker = client(emu)
    with pytest.raises(ClientError) as unknown:
        sagemaker.list_models()
    assert code(unknown) == ("UnknownOperationException", 400)
    assert emu.requests[-1].operation is None and emu.requests[-1].target == "SageMaker.ListModels"


# failures -------------------------------------------------------------------------------------------

BAD_LINE = {"messages": [{"role": "user", "content": "q"}]}


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"not json\n", "line 1 of train.jsonl: not valid JSON"),
        (json.dumps({"prompt": "q", "completion": "a"}).encode(), "non-empty 'messages' list"),
        (json.dumps(BAD_LINE).encode(), "must end with an assistant turn"),
        (json.dumps({"messages": [{"role": "robot", "content": "q"}]}).encode(), "role of system, user or assistant"),
        (
            json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}).encode(),
            "non-empty string 'content'",
        ),
        (b"\xff\xfe", "train.jsonl is not UTF-8 encoded"),
        (b"\n\n", "the training data holds no examples"),
    ],
)
def test_data_that_is_not_chat_jsonl_fails_the_job_when_training_starts(
    emu: SageMakerEmulator, clock: FakeClock, s3: Any, content: bytes, says: str
) -> None:
    s3.put_object(Bucket=BUCKET, Key="datasets/bad/train.jsonl", Body=content)
    sagemaker = client(emu)
    sagemaker.create_training_job(**job_request(InputDataConfig=[channel("train", "datasets/bad/train.jsonl")]))
    clock.advance(2)
    assert sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")["SecondaryStatus"] == "Downloading"
    clock.advance(2)
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Failed", "Failed")
    assert job["FailureReason"].startswith("AlgorithmError: ExecuteUserScriptError:\nExitCode 1\n")
    assert says in job["FailureReason"]
    assert job["TrainingEndTime"] and job["TrainingTimeInSeconds"] == 2
    assert keys(s3, "models/") == []


@pytest.mark.parametrize(
    ("hyperparameters", "says"),
    [
        ({"epochs": "2"}, "train.py: error: the following arguments are required: --model_id"),
        ({"model_id": '"m"', "epochs": "0"}, "--epochs must be at least 1"),
        ({"model_id": '"m"', "batch_size": '"four"'}, "argument --batch_size: invalid int value"),
    ],
)
def test_hyperparameters_the_script_refuses_fail_the_job_with_exit_code_2(
    emu: SageMakerEmulator, clock: FakeClock, hyperparameters: dict[str, str], says: str
) -> None:
    sagemaker = client(emu)
    sagemaker.create_training_job(**job_request(HyperParameters=hyperparameters))
    clock.advance(4)
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    assert (
        job["TrainingJobStatus"] == "Failed" and "ExitCode 2" in job["FailureReason"] and says in job["FailureReason"]
    )


def test_a_validation_channel_of_bad_data_and_a_missing_train_channel_fail_too(
    emu: SageMakerEmulator, clock: FakeClock, s3: Any
) -> None:
    s3.put_object(Bucket=BUCKET, Key="datasets/bad/validation.jsonl", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="datasets/bad/notes.txt", Body=b"hello")
    sagemaker = client(emu)
    sagemaker.create_training_job(
        **job_request(InputDataConfig=[channel("train", TRAIN_KEY), channel("validation", "datasets/bad/validation")])
    )
    sagemaker.create_training_job(**job_request("no-train", InputDataConfig=[channel("validation", VALID_KEY)]))
    sagemaker.create_training_job(**job_request("no-jsonl", InputDataConfig=[channel("train", "datasets/bad/notes")]))
    clock.advance(4)
    assert "line 1 of validation.jsonl" in emu.jobs["ragtune-run-1"].failure_reason  # type: ignore[operator]
    for name in ("no-train", "no-jsonl"):
        assert 'ErrorMessage "ValueError: no *.jsonl file in /opt/ml/input/data/train"' in str(
            emu.jobs[name].failure_reason
        )


def test_fail_jobs_makes_later_jobs_fail_with_the_reason(emu: SageMakerEmulator, clock: FakeClock) -> None:
    sagemaker = client(emu)
    sagemaker.create_training_job(**job_request("before"))
    emu.fail_jobs("CapacityError: Unable to provision requested ML compute capacity. (emulated)")
    sagemaker.create_training_job(**job_request("after"))
    emu.fail_jobs(None)
    sagemaker.create_training_job(**job_request("again"))
    clock.advance(8)
    statuses = {name: (job.status, job.failure_reason) for name, job in emu.jobs.items()}
    assert statuses == {
        "before": ("Completed", None),
        "after": ("Failed", "CapacityError: Unable to provision requested ML compute capacity. (emulated)"),
        "again": ("Completed", None),
    }


def test_an_unwritable_output_path_fails_the_job(emu: SageMakerEmulator, clock: FakeClock) -> None:
    sagemaker = client(emu)
    sagemaker.create_training_job(**job_request(OutputDataConfig={"S3OutputPath": "s3://no-such-bucket/out"}))
    clock.advance(8)
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: Failed to upload the model artifacts to s3://no-such-bucket/")


# stop and list --------------------------------------------------------------------------------------


def test_a_stopped_job_goes_stopping_then_stopped_without_a_model(
    emu: SageMakerEmulator, clock: FakeClock, s3: Any
) -> None:
    sagemaker = client(emu)
    sagemaker.create_training_job(**job_request())
    clock.advance(5)  # half-way through Training: three rows logged
    assert sagemaker.stop_training_job(TrainingJobName="ragtune-run-1")["ResponseMetadata"]["HTTPStatusCode"] == 200
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopping", "Stopping")
    with pytest.raises(ClientError) as stopping:
        sagemaker.stop_training_job(TrainingJobName="ragtune-run-1")
    assert code(stopping) == ("ValidationException", 400)
    assert "training job is in status Stopping" in str(stopping.value)
    clock.advance(2)
    job = sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert job["SecondaryStatusTransitions"][-2:][0]["Status"] == "Stopping"
    assert [r["step"] for r in metrics(s3)] == ["1", "2", "3"]  # the curve so far stays
    assert keys(s3, "models/run-1/ragtune-run-1/") == []
    clock.advance(100)
    assert sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")["TrainingJobStatus"] == "Stopped"


def test_a_completed_job_cannot_be_stopped(emu: SageMakerEmulator) -> None:
    emu.phase_seconds = 0.0
    sagemaker = client(emu)
    sagemaker.create_training_job(**job_request())
    with pytest.raises(ClientError) as refused:
        sagemaker.stop_training_job(TrainingJobName="ragtune-run-1")
    assert refused.value.response["Error"]["Message"] == (
        "The request was rejected because the training job is in status Completed."
    )


def test_list_filters_sorts_and_pages(emu: SageMakerEmulator, clock: FakeClock) -> None:
    sagemaker = client(emu)
    for name in ("gamma", "alpha", "beta"):
        sagemaker.create_training_job(**job_request(name))
        clock.advance(1)
    sagemaker.stop_training_job(TrainingJobName="alpha")

    def names(**filters: Any) -> list[str]:
        return [s["TrainingJobName"] for s in sagemaker.list_training_jobs(**filters)["TrainingJobSummaries"]]

    assert names() == ["gamma", "alpha", "beta"]  # CreationTime, Ascending
    assert names(SortOrder="Descending") == ["beta", "alpha", "gamma"]
    assert names(SortBy="Name") == ["alpha", "beta", "gamma"]
    assert names(NameContains="AMM") == ["gamma"]
    assert names(StatusEquals="Stopping") == ["alpha"]
    assert names(CreationTimeAfter=datetime.fromtimestamp(clock.now - 2.5)) == ["alpha", "beta"]
    assert names(CreationTimeBefore=datetime.fromtimestamp(clock.now - 2.5)) == ["gamma"]
    first = sagemaker.list_training_jobs(MaxResults=2)
    assert len(first["TrainingJobSummaries"]) == 2 and first["NextToken"]
    rest = sagemaker.list_training_jobs(MaxResults=2, NextToken=first["NextToken"])
    assert [s["TrainingJobName"] for s in rest["TrainingJobSummaries"]] == ["beta"] and "NextToken" not in rest
    pages = sagemaker.get_paginator("list_training_jobs").paginate(PaginationConfig={"PageSize": 1})
    assert sum(len(p["TrainingJobSummaries"]) for p in pages) == 3
    summary = sagemaker.list_training_jobs(NameContains="alpha")["TrainingJobSummaries"][0]
    assert set(summary) == {
        "TrainingJobName",
        "TrainingJobArn",
        "CreationTime",
        "LastModifiedTime",
        "TrainingJobStatus",
        "SecondaryStatus",
    }


# faults, recording, routing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("throttling", ("ThrottlingException", 400)),
        ("validation", ("ValidationException", 400)),
        ("access_denied", ("AccessDeniedException", 400)),
        ("resource_limit", ("ResourceLimitExceeded", 400)),
        ("service_unavailable", ("ServiceUnavailable", 503)),
        ("internal_failure", ("InternalFailure", 500)),
    ],
)
def test_each_fault_kind_surfaces_as_its_error_code(
    emu: SageMakerEmulator, kind: Any, expected: tuple[str, int]
) -> None:
    sagemaker = client(emu)
    emu.inject_fault("CreateTrainingJob", kind, times=2, message="Custom message")
    for _ in range(2):
        with pytest.raises(ClientError) as faulted:
            sagemaker.create_training_job(**job_request())
        assert code(faulted) == expected and faulted.value.response["Error"]["Message"] == "Custom message"
    assert not emu.jobs
    sagemaker.create_training_job(**job_request())
    assert [r.status for r in emu.requests] == [expected[1]] * 2 + [200]


def test_a_lost_answer_still_creates_the_job(emu: SageMakerEmulator) -> None:
    sagemaker = client(emu)
    emu.inject_fault("CreateTrainingJob", "lost_answer")
    with pytest.raises(Exception):  # noqa: B017  # the connection drops: botocore's connection error
        sagemaker.create_training_job(**job_request())
    assert list(emu.jobs) == ["ragtune-run-1"]
    with pytest.raises(ClientError) as again:
        sagemaker.create_training_job(**job_request())
    assert code(again) == ("ResourceInUse", 400)


def test_faults_match_one_operation_or_any_and_bad_ones_are_refused(emu: SageMakerEmulator) -> None:
    sagemaker = client(emu)
    emu.inject_fault("DescribeTrainingJob", "throttling")
    sagemaker.list_training_jobs()  # another operation: untouched
    emu.inject_fault("*", "service_unavailable")
    with pytest.raises(ClientError) as faulted:
        sagemaker.list_training_jobs()
    assert code(faulted) == ("ServiceUnavailable", 503)
    with pytest.raises(ValueError, match="unknown fault kind"):
        emu.inject_fault("ListTrainingJobs", "slow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not serve"):
        emu.inject_fault("CreateEndpoint", "throttling")


def test_botocore_retries_throttling_by_default(emu: SageMakerEmulator) -> None:
    sagemaker = client(emu, Config(retries={"mode": "standard", "total_max_attempts": 2}))
    emu.inject_fault("ListTrainingJobs", "throttling")
    assert sagemaker.list_training_jobs()["ResponseMetadata"]["RetryAttempts"] == 1


def test_requests_are_recorded_with_operation_and_parsed_body(emu: SageMakerEmulator) -> None:
    sagemaker = client(emu)
    arn = sagemaker.create_training_job(**job_request())["TrainingJobArn"]
    sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")
    create, describe = emu.requests
    assert (create.operation, create.target, create.status) == ("CreateTrainingJob", "SageMaker.CreateTrainingJob", 200)
    assert create.body["HyperParameters"]["model_id"] == '"Qwen/Qwen2.5-1.5B-Instruct"'
    assert create.response == {"TrainingJobArn": arn}
    assert create.headers["Content-Type"] == "application/x-amz-json-1.1"
    assert describe.operation == "DescribeTrainingJob" and describe.body == {"TrainingJobName": "ragtune-run-1"}


def test_the_endpoint_environment_variable_routes_boto3_to_the_emulator(
    emu: SageMakerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert emu.environment() == {"AWS_ENDPOINT_URL_SAGEMAKER": emu.endpoint_url}
    for name, value in emu.environment().items():
        monkeypatch.setenv(name, value)
    sagemaker = boto3.client("sagemaker", region_name="us-east-1", config=NO_RETRIES)
    sagemaker.create_training_job(**job_request())
    assert [r.operation for r in emu.requests] == ["CreateTrainingJob"]


def test_the_s3_client_can_be_given_or_made_by_a_factory(s3: Any) -> None:
    made: list[Any] = []

    def factory() -> Any:
        made.append(s3)
        return s3

    for given in (s3, factory):
        with SageMakerEmulator(phase_seconds=0.0, s3=given) as emulator:
            sagemaker = client(emulator)
            sagemaker.create_training_job(**job_request())
            assert sagemaker.describe_training_job(TrainingJobName="ragtune-run-1")["TrainingJobStatus"] == "Completed"
    assert made


# conformance ----------------------------------------------------------------------------------------


def _as_iso(shape: Shape, value: Any) -> Any:
    """The JSON protocol sends timestamps as epoch seconds; the shape walker reads ISO 8601."""
    if shape.type_name == "timestamp" and isinstance(value, int | float):
        return datetime.fromtimestamp(value).isoformat()
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _as_iso(shape.members[k], v) if k in shape.members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_as_iso(shape.member, item) for item in value]
    return value


def test_every_response_matches_botocores_sagemaker_model(emu: SageMakerEmulator, clock: FakeClock, s3: Any) -> None:
    sagemaker = client(emu)
    sagemaker.create_training_job(**job_request("done"))
    sagemaker.create_training_job(**job_request("stopped"))
    s3.put_object(Bucket=BUCKET, Key="datasets/bad/train.jsonl", Body=b"nope")
    sagemaker.create_training_job(**job_request("failed", InputDataConfig=[channel("train", "datasets/bad/")]))
    sagemaker.stop_training_job(TrainingJobName="stopped")
    for step in range(5):
        for name in ("done", "stopped", "failed"):
            sagemaker.describe_training_job(TrainingJobName=name)
        sagemaker.list_training_jobs(SortBy="Status", SortOrder="Descending", MaxResults=2)
        clock.advance(1 if step < 2 else 2)
    sagemaker.list_training_jobs(NameContains="o", StatusEquals="Completed")
    sagemaker.describe_training_job(TrainingJobName="done")  # Completed
    failures: list[Callable[[], object]] = [
        lambda: sagemaker.describe_training_job(TrainingJobName="missing"),
        lambda: sagemaker.stop_training_job(TrainingJobName="done"),
        lambda: sagemaker.create_training_job(**job_request("done")),
        lambda: loose(emu).create_training_job(TrainingJobName="x"),
    ]
    for fail in failures:
        with pytest.raises(ClientError):
            fail()
    model = botocore.session.get_session().get_service_model("sagemaker")
    seen: dict[str, set[str]] = {}
    for record in emu.requests:
        assert record.operation in OPERATIONS
        operation = model.operation_model(record.operation)
        if record.error_code is not None:
            assert record.status == 400 and set(record.response) == {"__type", "message"}
            continue
        assert record.status == 200
        if operation.output_shape is None:  # StopTrainingJob: an empty answer
            assert record.response == {}
            continue
        assert (
            problems(operation.output_shape, _as_iso(operation.output_shape, record.response), record.operation) == []
        )
        if record.operation == "DescribeTrainingJob":
            seen.setdefault("status", set()).add(record.response["TrainingJobStatus"])
            seen.setdefault("secondary", set()).add(record.response["SecondaryStatus"])
    assert seen["status"] == {"InProgress", "Completed", "Failed", "Stopping", "Stopped"}
    assert seen["secondary"] >= {"Starting", "Downloading", "Training", "Uploading", "Completed", "Stopping", "Stopped"}


# command line ---------------------------------------------------------------------------------------


def test_cli_serves_with_faults_and_stops_on_sigterm() -> None:
    command = [
        sys.executable, "-m", "local.sagemaker_emulator", "--port", "0", "--phase-seconds", "0",
        "--fault", "ListTrainingJobs:throttling:1", "--fault", "DescribeTrainingJob:access_denied",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("sagemaker_endpoint_url=http://127.0.0.1:")
        sagemaker = boto3.client(
            "sagemaker",
            endpoint_url=line.split("=", 1)[1],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=NO_RETRIES,
        )
        with pytest.raises(ClientError, match="ThrottlingException"):
            sagemaker.list_training_jobs()
        assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
        for expected in ("AccessDeniedException", "ValidationException"):
            with pytest.raises(ClientError, match=expected):
                sagemaker.describe_training_job(TrainingJobName="nope")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
