"""Lambda: how the API starts an evaluation it cannot wait for (API Gateway gives up after 29 s).

An asynchronous invoke of EvaluateFunction: Lambda queues the event and answers 202 at once. The
function carries the claim token the API recorded, so only that request's evaluation proceeds.
"""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from shared.aws import client
from shared.settings import settings


class EvaluationNotStartedError(Exception):
    """Lambda did not take the evaluation's event (throttled, unreachable, refused)."""


class EvaluationNotConfiguredError(EvaluationNotStartedError):
    """The deployment names no evaluation function (EVALUATE_FUNCTION_NAME is unset)."""


def start_evaluation(run_id: str, compare_with: list[str], token: str | None) -> None:
    """`token`: the API's claim on the run; None: the pipeline's own evaluation (an adopted run's)."""
    function_name = settings().evaluate_function_name
    if not function_name:
        raise EvaluationNotConfiguredError("EVALUATE_FUNCTION_NAME is not set; this deployment cannot evaluate.")
    payload = {"action": "evaluate", "run_id": run_id, "compare_with": compare_with}
    if token is not None:
        payload["token"] = token
    try:
        client("lambda").invoke(
            FunctionName=function_name, InvocationType="Event", Payload=json.dumps(payload).encode()
        )
    except ClientError as error:
        raise EvaluationNotStartedError(f"Lambda refused it ({error.response.get('Error', {}).get('Code')})") from error
    except BotoCoreError as error:
        raise EvaluationNotStartedError(f"Lambda did not answer ({type(error).__name__})") from error
