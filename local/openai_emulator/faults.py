"""Injected faults: make the next N matching requests fail the way a flaky OpenAI would.

A fault matches when ``method`` is None or equal (case-insensitive) to the request method, and ``path``
is a regular expression that ``re.fullmatch``-es the request path *without* the ``/v1`` prefix, e.g.
``"/fine_tuning/jobs"`` (create/list only) or ``r"/fine_tuning/jobs/[^/]+/cancel"``. The first matching
fault wins; each match uses up one of its ``times`` and the fault clears itself when none are left.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["status", "slow", "drop"]

_STATUS_ERRORS: dict[int, tuple[str, str, str | None]] = {
    408: ("Request timed out (emulated). Please try again.", "server_error", "timeout"),
    409: ("Another request is modifying this resource (emulated). Please try again.", "server_error", "conflict"),
    429: ("Rate limit reached (emulated). Please try again later.", "requests", "rate_limit_exceeded"),
    500: (
        "The server had an error while processing your request. Sorry about that! (emulated)",
        "server_error",
        None,
    ),
    503: ("The engine is currently overloaded, please try again later. (emulated)", "server_error", None),
}


@dataclass
class Fault:
    kind: FaultKind
    path: str
    method: str | None = None
    status: int = 500
    delay: float = 0.0
    retry_after: float = 1.0
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)  # added to a ``status`` answer, e.g. x-should-retry

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and re.fullmatch(self.path, path) is not None

    def error(self) -> tuple[str, str, str | None]:
        """(message, type, code) of the OpenAI-shaped error body for a ``status`` fault."""
        return _STATUS_ERRORS.get(self.status, (f"Emulated HTTP {self.status} error.", "server_error", None))
