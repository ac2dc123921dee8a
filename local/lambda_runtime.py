"""Run moto's Lambda functions in this process, with our real handlers.

moto runs Lambda code in Docker, which is not always there. Every path into a function
(direct Invoke, S3 notification, Step Functions Task) goes through one private method,
`LambdaFunction._invoke_lambda`; replacing it runs the handler named by the function's
Handler here (functions are created with `local.template.function_handler`'s path, an image
function's Command included). Private API: moto is pinned, and a test proves all three paths
still reach the handler.
"""

from __future__ import annotations

import importlib
import json
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto.awslambda.models import LambdaFunction

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The parts of Lambda's context object Powertools reads."""

    function_name: str = "ragtune-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ragtune-local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/ragtune-local"
    log_stream_name: str = "local"
    timeout_seconds: int = 900

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_seconds * 1000


def resolve_handler(dotted_path: str) -> Handler:
    module, _, attribute = dotted_path.rpartition(".")
    handler: Handler = getattr(importlib.import_module(module), attribute)
    return handler


def _invoke_in_process(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    """Same contract as moto's: (payload JSON, errored, log text)."""
    payload = json.loads(event) if isinstance(event, str | bytes) else (event or {})
    context = LambdaContext(
        function_name=function.function_name,
        invoked_function_arn=function.function_arn,
        memory_limit_in_mb=int(function.memory_size or 128),
        timeout_seconds=int(function.timeout or 3),
    )
    try:
        result = resolve_handler(str(function.handler))(payload, context)
    except Exception as error:  # a Lambda reports any exception as a function error
        return (
            json.dumps(
                {
                    "errorMessage": str(error),
                    "errorType": type(error).__name__,
                    "stackTrace": traceback.format_exception(error)[-5:],
                }
            ),
            True,
            "",
        )
    return json.dumps(result), False, ""


@contextmanager
def in_process_lambdas() -> Iterator[None]:
    """While active, every moto Lambda invocation runs our handler in this process."""
    original = LambdaFunction._invoke_lambda
    LambdaFunction._invoke_lambda = _invoke_in_process  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        LambdaFunction._invoke_lambda = original  # type: ignore[method-assign]
