"""HTTP plumbing: a stdlib ThreadingHTTPServer that routes OpenAI paths to the domain objects."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .errors import ApiError, not_found
from .faults import Fault, FaultInjector, FaultKind
from .finetune import FineTuning, Job
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


def _job(c: Call) -> str:
    return c.params["fine_tuning_job_id"]


_JOB = "/fine_tuning/jobs/{fine_tuning_job_id}"
ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/files", lambda e, c: e.store.create_file(c.body)),
    ("GET", "/files", lambda e, c: e.store.list_files(c.query)),
    ("GET", "/files/{file_id}", lambda e, c: e.store.get_file(c.params["file_id"]).obj),
    ("GET", "/files/{file_id}/content", lambda e, c: e.store.get_file(c.params["file_id"]).content),
    ("DELETE", "/files/{file_id}", lambda e, c: e.store.delete_file(c.params["file_id"])),
    ("POST", "/uploads", lambda e, c: e.store.create_upload(require_object(c.body))),
    (
        "POST",
        "/uploads/{upload_id}/parts",
        lambda e, c: e.store.add_upload_part(c.params["upload_id"], c.body),
    ),
    (
        "POST",
        "/uploads/{upload_id}/complete",
        lambda e, c: e.store.complete_upload(c.params["upload_id"], require_object(c.body)),
    ),
    ("POST", "/fine_tuning/jobs", lambda e, c: e.fine_tuning.create(require_object(c.body))),
    ("GET", "/fine_tuning/jobs", lambda e, c: e.fine_tuning.list_jobs(c.query)),
    ("GET", _JOB, lambda e, c: e.fine_tuning.retrieve(_job(c))),
    ("GET", _JOB + "/events", lambda e, c: e.fine_tuning.events(_job(c), c.query)),
    ("GET", _JOB + "/checkpoints", lambda e, c: e.fine_tuning.checkpoints(_job(c), c.query)),
    ("POST", _JOB + "/cancel", lambda e, c: e.fine_tuning.cancel(_job(c))),
    ("POST", _JOB + "/pause", lambda e, c: e.fine_tuning.pause(_job(c))),
    ("POST", _JOB + "/resume", lambda e, c: e.fine_tuning.resume(_job(c))),
    ("POST", "/chat/completions", lambda e, c: chat_completion(require_object(c.body), e.fine_tuning.tuned_models)),
]
_COMPILED = [
    (method, template, re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)), handler)
    for method, template, handler in ROUTES
]


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


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and the CLI read the records instead."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        emulator = self.server.emulator
        url = urlsplit(self.path)
        path = url.path.removeprefix("/v1") if url.path.startswith("/v1/") else url.path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = RecordedRequest(
            self.command,
            path,
            None,
            dict(parse_qsl(url.query, keep_blank_values=True)),
            None,
            dict(self.headers),
        )
        emulator.record(record)
        fault = emulator.faults.take(self.command, path)
        if fault and fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault and fault.kind == "slow":
            time.sleep(fault.delay)
        try:
            record.body = _parse_body(self.headers.get("Content-Type", ""), raw)
            if fault and fault.kind == "status":
                message, kind, code = fault.error()
                retry = {
                    "retry-after": str(max(1, round(fault.retry_after))),
                    "retry-after-ms": str(int(fault.retry_after * 1000)),
                }
                headers = {**(retry if fault.status == 429 else {}), **fault.headers}
                raise ApiError(fault.status, message, type=kind, code=code, headers=headers)
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                raise ApiError(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                )
            record.route, handler, params = _route(self.command, path, url.path)
            with emulator.store.lock:
                result = handler(emulator, Call(params, record.query, record.body))
            self._send(200, result, record)
        except ApiError as error:
            self._send(error.status, error.body(), record, error.headers)

    def _send(self, status: int, result: Any, record: RecordedRequest, headers: dict[str, str] | None = None) -> None:
        if isinstance(result, bytes):
            payload, content_type = result, "application/octet-stream"
        else:
            payload, content_type = json.dumps(result).encode(), "application/json"
            record.response = result
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", Store.new_id("req_"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _route(method: str, path: str, full_path: str) -> tuple[str, Handler, dict[str, str]]:
    if full_path.startswith("/v1/"):
        for route_method, template, pattern, handler in _COMPILED:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                return template, handler, match.groupdict()
    raise not_found(f"Invalid URL ({method} {full_path})")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never wait for slow-fault sleeps or idle keep-alive connections on stop()

    def __init__(self, address: tuple[str, int], emulator: OpenAIEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _RequestHandler)


class OpenAIEmulator:
    """An OpenAI API emulator on a loopback port; see the package docstring for the behaviour."""

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
    ) -> None:
        self.host, self.port = host, port
        self.faults = FaultInjector()
        self.requests: list[RecordedRequest] = []
        self.store = Store(clock)
        self.fine_tuning = FineTuning(self.store, phase_seconds, min_training_examples)
        self.fine_tuning_access = fine_tuning_access
        self._server: _Server | None = None

    # lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> OpenAIEmulator:
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        # A short poll interval keeps stop() fast; shutdown() waits for the current poll to end.
        serve = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="openai-emulator", daemon=True)
        serve.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> OpenAIEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # state for tests ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget files, uploads, jobs, tuned models, recorded requests and faults; keep the settings."""
        with self.store.lock:
            old = self.fine_tuning
            self.store = Store(self.store.clock)
            self.fine_tuning = FineTuning(self.store, old.phase_seconds, old.min_examples)
            self.fine_tuning.access = old.access
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

    def record(self, request: RecordedRequest) -> None:
        with self.store.lock:
            self.requests.append(request)

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
        retry_after: float = 1.0,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """Make the next ``times`` requests matching ``method``/``path`` (regex, see faults.py) misbehave.

        ``headers`` are sent with a ``status`` answer, e.g. ``{"x-should-retry": "false"}``.
        """
        return self.faults.add(Fault(kind, path, method, status, delay, retry_after, times, dict(headers or {})))
