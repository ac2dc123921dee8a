"""The one module that speaks Amazon Bedrock (`bedrock` and `bedrock-runtime`, through boto3).

Model customization jobs train the run's model; an on-demand custom model deployment serves it
(billed per token); `converse` answers with it. Every client has connect and read timeouts and
bounded retries (botocore's standard mode retries throttling, 5xx and timeouts); what is left
after them is sorted as for OpenAI: `BedrockTransientError` (retry later) or
`BedrockRefusedError` (Bedrock said no: its message and error code are kept for the user).

Idempotency is Bedrock's own: a job's `clientRequestToken` is derived from this deployment, the
run and the training file's version and ETag, so however many duplicate or concurrent events
start the run, Bedrock creates one job (and answers every repeat with that job's ARN). The job
and its custom model carry the run id and this deployment's identity (the data bucket) as tags;
its output prefix `s3://<bucket>/outputs/<run_id>/` ties a job read back to the run and the
deployment, and nothing else is ever tracked.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar

from botocore.config import Config

from shared import aws
from shared.aws import session
from shared.aws.storage import ObjectMissingError, ObjectRef, object_etag, read_bytes, read_object
from shared.domain.config import RunConfig
from shared.domain.run_record import JobEvent, Run
from shared.domain.run_status import USABLE, RunStatus
from shared.domain.training_curve import StepMetric
from shared.observability import logger
from shared.providers import base as providers
from shared.providers.base import (
    Answer,
    ForeignJobError,
    Progress,
    ProviderEmptyAnswerError,
    ProviderNotConfiguredError,
    ProviderRefusedError,
    ProviderTransientError,
    RecordStart,
)
from shared.providers.bedrock import BedrockState
from shared.providers.bedrock.metrics import parse_bedrock_metrics
from shared.providers.bedrock.settings import bedrock_settings
from shared.settings import settings

RUN_ID_TAG = "ragtune_run_id"
DEPLOYMENT_TAG = "ragtune_deployment"
NAME_MAX_CHARS = 63  # jobName, customModelName, modelDeploymentName
FIND_JOB_CANDIDATES = 20  # the run's newest jobs looked at for one it may already have
# What a completed job writes under its output prefix: one row per reported step
# (step_number,epoch_number,training_loss,perplexity). Read whole up to this size, else its complete rows.
TRAINING_METRICS_FILE = "training_artifacts/step_wise_training_metrics.csv"
METRICS_FILE_MAX_BYTES = 2**20
# With a validation set, its loss per epoch is written beside them. The curve reads both whole, up to this size.
VALIDATION_METRICS_FILE = "validation_artifacts/post_fine_tuning_validation/validation_metrics.csv"
CURVE_FILE_MAX_BYTES = 16 * 2**20
# Bedrock's statuses in the common vocabulary; Stopping stays `running` until the job is Stopped.
JOB_STATUSES: dict[str, RunStatus] = {
    "InProgress": RunStatus.RUNNING,
    "Stopping": RunStatus.RUNNING,
    "Completed": RunStatus.SUCCEEDED,
    "Failed": RunStatus.FAILED,
    "Stopped": RunStatus.CANCELLED,
}
# What a user can do about a refusal, after Bedrock's own words.
REFUSAL_ADVICE = {
    "AccessDeniedException": (
        "Check that this account has been granted access to the base model in the Amazon Bedrock console "
        "(Model access), that the region offers Nova model customization (us-east-1), and that the stack's "
        "roles allow the call."
    ),
    "ValidationException": "Check the run config's model and hyperparameters, then upload the config again.",
    "ServiceQuotaExceededException": (
        "A Bedrock quota is reached (e.g. concurrent customization jobs): wait for running jobs to finish or "
        "request an increase in Service Quotas, then upload the config again."
    ),
    "ResourceNotFoundException": "The base model or resource does not exist in this region.",
    "ConflictException": (
        "The resource is not in a state that allows this: a job of that name exists already, or the job has "
        "already finished or is stopping."
    ),
}
# Bedrock's botocore clients: explicit timeouts (a create answers in seconds, converse may take longer)
# and bounded retries.
BEDROCK_ATTEMPTS = 4  # the first try and 3 retries
BEDROCK_CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=60,
    retries={"total_max_attempts": BEDROCK_ATTEMPTS, "mode": "standard"},
)


class BedrockTransientError(ProviderTransientError):
    """Worth retrying later; the name is what Step Functions' Retry matches on.

    `code` is Bedrock's error code (e.g. `ThrottlingException`), None for a timeout or lost connection.
    """

    CODE_FIELD: ClassVar[str] = "bedrock_code"
    PROVIDER: ClassVar[str] = "bedrock"


class BedrockRefusedError(ProviderRefusedError):
    """Bedrock refused the request (access, validation, quota, not found): its message and code are kept."""

    CODE_FIELD: ClassVar[str] = "bedrock_code"
    PROVIDER: ClassVar[str] = "bedrock"


class BedrockEmptyAnswerError(ProviderEmptyAnswerError):
    """`converse` answered with no text to give the caller."""

    PROVIDER: ClassVar[str] = "bedrock"


class BedrockSettingsError(ProviderNotConfiguredError):
    """The deployment lacks a setting Bedrock needs (the customization role): a deployment problem."""

    PROVIDER: ClassVar[str] = "bedrock"
    CODE: ClassVar[str] = "bedrock_role_missing"
    LOG_MESSAGE: ClassVar[str] = "Amazon Bedrock customization role not configured"
    API_MESSAGE: ClassVar[str] = (
        "This deployment lacks a setting Amazon Bedrock needs; its operator has been told in the logs."
    )


def _classified_errors(action: str) -> AbstractContextManager[None]:
    return aws.classified_errors(
        "Amazon Bedrock", action, transient=BedrockTransientError, refused=BedrockRefusedError, advice=REFUSAL_ADVICE
    )


def job_status(status: str) -> RunStatus | str:
    """A Bedrock job status in the common vocabulary; one we do not know is kept as given (tracked on)."""
    return JOB_STATUSES.get(status, status)


def _epoch(value: Any) -> int | None:
    return int(value.timestamp()) if isinstance(value, datetime) else None


class JobSnapshot(providers.JobSnapshot):
    """A Bedrock model customization job in the common shape; `metadata` holds its output S3 URI and,
    once trained, its custom model's ARN (`output_model_arn`)."""

    PROVIDER_LABEL: ClassVar[str] = "Amazon Bedrock"
    CODE_FIELD: ClassVar[str] = "bedrock_code"

    @classmethod
    def of(cls, job: dict[str, Any]) -> JobSnapshot:
        status = job_status(str(job.get("status", "")))
        failure = str(job.get("failureMessage") or "").strip()
        metadata = {
            "output_s3_uri": str((job.get("outputDataConfig") or {}).get("s3Uri") or ""),
            "output_model_arn": str(job.get("outputModelArn") or ""),
            "bedrock_status": str(job.get("status") or ""),  # `Stopping` is `running` in the common vocabulary
        }
        return cls(
            job_id=str(job["jobArn"]),
            status=status,
            fine_tuned_model=None,  # Bedrock serves a custom model through a deployment, not by its own ARN
            trained_tokens=None,
            estimated_finish=None,
            error={"message": failure} if failure or status == RunStatus.FAILED else None,
            created_at=_epoch(job.get("creationTime")) or 0,
            finished_at=_epoch(job.get("endTime")),
            metadata={key: value for key, value in metadata.items() if value},
        )


