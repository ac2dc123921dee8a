"""Model customization jobs, the custom models they make, and on-demand deployments of those models.

Lifecycles advance lazily on every request (and whenever a test reads ``emulator.jobs`` or
``emulator.deployments``), so no thread runs in the background:

* a job is ``InProgress`` for ``phase_seconds``, then ``Completed`` (custom model made, metrics CSVs
  written under the output prefix) or ``Failed`` (bad training data, or ``fail_jobs``); a stopped job
  is ``Stopping`` for ``phase_seconds``, then ``Stopped``;
* a deployment is ``Creating`` for ``phase_seconds``, then ``Active`` (or ``Failed``).

The training data is read from S3 when the job is created (Bedrock reads it with the job's role;
the emulator with whatever S3 client it was given) and checked when the job would complete.
"""

from __future__ import annotations

import csv
import io
import math
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import BedrockError, not_found, validation
from .training import Example, TrainingDataError, parse_conversations

REGION, ACCOUNT = "us-east-1", "123456789012"
# Nova models that can be fine-tuned and served on demand (bedrock-facts.md), with their hyperparameters.
NOVA_BASE_MODELS = (
    "amazon.nova-micro-v1:0:128k",
    "amazon.nova-lite-v1:0:300k",
    "amazon.nova-2-lite-v1:0:256k",
    "amazon.nova-pro-v1:0:300k",
)
HYPERPARAMETERS: dict[str, tuple[type, float, float, str]] = {
    "epochCount": (int, 1, 5, "2"),
    "learningRate": (float, 1e-6, 1e-4, "0.00001"),
    "learningRateWarmupSteps": (int, 0, 100, "10"),
}
MAX_REPORTED_STEPS = 100
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*")
MODEL_NAME = re.compile(r"([0-9a-zA-Z][_-]?){1,63}")
ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
TOKEN = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?")
S3_URI = re.compile(r"s3://([^/]+)/?(.*)")


def new_id() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=12))


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def split_s3_uri(uri: Any, member: str) -> tuple[str, str]:
    match = S3_URI.fullmatch(uri) if isinstance(uri, str) else None
    if match is None:
        raise validation(f"{member} must be an S3 URI like s3://bucket/key, not {uri!r}.")
    return match[1], match[2]


S3Factory = Callable[[], Any]


@dataclass
class Job:
    arn: str
    id: str
    name: str
    custom_model_name: str
    role_arn: str
    base_model: str
    client_request_token: str | None
    hyperparameters: dict[str, str]
    training_s3_uri: str
    validation_s3_uris: list[str]
    output_s3_uri: str
    tags: dict[str, str]
    custom_model_tags: dict[str, str]
    created: float
    last_tick: float
    customization_type: str = "FINE_TUNING"
    status: str = "InProgress"
    active_seconds: float = 0.0
    failure_message: str | None = None
    end_time: float | None = None
    last_modified: float | None = None
    output_model_arn: str | None = None
    training_loss: float | None = None
    validation_losses: list[float] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    data_error: str | None = None  # known at creation, reported when the job would finish
    validation_data: list[bytes] = field(default_factory=list)
    training_data: bytes = b""

    def summary(self) -> dict[str, Any]:
        summary = {
            "jobArn": self.arn,
            "baseModelArn": foundation_model_arn(self.base_model),
            "jobName": self.name,
            "status": self.status,
            "lastModifiedTime": iso(self.last_modified),
            "creationTime": iso(self.created),
            "endTime": iso(self.end_time),
            "customModelArn": self.output_model_arn,
            "customModelName": self.custom_model_name if self.output_model_arn else None,
            "customizationType": self.customization_type,
        }
        return {key: value for key, value in summary.items() if value is not None}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "outputModelName": self.custom_model_name,
            "outputModelArn": self.output_model_arn,
            "clientRequestToken": self.client_request_token,
            "roleArn": self.role_arn,
            "status": self.status,
            "failureMessage": self.failure_message,
            "creationTime": iso(self.created),
            "lastModifiedTime": iso(self.last_modified),
            "endTime": iso(self.end_time),
            "baseModelArn": foundation_model_arn(self.base_model),
            "hyperParameters": dict(self.hyperparameters),
            "trainingDataConfig": {"s3Uri": self.training_s3_uri},
            "validationDataConfig": {"validators": [{"s3Uri": uri} for uri in self.validation_s3_uris]},
            "outputDataConfig": {"s3Uri": self.output_s3_uri},
            "customizationType": self.customization_type,
        }
        if self.training_loss is not None:
            body["trainingMetrics"] = {"trainingLoss": self.training_loss}
            body["validationMetrics"] = [{"validationLoss": loss} for loss in self.validation_losses]
        return {key: value for key, value in body.items() if value is not None}


