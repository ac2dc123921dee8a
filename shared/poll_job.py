"""Use case: one poll of a run's fine-tuning job, for the Step Functions tracking loop.

Writes the job's status, new events and latest checkpoint metrics onto the run with a
conditional write (and, once the job has succeeded, its base model's shutdown date),
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

from pydantic import BaseModel, ConfigDict

from shared.observability import logger, metrics
from shared.openai_gateway import JobSnapshot, OpenAIGateway, fine_tune_base, gateway
from shared.run_record import JobEvent, Run, RunStatus
from shared.runs import RunsRepository
from shared.settings import settings
from shared.tracking import notify_finished, start_tracking

RECENT_EVENTS_KEPT = 20
CONTINUED = "continued"


class PollState(BaseModel):
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


class TrackingFailure(BaseModel):
    """What the state machine's Catch sends when polling itself failed for good."""

    action: Literal["record_tracking_failure"]
    run_id: str
    cause: str


def _merge_events(recorded: list[JobEvent], fresh: list[JobEvent]) -> list[JobEvent]:
    known = {event["id"] for event in recorded}
    merged = recorded + [event for event in fresh if event["id"] not in known]
    return merged[-RECENT_EVENTS_KEPT:]


def poll_once(state: PollState) -> PollState:
    openai, runs = gateway(), RunsRepository(settings().runs_table)
    run = runs.get(state.run_id)
    job = openai.retrieve_job(state.job_id, run_id=state.run_id)  # another deployment's job: ForeignJobError
    observed_at = time.time_ns()
    fresh_events = openai.events_since(state.job_id, run.last_event_id if run else None)
    fields = {
        **job.run_fields(),
        "events": _merge_events(run.events if run else [], fresh_events),
        "event_count": (run.event_count if run else 0) + len(fresh_events),
    }
    if fresh_events:
        fields["last_event_id"] = fresh_events[-1]["id"]
    latest = openai.latest_metrics(state.job_id)
    if latest:
        fields["metrics"] = latest
    if job.status == RunStatus.SUCCEEDED and not (run and run.base_model_shutdown_date):
        shutdown = _base_model_shutdown_date(openai, job, run)
        if shutdown:
            fields["base_model_shutdown_date"] = shutdown

    changed = runs.record_job(state.run_id, job.status, fields, observed_at=observed_at)
    if job.terminal and runs.claim_notification(state.run_id):
        notify_finished(
            state.run_id,
            job.status,
            {"job_id": job.job_id, "fine_tuned_model": job.fine_tuned_model, "error": fields.get("error")},
        )
        metrics.add_metric(name=f"Jobs{job.status.capitalize()}", unit="Count", value=1)
    logger.info("Polled job", extra={"job_status": job.status, "new_events": len(fresh_events), "changed": changed})

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


def _base_model_shutdown_date(openai: OpenAIGateway, job: JobSnapshot, run: Run | None) -> str | None:
    """The day ("YYYY-MM-DD") OpenAI shuts the run's base model down, and its fine-tunes with it; asked once,
    on the poll that sees the job succeed. The base is read from the tuned model's name (`ft:<base>:...`, the
    snapshot even when the config named an alias), else the config's. None when unknown: never a failure."""
    configured = ((run.config or {}).get("fine_tune") or {}).get("model") if run else None
    base = fine_tune_base(job.fine_tuned_model or "") or (configured if isinstance(configured, str) else None)
    shutdown = openai.base_model_shutdown_date(base) if base else None
    return shutdown.isoformat() if shutdown else None


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
