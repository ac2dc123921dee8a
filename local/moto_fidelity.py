"""Make moto's DynamoDB conditional writes atomic, as DynamoDB's are.

moto checks a condition and then writes, with no lock between, so two threads can both
pass `attribute_not_exists(...)`. Idempotency and the run's status leases rely on that
check being atomic; a process-wide lock around moto's writes restores the guarantee.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def _atomic(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return write(*args, **kwargs)

    locked.__wrapped_atomic__ = True  # type: ignore[attr-defined]
    return locked


def make_dynamodb_writes_atomic() -> None:
    """Idempotent: wraps each write once."""
    for name in _WRITES:
        write = getattr(DynamoDBBackend, name)
        if not getattr(write, "__wrapped_atomic__", False):
            setattr(DynamoDBBackend, name, _atomic(write))
