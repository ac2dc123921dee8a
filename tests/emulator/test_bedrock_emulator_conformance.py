"""Every request the Bedrock emulator answers and every answer it gives, checked against botocore's models.

botocore's service models (``bedrock`` and ``bedrock-runtime`` service-2.json) are the published contract
of the REST-JSON APIs, as OpenAI's OpenAPI document is for the OpenAI emulator. Checked here: each route
is the operation's ``http`` method, ``requestUri`` and ``responseCode``; each recorded request routes to
the operation botocore meant and its members are declared input members; each success response holds
the output shape's required members, no undeclared ones, valid enum values, strings matching the
model's patterns and lengths, and the right JSON types; each error is an error shape of that service
with the status the model gives it (and one the operation declares, ServiceUnavailableException aside).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import ServiceModel, Shape
from moto import mock_aws

from local.bedrock_emulator import ROUTES, BedrockEmulator, RecordedRequest, conversation_record

from .conftest import FakeClock

BUCKET = "ragtune-bedrock-conformance"
NOVA_MICRO = "amazon.nova-micro-v1:0:128k"
EMULATED = {
    "bedrock": {
        "CreateModelCustomizationJob",
        "GetModelCustomizationJob",
        "ListModelCustomizationJobs",
        "StopModelCustomizationJob",
        "CreateCustomModelDeployment",
        "GetCustomModelDeployment",
        "DeleteCustomModelDeployment",
    },
    "bedrock-runtime": {"Converse"},
}
# Custom Model Import's operations, exercised and checked against botocore in test_bedrock_model_import.py.
MODEL_IMPORT = {
    "bedrock": {
        "CreateModelImportJob",
        "GetModelImportJob",
        "ListModelImportJobs",
        "GetImportedModel",
        "ListImportedModels",
        "DeleteImportedModel",
    },
    "bedrock-runtime": {"InvokeModel"},
}


@cache
def service_model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def operation_for(method: str, path: str) -> tuple[str, str] | None:
    """The (service, operation) whose http method and requestUri template match, as botocore would send it."""
    found = []
    for service in EMULATED:
        model = service_model(service)
        for name in model.operation_names:
            http = model.operation_model(name).http
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(http["requestUri"].split("?")[0]))
            if http["method"] == method and re.fullmatch(pattern, path):
                found.append((service, name))
    assert len(found) <= 1, found
    return found[0] if found else None


def problems(shape: Shape, value: Any, where: str) -> list[str]:
    """What in ``value`` breaks ``shape`` (an empty list when it conforms)."""
    kind, meta = shape.type_name, shape.metadata
    if kind == "structure":
        if shape.is_document_type:
            return []
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        members: dict[str, Shape] = shape.members
        found = [f"{where}.{key}: not a member of {shape.name}" for key in value if key not in members]
        found += [f"{where}.{key}: required" for key in shape.required_members if key not in value]
        if shape.is_tagged_union and len(value) != 1:
            found.append(f"{where}: a union holds exactly one member")
        for key, item in value.items():
            if key in members:
                found += problems(members[key], item, f"{where}.{key}")
        return found
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        found = [f"{where}: length {len(value)} out of range" for bound in [0] if not _within(len(value), meta)]
        for index, item in enumerate(value):
            found += problems(shape.member, item, f"{where}[{index}]")
        return found
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: expected a map"]
        found = []
        for key, item in value.items():
            found += problems(shape.key, key, f"{where} key")
            found += problems(shape.value, item, f"{where}[{key}]")
        return found
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: expected a string"]
        if shape.enum and value not in shape.enum:
            return [f"{where}: {value!r} not in the enum of {shape.name}"]
        if "pattern" in meta and re.fullmatch(meta["pattern"], value) is None:
            return [f"{where}: {value!r} does not match the pattern of {shape.name}"]
        return [] if _within(len(value), meta) else [f"{where}: length {len(value)} out of range"]
    if kind in ("integer", "long"):
        ok = isinstance(value, int) and not isinstance(value, bool) and _within(value, meta)
        return [] if ok else [f"{where}: {value!r} is not a valid {kind}"]
    if kind in ("float", "double"):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and _within(value, meta)
        return [] if ok else [f"{where}: {value!r} is not a valid {kind}"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean"]
    if kind == "timestamp":
        try:
            datetime.fromisoformat(value)
        except (TypeError, ValueError):
            return [f"{where}: {value!r} is not an ISO 8601 timestamp"]
        return []
    return [f"{where}: the check does not handle {kind}"]


def _within(number: float, meta: dict[str, Any]) -> bool:
    return bool(meta.get("min", number) <= number <= meta.get("max", number))


def request_problems(service: str, record: RecordedRequest) -> list[str]:
    """Path, query and body members of a recorded request, against the operation's input shape."""
    assert record.operation is not None
    shape = service_model(service).operation_model(record.operation).input_shape
    by_location: dict[str, dict[str, Shape]] = {"uri": {}, "querystring": {}, "body": {}}
    for name, member in shape.members.items():
        location = member.serialization.get("location", "body")
        by_location[location][member.serialization.get("name", name)] = member
    found = [f"path {name}" for name in record.params if name not in by_location["uri"]]
    found += [f"query {name}" for name in record.query if name not in by_location["querystring"]]
    for name, value in record.query.items():
        member = by_location["querystring"].get(name)
        if member is not None and member.type_name == "string":
            found += problems(member, value, f"query {name}")
    for name, value in record.params.items():
        if name in by_location["uri"]:
            found += problems(by_location["uri"][name], value, f"path {name}")
    for name, value in record.body.items():
        found += problems(by_location["body"][name], value, name) if name in by_location["body"] else [f"body {name}"]
    return found


