"""HTTP plumbing: botocore's REST-JSON requests routed to the domain, served by local.http_server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from local.http_server import Emulator, Reply, Request, RouteTable

from .customization import Customizations, CustomModel, Deployment, Job
from .errors import BedrockError, validation
from .model_import import ImportedModel, ImportJob, ModelImports, invoke_imported_model
from .runtime import converse
from .training import MAX_RECORDS, MIN_RECORDS

FaultKind = Literal[
    "throttling",
    "validation",
    "access_denied",
    "service_unavailable",
    "model_timeout",
    "model_not_ready",
    "lost_answer",
]
LOST_ANSWER = "lost_answer"  # the request is carried out, then the connection drops without an answer
FAULT_CODES: dict[str, tuple[str, str]] = {
    "throttling": ("ThrottlingException", "Too many requests, please wait before trying again. (emulated)"),
    "validation": ("ValidationException", "The request failed validation. (emulated)"),
    "access_denied": (
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID. (emulated)",
    ),
    "service_unavailable": ("ServiceUnavailableException", "The service is unavailable. Try again later. (emulated)"),
    "model_timeout": ("ModelTimeoutException", "The request took too long to process. (emulated)"),
    "model_not_ready": ("ModelNotReadyException", "The model is not ready to serve requests yet. (emulated)"),
}

Handler = Callable[["BedrockEmulator", dict[str, str], dict[str, str], dict[str, Any]], dict[str, Any]]


def _create_job(emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
    return emu.customizations.create_job(body)


def _list_jobs(emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
    return emu.customizations.list_jobs(query)


def _get_job(emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
    return emu.customizations.job(params["jobIdentifier"]).to_json()


def _stop_job(emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
    return emu.customizations.stop_job(params["jobIdentifier"])


def _create_deployment(
    emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
) -> Any:
    return emu.customizations.create_deployment(body)


def _get_deployment(emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
    return emu.customizations.deployment(params["customModelDeploymentIdentifier"]).to_json()


def _delete_deployment(
    emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
) -> Any:
    return emu.customizations.delete_deployment(params["customModelDeploymentIdentifier"])


def _converse(emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
    return converse(emu.customizations, params["modelId"], body)


def _create_import_job(
    emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
) -> Any:
    return emu.model_imports.create_job(body)


def _list_import_jobs(emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
    return emu.model_imports.list_jobs(query)


def _get_import_job(emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
    return emu.model_imports.job(params["jobIdentifier"]).to_json()


def _list_imported_models(
    emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
) -> Any:
    return emu.model_imports.list_models(query)


def _get_imported_model(
    emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
) -> Any:
    return emu.model_imports.model(params["modelIdentifier"]).to_json()


def _delete_imported_model(
    emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
) -> Any:
    return emu.model_imports.delete_model(params["modelIdentifier"])


def _invoke_model(emu: BedrockEmulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> Any:
    return invoke_imported_model(emu.model_imports, params["modelId"], body)


_JOBS = "/model-customization-jobs"
_DEPLOYMENTS = "/model-customization/custom-model-deployments"
_IMPORT_JOBS = "/model-import-jobs"
_IMPORTED_MODELS = "/imported-models"


@dataclass(frozen=True)
class Route:
    service: str  # botocore's service name
    operation: str  # botocore's operation name
    method: str
    uri: str  # the operation's http.requestUri
    status: int  # the operation's http.responseCode
    handler: Handler


ROUTES = [
    Route("bedrock", "CreateModelCustomizationJob", "POST", _JOBS, 201, _create_job),
    Route("bedrock", "ListModelCustomizationJobs", "GET", _JOBS, 200, _list_jobs),
    Route("bedrock", "GetModelCustomizationJob", "GET", _JOBS + "/{jobIdentifier}", 200, _get_job),
    Route("bedrock", "StopModelCustomizationJob", "POST", _JOBS + "/{jobIdentifier}/stop", 200, _stop_job),
    Route("bedrock", "CreateCustomModelDeployment", "POST", _DEPLOYMENTS, 202, _create_deployment),
    Route(
        "bedrock",
        "GetCustomModelDeployment",
        "GET",
        _DEPLOYMENTS + "/{customModelDeploymentIdentifier}",
        200,
        _get_deployment,
    ),
    Route(
        "bedrock",
        "DeleteCustomModelDeployment",
        "DELETE",
        _DEPLOYMENTS + "/{customModelDeploymentIdentifier}",
        200,
        _delete_deployment,
    ),
    Route("bedrock-runtime", "Converse", "POST", "/model/{modelId}/converse", 200, _converse),
    Route("bedrock", "CreateModelImportJob", "POST", _IMPORT_JOBS, 201, _create_import_job),
    Route("bedrock", "ListModelImportJobs", "GET", _IMPORT_JOBS, 200, _list_import_jobs),
    Route("bedrock", "GetModelImportJob", "GET", _IMPORT_JOBS + "/{jobIdentifier}", 200, _get_import_job),
    Route("bedrock", "ListImportedModels", "GET", _IMPORTED_MODELS, 200, _list_imported_models),
    Route("bedrock", "GetImportedModel", "GET", _IMPORTED_MODELS + "/{modelIdentifier}", 200, _get_imported_model),
    Route(
        "bedrock", "DeleteImportedModel", "DELETE", _IMPORTED_MODELS + "/{modelIdentifier}", 200, _delete_imported_model
    ),
    Route("bedrock-runtime", "InvokeModel", "POST", "/model/{modelId}/invoke", 200, _invoke_model),
]
_ROUTE_TABLE = RouteTable((route.method, route.uri, route) for route in ROUTES)


@dataclass
class RecordedRequest:
    """One request as received, with the answer given. ``operation`` is None for an unknown route."""

    operation: str | None
    method: str
    path: str  # percent-encoded, as sent
    params: dict[str, str]  # path parameters, decoded
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    status: int | None = None
    response: Any = None
    error_code: str | None = None
    time: float = field(default_factory=time.time)


@dataclass
class Fault:
    operation: str  # a botocore operation name, or "*" for any
    kind: FaultKind
    times: int
    message: str | None


def _answer(emu: BedrockEmulator, request: Request) -> Reply | None:
    url = urlsplit(request.target)
    found = _ROUTE_TABLE.match(request.method, url.path)
    route, params = found if found else (None, {})
    record = RecordedRequest(
        route.operation if route else None,
        request.method,
        url.path,
        params,
        dict(parse_qsl(url.query, keep_blank_values=True)),
        None,
        dict(request.headers),
    )
    emu.record(record)
    try:
        try:
            record.body = json.loads(request.body) if request.body else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise validation("The request body is not valid JSON.") from None
        if route is None:
            raise _UnknownOperation(f"No operation answers {request.method} {url.path}.")
        fault = emu.faults.take(lambda fault: fault.operation in ("*", route.operation))
        if fault is not None and fault.kind != LOST_ANSWER:
            code, message = FAULT_CODES[fault.kind]
            raise BedrockError(code, fault.message or message)
        if not isinstance(record.body, dict):
            raise validation("The request body must be a JSON object.")
        with emu.lock:
            result = route.handler(emu, params, record.query, record.body)
        if fault is not None:  # LOST_ANSWER: done, and the caller never hears of it
            return None
        return _reply(route.status, result, record)
    except _UnknownOperation as error:
        record.error_code = "UnknownOperationException"
        return _reply(404, {"message": str(error)}, record, "UnknownOperationException")
    except BedrockError as error:
        record.error_code = error.code
        return _reply(error.status, {"message": error.message}, record, error.code)


class _UnknownOperation(Exception):
    pass


def _reply(status: int, result: Any, record: RecordedRequest, error_code: str | None = None) -> Reply:
    record.status, record.response = status, result
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    if error_code is not None:
        headers.append(("x-amzn-ErrorType", f"{error_code}:http://internal.amazon.com/coral/com.amazon.bedrock/"))
    return Reply(status, headers, json.dumps(result).encode())


class BedrockEmulator(Emulator[RecordedRequest, Fault]):
    """Bedrock (model customization, custom model deployments, Custom Model Import) and bedrock-runtime (Converse,
    InvokeModel on imported models) on one port.

    Point boto3 at it with ``AWS_ENDPOINT_URL_BEDROCK`` and ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` both set to
    ``endpoint_url`` (the two services' REST paths do not collide). ``s3`` is the S3 client the emulator
    reads training data and writes metrics with, or a zero-argument factory; by default ``boto3.client("s3")``
    made on first use, so it works in-process under moto's ``mock_aws``. See the package docstring.
    """

    server_name = "bedrock-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        phase_seconds: float = 1.0,
        s3: Any = None,
        clock: Callable[[], float] = time.time,
        min_training_records: int = MIN_RECORDS,
        max_training_records: int = MAX_RECORDS,
    ) -> None:
        super().__init__(host, port)
        self._s3_given, self._s3_client = s3, None
        self.customizations = Customizations(self._s3, clock, phase_seconds, min_training_records, max_training_records)
        self.model_imports = ModelImports(self._s3, clock, lambda: self.customizations.phase_seconds)

    def _s3(self) -> Any:
        given = self._s3_given
        if given is not None:
            return given if hasattr(given, "get_object") else given()
        if self._s3_client is None:
            import boto3

            self._s3_client = boto3.client("s3")
        return self._s3_client

    def answer(self, request: Request) -> Reply | None:
        return _answer(self, request)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """The variables that route boto3's bedrock and bedrock-runtime clients here."""
        return {"AWS_ENDPOINT_URL_BEDROCK": self.endpoint_url, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.endpoint_url}

    # state for tests ---------------------------------------------------------------------------------

    @property
    def phase_seconds(self) -> float:
        return self.customizations.phase_seconds

    @phase_seconds.setter
    def phase_seconds(self, seconds: float) -> None:
        self.customizations.phase_seconds = seconds

    @property
    def jobs(self) -> dict[str, Job]:
        """Jobs by ARN, advanced to the present first."""
        with self.lock:
            self.customizations.advance()
            return self.customizations.jobs

    @property
    def deployments(self) -> dict[str, Deployment]:
        """Deployments by ARN, advanced to the present first."""
        with self.lock:
            self.customizations.advance()
            return self.customizations.deployments

    @property
    def custom_models(self) -> dict[str, CustomModel]:
        with self.lock:
            self.customizations.advance()
            return self.customizations.custom_models

    @property
    def import_jobs(self) -> dict[str, ImportJob]:
        """Model import jobs by ARN, advanced to the present first."""
        with self.lock:
            self.model_imports.advance()
            return self.model_imports.jobs

    @property
    def imported_models(self) -> dict[str, ImportedModel]:
        """Imported models by ARN, advanced to the present first."""
        with self.lock:
            self.model_imports.advance()
            return self.model_imports.models

    def inject_fault(self, operation: str, kind: FaultKind, times: int = 1, message: str | None = None) -> Fault:
        """The next ``times`` calls of ``operation`` (botocore's name, or "*") fail with ``kind``'s error
        (``lost_answer``: are carried out, and their connection dropped without an answer)."""
        if kind not in FAULT_CODES and kind != LOST_ANSWER:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join([*FAULT_CODES, LOST_ANSWER])}")
        if operation != "*" and operation not in {route.operation for route in ROUTES}:
            raise ValueError(f"the emulator does not serve {operation!r}")
        return self.faults.add(Fault(operation, kind, times, message))

    def fail_jobs(self, message: str | None) -> None:
        """Jobs created from now on end ``Failed`` with this failureMessage (None: they succeed again)."""
        with self.lock:
            self.customizations.job_failure = message

    def fail_imports(self, message: str | None) -> None:
        """Model import jobs created from now on end ``Failed`` with this failureMessage (None: they succeed again)."""
        with self.lock:
            self.model_imports.import_failure = message

    def fail_deployments(self, message: str | None) -> None:
        """Deployments created from now on end ``Failed`` with this failureMessage (None: they succeed again)."""
        with self.lock:
            self.customizations.deployment_failure = message
