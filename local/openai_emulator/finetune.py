"""Fine-tuning jobs: request validation as the spec demands, and a lazily advanced lifecycle.

A job spends ``phase_seconds`` of *active* time in each of validating_files, queued and running, then
succeeds. Time is only counted while the job is active (not while paused), and the job is advanced on
every read, so no background thread is needed; ``phase_seconds=0`` finishes it on the first read.
Metrics are deterministic in the job's seed. At most ~100 steps per job are reported (events and CSV
rows), spread evenly, so large datasets stay cheap.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import random
from dataclasses import dataclass, field
from typing import Any

from local.fake_model import Example

from .dataset import TrainingFileError, parse_training_file
from .errors import ApiError, invalid, missing, not_found
from .state import Store

SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
}
BASE_MODELS = set(SNAPSHOTS) | set(SNAPSHOTS.values())
# OpenAI's own job statuses (the spec's FineTuningJob.status enum, and "paused"), not ragtune's run statuses:
# the emulator speaks OpenAI. tests/unit/test_run_record.py checks they map onto shared.domain.run_record's.
ACTIVE = ("validating_files", "queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
AUTO_LEARNING_RATE = 1.8
MAX_REPORTED_STEPS = 100
HYPERPARAMETER_LIMITS = {"n_epochs": (1, 50), "batch_size": (1, 256)}


def auto_n_epochs(n_examples: int) -> int:
    """OpenAI's "auto" rule as its cookbook states it: 3 epochs, else 100 // n (at most 25) for small sets
    and 25000 // n (at least 1) for large ones. Floor division, so 31 examples train 3 epochs (93 < 100)."""
    epochs = 3
    if n_examples * epochs < 100:
        epochs = min(25, 100 // n_examples)
    elif n_examples * epochs > 25_000:
        epochs = max(1, 25_000 // n_examples)
    return epochs


def auto_batch_size(n_examples: int) -> int:
    """Emulator heuristic (OpenAI does not publish its rule): ~0.2% of the dataset, within 1..256."""
    return max(1, min(256, math.ceil(n_examples * 0.002)))


@dataclass
class Job:
    id: str
    created_at: int
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int
    metadata: dict[str, str] | None
    integrations: list[Any] | None
    hyperparameters: dict[str, Any]
    last_tick: float
    status: str = "validating_files"
    active_seconds: float = 0.0
    error: dict[str, Any] | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    trained_tokens: int | None = None
    result_files: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    total_steps: int = 0
    steps_done: int = 0
    model_key: str = ""

    def to_json(self, estimated_finish: int | None) -> dict[str, Any]:
        return {
            "object": "fine_tuning.job",
            "id": self.id,
            "created_at": self.created_at,
            "model": self.model,
            "organization_id": "org-emulator",
            "status": self.status,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "fine_tuned_model": self.fine_tuned_model,
            "finished_at": self.finished_at,
            "estimated_finish": estimated_finish,
            "trained_tokens": self.trained_tokens,
            "result_files": list(self.result_files),
            "error": self.error,
            "hyperparameters": dict(self.hyperparameters),
            "method": {"type": "supervised", "supervised": {"hyperparameters": dict(self.hyperparameters)}},
            "seed": self.seed,
            "metadata": self.metadata,
            "integrations": self.integrations,
        }


class FineTuning:
    def __init__(self, store: Store, phase_seconds: float, min_examples: int) -> None:
        self.store = store
        self.phase_seconds = phase_seconds
        self.min_examples = min_examples
        self.access = True
        self.jobs: dict[str, Job] = {}
        self.tuned_models: dict[str, list[Example]] = {}

    # requests ----------------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.access:
            raise ApiError(
                403,
                "Fine-tuning job creation is not available for this organization.",
                code="fine_tuning_not_available",
            )
        for name in ("model", "training_file"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise missing(name)
        model = self._fine_tunable(body["model"])
        self._check_file(body["training_file"], "training_file")
        if body.get("validation_file") is not None:
            self._check_file(body["validation_file"], "validation_file")
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or not 1 <= len(suffix) <= 64):
            raise invalid(
                "Invalid 'suffix': expected a string of 1 to 64 characters.",
                "suffix",
                "string_above_max_length",
            )
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or not 0 <= seed <= 2_147_483_647):
            raise invalid("Invalid 'seed': expected an integer between 0 and 2147483647.", "seed", "invalid_value")
        now = self.store.clock()
        job = Job(
            id=self.store.new_id("ftjob-"),
            created_at=int(now),
            model=model,
            model_key=body["model"],
            training_file=body["training_file"],
            validation_file=body.get("validation_file"),
            suffix=suffix,
            seed=random.randint(0, 2_147_483_647) if seed is None else seed,
            metadata=_check_metadata(body.get("metadata")),
            integrations=body.get("integrations"),
            hyperparameters=_requested_hyperparameters(body),
            last_tick=now,
        )
        self.jobs[job.id] = job
        self._event(job, f"Created fine-tuning job: {job.id}")
        self._event(job, f"Validating training file: {job.training_file}")
        return self._json(job)

    def list_jobs(self, query: dict[str, str]) -> dict[str, Any]:
        jobs = list(reversed(self.jobs.values()))  # newest first
        if query.get("metadata") == "null":
            jobs = [j for j in jobs if not j.metadata]
        wanted = {k[9:-1]: v for k, v in query.items() if k.startswith("metadata[") and k.endswith("]")}
        jobs = [j for j in jobs if all((j.metadata or {}).get(k) == v for k, v in wanted.items())]
        for job in jobs:
            self._advance(job)
        return _page([self._json(j) for j in jobs], query)

    def retrieve(self, job_id: str) -> dict[str, Any]:
        return self._json(self._get(job_id))

    def events(self, job_id: str, query: dict[str, str]) -> dict[str, Any]:
        job = self._get(job_id)
        return _page(list(reversed(job.events)), query)

    def checkpoints(self, job_id: str, query: dict[str, str]) -> dict[str, Any]:
        job = self._get(job_id)
        page = _page(list(reversed(job.checkpoints)), query, default_limit=10)
        data = page["data"]
        return {
            **page,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self._get(job_id)
        if job.status in TERMINAL:
            raise invalid(f"Job {job_id} has already {job.status} and cannot be cancelled.", "fine_tuning_job_id")
        self._finish(job, "cancelled")
        self._event(job, "Fine-tuning job cancelled")
        return self._json(job)

    def pause(self, job_id: str) -> dict[str, Any]:
        job = self._get(job_id)
        if job.status != "running":
            raise invalid(f"Job {job_id} is {job.status}; only running jobs can be paused.", "fine_tuning_job_id")
        job.status = "paused"
        self._event(job, "Fine-tuning job paused")
        return self._json(job)

    def resume(self, job_id: str) -> dict[str, Any]:
        job = self._get(job_id)
        if job.status != "paused":
            raise invalid(f"Job {job_id} is {job.status}; only paused jobs can be resumed.", "fine_tuning_job_id")
        job.status = "running"
        job.last_tick = self.store.clock()
        self._event(job, "Fine-tuning job resumed")
        return self._json(job)

    # validation helpers ------------------------------------------------------------------------------

    def _fine_tunable(self, model: str) -> str:
        if model in SNAPSHOTS:
            return SNAPSHOTS[model]
        if model in BASE_MODELS or model in self.tuned_models:
            return model
        raise invalid(
            f"Model {model} is not available for fine-tuning or does not exist.",
            "model",
            "model_not_available",
        )

    def _check_file(self, file_id: str, param: str) -> None:
        stored = self.store.files.get(file_id)
        if stored is None:
            raise invalid(f"Invalid file ID: {file_id}. No such file exists.", param, "invalid_file_id")
        if stored.obj["purpose"] != "fine-tune":
            raise invalid(
                f"File {file_id} has purpose '{stored.obj['purpose']}', not 'fine-tune'.",
                param,
                "invalid_file_purpose",
            )

    def _get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise not_found(f"Fine-tuning job {job_id} not found.", "fine_tuning_job_id", "fine_tuning_job_not_found")
        self._advance(job)
        return job

    # lifecycle ---------------------------------------------------------------------------------------

    def _json(self, job: Job) -> dict[str, Any]:
        estimate = None
        if job.status in ACTIVE:
            estimate = int(self.store.clock() + max(0.0, 3 * self.phase_seconds - job.active_seconds))
        return job.to_json(estimate)

    def _event(self, job: Job, message: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        event: dict[str, Any] = {
            "object": "fine_tuning.job.event",
            "id": self.store.new_id("ftevent-"),
            "created_at": self.store.now(),
            "level": level,
            "message": message,
            "type": "metrics" if data else "message",
        }
        if data:
            event["data"] = data
        job.events.append(event)

    def _advance(self, job: Job) -> None:
        """Bring the job up to date with the time it has been active."""
        now = self.store.clock()
        if job.status in ACTIVE:
            job.active_seconds += now - job.last_tick
        job.last_tick = now
        phase = self.phase_seconds
        if job.status == "validating_files" and job.active_seconds >= phase:
            self._validate(job)
        if job.status == "queued" and job.active_seconds >= 2 * phase:
            job.status = "running"
            self._event(job, "Fine-tuning job started")
        if job.status == "running":
            elapsed = (job.active_seconds - 2 * phase) / phase if phase else 1.0
            self._train_until(job, min(job.total_steps, int(job.total_steps * elapsed)))
            if job.steps_done == job.total_steps:
                self._succeed(job)

    def _validate(self, job: Job) -> None:
        try:
            job.examples = parse_training_file(self._content(job.training_file), self.min_examples)
        except TrainingFileError as exc:
            return self._fail(job, "invalid_training_file", "training_file", str(exc))
        if job.validation_file:
            try:
                parse_training_file(self._content(job.validation_file))
            except TrainingFileError as exc:
                return self._fail(job, "invalid_validation_file", "validation_file", str(exc))
        n = len(job.examples)
        hp = job.hyperparameters
        if hp["n_epochs"] == "auto":
            hp["n_epochs"] = auto_n_epochs(n)
        if hp["batch_size"] == "auto":
            hp["batch_size"] = auto_batch_size(n)
        if hp["learning_rate_multiplier"] == "auto":
            hp["learning_rate_multiplier"] = AUTO_LEARNING_RATE
        job.total_steps = math.ceil(n / hp["batch_size"]) * hp["n_epochs"]
        job.status = "queued"
        self._event(job, "Files validated, moving job to queued state")
        return None

    def _content(self, file_id: str) -> bytes:
        if file_id not in self.store.files:
            raise TrainingFileError(f"File {file_id} was deleted before it could be validated.")
        return self.store.files[file_id].content

    def _fail(self, job: Job, code: str, param: str, detail: str) -> None:
        job.error = {
            "code": code,
            "message": f"The job failed due to an invalid {param}. {detail}",
            "param": param,
        }
        self._finish(job, "failed")
        self._event(job, job.error["message"], level="error")

    def _finish(self, job: Job, status: str) -> None:
        job.status = status
        job.finished_at = self.store.now()

    def _metrics(self, job: Job, step: int) -> dict[str, float]:
        rng = random.Random(f"{job.seed}:{step}")
        progress = step / job.total_steps
        train_loss = 0.15 + 1.85 * math.exp(-4 * progress) + rng.uniform(-0.04, 0.04)
        valid_loss = train_loss + 0.05 + rng.uniform(0, 0.05)
        return {
            "step": float(step),
            "train_loss": round(train_loss, 4),
            "train_mean_token_accuracy": round(min(0.99, 1 - train_loss / 2.5), 4),
            "valid_loss": round(valid_loss, 4),
            "valid_mean_token_accuracy": round(min(0.99, 1 - valid_loss / 2.5), 4),
            "full_valid_loss": round(valid_loss + 0.01, 4),
            "full_valid_mean_token_accuracy": round(min(0.99, 1 - (valid_loss + 0.01) / 2.5), 4),
        }

    def _model_name(self, job: Job) -> str:
        if job.fine_tuned_model is None:
            base = job.model.split(":")[1] if job.model.startswith("ft:") else job.model
            job.fine_tuned_model = f"ft:{base}:emulator:{job.suffix or ''}:{Store.new_id('', 8)}"
        return job.fine_tuned_model

    def _train_until(self, job: Job, target: int) -> None:
        stride = max(1, math.ceil(job.total_steps / MAX_REPORTED_STEPS))
        steps_per_epoch = job.total_steps // job.hyperparameters["n_epochs"]
        first_kept_epoch = job.hyperparameters["n_epochs"] - 2  # OpenAI keeps the last 3 epochs' checkpoints
        for step in range(job.steps_done + 1, target + 1):
            metrics = self._metrics(job, step)
            if step % stride == 0 or step == job.total_steps:
                self._event(
                    job,
                    f"Step {step}/{job.total_steps}: training loss={metrics['train_loss']:.4f}",
                    data={**metrics, "total_steps": job.total_steps},
                )
            if step % steps_per_epoch == 0 and step // steps_per_epoch >= first_kept_epoch:
                name = f"{self._model_name(job)}:ckpt-step-{step}"
                self.tuned_models[name] = job.examples
                job.checkpoints.append(
                    {
                        "object": "fine_tuning.job.checkpoint",
                        "id": self.store.new_id("ftckpt_"),
                        "created_at": self.store.now(),
                        "fine_tuned_model_checkpoint": name,
                        "fine_tuning_job_id": job.id,
                        "step_number": step,
                        "metrics": metrics,
                    }
                )
                self._event(job, f"Checkpoint created at step {step}")
        job.steps_done = target

    def _succeed(self, job: Job) -> None:
        model = self._model_name(job)
        self.tuned_models[model] = job.examples
        job.trained_tokens = sum(e.tokens for e in job.examples) * job.hyperparameters["n_epochs"]
        job.result_files = [self.store.add_file("step_metrics.csv", "fine-tune-results", self._results_csv(job))["id"]]
        self._finish(job, "succeeded")
        self._event(job, f"New fine-tuned model created: {model}")
        self._event(job, "The job has successfully completed")

    def _results_csv(self, job: Job) -> bytes:
        """step_metrics.csv as OpenAI publishes it: the CSV text base64-encoded (the cookbook decodes it)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"])
        for event in job.events:
            if event["type"] == "metrics":
                m = event["data"]
                writer.writerow(
                    [
                        int(m["step"]),
                        m["train_loss"],
                        m["train_mean_token_accuracy"],
                        m["valid_loss"],
                        m["valid_mean_token_accuracy"],
                    ]
                )
        return base64.b64encode(out.getvalue().encode())


def _check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise invalid("Invalid 'metadata': expected an object.", "metadata", "invalid_type")
    if len(metadata) > 16:
        raise invalid(
            f"Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
            f"but got an object with {len(metadata)} properties instead.",
            "metadata",
            "object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > 64:
            raise invalid(
                f"Invalid 'metadata': key '{key[:16]}...' is longer than 64 characters.",
                "metadata",
                "string_above_max_length",
            )
        if not isinstance(value, str) or len(value) > 512:
            raise invalid(
                f"Invalid 'metadata.{key}': expected a string of at most 512 characters.",
                f"metadata.{key}",
                "string_above_max_length",
            )
    return dict(metadata)


def _requested_hyperparameters(body: dict[str, Any]) -> dict[str, Any]:
    """Merge method.supervised.hyperparameters or the deprecated top-level hyperparameters, validated."""
    method = body.get("method")
    requested: Any = body.get("hyperparameters") or {}
    param = "hyperparameters"
    if method is not None:
        if not isinstance(method, dict) or method.get("type") != "supervised":
            raise invalid("The emulator supports only method.type 'supervised'.", "method.type", "invalid_value")
        from_method = (method.get("supervised") or {}).get("hyperparameters")
        if from_method and requested:
            raise invalid(
                "Specify hyperparameters in either 'method' or the deprecated 'hyperparameters', not both.",
                "hyperparameters",
            )
        if from_method:
            requested, param = from_method, "method.supervised.hyperparameters"
    if not isinstance(requested, dict):
        raise invalid(f"Invalid '{param}': expected an object.", param, "invalid_type")
    resolved: dict[str, Any] = {"batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"}
    for name, value in requested.items():
        if name not in resolved:
            raise invalid(f"Unknown parameter: '{param}.{name}'.", f"{param}.{name}", "unknown_parameter")
        low, high = HYPERPARAMETER_LIMITS.get(name, (0, math.inf))
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        valid = value == "auto" or (
            numeric
            and (isinstance(value, int) if name != "learning_rate_multiplier" else value > 0)
            and low <= value <= high
        )
        if not valid:
            raise invalid(f"Invalid value for '{param}.{name}': {value!r}.", f"{param}.{name}", "invalid_value")
        resolved[name] = value
    return resolved


def _page(items: list[dict[str, Any]], query: dict[str, str], default_limit: int = 20) -> dict[str, Any]:
    """Cursor pagination the way the API does it: ``after`` is the id of the last item already seen."""
    try:
        limit = int(query.get("limit", default_limit))
    except ValueError:
        raise invalid("Invalid 'limit': expected an integer.", "limit", "invalid_type") from None
    if not 1 <= limit <= 100:
        raise invalid("Invalid 'limit': expected a value between 1 and 100.", "limit", "invalid_value")
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}
