"""The one module that speaks to Step Functions and SNS: the tracking loop's execution that polls a run's
job, the evaluation's execution (its Map asks the held-out questions), and the topic that announces a
finished run.

A tracking execution's name is derived from the run, its job and the generation, so Step Functions
dedupes a duplicate start; its ARN can therefore be recorded before the execution starts. An evaluation's
is derived from the API's claim token, for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.aws import client
from shared.settings import settings


def execution_name(run_id: str, job_id: str, generation: int) -> str:
    """One name per job and generation (at most 70 of Step Functions' 80 characters).

    Step Functions refuses a name that already ran with another input, so a retried run's new
    job needs a name of its own; a duplicate start of the same job still dedupes.
    """
    job_digest = hashlib.sha256(job_id.encode()).hexdigest()[:8]
    return f"{run_id}-{job_digest}-g{generation}"


def tracking_input(run_id: str, job_id: str, generation: int) -> dict[str, Any]:
    """The state machine's input: everything a poll needs, including its bound."""
    return {
        "run_id": run_id,
        "job_id": job_id,
        "generation": generation,
        "polls": 0,
        "max_polls": settings().max_polls_per_execution,
        "poll_interval_seconds": settings().poll_interval_seconds,
    }


def execution_arn(run_id: str, job_id: str, generation: int) -> str:
    state_machine = settings().state_machine_arn
    name = execution_name(run_id, job_id, generation)
    return f"{state_machine.replace(':stateMachine:', ':execution:')}:{name}"


def start_tracking(run_id: str, job_id: str, generation: int) -> None:
    """Start the execution that tracks the job; a name that already ran is not started twice."""
    try:
        client("stepfunctions").start_execution(
            stateMachineArn=settings().state_machine_arn,
            name=execution_name(run_id, job_id, generation),
            input=json.dumps(tracking_input(run_id, job_id, generation)),
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise


def newest_tracking(run_id: str, job_id: str) -> tuple[int, str] | None:
    """The newest execution that tracked the job: its generation and Step Functions status (None: none ran).

    The run records only generation 0's ARN; a poll at its bound starts the next generation before its
    own execution ends, so the newest is the last of the names Step Functions knows, counting up from 0.
    """
    sfn = client("stepfunctions")
    newest = None
    generation = 0
    while True:
        try:
            described = sfn.describe_execution(executionArn=execution_arn(run_id, job_id, generation))
        except ClientError as error:
            if error.response["Error"]["Code"] != "ExecutionDoesNotExist":
                raise
            return newest
        newest = (generation, str(described["status"]))
        generation += 1


class EvaluationNotStartedError(Exception):
    """Step Functions did not take the evaluation's execution (throttled, unreachable, refused)."""


class EvaluationNotConfiguredError(EvaluationNotStartedError):
    """The deployment names no evaluation state machine (EVALUATION_STATE_MACHINE_ARN is unset)."""


def evaluation_input(run_id: str, compare_with: list[str], token: str | None) -> dict[str, Any]:
    """The evaluation state machine's input (`token`: the API's claim on the run; None: the pipeline's own)."""
    return {"run_id": run_id, "compare_with": compare_with, "token": token}


def start_evaluation(run_id: str, compare_with: list[str], token: str | None) -> None:
    """Start the evaluation's execution. The API's is named after its claim token, so a duplicate start of one
    request is one execution; the pipeline's gets a fresh name, its duplicates stopped by the run's claim."""
    state_machine = settings().evaluation_state_machine_arn
    if not state_machine:
        raise EvaluationNotConfiguredError("EVALUATION_STATE_MACHINE_ARN is not set; this deployment cannot evaluate.")
    suffix = token if token is not None else uuid.uuid4().hex
    try:
        client("stepfunctions").start_execution(
            stateMachineArn=state_machine,
            name=f"{run_id[:47]}-{hashlib.sha256(suffix.encode()).hexdigest()[:32]}",
            input=json.dumps(evaluation_input(run_id, compare_with, token)),
        )
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code != "ExecutionAlreadyExists":
            raise EvaluationNotStartedError(f"Step Functions refused it ({code})") from error
    except BotoCoreError as error:
        raise EvaluationNotStartedError(f"Step Functions did not answer ({type(error).__name__})") from error


class NoticeUnsentError(Exception):
    """The finished-run notice could not be published, past the SDK's retries."""


def notify_finished(run_id: str, status: str, fields: dict[str, Any]) -> None:
    """Announce a finished run on the notifications topic (the caller claims the notice first: once per run)."""
    message = {"run_id": run_id, "status": status, **fields}
    try:
        client("sns").publish(
            TopicArn=settings().notification_topic_arn,
            Subject=f"ragtune run {run_id} {status}"[:100],
            Message=json.dumps(message, default=str),
            MessageAttributes={"status": {"DataType": "String", "StringValue": status}},
        )
    except ClientError as error:
        raise NoticeUnsentError(f"SNS refused it ({error.response.get('Error', {}).get('Code', 'unknown')})") from error
    except BotoCoreError as error:
        raise NoticeUnsentError(f"SNS did not answer ({type(error).__name__})") from error
