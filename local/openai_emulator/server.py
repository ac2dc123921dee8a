"""HTTP plumbing: routes OpenAI paths to the domain objects, served by local.http_server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local.http_server import Emulator, Reply, Request, RouteTable

from .dataset import parse_training_file
from .errors import ApiError, not_found
from .faults import Fault, FaultKind
from .finetune import FineTuning, Job
from .models import DEFAULT_SHUTDOWN_DATES, base_of, is_shut_down, model_not_found, model_object
from .recall import chat_completion
from .state import FormFile, Store, StoredFile, StoredUpload, require_object

Handler = Callable[["OpenAIEmulator", "Call"], Any]


@dataclass
class Call:
    """What a route handler gets: path parameters, query and parsed body."""

    params: dict[str, str]
    query: dict[str, str]
    body: Any


@dataclass
class RecordedRequest:
    """One request as received, with the answer given (``response`` is None for non-JSON or dropped)."""

    method: str
    path: str
    route: str | None
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    status: int | None = None
    response: Any = None
    time: float = field(default_factory=time.time)


# Route handlers, named after the snake_case of the spec's operationId. --------------------------------


def create_file(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.store.create_file(call.body)


def list_files(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.store.list_files(call.query)


def retrieve_file(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.store.get_file(call.params["file_id"]).obj


def download_file(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.store.get_file(call.params["file_id"]).content


def delete_file(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.store.delete_file(call.params["file_id"])


def create_upload(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.store.create_upload(require_object(call.body))


def add_upload_part(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.store.add_upload_part(call.params["upload_id"], call.body)


def complete_upload(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.store.complete_upload(call.params["upload_id"], require_object(call.body))


def create_fine_tuning_job(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.fine_tuning.create(require_object(call.body))


def list_paginated_fine_tuning_jobs(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.fine_tuning.list_jobs(call.query)


def retrieve_fine_tuning_job(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.fine_tuning.retrieve(call.params["fine_tuning_job_id"])


def list_fine_tuning_events(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.fine_tuning.events(call.params["fine_tuning_job_id"], call.query)


def list_fine_tuning_job_checkpoints(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.fine_tuning.checkpoints(call.params["fine_tuning_job_id"], call.query)


def cancel_fine_tuning_job(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.fine_tuning.cancel(call.params["fine_tuning_job_id"])


def pause_fine_tuning_job(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.fine_tuning.pause(call.params["fine_tuning_job_id"])


def resume_fine_tuning_job(emulator: OpenAIEmulator, call: Call) -> Any:
    return emulator.fine_tuning.resume(call.params["fine_tuning_job_id"])


def create_chat_completion(emulator: OpenAIEmulator, call: Call) -> Any:
    body = require_object(call.body)
    model = body.get("model")
    if isinstance(model, str) and is_shut_down(model, emulator.shutdown_dates, emulator.store.clock()):
        raise model_not_found(model)
    return chat_completion(body, emulator.fine_tuning.tuned_models)


def retrieve_model(emulator: OpenAIEmulator, call: Call) -> Any:
    fine_tuning = emulator.fine_tuning
    return model_object(
        call.params["model"], fine_tuning.tuned_models, list(fine_tuning.jobs.values()), emulator.shutdown_dates
    )


_JOB = "/fine_tuning/jobs/{fine_tuning_job_id}"
ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/files", create_file),
    ("GET", "/files", list_files),
    ("GET", "/files/{file_id}", retrieve_file),
    ("GET", "/files/{file_id}/content", download_file),
    ("DELETE", "/files/{file_id}", delete_file),
    ("POST", "/uploads", create_upload),
    ("POST", "/uploads/{upload_id}/parts", add_upload_part),
    ("POST", "/uploads/{upload_id}/complete", complete_upload),
    ("POST", "/fine_tuning/jobs", create_fine_tuning_job),
    ("GET", "/fine_tuning/jobs", list_paginated_fine_tuning_jobs),
    ("GET", _JOB, retrieve_fine_tuning_job),
    ("GET", _JOB + "/events", list_fine_tuning_events),
    ("GET", _JOB + "/checkpoints", list_fine_tuning_job_checkpoints),
    ("POST", _JOB + "/cancel", cancel_fine_tuning_job),
    ("POST", _JOB + "/pause", pause_fine_tuning_job),
    ("POST", _JOB + "/resume", resume_fine_tuning_job),
    ("POST", "/chat/completions", create_chat_completion),
    ("GET", "/models/{model}", retrieve_model),
]
_ROUTE_TABLE = RouteTable((method, template, (template, handler)) for method, template, handler in ROUTES)


def _parse_body(content_type: str, raw: bytes) -> Any:
    """JSON bodies become Python values; multipart forms become {field: str | FormFile}."""
    if not raw:
        return {}
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        form: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            filename = part.get_filename()
            form[str(name)] = FormFile(filename, data) if filename is not None else data.decode()
        return form
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(
            400, "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload."
        ) from None


def _answer(emulator: OpenAIEmulator, request: Request) -> Reply | None:
    """One request: recorded, then faulted, authenticated and routed; None drops the connection."""
    url = urlsplit(request.target)
    path = url.path.removeprefix("/v1") if url.path.startswith("/v1/") else url.path
    record = RecordedRequest(
        request.method,
        path,
        None,
        dict(parse_qsl(url.query, keep_blank_values=True)),
        None,
        dict(request.headers),
    )
    emulator.record(record)
    fault = emulator.faults.take(lambda fault: fault.matches(request.method, path))
    if fault and fault.kind == "drop":
        return None
    if fault and fault.kind == "slow":
        time.sleep(fault.delay)
    try:
        record.body = _parse_body(request.headers.get("Content-Type", ""), request.body)
        if fault and fault.kind == "status":
            message, kind, code = fault.error()
            retry = {
                "retry-after": str(max(1, round(fault.retry_after))),
                "retry-after-ms": str(int(fault.retry_after * 1000)),
            }
            headers = {**(retry if fault.status == 429 else {}), **fault.headers}
            raise ApiError(fault.status, message, type=kind, code=code, headers=headers)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        record.route, handler, params = _route(request.method, path, url.path)
        with emulator.store.lock:
            result = handler(emulator, Call(params, record.query, record.body))
        return _reply(200, result, record)
    except ApiError as error:
        return _reply(error.status, error.body(), record, error.headers)


def _reply(status: int, result: Any, record: RecordedRequest, headers: dict[str, str] | None = None) -> Reply:
    if isinstance(result, bytes):
        payload, content_type = result, "application/octet-stream"
    else:
        payload, content_type = json.dumps(result).encode(), "application/json"
        record.response = result
    record.status = status
    extra = list((headers or {}).items())
    return Reply(status, [("Content-Type", content_type), ("x-request-id", Store.new_id("req_")), *extra], payload)


def _route(method: str, path: str, full_path: str) -> tuple[str, Handler, dict[str, str]]:
    found = _ROUTE_TABLE.match(method, path) if full_path.startswith("/v1/") else None
    if found:
        (template, handler), params = found
        return template, handler, params
    raise not_found(f"Invalid URL ({method} {full_path})")


class OpenAIEmulator(Emulator[RecordedRequest, Fault]):
    """An OpenAI API emulator on a loopback port; see the package docstring for the behaviour."""

    server_name = "openai-emulator"
    # Seconds a 429 asks the client to wait when `inject_fault` names none (the test suite shortens it).
    default_retry_after = 1.0

    store: Store
    fine_tuning: FineTuning

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        phase_seconds: float = 1.0,
        min_training_examples: int = 10,
        fine_tuning_access: bool = True,
        clock: Callable[[], float] = time.time,
        shutdown_dates: Mapping[str, str | None] | None = None,
    ) -> None:
        """``shutdown_dates``: model -> "YYYY-MM-DD" (or None) for ``GET /models/{model}``; fine-tunes follow
        their base model's. Default ``DEFAULT_SHUTDOWN_DATES`` (OpenAI's announced dates); a mutable dict on
        ``shutdown_dates`` afterwards."""
        super().__init__(host, port)
        self.store = Store(clock)
        self.fine_tuning = FineTuning(self.store, phase_seconds, min_training_examples)
        self.fine_tuning_access = fine_tuning_access
        self.shutdown_dates: dict[str, str | None] = dict(
            DEFAULT_SHUTDOWN_DATES if shutdown_dates is None else shutdown_dates
        )

    def answer(self, request: Request) -> Reply | None:
        return _answer(self, request)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # state for tests ---------------------------------------------------------------------------------

    def add_tuned_model(self, model: str, training_file: bytes) -> None:
        """A fine-tune made outside ragtune (e.g. by the original notebook): GET /models/{model} describes it
        and it answers chat completions by recalling ``training_file``'s examples, as if trained on them."""
        if not model.startswith("ft:"):
            raise ValueError(f"{model!r} is not a fine-tuned model id (ft:<base>:<org>:<suffix>:<id>)")
        examples = parse_training_file(training_file)
        with self.store.lock:
            self.fine_tuning.tuned_models[model] = examples

    def shut_down(self, model: str) -> None:
        """OpenAI's shutdown of ``model``'s base, and so of every fine-tune on it, today (the emulator clock's
        day, UTC): chat completions for them answer 404 ``model_not_found`` from now on."""
        today = datetime.fromtimestamp(self.store.clock(), UTC).date()
        self.shutdown_dates[base_of(model)] = today.isoformat()

    def reset(self) -> None:
        """Forget files, uploads, jobs, tuned models, recorded requests and faults; keep the settings
        (shutdown dates included)."""
        with self.store.lock:
            old = self.fine_tuning
            self.store = Store(self.store.clock)
            self.fine_tuning = FineTuning(self.store, old.phase_seconds, old.min_examples)
            self.fine_tuning.access = old.access
        with self.lock:
            self.requests.clear()
        self.faults.clear()

    @property
    def fine_tuning_access(self) -> bool:
        """False: job creation answers 403 ``fine_tuning_not_available``, like an org without access."""
        return self.fine_tuning.access

    @fine_tuning_access.setter
    def fine_tuning_access(self, allowed: bool) -> None:
        self.fine_tuning.access = allowed

    @property
    def phase_seconds(self) -> float:
        return self.fine_tuning.phase_seconds

    @phase_seconds.setter
    def phase_seconds(self, seconds: float) -> None:
        self.fine_tuning.phase_seconds = seconds

    @property
    def files(self) -> dict[str, StoredFile]:
        return self.store.files

    @property
    def uploads(self) -> dict[str, StoredUpload]:
        return self.store.uploads

    @property
    def jobs(self) -> dict[str, Job]:
        return self.fine_tuning.jobs

    def inject_fault(
        self,
        path: str,
        kind: FaultKind = "status",
        *,
        method: str | None = None,
        status: int = 500,
        delay: float = 0.0,
        retry_after: float | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """Make the next ``times`` requests matching ``method``/``path`` (regex, see faults.py) misbehave.

        ``headers`` are sent with a ``status`` answer, e.g. ``{"x-should-retry": "false"}``; a 429's
        Retry-After is ``retry_after`` seconds, else ``default_retry_after``.
        """
        if kind not in ("status", "slow", "drop"):
            raise ValueError(f"unknown fault kind {kind!r}")
        re.compile(path)  # fail fast on a bad pattern, not on the next request
        wait = self.default_retry_after if retry_after is None else retry_after
        return self.faults.add(Fault(kind, path, method, status, delay, wait, times, dict(headers or {})))
