"""SageMaker training jobs: what CreateTrainingJob checks, how a job's lifecycle advances, what it writes.

Lifecycles advance lazily on every request (and whenever a test reads ``emulator.jobs``), so no thread
runs in the background. A job is ``InProgress`` for ``phase_seconds`` of time, a quarter in each
SecondaryStatus: ``Starting``, ``Downloading`` (TrainingStartTime: the instances are up), ``Training`` and
``Uploading``; then ``Completed``. While ``Training`` the metrics CSV grows row by row; at the end the
model folder is written. A stopped job is ``Stopping`` for a quarter of ``phase_seconds``, then
``Stopped``. A job whose data the training script cannot use fails as the script would, when training
starts: ``Failed``, with a FailureReason starting ``AlgorithmError: ``.

The training script's contract (shared/providers/open/training/train.py):

* input: the ``train`` channel (and optionally ``validation``), S3Prefix channels of chat JSONL, one
  ``{"messages": [{"role", "content"}, ...]}`` object a line, roles ``system``/``user``/``assistant``,
  content strings, at least one user and one assistant turn, the last turn the assistant's. Every
  ``.jsonl`` object under the prefix is read (in key order); objects are read when the job is created.
* output: the merged model folder (see `model_folder`) at ``<S3OutputPath>/<TrainingJobName>/output/model/``
  when ``OutputDataConfig.CompressionType`` is ``NONE``, else ``.../output/model.tar.gz`` holding the same
  files (SageMaker's default, GZIP); ``ModelArtifacts.S3ModelArtifacts`` names that folder or tarball.
* metrics: ``<CheckpointConfig.S3Uri>/metrics.csv``, header ``step,epoch,train_loss,valid_loss``, a row per
  logged step (every ``logging_steps`` and the last), epoch to 4 decimals, losses to 6, ``valid_loss`` on
  every row when there is a validation channel, else empty; ``FinalMetricDataList`` holds the latest value
  of each ``MetricDefinitions`` name among ``step``, ``epoch``, ``train_loss``, ``valid_loss`` and
  ``total_steps`` (which the script prints when training starts).
* hyperparameters, each a JSON value as the SageMaker SDK writes them (``"3"``, ``"\"Qwen/...\""``):
  ``model_id`` is required; ``epochs`` (3), ``batch_size`` (4), ``gradient_accumulation_steps`` (1) and
  ``logging_steps`` (10) are integers of at least 1; steps per epoch = ceil(ceil(examples / batch_size) /
  gradient_accumulation_steps). A missing or bad one fails the job as the script's argument parser does
  (ExitCode 2). Others are kept and ignored.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local.fake_model import Example, estimate_tokens

from . import model_folder
from .errors import NOT_FOUND, SageMakerError, validation
from .validation import timestamp

REGION, ACCOUNT = "us-east-1", "123456789012"
PHASES = ("Starting", "Downloading", "Training", "Uploading")
STATUS_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
}
TRAIN_CHANNEL, VALIDATION_CHANNEL = "train", "validation"
METRIC_NAMES = ("step", "epoch", "train_loss", "valid_loss", "total_steps")
METRICS_HEADER = ["step", "epoch", "train_loss", "valid_loss"]
SCRIPT_INTEGERS = {"epochs": 3, "batch_size": 4, "gradient_accumulation_steps": 1, "logging_steps": 10}
DEFAULT_STOPPING_CONDITION = {"MaxRuntimeInSeconds": 86400}
ROLES = {"system", "user", "assistant"}
S3_URI = re.compile(r"s3://([^/]+)/?(.*)")

S3Factory = Callable[[], Any]


class TrainingDataError(ValueError):
    """The training script cannot use the data; the message ends up in the FailureReason."""


class ScriptArgumentError(ValueError):
    """The script's argument parser refuses a hyperparameter (it exits with code 2)."""


