"""Use case: one poll of a run's fine-tuning job, for the Step Functions tracking loop.

The run's provider (`provider_for(run)`) answers; its `advance` takes the run past training
(OpenAI: the base model's shutdown date, once; Bedrock: the on-demand deployment, `deploying`
until Active). Writes the job's status, new events and latest metrics onto the run with a
conditional write,
announces a finished run once, and hands the loop its next state.
A job whose metadata does not name this run and this deployment is never tracked
(`ForeignJobError`: the state machine's Catch records `tracking_failed`).
When an execution reaches its poll bound it starts a fresh one, far below the
25,000-event history cap (about 9 events per poll).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import ConfigDict

from shared.aws.runs import RunsRepository
from shared.aws.tracking import NoticeUnsentError, notify_finished, start_tracking
from shared.domain.lazy_model import LazyModel
from shared.domain.run_record import JobEvent
from shared.domain.run_status import RunStatus
from shared.observability import logger, metrics
from shared.providers.base import JobSnapshot, provider_for
from shared.settings import settings

RECENT_EVENTS_KEPT = 20
CONTINUED = "continued"


class PollState(LazyModel):
    """The state the loop carries from poll to poll (the execution's input, then each poll's output)."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["poll"] = "poll"
    run_id: str
    job_id: str
    generation: int = 0
    polls: int = 0
    max_polls: int
    poll_interval_seconds: int
    status: str = "unknown"
    error_message: str = ""


class TrackingFailure(LazyModel):
    """What the state machine's Catch sends when polling itself failed for good."""

    action: Literal["record_tracking_failure"]
    run_id: str
    cause: str


class RunMissingError(Exception):
    """The execution names a run the table does not hold: nothing to record the job on."""


def _merge_events(recorded: list[JobEvent], fresh: list[JobEvent]) -> list[JobEvent]:
    known = {event["id"] for event in recorded}
    merged = recorded + [event for event in fresh if event["id"] not in known]
    return merged[-RECENT_EVENTS_KEPT:]


def poll_once(state: PollState) -> PollState:
    """One look at the run's job through the run's provider, which also takes the run past training in its
    own way (`advance`: Bedrock's deployment, OpenAI's shutdown date)."""
    runs = RunsRepository(settings().runs_table)
    run = runs.get(state.run_id)
    if run is None:
        raise RunMissingError(f"Run {state.run_id} is not in the runs table; its job {state.job_id} is not tracked.")
    provider = provider_for(run)
    job = provider.retrieve_job(state.job_id, run_id=state.run_id)  # another deployment's job: ForeignJobError
    observed_at = time.time_ns()
    fresh_events = provider.events_since(state.job_id, run.last_event_id)
    latest = provider.latest_metrics(state.job_id)
    progress = provider.advance(run, job)
    job = progress.job
    fields = {
        **job.run_fields(),
        **progress.fields,
        "events": _merge_events(run.events, fresh_events),
        "event_count": run.event_count + len(fresh_events),
    }
    if fresh_events:
        fields["last_event_id"] = fresh_events[-1]["id"]
    if latest:
        fields["metrics"] = latest

    changed = runs.record_job(state.run_id, job.status, fields, observed_at=observed_at)
    if job.terminal:
        _announce(runs, state.run_id, job, fields.get("error"))
    logger.info(
        "Polled job",
        extra={
            "provider": provider.name,
            "job_status": job.status,
            "new_events": len(fresh_events),
            "changed": changed,
        },
    )

    polls = state.polls + 1
    status = job.status
    if not job.terminal and polls >= state.max_polls:
        start_tracking(state.run_id, state.job_id, state.generation + 1)
        logger.info(
            "Poll bound reached; tracking continues in a fresh execution", extra={"generation": state.generation + 1}
        )
        status = CONTINUED
    error_message = fields["error"]["message"] if "error" in fields else ""
    return state.model_copy(update={"polls": polls, "status": status, "error_message": error_message})


def _announce(runs: RunsRepository, run_id: str, job: JobSnapshot, error: Any) -> None:
    """One notice per finished run. A notice SNS will not take never fails the poll, so the run's curve and
    evaluation still follow: its claim is given back and the reason recorded on the run."""
    claimed_at = runs.claim_notification(run_id)
    if claimed_at is None:
        return
    metrics.add_metric(name=f"Jobs{job.status.capitalize()}", unit="Count", value=1)
    try:
        notify_finished(
            run_id, job.status, {"job_id": job.job_id, "fine_tuned_model": job.fine_tuned_model, "error": error}
        )
    except NoticeUnsentError as unsent:
        reason = f"The notice that the run finished was not published: {unsent}"
        logger.error("Finished-run notice not published", extra={"reason": reason})
        metrics.add_metric(name="NoticesUnsent", unit="Count", value=1)
        runs.release_notification(run_id, claimed_at, reason)


def _readable_cause(cause: str) -> str:
    """A Lambda error's cause is JSON with a stack trace; users get its type and message only."""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause[:500]
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return f"{parsed.get('errorType', 'Error')}: {str(parsed['errorMessage'])[:500]}"
    return cause[:500]


def record_tracking_failure(failure: TrackingFailure) -> dict[str, Any]:
    """Polling failed past its retries: say so on the run before the execution fails."""
    message = f"Tracking the job failed: {_readable_cause(failure.cause)}"
    RunsRepository(settings().runs_table).record_tracking_failure(failure.run_id, message)
    logger.error("Tracking failed", extra={"cause": failure.cause[:2000]})
    return {"run_id": failure.run_id, "status": RunStatus.TRACKING_FAILED}
