"""HTTP plumbing: botocore's JSON 1.1 requests (``POST /``, ``X-Amz-Target: SageMaker.<Operation>``) routed to
the training jobs, served by local.http_server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from local.http_server import Emulator, Reply, Request

from .errors import SageMakerError, validation
from .training import Training, TrainingJob
from .validation import check_request

TARGET_PREFIX = "SageMaker."
CONTENT_TYPE = "application/x-amz-json-1.1"
FaultKind = Literal[
    "throttling",
    "validation",
    "access_denied",
    "resource_limit",
    "service_unavailable",
    "internal_failure",
    "lost_answer",
]
LOST_ANSWER = "lost_answer"  # the request is carried out, then the connection drops without an answer
FAULT_CODES: dict[str, tuple[str, str]] = {
    "throttling": ("ThrottlingException", "Rate exceeded (emulated)"),
    "validation": ("ValidationException", "The request failed validation. (emulated)"),
    "access_denied": ("AccessDeniedException", "User is not authorized to perform this action. (emulated)"),
    "resource_limit": (
        "ResourceLimitExceeded",
        "The account-level service limit for training job instances is 0 Instances. (emulated)",
    ),
    "service_unavailable": ("ServiceUnavailable", "Service is unavailable. Try again later. (emulated)"),
    "internal_failure": ("InternalFailure", "An internal error occurred. (emulated)"),
}

Handler = Callable[[Training, dict[str, Any]], dict[str, Any]]
OPERATIONS: dict[str, Handler] = {
    "CreateTrainingJob": lambda training, body: training.create(body),
    "DescribeTrainingJob": lambda training, body: training.describe(body["TrainingJobName"]),
    "StopTrainingJob": lambda training, body: training.stop(body["TrainingJobName"]),
    "ListTrainingJobs": lambda training, body: training.list(body),
}


@dataclass
class RecordedRequest:
    """One request as received, with the answer given. ``operation`` is None for an unknown target."""

    operation: str | None
    target: str | None  # the X-Amz-Target header
    body: Any
    headers: dict[str, str]
    status: int | None = None
    response: Any = None
    error_code: str | None = None
    time: float = field(default_factory=time.time)


@dataclass
class Fault:
    operation: str  # a SageMaker operation name, or "*" for any
    kind: FaultKind
    times: int
    message: str | None


def _answer(emu: SageMakerEmulator, request: Request) -> Reply | None:
    target = request.headers.get("X-Amz-Target")
    operation = target[len(TARGET_PREFIX) :] if target and target.startswith(TARGET_PREFIX) else None
    record = RecordedRequest(operation if operation in OPERATIONS else None, target, None, dict(request.headers))
    emu.record(record)
    try:
        try:
            record.body = json.loads(request.body) if request.body else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SageMakerError("ValidationException", "The request body is not valid JSON.") from None
        if request.method != "POST" or request.target.split("?")[0] != "/" or record.operation is None:
            raise SageMakerError("UnknownOperationException", f"No operation answers {request.method} {target}.")
        fault = emu.faults.take(lambda fault: fault.operation in ("*", record.operation))
        if fault is not None and fault.kind != LOST_ANSWER:
            code, message = FAULT_CODES[fault.kind]
            raise SageMakerError(code, fault.message or message)
        if not isinstance(record.body, dict):
            raise validation("The request body must be a JSON object.")
        check_request(record.operation, record.body)
        with emu.lock:
            result = OPERATIONS[record.operation](emu.training, record.body)
        if fault is not None:  # LOST_ANSWER: done, and the caller never hears of it
            return None
        return _reply(200, result, record)
    except SageMakerError as error:
        record.error_code = error.code
        return _reply(error.status, {"__type": error.code, "message": error.message}, record)


def _reply(status: int, result: Any, record: RecordedRequest) -> Reply:
    record.status, record.response = status, result
    headers = [("Content-Type", CONTENT_TYPE), ("x-amzn-RequestId", str(uuid.uuid4()))]
    return Reply(status, headers, json.dumps(result).encode())


class SageMakerEmulator(Emulator[RecordedRequest, Fault]):
    """SageMaker training jobs (Create/Describe/Stop/ListTrainingJobs) on a loopback port.

    Point boto3 at it with ``AWS_ENDPOINT_URL_SAGEMAKER`` set to ``endpoint_url``. ``s3`` is the S3 client the
    emulator reads training data and writes the model and metrics with, or a zero-argument factory; by
    default ``boto3.client("s3")`` made on first use, so it works in-process under moto's ``mock_aws``.
    See the package docstring.
    """

    server_name = "sagemaker-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        phase_seconds: float = 1.0,
        s3: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(host, port)
        self._s3_given, self._s3_client = s3, None
        self.training = Training(self._s3, clock, phase_seconds)

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
        """The variable that routes boto3's sagemaker clients here."""
        return {"AWS_ENDPOINT_URL_SAGEMAKER": self.endpoint_url}

    # state for tests ---------------------------------------------------------------------------------

    @property
    def phase_seconds(self) -> float:
        return self.training.phase_seconds

    @phase_seconds.setter
    def phase_seconds(self, seconds: float) -> None:
        self.training.phase_seconds = seconds

    @property
    def jobs(self) -> dict[str, TrainingJob]:
        """Jobs by name, advanced to the present first."""
        with self.lock:
            self.training.advance()
            return self.training.jobs

    def inject_fault(self, operation: str, kind: FaultKind, times: int = 1, message: str | None = None) -> Fault:
        """The next ``times`` calls of ``operation`` (SageMaker's name, or "*") fail with ``kind``'s error
        (``lost_answer``: are carried out, and their connection dropped without an answer)."""
        if kind not in FAULT_CODES and kind != LOST_ANSWER:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join([*FAULT_CODES, LOST_ANSWER])}")
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"the emulator does not serve {operation!r}")
        return self.faults.add(Fault(operation, kind, times, message))

    def fail_jobs(self, message: str | None) -> None:
        """Jobs created from now on end ``Failed`` with this FailureReason when training starts (None: they
        succeed again)."""
        with self.lock:
            self.training.job_failure = message
