"""Use case: an S3 event that failed every Lambda retry reached the dead-letter queue.

Without this, its run would stay `preparing` or `starting` for ever. A run with no job yet is marked
`failed` with Lambda's error, so the user sees what happened and can upload the config again. A run whose
job exists is never failed here: the job goes on (and is billed), and only its tracking can record the
model, so tracking is started again when no execution of it is running. A message that is not an S3
event is logged, counted and dropped: redelivering it could never succeed.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import Field, ValidationError

from shared.aws.runs import RunsRepository
from shared.aws.storage import CONFIGS_PREFIX, ObjectMissingError, ObjectRef, event_objects, read_object, whole_object
from shared.aws.tracking import newest_tracking, start_tracking
from shared.domain.config_fields import MAX_CONFIG_BYTES
from shared.domain.errors import without_internal_paths
from shared.domain.lazy_model import LazyModel
from shared.domain.run_ids import derive_run_id, run_id_of_training_key
from shared.domain.run_status import FINISHED
from shared.observability import logger, metrics
from shared.settings import settings

# Enough of an unreadable body to recognise it in the logs, too little to leak what it carries.
BODY_PREFIX_LOGGED = 64
# Step Functions statuses of an execution that is tracking, or about to again (a redrive).
TRACKING_LIVE = frozenset({"RUNNING", "PENDING_REDRIVE"})


def _last_error(record: SQSRecord) -> str:
    """The last attempt's error, from the `ErrorMessage` attribute Lambda adds to what it dead-letters."""
    error = record.message_attributes["ErrorMessage"]
    return error.string_value if error and error.string_value else "unknown error"


class _S3Bucket(LazyModel):
    name: str


class _S3Object(LazyModel):
    key: str


class _S3Entity(LazyModel):
    bucket: _S3Bucket
    object_: _S3Object = Field(alias="object")


class _S3Record(LazyModel):
    s3: _S3Entity


class _S3Notification(LazyModel):
    """What `event_objects` reads of an S3 notification, so reading it cannot fail half-way."""

    Records: list[_S3Record]


class UnreadableDeadLetterError(ValueError):
    """The body is not the S3 notification Lambda dead-letters for the prepare and start functions."""


def _s3_objects(body: str) -> list[ObjectRef]:
    try:
        event = json.loads(body)
    except ValueError as error:
        raise UnreadableDeadLetterError("the body is not JSON") from error
    try:
        _S3Notification.model_validate(event)
    except ValidationError as error:
        where = ".".join(map(str, error.errors()[0]["loc"])) or "the body"
        raise UnreadableDeadLetterError(f"the body is not an S3 notification (at {where})") from error
    return event_objects(S3Event(event))


def _run_id(ref: ObjectRef) -> str | None:
    if ref.key.startswith(CONFIGS_PREFIX):
        try:
            return derive_run_id(ref.key, whole_object(ref, read_object(ref, MAX_CONFIG_BYTES)))
        except ObjectMissingError:
            return None
    return run_id_of_training_key(ref.key)


def settle_dead_letter(record: SQSRecord) -> list[dict[str, Any]]:
    """Entry point for one dead-lettered message (BatchProcessor passes it as `record`; its body stays text, so
    one that is no S3 event is dropped here, never failed by a parser and redelivered for ever): what was decided
    for each run its event names."""
    try:
        refs = _s3_objects(record.body)
    except UnreadableDeadLetterError as unreadable:
        logger.warning(
            "Unreadable dead letter dropped",
            extra={
                "message_id": record.message_id,
                "reason": str(unreadable),
                "body_prefix": record.body[:BODY_PREFIX_LOGGED],
            },
        )
        metrics.add_metric(name="FailedEventsUnreadable", unit="Count", value=1)
        return []
    runs = RunsRepository(settings().runs_table)
    outcomes = []
    for ref in refs:
        run_id = _run_id(ref)
        if run_id is None:
            logger.warning("Failed event names no run", extra={"key": ref.key})
            continue
        outcomes.append(_settle(runs, run_id, ref.key, _last_error(record)))
    return outcomes


def _settle(runs: RunsRepository, run_id: str, key: str, error_message: str) -> dict[str, Any]:
    """Fail a run that has no job yet; a run whose job exists is left to that job's tracking."""
    message = (
        f"Processing {key} failed after Lambda's retries: "
        f"{without_internal_paths(error_message)[:500]}. "
        "Upload the config again to retry the run."
    )
    if runs.record_failure_before_job(run_id, "processing_failed", message):
        logger.info("Failed delivery recorded on its run", extra={"run_id": run_id, "decision": "failed"})
        return {"run_id": run_id, "decision": "failed"}
    run = runs.get(run_id)
    if run is None or run.job_id is None or run.status in FINISHED:
        return _unchanged(run_id, run.status if run else None)
    return _keep_tracking(runs, run_id, run.job_id)


def _unchanged(run_id: str, status: str | None) -> dict[str, Any]:
    """A missing or finished run: nothing left to fail or to track."""
    logger.info(
        "Failed delivery left its run as it is", extra={"run_id": run_id, "decision": "unchanged", "run_status": status}
    )
    return {"run_id": run_id, "decision": "unchanged"}


def _keep_tracking(runs: RunsRepository, run_id: str, job_id: str) -> dict[str, Any]:
    """The job goes on: unless an execution tracks it, start one whose generation follows the newest that ran
    (a name that already ran would not start again)."""
    newest = newest_tracking(run_id, job_id)
    if newest is not None and newest[1] in TRACKING_LIVE:
        logger.info(
            "Failed delivery left to the job's tracking",
            extra={"run_id": run_id, "job_id": job_id, "decision": "tracking_running", "generation": newest[0]},
        )
        return {"run_id": run_id, "decision": "tracking_running", "generation": newest[0]}
    # A run finishes before its execution ends: read after the execution, it says whether it ended with the job.
    run = runs.get(run_id)
    if run is None or run.status in FINISHED:
        return _unchanged(run_id, run.status if run else None)
    generation = 0 if newest is None else newest[0] + 1
    start_tracking(run_id, job_id, generation)
    metrics.add_metric(name="TrackingRestarted", unit="Count", value=1)
    logger.warning(
        "The job's tracking had stopped; started it again",
        extra={
            "run_id": run_id,
            "job_id": job_id,
            "decision": "tracking_restarted",
            "generation": generation,
            "stopped_execution_status": newest[1] if newest else None,
        },
    )
    return {"run_id": run_id, "decision": "tracking_restarted", "generation": generation}