@dataclass
class CustomModel:
    arn: str
    name: str
    job_arn: str
    base_model: str
    examples: list[Example]
    tags: dict[str, str]


@dataclass
class Deployment:
    arn: str
    name: str
    model_arn: str
    description: str | None
    client_request_token: str | None
    tags: dict[str, str]
    created: float
    last_tick: float
    doomed: str | None  # the failure message it will end with, if any
    status: str = "Creating"
    active_seconds: float = 0.0
    failure_message: str | None = None
    last_updated: float | None = None

    def to_json(self) -> dict[str, Any]:
        body = {
            "customModelDeploymentArn": self.arn,
            "modelDeploymentName": self.name,
            "modelArn": self.model_arn,
            "createdAt": iso(self.created),
            "status": self.status,
            "description": self.description,
            "failureMessage": self.failure_message,
            "lastUpdatedAt": iso(self.last_updated),
        }
        return {key: value for key, value in body.items() if value is not None}


def foundation_model_arn(model_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}::foundation-model/{model_id}"


def _tags(value: Any, member: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, list) or not all(
        isinstance(t, dict) and isinstance(t.get("key"), str) and isinstance(t.get("value"), str) for t in value
    ):
        raise validation(f"{member} must be a list of {{key, value}} strings.")
    return {t["key"]: t["value"] for t in value}


def _required(body: dict[str, Any], *names: str) -> None:
    for name in names:
        if body.get(name) in (None, "", {}):
            raise validation(f"1 validation error detected: Value null at '{name}' failed to satisfy constraint: "
                             "Member must not be null")  # fmt: skip


def _matches(pattern: re.Pattern[str], value: Any, member: str, max_length: int = 63) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None or len(value) > max_length:
        raise validation(f"1 validation error detected: Value {value!r} at '{member}' failed to satisfy constraint: "
                         f"Member must satisfy regular expression pattern: {pattern.pattern}")  # fmt: skip
    return value