def algorithm_error(message: str, exit_code: int = 1) -> str:
    """A FailureReason as SageMaker reports a training script that exited with an error."""
    return f'AlgorithmError: ExecuteUserScriptError:\nExitCode {exit_code}\nErrorMessage "{message}"'


def script_arguments(hyperparameters: dict[str, str]) -> dict[str, int]:
    """The script's integer arguments, decoded as the training toolkit decodes hyperparameters (JSON values)."""
    if "model_id" not in hyperparameters:
        raise ScriptArgumentError("the following arguments are required: --model_id")
    values = {}
    for name, default in SCRIPT_INTEGERS.items():
        raw = hyperparameters.get(name)
        if raw is None:
            values[name] = default
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ScriptArgumentError(f"argument --{name}: invalid int value: '{raw}'")
        if value < 1:
            raise ScriptArgumentError(f"--{name} must be at least 1")
        values[name] = value
    return values


def _parse_line(line: str, where: str) -> Example:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        raise TrainingDataError(f"{where}: not valid JSON") from None
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise TrainingDataError(f"{where}: expected an object with a non-empty 'messages' list")
    user = assistant = ""
    tokens = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise TrainingDataError(f"{where}: message {index} needs a role of system, user or assistant")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise TrainingDataError(f"{where}: message {index} needs a non-empty string 'content'")
        tokens += estimate_tokens(content)
        if message["role"] == "user":
            user = content
        elif message["role"] == "assistant":
            assistant = content
    if not user or messages[-1]["role"] != "assistant":
        raise TrainingDataError(f"{where}: a conversation needs a user turn and must end with an assistant turn")
    return Example(user=user, assistant=assistant, tokens=tokens)


def parse_chat_jsonl(files: list[tuple[str, bytes]]) -> list[Example]:
    """Every line of every file, raising TrainingDataError naming the file and line of the first problem."""
    examples = []
    for name, content in files:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            raise TrainingDataError(f"{name} is not UTF-8 encoded") from None
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                examples.append(_parse_line(line, f"line {number} of {name}"))
    if not examples:
        raise TrainingDataError("the training data holds no examples")
    return examples


def split_s3_uri(uri: str) -> tuple[str, str]:
    match = S3_URI.fullmatch(uri)
    if match is None:
        raise validation(f"The emulator reads and writes s3:// URIs only, not {uri!r}.")
    return match[1], match[2]


def join_s3(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


@dataclass
class Channel:
    name: str
    uri: str
    objects: list[str] = field(default_factory=list)  # the .jsonl objects read, as s3:// URIs
    data: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Transition:
    status: str
    start: float
    end: float | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Status": self.status,
            "StartTime": self.start,
            "StatusMessage": STATUS_MESSAGES[self.status],
        }
        if self.end is not None:
            body["EndTime"] = self.end
        return body


@dataclass
class MetricRow:
    step: int
    epoch: float
    train_loss: float
    valid_loss: float | None
    at: float  # its share of the Training phase, 0..1: when it is logged


