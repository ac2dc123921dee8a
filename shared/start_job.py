"""Use case: a run's training file has landed, so upload it to OpenAI and start the job.

Runs once per run however often the S3 event arrives: Powertools idempotency stops
duplicates, file ids are recorded as soon as they exist, an existing job is looked up
by the run id and this deployment's identity in its metadata before creating one (a
POST's answer can be lost), and the tracking execution has a name derived from the run
and its job (Step Functions dedupes it). Only a job this deployment created is ever recorded.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from shared.config import RunConfig
from shared.idempotency import once
from shared.observability import logger, metrics
from shared.openai_gateway import (
    JobRequest,
    JobSnapshot,
    OpenAIGateway,
    OpenAIKeyUnavailableError,
    OpenAIRefusedError,
    OpenAITransientError,
    gateway,
)
from shared.run_ids import run_id_of_training_key
from shared.run_record import Run
from shared.runs import RunsRepository
from shared.settings import settings
from shared.storage import ObjectRef, S3UploadSource
from shared.tracking import execution_arn, start_tracking


def start_training(ref: ObjectRef) -> dict[str, Any]:
    """Entry point for one S3 record of a training file."""
    run_id = run_id_of_training_key(ref.key)
    if run_id is None:
        logger.warning("Ignoring object that is not a run's training file", extra={"key": ref.key})
        return {"key": ref.key, "status": "ignored"}
    logger.append_keys(run_id=run_id)
    owner = ref.version_id or "unversioned"
    return once(f"start:{run_id}:{owner}", lambda: _start(run_id, owner))


def _upload(gateway: OpenAIGateway, run_id: str, key: str, name: str) -> str:
    """Named after the run and the content's ETag (the gateway adds the deployment), so a lost
    answer can be found again by name."""
    source = S3UploadSource.of(ObjectRef(settings().data_bucket, key), f"{run_id}-{name}")
    return gateway.upload_training_file(source, settings().upload_multipart_threshold_bytes)


def _find_or_create_job(openai: OpenAIGateway, runs: RunsRepository, run: Run) -> JobSnapshot:
    run_id = run.run_id
    existing = openai.find_job_for_run(run_id)
    if existing:
        logger.info("Found the run's job at OpenAI; not creating another", extra={"job_id": existing.job_id})
        return existing
    if run.files is None or run.config is None:  # cannot happen: only a prepared run is claimed for a start
        raise RuntimeError(f"Run {run_id} is {run.status} but records no prepared files or config.")
    training_file_id = run.training_file_id or _upload(openai, run_id, run.files.train.key, "train")
    runs.record_start(run_id, {"training_file_id": training_file_id})
    validation_file_id = run.validation_file_id
    if run.files.validation is not None and not validation_file_id:
        validation_file_id = _upload(openai, run_id, run.files.validation.key, "validation")
        runs.record_start(run_id, {"validation_file_id": validation_file_id})
    config = RunConfig.model_validate(run.config)
    return openai.create_job(
        JobRequest(
            run_id=run_id,
            model=config.fine_tune.model,
            training_file_id=training_file_id,
            validation_file_id=validation_file_id,
            suffix=config.fine_tune.suffix,
            seed=config.seed,
            hyperparameters=config.fine_tune.hyperparameters.model_dump(),
        )
    )


class StartFailure(NamedTuple):
    """How an OpenAI failure ends a start: the run's `error.code`, what the user is told to do next
    (after the error's own text), and how it is logged."""

    code: str
    advice: str
    log_message: str
    operator_fault: bool = False  # the deployment needs fixing: logged as an error, not a warning
    log_error_text: bool = True  # OpenAI's own words (a refusal) stay on the run, out of the logs
    metric: str | None = None


START_FAILURES: dict[type[Exception], StartFailure] = {
    OpenAIKeyUnavailableError: StartFailure(
        "openai_key_unavailable",
        ". Fix it, then upload the config again.",
        "OpenAI API key unavailable",
        operator_fault=True,
    ),
    OpenAIRefusedError: StartFailure(
        "openai_refused", "", "OpenAI refused the run", log_error_text=False, metric="JobsRefused"
    ),
    OpenAITransientError: StartFailure(
        "openai_unavailable",
        "; the SDK's retries are spent. Upload the config again to retry the run.",
        "OpenAI unavailable",
    ),
}


def _fail_start(runs: RunsRepository, run_id: str, error: Exception) -> dict[str, Any]:
    """Record why the job could not be started: no retry, the user uploads the config again."""
    failure = next(f for kind, f in START_FAILURES.items() if isinstance(error, kind))
    message = f"{error}{failure.advice}"
    openai_code: str | None = getattr(error, "code", None)
    details = {"reason": str(error)} if failure.log_error_text else {}
    log = logger.error if failure.operator_fault else logger.warning
    log(
        failure.log_message,
        extra={
            "code": failure.code,
            "openai_code": openai_code,
            "status_code": getattr(error, "status_code", None),
            **details,
        },
    )
    runs.record_failure(run_id, failure.code, message, openai_code=openai_code)
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
        job = _find_or_create_job(gateway(), runs, run)
    except tuple(START_FAILURES) as error:
        return _fail_start(runs, run_id, error)
    observed_at = time.time_ns()

    # Ids first (the run stays `starting`, so a crash before the execution starts is retried),
    # then the execution, whose first poll may already write a newer status than ours.
    runs.record_start(run_id, {"job_id": job.job_id, "execution_arn": execution_arn(run_id, job.job_id, 0)})
    start_tracking(run_id, job.job_id, generation=0)
    runs.record_job(run_id, job.status, job.run_fields(), observed_at=observed_at)
    metrics.add_metric(name="JobsStarted", unit="Count", value=1)
    logger.info("Fine-tuning job started", extra={"job_id": job.job_id, "job_status": job.status})
    return {"run_id": run_id, "status": job.status, "job_id": job.job_id}