class Customizations:
    """Jobs, custom models and deployments; every method runs under the server's lock."""

    def __init__(
        self,
        s3: S3Factory,
        clock: Callable[[], float],
        phase_seconds: float,
        min_records: int,
        max_records: int,
    ) -> None:
        self.s3, self.clock, self.phase_seconds = s3, clock, phase_seconds
        self.min_records, self.max_records = min_records, max_records
        self.jobs: dict[str, Job] = {}
        self.custom_models: dict[str, CustomModel] = {}
        self.deployments: dict[str, Deployment] = {}
        self.job_failure: str | None = None
        self.deployment_failure: str | None = None

    # jobs --------------------------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("clientRequestToken")
        if token is not None:
            _matches(TOKEN, token, "clientRequestToken", 256)
            same = next((j for j in self.jobs.values() if j.client_request_token == token), None)
            if same is not None:
                return {"jobArn": same.arn}
        _required(body, "jobName", "customModelName", "roleArn", "baseModelIdentifier")
        _required(body, "trainingDataConfig", "outputDataConfig")
        name = _matches(JOB_NAME, body["jobName"], "jobName")
        model_name = _matches(MODEL_NAME, body["customModelName"], "customModelName")
        role_arn = _matches(ROLE_ARN, body["roleArn"], "roleArn", 2048)
        base = str(body["baseModelIdentifier"]).removeprefix(foundation_model_arn(""))
        if base not in NOVA_BASE_MODELS:
            raise validation(
                f"The base model {body['baseModelIdentifier']} does not support fine-tuning in the emulator "
                f"(supported: {', '.join(NOVA_BASE_MODELS)})."
            )
        if body.get("customizationType", "FINE_TUNING") != "FINE_TUNING":
            raise validation(f"customizationType {body['customizationType']} is not supported by the emulator.")
        if any(j.name == name for j in self.jobs.values()):
            raise BedrockError("ConflictException", f"A model customization job named {name} already exists.")
        if any(m.name == model_name for m in self.custom_models.values()) or any(
            j.custom_model_name == model_name and j.status in ("InProgress", "Stopping") for j in self.jobs.values()
        ):
            raise BedrockError("ConflictException", f"A custom model named {model_name} already exists.")
        hyperparameters = self._hyperparameters(body.get("hyperParameters"))
        training_uri = body["trainingDataConfig"].get("s3Uri")
        output_uri = body["outputDataConfig"].get("s3Uri")
        split_s3_uri(training_uri, "trainingDataConfig.s3Uri")
        split_s3_uri(output_uri, "outputDataConfig.s3Uri")
        validators = (body.get("validationDataConfig") or {}).get("validators") or []
        if not isinstance(validators, list) or len(validators) > 10:
            raise validation("validationDataConfig.validators must be a list of at most 10 validators.")
        validation_uris = [v.get("s3Uri") if isinstance(v, dict) else None for v in validators]
        for uri in validation_uris:
            split_s3_uri(uri, "validationDataConfig.validators.s3Uri")
        job_id, now = new_id(), self.clock()
        job = Job(
            arn=f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-customization-job/{base}/{job_id}",
            id=job_id,
            name=name,
            custom_model_name=model_name,
            role_arn=role_arn,
            base_model=base,
            client_request_token=token,
            hyperparameters=hyperparameters,
            training_s3_uri=training_uri,
            validation_s3_uris=[str(uri) for uri in validation_uris],
            output_s3_uri=output_uri,
            tags=_tags(body.get("jobTags"), "jobTags"),
            custom_model_tags=_tags(body.get("customModelTags"), "customModelTags"),
            created=now,
            last_tick=now,
            last_modified=now,
        )
        self._load_data(job)
        if self.job_failure is not None:
            job.data_error = job.data_error or self.job_failure
        self.jobs[job.arn] = job
        return {"jobArn": job.arn}

    def _hyperparameters(self, given: Any) -> dict[str, str]:
        given = given or {}
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            raise validation("hyperParameters must map names to string values.")
        unknown = sorted(set(given) - set(HYPERPARAMETERS))
        if unknown:
            raise validation(f"Unsupported hyperparameters for Nova fine-tuning: {', '.join(unknown)}.")
        values = {name: given.get(name, default) for name, (_, _, _, default) in HYPERPARAMETERS.items()}
        for name, (kind, low, high, _) in HYPERPARAMETERS.items():
            try:
                number = kind(values[name])
            except ValueError:
                raise validation(f"Hyperparameter {name} must be a {kind.__name__}, not {values[name]!r}.") from None
            if not low <= number <= high:
                raise validation(f"Hyperparameter {name} must be between {low:g} and {high:g}, not {values[name]}.")
        return values

    def _read(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri, "s3Uri")
        if not key or key.endswith("/"):  # a prefix: the first .jsonl object under it
            listed = self.s3().list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
            keys = sorted(o["Key"] for o in listed if o["Key"].endswith(".jsonl"))
            if not keys:
                raise TrainingDataError(f"No .jsonl file found under {uri}.")
            key = keys[0]
        data: bytes = self.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    def _load_data(self, job: Job) -> None:
        try:
            job.training_data = self._read(job.training_s3_uri)
            job.examples = parse_conversations(job.training_data, self.min_records, self.max_records)
            job.validation_data = [self._read(uri) for uri in job.validation_s3_uris]
            for data in job.validation_data:
                parse_conversations(data, 1, self.max_records, what="validation")
        except TrainingDataError as error:
            job.data_error = str(error)
        except Exception as error:  # S3 refusals (missing bucket or key) fail the job
            job.data_error = f"Unable to read the data from S3: {error}"

    def job(self, identifier: str) -> Job:
        self.advance()
        found = self.jobs.get(identifier) or next((j for j in self.jobs.values() if j.name == identifier), None)
        if found is None:
            raise not_found(f"Model customization job {identifier} not found.")
        return found

    def list_jobs(self, query: dict[str, str]) -> dict[str, Any]:
        self.advance()
        jobs = list(self.jobs.values())
        if "statusEquals" in query:
            jobs = [j for j in jobs if j.status == query["statusEquals"]]
        if "nameContains" in query:
            jobs = [j for j in jobs if query["nameContains"] in j.name]
        for bound, keep in (("creationTimeAfter", float.__gt__), ("creationTimeBefore", float.__lt__)):
            if bound in query:
                try:
                    moment = datetime.fromisoformat(query[bound]).timestamp()
                except ValueError:
                    raise validation(f"{bound} must be an ISO 8601 timestamp.") from None
                jobs = [j for j in jobs if keep(j.created, moment)]
        if query.get("sortOrder", "Descending") not in ("Ascending", "Descending"):
            raise validation("sortOrder must be Ascending or Descending.")
        jobs.sort(key=lambda j: j.created, reverse=query.get("sortOrder", "Descending") == "Descending")
        try:
            start, size = int(query.get("nextToken", "0")), int(query.get("maxResults", "100"))
        except ValueError:
            raise validation("maxResults and nextToken must be integers here.") from None
        if not 1 <= size <= 1000:
            raise validation("maxResults must be between 1 and 1000.")
        page: dict[str, Any] = {"modelCustomizationJobSummaries": [j.summary() for j in jobs[start : start + size]]}
        if start + size < len(jobs):
            page["nextToken"] = str(start + size)
        return page

    def stop_job(self, identifier: str) -> dict[str, Any]:
        job = self.job(identifier)
        if job.status != "InProgress":
            raise BedrockError("ConflictException", f"Job {job.name} is {job.status} and cannot be stopped.")
        job.status, job.active_seconds, job.last_modified = "Stopping", 0.0, self.clock()
        return {}

    # deployments -------------------------------------------------------------------------------------

    def create_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("clientRequestToken")
        if token is not None:
            _matches(TOKEN, token, "clientRequestToken", 256)
            same = next((d for d in self.deployments.values() if d.client_request_token == token), None)
            if same is not None:
                return {"customModelDeploymentArn": same.arn}
        _required(body, "modelDeploymentName", "modelArn")
        name = _matches(MODEL_NAME, body["modelDeploymentName"], "modelDeploymentName")
        self.advance()
        model = self.custom_models.get(body["modelArn"])
        if model is None:
            raise not_found(f"Custom model {body['modelArn']} not found.")
        now = self.clock()
        deployment = Deployment(
            arn=f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model-deployment/{new_id()}",
            name=name,
            model_arn=model.arn,
            description=body.get("description"),
            client_request_token=token,
            tags=_tags(body.get("tags"), "tags"),
            created=now,
            last_tick=now,
            doomed=self.deployment_failure,
            last_updated=now,
        )
        self.deployments[deployment.arn] = deployment
        return {"customModelDeploymentArn": deployment.arn}

    def deployment(self, identifier: str) -> Deployment:
        self.advance()
        found = self.deployments.get(identifier) or next(
            (d for d in self.deployments.values() if d.name == identifier), None
        )
        if found is None:
            raise not_found(f"Custom model deployment {identifier} not found.")
        return found

    def delete_deployment(self, identifier: str) -> dict[str, Any]:
        del self.deployments[self.deployment(identifier).arn]
        return {}

    # lifecycle ---------------------------------------------------------------------------------------

    def advance(self) -> None:
        now = self.clock()
        for job in self.jobs.values():
            if job.status in ("InProgress", "Stopping"):
                job.active_seconds += now - job.last_tick
                job.last_tick = now
                if job.active_seconds >= self.phase_seconds:
                    self._finish(job, now)
        for deployment in self.deployments.values():
            if deployment.status == "Creating":
                deployment.active_seconds += now - deployment.last_tick
                deployment.last_tick = now
                if deployment.active_seconds >= self.phase_seconds:
                    deployment.status = "Active" if deployment.doomed is None else "Failed"
                    deployment.failure_message, deployment.last_updated = deployment.doomed, now

    def _finish(self, job: Job, now: float) -> None:
        job.end_time = job.last_modified = now
        if job.status == "Stopping":
            job.status = "Stopped"
        elif job.data_error is not None:
            job.status, job.failure_message = "Failed", job.data_error
        else:
            try:
                self._complete(job)
            except Exception as error:  # an unwritable output prefix fails the job, as the role's refusal would
                job.status, job.failure_message = "Failed", f"Unable to write the output to S3: {error}"
                job.training_loss, job.validation_losses = None, []

    def _complete(self, job: Job) -> None:
        rng = random.Random(job.id)
        epochs = int(job.hyperparameters["epochCount"])
        steps_per_epoch = max(1, len(job.examples))
        total = epochs * steps_per_epoch
        reported = sorted(
            {
                round(i * (total - 1) / max(1, min(total, MAX_REPORTED_STEPS) - 1))
                for i in range(min(total, MAX_REPORTED_STEPS))
            }
        )

        def loss(step: float) -> float:
            return round(0.4 + 2.0 * math.exp(-4 * step / total) + rng.uniform(-0.05, 0.05), 4)

        prefix = f"model-customization-job-{job.id}"
        rows = [(step, step // steps_per_epoch, loss(step)) for step in reported]
        self._write(job, f"{prefix}/training_artifacts/step_wise_training_metrics.csv", "training_loss", rows)
        job.training_loss = rows[-1][2]
        if job.validation_s3_uris:
            rows = [(e * steps_per_epoch, e, loss((e + 1) * steps_per_epoch) + 0.05) for e in range(epochs)]
            path = f"{prefix}/validation_artifacts/post_fine_tuning_validation/validation_metrics.csv"
            self._write(job, path, "validation_loss", rows)
            job.validation_losses = [rows[-1][2]] * len(job.validation_s3_uris)
        arn = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/{job.base_model}/{new_id()}"
        self.custom_models[arn] = CustomModel(
            arn, job.custom_model_name, job.arn, job.base_model, job.examples, job.custom_model_tags
        )
        job.output_model_arn, job.status = arn, "Completed"

    def _write(self, job: Job, relative: str, loss_column: str, rows: list[tuple[int, int, float]]) -> None:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["step_number", "epoch_number", loss_column, "perplexity"])
        writer.writerows((step, epoch, value, round(math.exp(value), 4)) for step, epoch, value in rows)
        bucket, prefix = split_s3_uri(job.output_s3_uri, "outputDataConfig.s3Uri")
        key = f"{prefix.rstrip('/')}/{relative}" if prefix.strip("/") else relative
        self.s3().put_object(Bucket=bucket, Key=key, Body=text.getvalue().encode(), ContentType="text/csv")
