"""The one module that speaks SageMaker (training jobs) and Bedrock Custom Model Import, through boto3.

A run's life here: the training script (`training/train.py`, packed and uploaded beside the run's weights) runs in
a SageMaker training job that reads `datasets/<run_id>/` and writes the merged model, uncompressed, under
`models/<run_id>/`; once it completes the run is `importing` while Bedrock imports that folder; the imported
model's ARN is then the run's model (`succeeded`), asked through InvokeModel with an OpenAI-style chat body.
`DELETE /runs/{id}/model` deletes the imported model, never the weights.

Idempotency: a training job's name is derived from this deployment, the run and the training file's version, and
the run's jobs are looked up before one is created (a create whose answer was lost is found, not repeated); the
import job's `clientRequestToken` is derived from the run and its weights. Every job and model carries the tags
`ragtune_run_id` and `ragtune_deployment`, and a job read back must write to the run's own prefix of this
deployment's bucket, or it is never tracked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from botocore.config import Config

from shared import aws
from shared.aws import session
from shared.aws.storage import ObjectMissingError, ObjectRef, object_etag, put_bytes, read_bytes
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
    ProviderModelGoneError,
    ProviderNotConfiguredError,
    ProviderRefusedError,
    ProviderTransientError,
    RecordStart,
)
from shared.providers.open import OPEN_DEFAULT_EPOCHS, OPEN_DEFAULTS, OPEN_MODELS, OpenState
from shared.providers.open.metrics import parse_open_metrics
from shared.providers.open.settings import OpenSettings, open_settings
from shared.settings import settings

RUN_ID_TAG = "ragtune_run_id"
DEPLOYMENT_TAG = "ragtune_deployment"
MODELS_PREFIX = "models/"
NAME_MAX_CHARS = 63  # TrainingJobName, jobName, importedModelName
FIND_JOB_CANDIDATES = 20
TRAINING_SOURCE = Path(__file__).parent / "training"  # train.py and what the image must add (requirements.txt)
SOURCE_FILES = ("train.py", "requirements.txt")
CHECKPOINT_DIR = "/opt/ml/checkpoints"  # synced to the run's metrics prefix while the job trains
METRICS_FILE = "metrics.csv"
METRICS_FILE_MAX_BYTES = 16 * 2**20
MANIFEST_FILE = "manifest.json"
# What the training script prints, read by SageMaker into the job's metrics (FinalMetricDataList).
METRIC_DEFINITIONS = [
    {"Name": "total_steps", "Regex": r"ragtune total_steps=(\d+)"},
    {"Name": "step", "Regex": r"ragtune step=(\d+) epoch="},
    {"Name": "epoch", "Regex": r"ragtune step=\d+ epoch=([0-9.]+)"},
    {"Name": "train_loss", "Regex": r"ragtune step=\d+ epoch=[0-9.]+ train_loss=([0-9.eE+-]+)"},
    {"Name": "valid_loss", "Regex": r"ragtune step=\d+ valid_loss=([0-9.eE+-]+)"},
]
JOB_STATUSES: dict[str, RunStatus] = {
    "InProgress": RunStatus.RUNNING,
    "Stopping": RunStatus.RUNNING,  # `cancelled` once Stopped
    "Completed": RunStatus.SUCCEEDED,  # trained: `advance` makes it `importing`
    "Failed": RunStatus.FAILED,
    "Stopped": RunStatus.CANCELLED,
}
REFUSAL_ADVICE = {
    "AccessDeniedException": (
        "Check that the region offers SageMaker training on the instance type and Bedrock Custom Model Import "
        "(us-east-1, us-east-2, us-west-2, eu-central-1) and that the stack's roles allow the call."
    ),
    "ResourceLimitExceeded": (
        "A SageMaker quota is reached (the instance type's training quota is often 0 until raised): request an "
        "increase in Service Quotas, then upload the config again."
    ),
    "ServiceQuotaExceededException": (
        "A Bedrock quota is reached (imported models, concurrent import jobs): delete unused imported models or "
        "request an increase in Service Quotas."
    ),
}
CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=60,
    retries={"total_max_attempts": 4, "mode": "standard"},
)
_NOT_FOUND = re.compile(r"not found|does not exist|could not find", re.IGNORECASE)


class OpenTransientError(ProviderTransientError):
    """Worth retrying later (the class name is what Step Functions' Retry matches)."""

    CODE_FIELD: ClassVar[str] = "aws_code"
    PROVIDER: ClassVar[str] = "open"


class OpenRefusedError(ProviderRefusedError):
    """SageMaker or Bedrock refused the request: its message and code are kept for the user."""

    CODE_FIELD: ClassVar[str] = "aws_code"
    PROVIDER: ClassVar[str] = "open"


class OpenModelGoneError(OpenRefusedError, ProviderModelGoneError):
    """Bedrock no longer knows the imported model (deleted): its weights are still in the bucket."""


class OpenEmptyAnswerError(ProviderEmptyAnswerError):
    PROVIDER: ClassVar[str] = "open"


class OpenSettingsError(ProviderNotConfiguredError):
    """The deployment lacks what open-weights training needs (a role, the image, a Hugging Face token)."""

    PROVIDER: ClassVar[str] = "open"
    CODE: ClassVar[str] = "open_not_configured"
    LOG_MESSAGE: ClassVar[str] = "Open-weights training not configured"
    API_MESSAGE: ClassVar[str] = (
        "This deployment lacks a setting open-weights training needs; its operator has been told in the logs."
    )


def _classified_errors(service: str, action: str) -> AbstractContextManager[None]:
    return aws.classified_errors(
        "AWS", action, transient=OpenTransientError, refused=OpenRefusedError, advice=REFUSAL_ADVICE, service=service
    )


def _not_found(error: OpenRefusedError) -> bool:
    """SageMaker answers an unknown job with a ValidationException that says so; Bedrock with a 404."""
    return error.code == "ResourceNotFoundException" or (
        error.code == "ValidationException" and bool(_NOT_FOUND.search(error.message))
    )


def _epoch(value: Any) -> int | None:
    return int(value.timestamp()) if isinstance(value, datetime) else None


def _name_part(text: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^0-9A-Za-z-]", "-", text)).strip("-")


def _fit_name(base: str, tail: str) -> str:
    """`<base>-<tail>` in 63 characters of letters, digits and single hyphens: `base` is shortened, never `tail`."""
    return f"{_name_part(base)[: NAME_MAX_CHARS - len(tail) - 1].rstrip('-')}-{tail}"


class JobSnapshot(providers.JobSnapshot):
    """A SageMaker training job in the common shape; `metadata` holds its output path, its model folder once
    trained, and SageMaker's own status."""

    PROVIDER_LABEL: ClassVar[str] = "AWS"
    CODE_FIELD: ClassVar[str] = "aws_code"

    @classmethod
    def of(cls, job: dict[str, Any]) -> JobSnapshot:
        given = str(job.get("TrainingJobStatus", ""))
        status = JOB_STATUSES.get(given, given)
        failure = str(job.get("FailureReason") or "").strip()
        metadata = {
            "output_s3_uri": str((job.get("OutputDataConfig") or {}).get("S3OutputPath") or ""),
            "model_artifacts": str((job.get("ModelArtifacts") or {}).get("S3ModelArtifacts") or ""),
            "sagemaker_status": given,
            "secondary_status": str(job.get("SecondaryStatus") or ""),
        }
        return cls(
            job_id=str(job["TrainingJobName"]),
            status=status,
            fine_tuned_model=None,  # the imported model answers, once Bedrock has imported the weights
            trained_tokens=None,
            estimated_finish=None,
            error={"message": f"The SageMaker training job failed: {failure}"}
            if failure or status == RunStatus.FAILED
            else None,
            created_at=_epoch(job.get("CreationTime")) or 0,
            finished_at=_epoch(job.get("TrainingEndTime")),
            metadata={key: value for key, value in metadata.items() if value},
        )


def _import_failed(job: providers.JobSnapshot, message: str) -> providers.JobSnapshot:
    return replace(job, status=RunStatus.FAILED, error={"message": message, "run_code": "import_failed"})


def _state(fields: dict[str, Any]) -> dict[str, Any]:
    """What `advance` records of the provider's own, under the run's `provider_state` (nothing: nothing new)."""
    return {"provider_state": fields} if fields else {}


@cache
def aws_client(service: str) -> Any:
    """`sagemaker`, `bedrock` or `bedrock-runtime` (botocore honours AWS_ENDPOINT_URL_<SERVICE>: the emulators)."""
    return session().client(service, config=CLIENT_CONFIG)


def training_source() -> bytes:
    """The training script's folder as `sourcedir.tar.gz`, byte for byte the same for the same files (sorted,
    no owners or times), so the upload is the same however often a start is repeated."""
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as archive:
        for name in SOURCE_FILES:
            data = (TRAINING_SOURCE / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(packed.getvalue(), mtime=0)


class OpenWeightsGateway:
    DEPLOYMENT_KIND: ClassVar[str] = "imported_model"  # the served copy; the weights are never deleted
    DEPLOYMENT_LABEL: ClassVar[str] = "imported model"

    def __init__(self, sagemaker: Any, bedrock: Any, runtime: Any, *, config: OpenSettings, deployment: str) -> None:
        self._sagemaker = sagemaker
        self._bedrock = bedrock
        self._runtime = runtime
        self._config = config
        self._deployment = deployment

    @property
    def name(self) -> str:
        return "open"

    @property
    def max_temperature(self) -> float:
        return 1.0

    # Places and names --------------------------------------------------------------------
    def models_uri(self, run_id: str) -> str:
        return f"s3://{self._deployment}/{MODELS_PREFIX}{run_id}/"

    def metrics_ref(self, run_id: str) -> ObjectRef:
        return ObjectRef(self._deployment, f"{MODELS_PREFIX}{run_id}/metrics/{METRICS_FILE}")

    def manifest_ref(self, run_id: str) -> ObjectRef:
        return ObjectRef(self._deployment, f"{MODELS_PREFIX}{run_id}/{MANIFEST_FILE}")

    def job_name(self, run_id: str, token: str) -> str:
        return _fit_name(run_id, token[:8])

    def tags(self, run_id: str, key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
        """The run's tags, spelled as the service wants them (SageMaker `Key`/`Value`, Bedrock `key`/`value`)."""
        return [{key: RUN_ID_TAG, value: run_id}, {key: DEPLOYMENT_TAG, value: self._deployment}]

    def is_own_job(self, job: JobSnapshot, run_id: str) -> bool:
        """A job writes to its run's own prefix of this deployment's bucket: that ties it to both."""
        return job.metadata.get("output_s3_uri", "").rstrip("/") == self.models_uri(run_id).rstrip("/")

    def _owns_weights(self, run_id: str, uri: str) -> bool:
        return uri.startswith(self.models_uri(run_id)) and ".." not in uri

    # Training ----------------------------------------------------------------------------
    def find_job_for_run(self, run_id: str) -> JobSnapshot | None:
        """The run's newest usable job of this deployment (a create whose answer was lost made one)."""
        with _classified_errors("SageMaker", "listing training jobs"):
            page = self._sagemaker.list_training_jobs(
                NameContains=self.job_name(run_id, "0" * 8)[:-8],
                SortBy="CreationTime",
                SortOrder="Descending",
                MaxResults=FIND_JOB_CANDIDATES,
            )
        for summary in page.get("TrainingJobSummaries", []):
            status = JOB_STATUSES.get(str(summary.get("TrainingJobStatus", "")))
            if status in USABLE:
                job = self.retrieve_job(str(summary["TrainingJobName"]))
                if self.is_own_job(job, run_id):
                    return job
        return None

    def _check_configured(self, model: str) -> None:
        missing = [
            name
            for name, value in (
                ("OPEN_TRAINING_ROLE_ARN", self._config.open_training_role_arn),
                ("OPEN_IMPORT_ROLE_ARN", self._config.open_import_role_arn),
                ("OPEN_TRAINING_IMAGE_URI", self._config.open_training_image_uri),
            )
            if not value
        ]
        if missing:
            raise OpenSettingsError(f"{', '.join(missing)} not set: this deployment cannot train open-weights models.")
        card = OPEN_MODELS.get(model)
        if card and card.gated and not self._config.open_hugging_face_token_secret:
            raise OpenSettingsError(
                f"{model} is gated on Hugging Face and this deployment has no HuggingFaceTokenSecret: deploy with "
                "one (a token of an account that accepted the model's licence), or choose an ungated base model."
            )

    def training_request(self, run: Run, config: RunConfig, name: str) -> dict[str, Any]:
        """CreateTrainingJob's request for the run: the script and its hyperparameters, the run's files as
        channels, the model written uncompressed under the run's prefix, the metrics synced live."""
        assert run.files is not None and run.files.train is not None  # checked by start_job
        run_id, bucket = run.run_id, self._deployment
        given = config.fine_tune.hyperparameters.model_dump()
        chosen = {
            "epochs": given.get("n_epochs"),
            "learning_rate": given.get("lora_learning_rate"),
            **{name: given.get(name) for name in ("lora_r", "lora_alpha", "lora_dropout", "max_seq_length")},
        }
        defaults: dict[str, int | float] = {"epochs": OPEN_DEFAULT_EPOCHS, **OPEN_DEFAULTS}
        script = {name: value if value not in (None, "auto") else defaults[name] for name, value in chosen.items()} | {
            "model_id": config.fine_tune.model,
            "seed": config.seed,
        }
        if OPEN_MODELS[config.fine_tune.model].gated:
            script["hf_token_secret"] = str(self._config.open_hugging_face_token_secret)
        # The toolkit of AWS's Hugging Face images reads each value as JSON, as the SageMaker Python SDK writes them.
        hyperparameters = {name: json.dumps(value) for name, value in script.items()} | {
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(f"s3://{bucket}/{MODELS_PREFIX}{run_id}/code/sourcedir.tar.gz"),
            "sagemaker_region": json.dumps(self._sagemaker.meta.region_name),
        }
        channels = [("train", run.files.train.key)]
        if run.files.validation is not None:
            channels.append(("validation", run.files.validation.key))
        return {
            "TrainingJobName": name,
            "RoleArn": self._config.open_training_role_arn,
            "AlgorithmSpecification": {
                "TrainingImage": self._config.open_training_image_uri,
                "TrainingInputMode": "File",
                "MetricDefinitions": METRIC_DEFINITIONS,
            },
            "HyperParameters": hyperparameters,
            "InputDataConfig": [
                {
                    "ChannelName": channel,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": f"s3://{bucket}/{key}",
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                    "ContentType": "application/jsonlines",
                }
                for channel, key in channels
            ],
            "OutputDataConfig": {"S3OutputPath": self.models_uri(run_id), "CompressionType": "NONE"},
            "CheckpointConfig": {"S3Uri": f"{self.models_uri(run_id)}metrics/", "LocalPath": CHECKPOINT_DIR},
            "ResourceConfig": {
                "InstanceType": self._config.open_training_instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": self._config.open_training_volume_gb,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": self._config.open_training_max_runtime_seconds},
            # Nothing but the model and the metrics is written (the training role may write nothing else).
            "ProfilerConfig": {"DisableProfiler": True},
            "Tags": self.tags(run_id),
        }

    def start_job(self, run: Run, owner: str, record_start: RecordStart) -> JobSnapshot:
        """The run's training job: found (a create's answer may have been lost), else created under a name
        derived from the run and its training file, so a repeat finds the same job."""
        run_id = run.run_id
        if run.files is None or run.files.train is None or run.config is None:
            raise RuntimeError(f"Run {run_id} is {run.status} but records no training file or config.")
        config = RunConfig.model_validate(run.config)
        self._check_configured(config.fine_tune.model)
        existing = self.find_job_for_run(run_id)
        if existing:
            logger.info("Found the run's SageMaker job; not creating another", extra={"job_id": existing.job_id})
            return existing
        etag = object_etag(ObjectRef(self._deployment, run.files.train.key))
        token = hashlib.sha256("\n".join((self._deployment, run_id, owner, etag)).encode()).hexdigest()
        name = self.job_name(run_id, token)
        put_bytes(
            ObjectRef(self._deployment, f"{MODELS_PREFIX}{run_id}/code/sourcedir.tar.gz"),
            training_source(),
            "application/gzip",
        )
        try:
            with _classified_errors("SageMaker", "creating the training job"):
                self._sagemaker.create_training_job(**self.training_request(run, config, name))
        except OpenRefusedError as refused:
            if refused.code != "ResourceInUse":  # the same name: a repeat of this very start
                raise
        except OpenTransientError:
            found = self.find_job_for_run(run_id)
            if found is None:
                raise
            return found
        return self.retrieve_job(name)

    def retrieve_job(self, job_id: str, run_id: str | None = None) -> JobSnapshot:
        with _classified_errors("SageMaker", "describing the training job"):
            job = JobSnapshot.of(self._sagemaker.describe_training_job(TrainingJobName=job_id))
        if run_id is not None and not self.is_own_job(job, run_id):
            raise ForeignJobError(
                f"Job {job_id} does not write to run {run_id}'s models in this deployment; it is not tracked."
            )
        return job

    def events_since(self, job_id: str, last_event_id: str | None) -> list[JobEvent]:
        """The job's secondary status transitions (Starting, Downloading, Training, Uploading...) as events."""
        with _classified_errors("SageMaker", "describing the training job"):
            job = self._sagemaker.describe_training_job(TrainingJobName=job_id)
        events: list[JobEvent] = []
        for transition in job.get("SecondaryStatusTransitions") or []:
            started = _epoch(transition.get("StartTime")) or 0
            events.append(
                {
                    "id": f"{transition.get('Status', '')}-{started}",
                    "created_at": started,
                    "level": "error" if transition.get("Status") == "Failed" else "info",
                    "message": str(transition.get("StatusMessage") or transition.get("Status") or ""),
                }
            )
        ids = [event["id"] for event in events]
        return events[ids.index(last_event_id) + 1 :] if last_event_id in ids else events

    def latest_metrics(self, job_id: str) -> dict[str, int | float] | None:
        """The latest step, epoch, losses and total steps the script logged, as SageMaker parsed them."""
        with _classified_errors("SageMaker", "describing the training job"):
            job = self._sagemaker.describe_training_job(TrainingJobName=job_id)
        metrics: dict[str, int | float] = {}
        for metric in job.get("FinalMetricDataList") or []:
            name, value = metric.get("MetricName"), metric.get("Value")
            if isinstance(name, str) and isinstance(value, int | float):
                metrics[name] = int(value) if name in ("step", "total_steps") else float(value)
        return metrics or None

    def step_metrics(self, run: Run) -> list[StepMetric]:
        """Every logged step's losses from the metrics.csv the script keeps (synced live to the run's prefix)."""
        try:
            return parse_open_metrics(read_bytes(self.metrics_ref(run.run_id), METRICS_FILE_MAX_BYTES))
        except ObjectMissingError:
            return []

    def cancel_job(self, job_id: str) -> JobSnapshot:
        """Stop the training job, then read it back (`Stopping` is `running`); a job already stopping is read back."""
        try:
            with _classified_errors("SageMaker", "stopping the training job"):
                self._sagemaker.stop_training_job(TrainingJobName=job_id)
        except OpenRefusedError:
            job = self.retrieve_job(job_id)
            if job.metadata.get("sagemaker_status") != "Stopping":
                raise
            return job
        return self.retrieve_job(job_id)

    # Importing and serving ---------------------------------------------------------------
    def advance(self, run: Run, job: providers.JobSnapshot, *, serve: bool = True) -> Progress:
        """A completed training job left the merged weights under the run's prefix: the run is `importing` while
        Bedrock imports them (the import job created once, on the first poll that sees the job complete), then
        `succeeded` with the imported model's ARN as its model, or `failed` with Bedrock's reason. The weights'
        URI and a manifest of them are recorded first. `serve=False` (the API's cancel) creates nothing."""
        if job.status != RunStatus.SUCCEEDED:
            return Progress(job)
        importing = replace(job, status=RunStatus.IMPORTING)
        state = OpenState.model_validate(run.provider_state or {})
        reported = job.metadata.get("model_artifacts", "")
        if not serve or not reported:  # the API's cancel; or Completed before the folder is reported
            return Progress(importing)
        weights = reported.rstrip("/") + "/"  # a folder: SageMaker may report it without its slash
        if not self._owns_weights(run.run_id, weights):
            message = f"The training job reported its model at {reported}, outside run {run.run_id}'s prefix."
            return Progress(_import_failed(job, message))
        fields: dict[str, Any] = {}
        if state.weights_uri is None:
            self.write_manifest(run, weights)
            fields |= {"weights_uri": weights, "weights_manifest_key": self.manifest_ref(run.run_id).key}
        import_job = state.import_job_arn
        try:
            if import_job is None:
                import_job = self.create_import_job(run.run_id, weights)
                fields["import_job_arn"] = import_job
            with _classified_errors("Amazon Bedrock", "reading the model import job"):
                imported = self._bedrock.get_model_import_job(jobIdentifier=import_job)
        except OpenRefusedError as refused:  # e.g. the imported-model quota: the weights stay recorded
            message = f"The model trained (its weights: {weights}), but Bedrock refused to import it: {refused.message}"
            return Progress(_import_failed(job, message), _state(fields))
        except OpenTransientError:
            if "import_job_arn" not in fields:
                raise  # nothing new to keep: the state machine's Retry asks again
            return Progress(importing, _state(fields))  # the import job is recorded; the next poll reads it
        status = str(imported.get("status", ""))
        if status == "Completed" and imported.get("importedModelArn"):
            model = str(imported["importedModelArn"])
            return Progress(replace(job, fine_tuned_model=model), _state(fields | {"deployment_arn": model}))
        if status == "Failed":
            reason = str(imported.get("failureMessage") or "no reason was given.")
            message = f"The model trained (its weights: {weights}), but Bedrock could not import it: {reason}"
            return Progress(_import_failed(job, message), _state(fields))
        return Progress(importing, _state(fields))

    def create_import_job(self, run_id: str, weights: str) -> str:
        """A Custom Model Import job of the run's weights (idempotent per run and weights); its ARN."""
        token = hashlib.sha256("\n".join((self._deployment, run_id, weights)).encode()).hexdigest()
        with _classified_errors("Amazon Bedrock", "creating the model import job"):
            created = self._bedrock.create_model_import_job(
                jobName=_fit_name(run_id, token[:8]),
                importedModelName=_fit_name(run_id, token[:8]),
                roleArn=self._config.open_import_role_arn,
                modelDataSource={"s3DataSource": {"s3Uri": weights}},
                jobTags=self.tags(run_id, "key", "value"),
                importedModelTags=self.tags(run_id, "key", "value"),
                clientRequestToken=token,
            )
        return str(created["jobArn"])

    def write_manifest(self, run: Run, weights: str) -> None:
        """`models/<run_id>/manifest.json`: what the weights are and how to take them anywhere (GET /runs/{id}
        links it); small, so a presigned link to it is cheap to hand out."""
        prefix = weights.removeprefix(f"s3://{self._deployment}/")
        listing = self._list(prefix)
        config = run.config or {}
        manifest = {
            "run_id": run.run_id,
            "base_model": (config.get("fine_tune") or {}).get("model"),
            "weights_uri": weights,
            "files": listing,
            "format": "Hugging Face safetensors, merged (no adapter): config.json, tokenizer files, *.safetensors",
            "download": f"aws s3 cp --recursive {weights} ./{run.run_id}/",
            "serve_with_vllm": f"vllm serve ./{run.run_id}/",
        }
        put_bytes(self.manifest_ref(run.run_id), json.dumps(manifest, indent=2).encode(), "application/json")

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        s3 = aws.client("s3")
        files: list[dict[str, Any]] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self._deployment, Prefix=prefix):
            for item in page.get("Contents", []):
                files.append({"name": str(item["Key"])[len(prefix) :], "bytes": int(item["Size"])})
        return files

    def delete_deployment(self, deployment_arn: str) -> bool:
        """Delete the imported model (it stops answering; serving was billed only while it answered); the weights
        stay. False when Bedrock no longer knew it."""
        try:
            with _classified_errors("Amazon Bedrock", "deleting the imported model"):
                self._bedrock.delete_imported_model(modelIdentifier=deployment_arn)
        except OpenRefusedError as error:
            if _not_found(error):
                return False
            raise
        return True

    def answer(self, model: str, system: str | None, question: str, temperature: float, max_tokens: int) -> Answer:
        """InvokeModel on the imported model with an OpenAI-style chat body (what models imported since
        2025-11-11 take, whatever their architecture; Converse does not serve Qwen2.5 imports)."""
        messages = ([{"role": "system", "content": system}] if system is not None else []) + [
            {"role": "user", "content": question}
        ]
        body = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        try:
            with _classified_errors("Amazon Bedrock", "the InvokeModel call"):
                response = self._runtime.invoke_model(
                    modelId=model, body=json.dumps(body), contentType="application/json", accept="application/json"
                )
        except OpenRefusedError as refused:
            if _not_found(refused):
                raise OpenModelGoneError(refused.message, refused.status_code or 404, refused.code) from refused
            raise
        try:
            reply = json.loads(response["body"].read())
            choice = reply["choices"][0]
            text = choice["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            raise OpenEmptyAnswerError("Amazon Bedrock's InvokeModel answer held no chat completion.") from error
        if not isinstance(text, str) or not text:
            raise OpenEmptyAnswerError("Amazon Bedrock's InvokeModel answer held no text.")
        given = reply.get("usage") or {}
        usage = {name: int(given.get(name, 0)) for name in ("prompt_tokens", "completion_tokens", "total_tokens")}
        refusal = text if choice.get("finish_reason") == "content_filter" else None
        return Answer(text=None if refusal else text, refusal=refusal, model=model, usage=usage)


def gateway() -> OpenWeightsGateway:
    return OpenWeightsGateway(
        aws_client("sagemaker"),
        aws_client("bedrock"),
        aws_client("bedrock-runtime"),
        config=open_settings(),
        deployment=settings().data_bucket,
    )