def _exercise_every_operation(emu: BedrockEmulator, clock: FakeClock, s3: Any) -> None:
    kwargs: dict[str, Any] = {"endpoint_url": emu.endpoint_url, "region_name": "us-east-1"}
    config = Config(retries={"total_max_attempts": 1})
    bedrock = boto3.client("bedrock", config=config, **kwargs)
    runtime = boto3.client("bedrock-runtime", config=config, **kwargs)
    loose = boto3.client("bedrock", config=config.merge(Config(parameter_validation=False)), **kwargs)
    records = [conversation_record(f"What is fact {i}?", f"Fact {i} is true.", "Be brief.") for i in range(9)]
    s3.put_object(Bucket=BUCKET, Key="d/train.jsonl", Body="\n".join(json.dumps(r) for r in records).encode())
    s3.put_object(Bucket=BUCKET, Key="d/bad.jsonl", Body=json.dumps(conversation_record("User: hi", "x")).encode())

    def create_job(name: str, data: str = "d/train.jsonl", token: str | None = None) -> str:
        return str(
            bedrock.create_model_customization_job(
                jobName=name,
                customModelName=f"{name}-model",
                roleArn="arn:aws:iam::123456789012:role/bedrock",
                baseModelIdentifier=NOVA_MICRO,
                trainingDataConfig={"s3Uri": f"s3://{BUCKET}/{data}"},
                validationDataConfig={"validators": [{"s3Uri": f"s3://{BUCKET}/d/train.jsonl"}]},
                outputDataConfig={"s3Uri": f"s3://{BUCKET}/out/{name}"},
                hyperParameters={"epochCount": "1"},
                clientRequestToken=token or f"{name}-token",
                jobTags=[{"key": "run", "value": name}],
                customModelTags=[{"key": "run", "value": name}],
            )["jobArn"]
        )

    done, stopped, bad = create_job("done"), create_job("stopped"), create_job("bad", "d/bad.jsonl")
    bedrock.stop_model_customization_job(jobIdentifier=stopped)
    for arn in (done, stopped, bad):
        bedrock.get_model_customization_job(jobIdentifier=arn)  # InProgress / Stopping
    bedrock.list_model_customization_jobs(statusEquals="InProgress", sortBy="CreationTime", maxResults=1)
    clock.advance(10)
    for arn in (done, stopped, bad):
        bedrock.get_model_customization_job(jobIdentifier=arn)  # Completed / Stopped / Failed
    bedrock.list_model_customization_jobs(nameContains="o", sortOrder="Ascending")
    model = bedrock.get_model_customization_job(jobIdentifier=done)["outputModelArn"]

    live = bedrock.create_custom_model_deployment(
        modelDeploymentName="live", modelArn=model, description="d", tags=[{"key": "k", "value": "v"}]
    )["customModelDeploymentArn"]
    emu.fail_deployments("no capacity")
    doomed = bedrock.create_custom_model_deployment(modelDeploymentName="doomed", modelArn=model)
    bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=live)  # Creating
    clock.advance(10)
    bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=live)  # Active
    bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=doomed["customModelDeploymentArn"])  # Failed
    messages = [{"role": "user", "content": [{"text": "What is fact 3?"}]}]
    config_ = {"maxTokens": 100, "temperature": 0.5, "topP": 0.9}
    runtime.converse(modelId=live, system=[{"text": "Be brief."}], messages=messages, inferenceConfig=config_)
    runtime.converse(modelId=live, messages=messages, inferenceConfig={"maxTokens": 1})

    failures: list[Callable[[], object]] = [
        lambda: create_job("done", token="other-token"),  # Conflict: same name
        lambda: bedrock.stop_model_customization_job(jobIdentifier=done),  # Conflict: finished
        lambda: bedrock.get_model_customization_job(jobIdentifier="missing"),  # NotFound
        lambda: loose.create_model_customization_job(jobName="x"),  # Validation: members missing
        lambda: runtime.converse(modelId=NOVA_MICRO, messages=messages),  # NotFound
        lambda: runtime.converse(modelId=live, messages=messages * 2),  # Validation
        lambda: bedrock.get_custom_model_deployment(customModelDeploymentIdentifier="missing"),
    ]
    emu.fail_deployments(None)
    creating = bedrock.create_custom_model_deployment(modelDeploymentName="creating", modelArn=model)
    failures.append(lambda: runtime.converse(modelId=creating["customModelDeploymentArn"], messages=messages))
    faults: list[tuple[str, Any, Callable[[], object]]] = [
        ("ListModelCustomizationJobs", "throttling", lambda: bedrock.list_model_customization_jobs()),
        (
            "GetCustomModelDeployment",
            "access_denied",
            lambda: bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=live),
        ),
        ("Converse", "service_unavailable", lambda: runtime.converse(modelId=live, messages=messages)),
        (
            "CreateCustomModelDeployment",
            "validation",
            lambda: bedrock.create_custom_model_deployment(modelDeploymentName="x", modelArn=model),
        ),
    ]
    for fail in failures:
        with pytest.raises(ClientError):
            fail()
    for operation, kind, call in faults:  # each fault just before its call, so no other call takes it
        emu.inject_fault(operation, kind)
        with pytest.raises(ClientError):
            call()
    bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=live)


