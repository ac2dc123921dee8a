"""Where moto (5.2.5) differs from AWS in ways the stack relies on, made as AWS does it.

* DynamoDB: moto checks a condition and then writes, with no lock between, so two threads can both
  pass `attribute_not_exists(...)`. Idempotency and the run's status leases rely on that check being
  atomic; a process-wide lock around moto's writes restores the guarantee.
* Step Functions' optimised integration with itself (`arn:aws:states:::states:startExecution`): its
  parameters are written as AWS documents them (`StateMachineArn`, `Input`, `Name`), which Step Functions
  maps to the API's own names; moto passes them to botocore unmapped, which fails every such task.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)

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


def _api_cased(normalise: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(normalise)
    def mapped(self: Any, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        normalise(self, parameters, *args, **kwargs)
        for name in list(parameters):
            parameters[name[:1].lower() + name[1:]] = parameters.pop(name)  # StateMachineArn -> stateMachineArn

    mapped.__wrapped_api_cased__ = True  # type: ignore[attr-defined]
    return mapped


def map_step_functions_task_parameters() -> None:
    """Idempotent: Step Functions tasks that start an execution name its parameters as the API does."""
    normalise = StateTaskServiceSfn._normalise_parameters
    if not getattr(normalise, "__wrapped_api_cased__", False):
        StateTaskServiceSfn._normalise_parameters = _api_cased(normalise)  # type: ignore[method-assign]