@dataclass
class TrainingJob:
    name: str
    arn: str
    request: dict[str, Any]  # as received, echoed by Describe
    channels: dict[str, Channel]
    created: float
    last_tick: float
    tags: dict[str, str]
    doomed: str | None = None  # a FailureReason known at creation (bad data, fail_jobs), given when training starts
    status: str = "InProgress"
    secondary: str = "Starting"
    transitions: list[Transition] = field(default_factory=list)
    active_seconds: float = 0.0  # in the current primary status (InProgress, or Stopping)
    failure_reason: str | None = None
    training_start: float | None = None
    training_end: float | None = None
    last_modified: float = 0.0
    examples: list[Example] = field(default_factory=list)
    rows: list[MetricRow] = field(default_factory=list)  # every row the job will log
    rows_written: int = 0
    total_steps: int = 0
    training_started_at: float | None = None  # when the Training phase began, for row timestamps
    training_phase_seconds: float = 0.0

    @property
    def hyperparameters(self) -> dict[str, str]:
        return dict(self.request.get("HyperParameters") or {})

    @property
    def output_uri(self) -> str:
        return join_s3(self.request["OutputDataConfig"]["S3OutputPath"], self.name, "output")

    @property
    def compressed(self) -> bool:
        return bool(self.request["OutputDataConfig"].get("CompressionType", "GZIP") != "NONE")

    @property
    def model_artifacts(self) -> str:
        # Uncompressed: the folder, reported without a closing slash (the SageMaker SDK adds one "if necessary").
        return join_s3(self.output_uri, "model.tar.gz" if self.compressed else "model")

    @property
    def metrics_uri(self) -> str | None:
        checkpoint = self.request.get("CheckpointConfig")
        return join_s3(checkpoint["S3Uri"], "metrics.csv") if checkpoint else None

    def logged_rows(self) -> list[MetricRow]:
        return self.rows[: self.rows_written]

    def final_metrics(self) -> list[dict[str, Any]]:
        """The latest value of each metric the job's definitions name, as SageMaker parses them from the log."""
        if self.training_started_at is None or not self.rows:
            return []
        values: dict[str, tuple[float, float]] = {"total_steps": (self.total_steps, self.training_started_at)}
        rows = self.logged_rows()
        if rows:
            latest = rows[-1]
            at = self.row_time(latest)
            values |= {"step": (latest.step, at), "epoch": (latest.epoch, at), "train_loss": (latest.train_loss, at)}
            if latest.valid_loss is not None:
                values["valid_loss"] = (latest.valid_loss, at)
        definitions = (self.request.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
        return [
            {"MetricName": d["Name"], "Value": float(values[d["Name"]][0]), "Timestamp": values[d["Name"]][1]}
            for d in definitions
            if d["Name"] in values
        ]

    def row_time(self, row: MetricRow) -> float:
        return (self.training_started_at or self.created) + row.at * self.training_phase_seconds

    def to_json(self) -> dict[str, Any]:
        request = self.request
        channels = [
            {"CompressionType": "None", "RecordWrapperType": "None", **channel}
            for channel in request.get("InputDataConfig") or []
        ]
        seconds = self.seconds()
        body: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "ModelArtifacts": {"S3ModelArtifacts": self.model_artifacts},
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary,
            "FailureReason": self.failure_reason,
            "HyperParameters": request.get("HyperParameters"),
            "AlgorithmSpecification": request.get("AlgorithmSpecification"),
            "RoleArn": request["RoleArn"],
            "InputDataConfig": channels or None,
            "OutputDataConfig": {"CompressionType": "GZIP", **request["OutputDataConfig"]},
            "ResourceConfig": request.get("ResourceConfig"),
            "VpcConfig": request.get("VpcConfig"),
            "StoppingCondition": request.get("StoppingCondition") or DEFAULT_STOPPING_CONDITION,
            "CreationTime": self.created,
            "TrainingStartTime": self.training_start,
            "TrainingEndTime": self.training_end,
            "LastModifiedTime": self.last_modified,
            "SecondaryStatusTransitions": [t.to_json() for t in self.transitions],
            "FinalMetricDataList": self.final_metrics() or None,
            "EnableNetworkIsolation": request.get("EnableNetworkIsolation", False),
            "EnableInterContainerTrafficEncryption": request.get("EnableInterContainerTrafficEncryption", False),
            "EnableManagedSpotTraining": request.get("EnableManagedSpotTraining", False),
            "CheckpointConfig": request.get("CheckpointConfig"),
            "TrainingTimeInSeconds": seconds,
            "BillableTimeInSeconds": seconds,
            "Environment": request.get("Environment"),
            "RetryStrategy": request.get("RetryStrategy"),
        }
        return {key: value for key, value in body.items() if value is not None}

    def seconds(self) -> int | None:
        """Training (and billable: no spot) time, whole seconds, once a job that reached its instances has ended
        (the model's minimum is 1)."""
        if self.training_end is None or self.training_start is None:
            return None
        return max(1, math.ceil(self.training_end - self.training_start))

    def summary(self) -> dict[str, Any]:
        body = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "CreationTime": self.created,
            "TrainingEndTime": self.training_end,
            "LastModifiedTime": self.last_modified,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary,
        }
        return {key: value for key, value in body.items() if value is not None}