@lru_cache(maxsize=2)
def bedrock_client(service: str) -> Any:
    """`bedrock` or `bedrock-runtime`, from the process's one session (botocore honours
    `AWS_ENDPOINT_URL_BEDROCK(_RUNTIME)`: the emulator)."""
    return session().client(service, config=BEDROCK_CLIENT_CONFIG)


def _name_part(text: str) -> str:
    """`text` in Bedrock's name rules: letters and digits, single `-`/`_` between them."""
    return re.sub(r"[-_]{2,}", "-", re.sub(r"[^0-9A-Za-z_-]", "-", text)).strip("-_")


def _fit_name(base: str, tail: str) -> str:
    """`<base>-<tail>` in 63 characters at most: `base` is shortened, never `tail`."""
    return f"{_name_part(base)[: NAME_MAX_CHARS - len(tail) - 1].rstrip('-_')}-{tail}"


def bedrock_hyperparameters(config: RunConfig) -> dict[str, str]:
    """The run config's hyperparameters as Bedrock's strings; "auto" (or absent) leaves Bedrock's default."""
    given = config.fine_tune.hyperparameters.model_dump()
    names = {"n_epochs": "epochCount", "learning_rate": "learningRate", "warmup_steps": "learningRateWarmupSteps"}
    return {names[key]: str(value) for key, value in given.items() if key in names and value not in (None, "auto")}


