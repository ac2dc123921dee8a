"""Use case: a run's training file has landed, so upload it to OpenAI and start the job.

Runs once per run however often the S3 event arrives: Powertools idempotency stops
duplicates, file ids are recorded as soon as they exist, an existing job is looked up
by the run id and this deployment's identity in its metadata before creating one (a
POST's answer can be lost), and the tracking execution has a name derived from the run
and its job (Step Functions dedupes it). Only a job this deployment created is ever recorded.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from botocore.exceptions import ClientError

from shared.aws import client
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
from shared.runs import RunsRepository
from shared.settings import settings
from shared.storage import ObjectRef, S3UploadSource


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


def _find_or_create_job(openai: OpenAIGateway, runs: RunsRepository, run: dict[str, Any]) -> JobSnapshot:
    run_id = run["run_id"]
    existing = openai.find_job_for_run(run_id)
    if existing:
        logger.info("Found the run's job at OpenAI; not creating another", extra={"job_id": existing.job_id})
        return existing
    training_file_id = run.get("training_file_id") or _upload(openai, run_id, run["files"]["train"]["key"], "train")
    runs.record_start(run_id, {"training_file_id": training_file_id})
    validation_file_id = run.get("validation_file_id")
    if "validation" in run["files"] and not validation_file_id:
        validation_file_id = _upload(openai, run_id, run["files"]["validation"]["key"], "validation")
        runs.record_start(run_id, {"validation_file_id": validation_file_id})
    config = RunConfig.model_validate(run["config"])
    return openai.create_job(JobRequest(
        run_id=run_id,
        model=config.fine_tune.model,
        training_file_id=training_file_id,
        validation_file_id=validation_file_id,
        suffix=config.fine_tune.suffix,
        seed=config.seed,
        hyperparameters=config.fine_tune.hyperparameters.model_dump(),
    ))


def _start(run_id: str, owner: str) -> dict[str, Any]:
    runs = RunsRepository(settings().runs_table)
    run = runs.get(run_id)
    if run is None or not runs.claim_start(run_id, owner):
        status = (runs.get(run_id) or {}).get("status", "unknown")
        logger.info("Run is not waiting to start, or another event is starting it", extra={"status": status})
        return {"run_id": run_id, "status": status, "replayed": True}
    try:
        job = _find_or_create_job(gateway(), runs, run)
    except OpenAIKeyUnavailableError as error:
        logger.error("OpenAI API key unavailable", extra={"reason": str(error)})
        runs.record_failure(run_id, "openai_key_unavailable", f"{error}. Fix it, then upload the config again.")
        return {"run_id": run_id, "status": "failed", "error": str(error)}
    except OpenAIRefusedError as error:
        logger.warning("OpenAI refused the run", extra={"status_code": error.status_code, "code": error.code})
        runs.record_failure(run_id, "openai_refused", error.message, openai_code=error.code)
        metrics.add_metric(name="JobsRefused", unit="Count", value=1)
        return {"run_id": run_id, "status": "failed", "error": error.message}
    except OpenAITransientError as error:
        message = f"{error}; the SDK's retries are spent. Upload the config again to retry the run."
        logger.warning("OpenAI unavailable", extra={"reason": str(error)})
        runs.record_failure(run_id, "openai_unavailable", message, openai_code=error.code)
        return {"run_id": run_id, "status": "failed", "error": message}
    observed_at = time.time_ns()

    # Ids first (the run stays `starting`, so a crash before the execution starts is retried),
    # then the execution, whose first poll may already write a newer status than ours.
    runs.record_start(run_id, {"job_id": job.job_id, "execution_arn": execution_arn(run_id, job.job_id, 0)})
    start_tracking(run_id, job.job_id, generation=0)
    runs.record_job(run_id, job.status, job.run_fields(), observed_at=observed_at)
    metrics.add_metric(name="JobsStarted", unit="Count", value=1)
    logger.info("Fine-tuning job started", extra={"job_id": job.job_id, "job_status": job.status})
    return {"run_id": run_id, "status": job.status, "job_id": job.job_id}