class Training:
    """Training jobs by name; every method runs under the server's lock."""

    def __init__(self, s3: S3Factory, clock: Callable[[], float], phase_seconds: float) -> None:
        self.s3, self.clock, self.phase_seconds = s3, clock, phase_seconds
        self.jobs: dict[str, TrainingJob] = {}
        self.job_failure: str | None = None

    # operations --------------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["TrainingJobName"]
        self.advance()
        existing = next((j for j in self.jobs.values() if j.name.lower() == name.lower()), None)
        if existing is not None:
            raise SageMakerError(
                "ResourceInUse",
                "Training job names must be unique within an AWS account and region, and a training job with "
                f"this name already exists ({existing.arn})",
            )
        specification = body.get("AlgorithmSpecification")
        if not specification or not (specification.get("TrainingImage") or specification.get("AlgorithmName")):
            raise validation("AlgorithmSpecification must name a TrainingImage or an AlgorithmName.")
        resources = body.get("ResourceConfig") or {}
        if not resources.get("InstanceType") or not resources.get("InstanceCount"):
            raise validation("ResourceConfig must name an InstanceType and an InstanceCount of at least 1.")
        split_s3_uri(body["OutputDataConfig"]["S3OutputPath"])
        if body.get("CheckpointConfig"):
            split_s3_uri(body["CheckpointConfig"]["S3Uri"])
        channels = self._channels(body.get("InputDataConfig") or [])
        now = self.clock()
        job = TrainingJob(
            name=name,
            arn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name.lower()}",
            request=body,
            channels=channels,
            created=now,
            last_tick=now,
            last_modified=now,
            tags={t["Key"]: t["Value"] for t in body.get("Tags") or []},
            transitions=[Transition("Starting", now)],
        )
        self._prepare(job)
        self.jobs[name] = job
        return {"TrainingJobArn": job.arn}

    def _channels(self, given: list[dict[str, Any]]) -> dict[str, Channel]:
        channels: dict[str, Channel] = {}
        for item in given:
            name = item["ChannelName"]
            if name in channels:
                raise validation(f"Channel names must be unique; {name} is given twice.")
            source = item["DataSource"].get("S3DataSource")
            if source is None:
                raise validation(f"Channel {name}: the emulator reads S3 data sources only.")
            if source["S3DataType"] != "S3Prefix":
                raise validation(f"Channel {name}: the emulator reads S3DataType S3Prefix only.")
            channel = Channel(name, source["S3Uri"])
            bucket, prefix = split_s3_uri(channel.uri)
            try:
                listed = self.s3().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            except Exception:  # a missing bucket reads as no objects, as SageMaker reports it
                listed = []
            if not listed:
                raise validation(
                    f'No S3 objects found under S3 URL "{channel.uri}" given in input data source. Please ensure '
                    f"that the bucket exists in the selected region ({REGION}), that objects exist under that S3 "
                    'prefix, and that the role has "s3:ListBucket" permissions on bucket '
                    f'"{bucket}".'
                )
            for key in sorted(o["Key"] for o in listed if o["Key"].endswith(".jsonl")):
                channel.objects.append(f"s3://{bucket}/{key}")
                channel.data.append(
                    (key.rsplit("/", 1)[-1], self.s3().get_object(Bucket=bucket, Key=key)["Body"].read())
                )
            channels[name] = channel
        return channels

    def _prepare(self, job: TrainingJob) -> None:
        """What the script will do with the data, decided now, reported when training starts."""
        train = job.channels.get(TRAIN_CHANNEL)
        try:
            arguments = script_arguments(job.hyperparameters)
            if train is None or not train.data:
                raise TrainingDataError(f"no *.jsonl file in /opt/ml/input/data/{TRAIN_CHANNEL}")
            job.examples = parse_chat_jsonl(train.data)
            validation_channel = job.channels.get(VALIDATION_CHANNEL)
            if validation_channel is not None:
                parse_chat_jsonl(validation_channel.data)
        except ScriptArgumentError as error:
            job.doomed = algorithm_error(f"train.py: error: {error}", exit_code=2)
            return
        except TrainingDataError as error:
            job.doomed = algorithm_error(f"ValueError: {error}")
            return
        if self.job_failure is not None:
            job.doomed = self.job_failure
            return
        batches = math.ceil(len(job.examples) / arguments["batch_size"])
        steps_per_epoch = math.ceil(batches / arguments["gradient_accumulation_steps"])
        job.total_steps = arguments["epochs"] * steps_per_epoch
        job.rows = _metric_rows(
            job.name, job.total_steps, steps_per_epoch, arguments["logging_steps"], VALIDATION_CHANNEL in job.channels
        )

    def describe(self, name: str) -> dict[str, Any]:
        return self.job(name).to_json()

    def job(self, name: str) -> TrainingJob:
        self.advance()
        found = self.jobs.get(name)
        if found is None:
            raise validation(NOT_FOUND)
        return found

    def stop(self, name: str) -> dict[str, Any]:
        job = self.job(name)
        if job.status != "InProgress":
            raise validation(f"The request was rejected because the training job is in status {job.status}.")
        now = self.clock()
        job.status, job.active_seconds = "Stopping", 0.0
        self._transition(job, "Stopping", now)
        return {}

    def list(self, body: dict[str, Any]) -> dict[str, Any]:
        self.advance()
        jobs = list(self.jobs.values())
        if body.get("NameContains"):
            jobs = [j for j in jobs if body["NameContains"].lower() in j.name.lower()]
        if body.get("StatusEquals"):
            jobs = [j for j in jobs if j.status == body["StatusEquals"]]
        for member, attribute, after in (
            ("CreationTimeAfter", "created", True),
            ("CreationTimeBefore", "created", False),
            ("LastModifiedTimeAfter", "last_modified", True),
            ("LastModifiedTimeBefore", "last_modified", False),
        ):
            moment = timestamp(body.get(member))
            if moment is not None:
                jobs = [j for j in jobs if (getattr(j, attribute) > moment) == after]
        sort_by = body.get("SortBy", "CreationTime")
        keys: dict[str, Callable[[TrainingJob], Any]] = {
            "Name": lambda j: j.name,
            "CreationTime": lambda j: j.created,
            "Status": lambda j: j.status,
        }
        jobs.sort(key=keys[sort_by], reverse=body.get("SortOrder", "Ascending") == "Descending")
        try:
            start = int(body.get("NextToken") or 0)
        except ValueError:
            raise validation("Invalid pagination token.") from None
        size = body.get("MaxResults", 10)
        page: dict[str, Any] = {"TrainingJobSummaries": [j.summary() for j in jobs[start : start + size]]}
        if start + size < len(jobs):
            page["NextToken"] = str(start + size)
        return page

    # lifecycle ---------------------------------------------------------------------------------------

    def advance(self) -> None:
        now = self.clock()
        for job in self.jobs.values():
            if job.status not in ("InProgress", "Stopping"):
                continue
            job.active_seconds += now - job.last_tick
            job.last_tick = now
            if job.status == "Stopping":
                if job.active_seconds >= self.phase_seconds / len(PHASES):
                    self._end(job, "Stopped", now)
                continue
            self._progress(job, now)

    def _progress(self, job: TrainingJob, now: float) -> None:
        quarter = self.phase_seconds / len(PHASES)
        quarters = len(PHASES) if quarter <= 0 else int(job.active_seconds // quarter)  # whole phases behind it
        for phase in PHASES[PHASES.index(job.secondary) + 1 : min(quarters, len(PHASES) - 1) + 1]:
            if phase == "Downloading":
                job.training_start = now  # the instances are up: billing starts
            if phase == "Training":
                job.training_started_at, job.training_phase_seconds = now, quarter
                if job.doomed is not None:  # the script reads its data and exits with an error
                    job.failure_reason = job.doomed
                    self._end(job, "Failed", now)
                    return
            self._transition(job, phase, now)
        if job.secondary == "Training":
            share = 1.0 if quarter <= 0 else (job.active_seconds - 2 * quarter) / quarter
            self._log_metrics(job, min(1.0, max(0.0, share)), now)
        elif job.secondary == "Uploading":
            self._log_metrics(job, 1.0, now)
        if quarters >= len(PHASES):
            try:
                self._upload(job)
            except Exception as error:  # an unwritable output path fails the job, as the upload would
                job.failure_reason = (
                    f"ClientError: Failed to upload the model artifacts to {job.model_artifacts}: {error}"
                )
                self._end(job, "Failed", now)
                return
            self._end(job, "Completed", now)

    def _transition(self, job: TrainingJob, status: str, now: float) -> None:
        if job.transitions and job.transitions[-1].end is None:
            job.transitions[-1].end = now
        job.transitions.append(Transition(status, now))
        job.secondary, job.last_modified = status, now

    def _end(self, job: TrainingJob, status: str, now: float) -> None:
        self._transition(job, status, now)
        job.transitions[-1].end = now
        job.status, job.training_end = status, now

    def _log_metrics(self, job: TrainingJob, share: float, now: float) -> None:
        visible = sum(1 for row in job.rows if row.at <= share + 1e-9)
        if visible == job.rows_written:
            return
        job.rows_written = visible
        job.last_modified = now
        uri = job.metrics_uri
        if uri is None:
            return
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(METRICS_HEADER)
        for row in job.logged_rows():
            valid = "" if row.valid_loss is None else f"{row.valid_loss:.6f}"
            writer.writerow([row.step, f"{row.epoch:.4f}", f"{row.train_loss:.6f}", valid])
        bucket, key = split_s3_uri(uri)
        with contextlib.suppress(Exception):  # a checkpoint path the role cannot write loses the curve, not the job
            self.s3().put_object(Bucket=bucket, Key=key, Body=text.getvalue().encode(), ContentType="text/csv")

    def _upload(self, job: TrainingJob) -> None:
        train = job.channels[TRAIN_CHANNEL]
        contents = model_folder.files(job.arn, job.examples, job.name, train.objects)
        bucket, key = split_s3_uri(job.model_artifacts)
        if job.compressed:
            self.s3().put_object(Bucket=bucket, Key=key, Body=model_folder.tarball(contents))
            return
        for name, data in contents.items():
            self.s3().put_object(Bucket=bucket, Key=f"{key}/{name}", Body=data)


def _metric_rows(seed: str, total: int, steps_per_epoch: int, every: int, validated: bool) -> list[MetricRow]:
    """The rows the script logs: every ``every`` steps and the last, with a validation loss each when validated."""
    rng = random.Random(seed)

    def loss(step: int) -> float:
        return round(0.4 + 2.0 * math.exp(-4 * step / total) + rng.uniform(-0.03, 0.03), 6)

    rows = []
    for step in (s for s in range(1, total + 1) if s % every == 0 or s == total):
        train = loss(step)
        valid = round(train + 0.08 + rng.uniform(0, 0.02), 6) if validated else None
        rows.append(MetricRow(step, round(step / steps_per_epoch, 4), train, valid, step / total))
    return rows