def test_every_route_is_the_operation_botocore_describes() -> None:
    served = {(route.service, route.operation) for route in ROUTES}
    emulated = (EMULATED, MODEL_IMPORT)
    assert served == {(service, name) for table in emulated for service, names in table.items() for name in names}
    for route in ROUTES:
        http = service_model(route.service).operation_model(route.operation).http
        assert (route.method, route.uri, route.status) == (http["method"], http["requestUri"], http["responseCode"])
        assert operation_for(route.method, route.uri) == (route.service, route.operation)


def test_every_request_and_response_matches_botocores_models() -> None:
    clock = FakeClock()
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        with BedrockEmulator(phase_seconds=10.0, clock=clock) as emu:
            _exercise_every_operation(emu, clock, s3)
    answered: set[str] = set()
    errors: set[str] = set()
    for record in emu.requests:
        found = operation_for(record.method, record.path)
        assert found is not None and found[1] == record.operation, (record.method, record.path)
        service, operation = found
        assert request_problems(service, record) == [], record
        model = service_model(service)
        if record.error_code is None:
            output = model.operation_model(operation).output_shape
            assert output is not None
            assert problems(output, record.response, operation) == []
            assert record.status == model.operation_model(operation).http["responseCode"]
            answered.add(operation)
            continue
        error = model.shape_for(record.error_code)
        assert error.metadata.get("exception") and error.metadata["error"]["httpStatusCode"] == record.status
        assert problems(error, record.response, record.error_code) == []
        declared = {e.name for e in model.operation_model(operation).error_shapes}
        assert record.error_code in declared | {"ServiceUnavailableException"}, (operation, record.error_code)
        errors.add(record.error_code)
    assert answered == set().union(*EMULATED.values())
    assert errors == {
        "AccessDeniedException",
        "ConflictException",
        "ModelNotReadyException",
        "ResourceNotFoundException",
        "ServiceUnavailableException",
        "ThrottlingException",
        "ValidationException",
    }
    statuses = {
        shape: {r.response.get("status") for r in emu.requests if r.operation == operation and r.status == 200}
        for shape, operation in (
            ("ModelCustomizationJobStatus", "GetModelCustomizationJob"),
            ("CustomModelDeploymentStatus", "GetCustomModelDeployment"),
        )
    }
    for shape, seen in statuses.items():  # every status of both enums was answered at least once
        assert seen == set(service_model("bedrock").shape_for(shape).enum)


def test_the_check_catches_what_it_should() -> None:
    """The shape walker is not vacuous: each kind of mistake is reported."""
    model = service_model("bedrock")
    output = model.operation_model("GetCustomModelDeployment").output_shape
    assert output is not None
    good = {
        "customModelDeploymentArn": "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/abcdefghijkl",
        "modelDeploymentName": "d",
        "modelArn": f"arn:aws:bedrock:us-east-1:123456789012:custom-model/{NOVA_MICRO}/abcdefghijkl",
        "createdAt": "2026-11-28T10:00:00.000Z",
        "status": "Active",
    }
    assert problems(output, good, "r") == []
    for broken in (
        {**good, "status": "Ready"},
        {**good, "customModelDeploymentArn": "arn:aws:bedrock:us-east-1:123456789012:deployment/x"},
        {**good, "createdAt": "yesterday"},
        {**good, "extra": 1},
        {key: value for key, value in good.items() if key != "modelArn"},
    ):
        assert problems(output, broken, "r")
