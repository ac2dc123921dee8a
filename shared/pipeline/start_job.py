"""Use case: a run's training file has landed, so start the job at the run's provider.

Runs once per run however often the S3 event arrives: Powertools idempotency stops
duplicates, the run is claimed for one training file version, the provider's `start_job` is
itself idempotent (OpenAI: file ids recorded as soon as they exist and an existing job looked
up by the run id and this deployment's identity before creating one; Bedrock: a
`clientRequestToken` derived from the run and the training file's version), and the tracking
execution has a name derived from the run and its job (Step Functions dedupes it). Only a job
this deployment created is ever recorded.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from shared.aws.idempotency import once
from shared.aws.runs import RunsRepository
from shared.aws.storage import ObjectMissingError, ObjectRef
from shared.aws.tracking import execution_arn, start_tracking
from shared.domain.run_ids import run_id_of_training_key
from shared.observability import logger, metrics
from shared.providers.base import (
    ProviderNotConfiguredError,
    ProviderRefusedError,
    ProviderTransientError,
    provider_for,
    provider_label,
)
from shared.settings import settings


def start_training(ref: ObjectRef) -> dict[str, Any]:
    """Entry point for one S3 record of a training file."""
    run_id = run_id_of_training_key(ref.key)
    if run_id is None:
        logger.warning("Ignoring object that is not a run's training file", extra={"key": ref.key})
        return {"key": ref.key, "status": "ignored"}
    logger.append_keys(run_id=run_id)
    owner = ref.version_id or "unversioned"
    return once(f"start:{run_id}:{owner}", lambda: _start(run_id, owner))


class StartFailure(NamedTuple):
    """How a family of failures ends a start: what the user is told to do next (after the error's own
    text), and how it is logged. The run's `error.code` and the log line name the provider."""

    code: str  # `{provider}` is the provider's name
    advice: str
    log_message: str  # `{label}` is the provider's label
    operator_fault: bool = False  # the deployment needs fixing: logged as an error, not a warning
    log_error_text: bool = True  # the provider's own words (a refusal) stay on the run, out of the logs
    metric: str | None = None


START_FAILURES: dict[type[Exception], StartFailure] = {
    ObjectMissingError: StartFailure(
        "training_file_missing", ". Upload the config again to prepare the run anew.", "Training file missing"
    ),
    ProviderNotConfiguredError: StartFailure("{code}", "{advice}", "{log}", operator_fault=True),
    ProviderRefusedError: StartFailure(
        "{provider}_refused", "", "{label} refused the run", log_error_text=False, metric="JobsRefused"
    ),
    ProviderTransientError: StartFailure(
        "{provider}_unavailable",
        "; {retries} are spent. Upload the config again to retry the run.",
        "{label} unavailable",
    ),
}


def _fail_start(runs: RunsRepository, run_id: str, error: Exception) -> dict[str, Any]:
    """Record why the job could not be started: no retry, the user uploads the config again.

    The provider's own error code is kept under the field its error names (`openai_code`, `bedrock_code`)."""
    failure = next(f for kind, f in START_FAILURES.items() if isinstance(error, kind))
    provider = str(getattr(error, "PROVIDER", "provider"))
    names = {
        "provider": provider,
        "label": provider_label(provider),
        "code": getattr(error, "CODE", ""),
        "log": getattr(error, "LOG_MESSAGE", ""),
        "advice": getattr(error, "RUN_ADVICE", ""),
        "retries": getattr(error, "RETRIES", "the retries"),
    }
    code = failure.code.format(**names)
    message = f"{error}{failure.advice.format(**names)}"
    provider_code: str | None = getattr(error, "code", None)
    code_field: str = getattr(error, "CODE_FIELD", "provider_code")
    details = {"reason": str(error)} if failure.log_error_text else {}
    log = logger.error if failure.operator_fault else logger.warning
    log(
        failure.log_message.format(**names),
        extra={
            "code": code,
            code_field: provider_code,
            "status_code": getattr(error, "status_code", None),
            **details,
        },
    )
    runs.record_failure(run_id, code, message, error_fields={code_field: provider_code} if provider_code else None)
    if failure.metric:
        metrics.add_metric(name=failure.metric, unit="Count", value=1)
    return {"run_id": run_id, "status": "failed", "error": message}


def _start(run_id: str, owner: str) -> dict[str, Any]:
    runs = RunsRepository(settings().runs_table)
    run = runs.get(run_id)
    if run is None or not runs.claim_start(run_id, owner):
        now = runs.get(run_id)
        status = now.status if now else "unknown"
        logger.info("Run is not waiting to start, or another event is starting it", extra={"status": status})
        return {"run_id": run_id, "status": status, "replayed": True}
    try:
        provider = provider_for(run)
        job = provider.start_job(run, owner, lambda fields: runs.record_start(run_id, fields))
        # A job found already trained is recorded in the run's terms (Bedrock: `deploying`, open: `importing`), never
        # `succeeded` before its model can answer: the poll takes it the rest of the way.
        job = provider.advance(run, job, serve=False).job
    except tuple(START_FAILURES) as error:
        return _fail_start(runs, run_id, error)
    observed_at = time.time_ns()

    # Ids first (the run stays `starting`, so a crash before the execution starts is retried),
    # then the execution, whose first poll may already write a newer status than ours.
    runs.record_start(run_id, {"job_id": job.job_id, "execution_arn": execution_arn(run_id, job.job_id, 0)})
    start_tracking(run_id, job.job_id, generation=0)
    runs.record_job(run_id, job.status, job.run_fields(), observed_at=observed_at)
    metrics.add_metric(name="JobsStarted", unit="Count", value=1)
    logger.info(
        "Fine-tuning job started", extra={"provider": provider.name, "job_id": job.job_id, "job_status": job.status}
    )
    return {"run_id": run_id, "status": job.status, "job_id": job.job_id}