class BedrockGateway:
    DEPLOYMENT_KIND: ClassVar[str] = "custom_model_deployment"
    DEPLOYMENT_LABEL: ClassVar[str] = "on-demand deployment"

    def __init__(self, bedrock: Any, runtime: Any, *, deployment: str, role_arn: str | None) -> None:
        """`deployment` is this deployment's identity (the data bucket, where Bedrock reads and writes)."""
        self._bedrock = bedrock
        self._runtime = runtime
        self._deployment = deployment
        self._role_arn = role_arn

    @property
    def name(self) -> str:
        return "bedrock"

    @property
    def max_temperature(self) -> float:
        return 1.0  # Converse takes 0 to 1

    # Names, tokens, places ---------------------------------------------------------------
    def request_token(self, run_id: str, owner: str, etag: str) -> str:
        """One token per deployment, run and training file (version and content): Bedrock's idempotency key."""
        digest = hashlib.sha256("\n".join((self._deployment, run_id, owner, etag)).encode())
        return digest.hexdigest()

    def job_name(self, run_id: str, token: str) -> str:
        return _fit_name(run_id, token[:8])

    def job_name_base(self, run_id: str) -> str:
        """What every job name of the run starts with, whatever its token."""
        return self.job_name(run_id, "0" * 8)[:-8]

    def custom_model_name(self, run_id: str, suffix: str | None, token: str) -> str:
        """`<run id>-<suffix>-<token>`: a long run id is shortened first, so the suffix (its first 32
        characters) stays in the name, as the config's `suffix` promises."""
        suffix_part = _name_part(suffix or "")[:32].rstrip("-_")
        return _fit_name(run_id, f"{suffix_part}-{token[:8]}" if suffix_part else token[:8])

    def output_uri(self, run_id: str) -> str:
        return f"s3://{self._deployment}/outputs/{run_id}/"

    def tags(self, run_id: str) -> list[dict[str, str]]:
        return [{"key": RUN_ID_TAG, "value": run_id}, {"key": DEPLOYMENT_TAG, "value": self._deployment}]

    def is_own_job(self, job: JobSnapshot, run_id: str) -> bool:
        """A job writes to its run's output prefix in this deployment's bucket: that ties it to both."""
        return job.metadata.get("output_s3_uri", "").rstrip("/") == self.output_uri(run_id).rstrip("/")

    # Jobs --------------------------------------------------------------------------------
    def find_job_for_run(self, run_id: str) -> JobSnapshot | None:
        """The run's newest usable job of this deployment: a create whose answer was lost, even after the
        SDK's retries, may have made one, which an earlier attempt of the run (another training file
        version, so another token) would not find by its token. Failed or stopped jobs are ignored."""
        with _classified_errors("listing jobs"):
            page = self._bedrock.list_model_customization_jobs(
                nameContains=self.job_name_base(run_id),
                sortBy="CreationTime",
                sortOrder="Descending",
                maxResults=FIND_JOB_CANDIDATES,
            )
        for summary in page.get("modelCustomizationJobSummaries", []):
            if job_status(str(summary.get("status", ""))) in USABLE:
                job = self.retrieve_job(str(summary["jobArn"]))
                if self.is_own_job(job, run_id):  # another deployment's job of the same run id writes elsewhere
                    return job
        return None

    def start_job(self, run: Run, owner: str, record_start: RecordStart) -> JobSnapshot:
        """The run's customization job: found (a create's answer may have been lost), else created; a repeat
        (same run, same training file) also gets the same job from Bedrock, by its request token."""
        run_id = run.run_id
        if run.files is None or run.files.train is None or run.config is None:  # only a prepared run is started
            raise RuntimeError(f"Run {run_id} is {run.status} but records no training file or config.")
        if not self._role_arn:
            raise BedrockSettingsError(
                "BEDROCK_CUSTOMIZATION_ROLE_ARN is not set: this deployment cannot start Amazon Bedrock jobs."
            )
        existing = self.find_job_for_run(run_id)
        if existing:
            logger.info(
                "Found the run's job at Amazon Bedrock; not creating another", extra={"job_id": existing.job_id}
            )
            return existing
        config = RunConfig.model_validate(run.config)
        etag = object_etag(ObjectRef(self._deployment, run.files.train.key))
        token = self.request_token(run_id, owner, etag)
        request: dict[str, Any] = {
            "jobName": self.job_name(run_id, token),
            "customModelName": self.custom_model_name(run_id, config.fine_tune.suffix, token),
            "roleArn": self._role_arn,
            "clientRequestToken": token,
            "baseModelIdentifier": config.fine_tune.model,
            "customizationType": "FINE_TUNING",
            "trainingDataConfig": {"s3Uri": f"s3://{self._deployment}/{run.files.train.key}"},
            "outputDataConfig": {"s3Uri": self.output_uri(run_id)},
            "hyperParameters": bedrock_hyperparameters(config),
            "jobTags": self.tags(run_id),
            "customModelTags": self.tags(run_id),
        }
        if run.files.validation is not None:
            request["validationDataConfig"] = {
                "validators": [{"s3Uri": f"s3://{self._deployment}/{run.files.validation.key}"}]
            }
        try:
            with _classified_errors("creating the model customization job"):
                created = self._bedrock.create_model_customization_job(**request)
        except BedrockTransientError:
            found = self.find_job_for_run(run_id)  # the request may have been taken, its answer lost
            if found is None:
                raise
            logger.info("The job was created, its answer lost; tracking it", extra={"job_id": found.job_id})
            return found
        record_start({"provider_state": {"bedrock_request_token": token}})
        return JobSnapshot(
            job_id=str(created["jobArn"]),
            status=RunStatus.RUNNING,  # a new job is InProgress
            fine_tuned_model=None,
            trained_tokens=None,
            estimated_finish=None,
            error=None,
            created_at=0,
            metadata={"output_s3_uri": request["outputDataConfig"]["s3Uri"]},
        )

    def retrieve_job(self, job_id: str, run_id: str | None = None) -> JobSnapshot:
        with _classified_errors("retrieving the job"):
            job = JobSnapshot.of(self._bedrock.get_model_customization_job(jobIdentifier=job_id))
        if run_id is not None and not self.is_own_job(job, run_id):
            raise ForeignJobError(
                f"Job {job_id} does not write to run {run_id}'s outputs in this deployment; it is not tracked."
            )
        return job

    def events_since(self, job_id: str, last_event_id: str | None) -> list[JobEvent]:
        """Bedrock keeps no event list per job (state changes go to EventBridge): nothing new, ever."""
        return []

    def latest_metrics(self, job_id: str) -> dict[str, int | float] | None:
        """The job's own training loss, once Bedrock reports it, and, once the job has completed, the last
        row of the step-wise metrics file it wrote under its output prefix (step, epoch, loss, perplexity)."""
        with _classified_errors("retrieving the job's metrics"):
            job = self._bedrock.get_model_customization_job(jobIdentifier=job_id)
        metrics: dict[str, int | float] = {}
        loss = (job.get("trainingMetrics") or {}).get("trainingLoss")
        if isinstance(loss, int | float):
            metrics["train_loss"] = float(loss)
        if job.get("status") == "Completed":
            metrics.update(self._metrics_file(job))
        return metrics or None

    def _metrics_file(self, job: dict[str, Any]) -> dict[str, int | float]:
        """The last complete row of the job's step_wise_training_metrics.csv ({} when absent or unreadable):
        only in this deployment's bucket, under the job's own `model-customization-job-<id>/` folder."""
        output = str((job.get("outputDataConfig") or {}).get("s3Uri") or "")
        bucket, _, prefix = output.removeprefix("s3://").partition("/")
        if not output.startswith("s3://") or bucket != self._deployment:
            return {}
        job_id = str(job.get("jobArn") or "").rsplit("/", 1)[-1]
        key = f"{prefix.rstrip('/')}/model-customization-job-{job_id}/{TRAINING_METRICS_FILE}".lstrip("/")
        try:
            read = read_object(ObjectRef(bucket, key), METRICS_FILE_MAX_BYTES)
        except ObjectMissingError:
            return {}
        text = read.body.decode("utf-8", errors="replace")
        if not read.complete:
            text = text[: text.rfind("\n") + 1]
        last: dict[str, int | float] = {}
        reported = 0
        for row in csv.DictReader(io.StringIO(text)):
            try:
                values = {
                    "step": int(row["step_number"]),
                    "epoch": int(row["epoch_number"]),
                    "train_loss": float(row["training_loss"]),
                    "train_perplexity": float(row["perplexity"]),
                }
            except (KeyError, TypeError, ValueError):
                continue  # a row that is not a number is not a metric
            last, reported = values, reported + 1
        return {**last, "steps_reported": reported} if last else {}

    def step_metrics(self, run: Run) -> list[StepMetric]:
        """Every reported step's training loss, with the validation loss merged in by step, from the CSVs the
        job wrote under the run's output prefix in this deployment's bucket; [] until the training file exists,
        and no validation loss when the job had no validation set."""
        if not run.job_id:
            return []
        prefix = self.output_uri(run.run_id).removeprefix("s3://").partition("/")[2]
        folder = f"{prefix}model-customization-job-{run.job_id.rsplit('/', 1)[-1]}/"
        try:
            training = read_bytes(ObjectRef(self._deployment, folder + TRAINING_METRICS_FILE), CURVE_FILE_MAX_BYTES)
        except ObjectMissingError:
            return []
        try:
            validation = read_bytes(ObjectRef(self._deployment, folder + VALIDATION_METRICS_FILE), CURVE_FILE_MAX_BYTES)
        except ObjectMissingError:
            validation = None
        return parse_bedrock_metrics(training, validation)

    def cancel_job(self, job_id: str) -> JobSnapshot:
        """Stop the job, then read it back (Bedrock's stop answers with nothing): `Stopping` is `running`.
        A job already stopping refuses a second stop; asking twice is no error: it is read back as it is."""
        try:
            with _classified_errors("stopping the job"):
                self._bedrock.stop_model_customization_job(jobIdentifier=job_id)
        except BedrockRefusedError as refused:
            if refused.code != "ConflictException":
                raise
            job = self.retrieve_job(job_id)
            if job.metadata.get("bedrock_status") != "Stopping":
                raise
            return job
        return self.retrieve_job(job_id)

    # Serving -----------------------------------------------------------------------------
    def advance(self, run: Run, job: providers.JobSnapshot, *, serve: bool = True) -> Progress:
        """A completed job's model answers only through an on-demand deployment: the run is `deploying`
        while the deployment (created once, on the first poll that sees the job complete) is not Active;
        `succeeded` with the deployment's ARN as its model once it is; `failed` with Bedrock's reason if
        it fails. `serve=False` (the API's cancel) neither creates nor reads a deployment."""
        if job.status != RunStatus.SUCCEEDED:
            return Progress(job)
        deploying = replace(job, status=RunStatus.DEPLOYING)
        fields: dict[str, Any] = {}
        deployment = BedrockState.model_validate(run.provider_state or {}).deployment_arn
        if not serve:
            return Progress(deploying)
        if deployment is None:
            model_arn = job.metadata.get("output_model_arn")
            if not model_arn:  # Completed before the model's ARN is reported: the next poll sees it
                return Progress(deploying)
            deployment = self.create_deployment(run.run_id, model_arn)
            fields["provider_state"] = {"deployment_arn": deployment}
        status, reason = self.deployment_status(deployment)
        if status == "Active":
            return Progress(replace(job, fine_tuned_model=deployment), fields)
        if status == "Failed":
            message = (
                f"The model trained, but Amazon Bedrock could not deploy it for on-demand use "
                f"(deployment {deployment}): {reason or 'no reason was given.'}"
            )
            failed = replace(job, status=RunStatus.FAILED, error={"message": message, "run_code": "deployment_failed"})
            return Progress(failed, fields)
        return Progress(deploying, fields)

    def create_deployment(self, run_id: str, model_arn: str) -> str:
        """An on-demand deployment of the run's custom model (idempotent per run and model); its ARN."""
        token = hashlib.sha256("\n".join((self._deployment, run_id, model_arn)).encode()).hexdigest()
        with _classified_errors("creating the custom model deployment"):
            created = self._bedrock.create_custom_model_deployment(
                modelDeploymentName=_fit_name(run_id, token[:8]),
                modelArn=model_arn,
                clientRequestToken=token,
                tags=self.tags(run_id),
            )
        return str(created["customModelDeploymentArn"])

    def deployment_status(self, deployment_arn: str) -> tuple[str, str | None]:
        """The deployment's status (`Creating`, `Active`, `Failed`) and Bedrock's failure message, if any."""
        with _classified_errors("retrieving the custom model deployment"):
            deployment = self._bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=deployment_arn)
        return str(deployment.get("status", "")), deployment.get("failureMessage") or None

    def delete_deployment(self, deployment_arn: str) -> bool:
        """Delete the on-demand deployment (it stops answering and billing); False if Bedrock no longer knew it."""
        try:
            with _classified_errors("deleting the custom model deployment"):
                self._bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=deployment_arn)
        except BedrockRefusedError as error:
            if error.code == "ResourceNotFoundException":
                return False
            raise
        return True

    def answer(self, model: str, system: str | None, question: str, temperature: float, max_tokens: int) -> Answer:
        """`converse` with `model` (a deployment ARN), the run's system prompt and the caller's settings."""
        request: dict[str, Any] = {
            "modelId": model,
            "messages": [{"role": "user", "content": [{"text": question}]}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": temperature},
        }
        if system is not None:
            request["system"] = [{"text": system}]
        with _classified_errors("the converse call"):
            response = self._runtime.converse(**request)
        content = ((response.get("output") or {}).get("message") or {}).get("content") or []
        texts = [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
        if not texts:
            raise BedrockEmptyAnswerError("Amazon Bedrock's converse answer held no text.")
        given = response.get("usage") or {}
        usage = {
            "prompt_tokens": int(given.get("inputTokens", 0)),
            "completion_tokens": int(given.get("outputTokens", 0)),
            "total_tokens": int(given.get("totalTokens", 0)),
        }
        refusal = "".join(texts) if response.get("stopReason") == "content_filtered" else None
        return Answer(text=None if refusal else "".join(texts), refusal=refusal, model=model, usage=usage)


def gateway() -> BedrockGateway:
    return BedrockGateway(
        bedrock_client("bedrock"),
        bedrock_client("bedrock-runtime"),
        deployment=settings().data_bucket,
        role_arn=bedrock_settings().bedrock_customization_role_arn,
    )
