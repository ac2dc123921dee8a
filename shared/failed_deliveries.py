"""Use case: an S3 event that failed every Lambda retry reached the dead-letter queue.

Without this, its run would stay `preparing` or `starting` for ever. The run is marked
`failed` with Lambda's error, so the user sees what happened and can upload the config again.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import Json

from shared.config import MAX_CONFIG_BYTES
from shared.errors import without_internal_paths
from shared.observability import logger
from shared.run_ids import derive_run_id, run_id_of_training_key
from shared.runs import RunsRepository
from shared.settings import settings
from shared.storage import CONFIGS_PREFIX, ObjectMissingError, ObjectRef, event_objects, read_object, whole_object


class DeadLetter(SqsRecordModel):
    """A message of the dead-letter queue: the event Lambda gave up on as its JSON body, and the last
    attempt's error in the `ErrorMessage` attribute Lambda adds. A body that is not JSON fails the record."""

    body: Json[dict[str, Any]]  # type: ignore[assignment]

    @property
    def objects(self) -> list[ObjectRef]:
        """The objects of the S3 event in the body; an event that is not an S3 notification names none."""
        return event_objects(S3Event({"Records": self.body.get("Records", [])}))

    @property
    def error_message(self) -> str:
        error = self.messageAttributes.get("ErrorMessage")
        return error.stringValue if error and error.stringValue else "unknown error"


def _run_id(ref: ObjectRef) -> str | None:
    if ref.key.startswith(CONFIGS_PREFIX):
        try:
            return derive_run_id(ref.key, whole_object(ref, read_object(ref, MAX_CONFIG_BYTES)))
        except ObjectMissingError:
            return None
    return run_id_of_training_key(ref.key)


def record_failed_delivery(refs: list[ObjectRef], error_message: str) -> list[dict[str, Any]]:
    """`refs` are the objects of the S3 event Lambda gave up on; `error_message` is what the last attempt raised."""
    outcomes = []
    for ref in refs:
        run_id = _run_id(ref)
        if run_id is None:
            logger.warning("Failed event names no run", extra={"key": ref.key})
            continue
        message = (
            f"Processing {ref.key} failed after Lambda's retries: "
            f"{without_internal_paths(error_message)[:500]}. "
            "Upload the config again to retry the run."
        )
        recorded = RunsRepository(settings().runs_table).record_failure(run_id, "processing_failed", message)
        logger.info("Failed delivery recorded on its run", extra={"run_id": run_id, "recorded": recorded})
        outcomes.append({"run_id": run_id, "recorded": recorded})
    return outcomes
