"""The one HTTP layer of local/: a threaded loopback server that hands every request to an app.

The emulators (OpenAI, Bedrock) and the API Gateway front are all `App`s, functions from a
`Request` to a `Reply`, so their logic never touches sockets; the emulators share `Emulator`'s
start, stop and command-line loop. The standard library's server rather than
Werkzeug's: WSGI turns header names into HTTP_* keys and loses the case they were sent in,
which API Gateway keeps in the event it hands the function (and the emulator in its records).
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Protocol, Self, TypeVar
from urllib.parse import unquote

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One request as received: `target` is the path and query still percent-encoded."""

    method: str
    target: str
    headers: Message  # names as sent, looked up case-insensitively
    body: bytes
    client_ip: str


@dataclass(frozen=True)
class Reply:
    """An HTTP answer; the server adds Content-Length."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


App = Callable[[Request], Reply | None]
"""Answers a request; None drops the connection without an answer."""


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer
    # The body follows the headers in a second small write; with Nagle's algorithm on, on a kept-alive
    # connection, it waits for the client's delayed ACK (~40 ms on Linux): every emulated call paid it.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self.server.app(Request(self.command, self.path, self.headers, body, self.client_address[0]))
        if reply is None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers of its body, never the body
            self.wfile.write(reply.body)

    def __getattr__(self, name: str) -> Any:
        """`do_<METHOD>` for any method, where the server answers every method (`methods=ANY_METHOD`)."""
        if name.startswith("do_") and self.server.any_method:
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s " + format, self.server.name, self.client_address[0], *args)


ANY_METHOD = "*"


class LoopbackServer(ThreadingHTTPServer):
    """Serves `app` on (host, port) from a daemon thread, from creation until stop(); port 0 picks a free one.

    `methods` are the HTTP methods answered (any other gets the standard library's 501); ANY_METHOD: all.
    `keep_alive` speaks HTTP/1.1 and keeps connections open between requests; stop() then
    cannot wait for them, so it returns without waiting for requests still being answered.
    Without it (HTTP/1.0, a connection per request) stop() waits for them.
    """

    daemon_threads = True

    def __init__(self, app: App, host: str, port: int, *, name: str, methods: Iterable[str], keep_alive: bool) -> None:
        self.any_method = ANY_METHOD in methods
        serve = {f"do_{method}": _Handler._serve for method in methods if method != ANY_METHOD}
        handler = type("Handler", (_Handler,), {**serve, "protocol_version": "HTTP/1.1" if keep_alive else "HTTP/1.0"})
        self.app, self.name, self.block_on_close = app, name, not keep_alive
        super().__init__((host, port), handler)
        # A short poll keeps stop() quick: serve_forever notices shutdown() only between polls.
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away before its answer (it timed out: a slow fault) is no error of the server's."""
        if isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            _log.debug("%s: %s closed the connection before its answer", self.name, client_address)
            return
        super().handle_error(request, client_address)


RecordT = TypeVar("RecordT")
RouteT = TypeVar("RouteT")


class RouteTable(Generic[RouteT]):
    """An emulator's routes by method and URI template (`/files/{file_id}`, as the provider's API documents
    them): the first route matching a request wins, with its path parameters percent-decoded."""

    def __init__(self, routes: Iterable[tuple[str, str, RouteT]]) -> None:
        self._routes = [
            (method, re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)), route)
            for method, template, route in routes
        ]

    def match(self, method: str, path: str) -> tuple[RouteT, dict[str, str]] | None:
        for route_method, pattern, route in self._routes:
            found = pattern.fullmatch(path)
            if found and route_method == method:
                return route, {name: unquote(value) for name, value in found.groupdict().items()}
        return None


FaultT = TypeVar("FaultT", bound="Fault")


class Fault(Protocol):
    """A fault an emulator injects: it hits the next `times` requests it matches, then clears itself."""

    times: int


class FaultQueue(Generic[FaultT]):
    """Thread-safe queue of pending faults; the first one matching a request is used once per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[FaultT] = []

    def add(self, fault: FaultT) -> FaultT:
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, matches: Callable[[FaultT], bool]) -> FaultT | None:
        """Consume one use of the first fault `matches` accepts, if any."""
        with self._lock:
            for fault in self._faults:
                if matches(fault):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> list[FaultT]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class Emulator(Generic[RecordT, FaultT]):
    """A service emulator's lifecycle: `start()` serves `answer` on a keep-alive `LoopbackServer` (port 0
    picks a free one, kept in `port`), `stop()` ends it; used as a context manager, both happen.

    Every emulator records what it received (`requests`, in order, under `lock`) so tests assert on the
    requests a provider got, not on what our code meant to send, and keeps the faults it is told to inject
    (`faults`), each emulator matching them to requests in its provider's terms."""

    server_name = "emulator"

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: LoopbackServer | None = None
        self.lock = threading.RLock()
        self.requests: list[RecordT] = []
        self.faults: FaultQueue[FaultT] = FaultQueue()

    def record(self, request: RecordT) -> None:
        with self.lock:
            self.requests.append(request)

    def answer(self, request: Request) -> Reply | None:
        raise NotImplementedError

    def start(self) -> Self:
        # keep_alive: the SDKs reuse connections; stop() never waits for slow-fault sleeps or idle connections.
        self._server = LoopbackServer(
            self.answer, self.host, self.port, name=self.server_name, methods=("GET", "POST", "DELETE"), keep_alive=True
        )
        self.port = self._server.server_port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_until_stopped(self, announcement: Callable[[], str]) -> None:
        """The emulators' command line: serve, print `announcement()` (the URL to use), stop on SIGINT or SIGTERM."""
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with self:
            print(announcement(), flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                stopped.wait()
