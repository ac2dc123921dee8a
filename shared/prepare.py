"""Use case: a config object in S3 becomes gated fine-tuning JSONL under `datasets/<run_id>/`.

The config's provider (the stack's default when it names none) decides the records' format
(OpenAI chat examples or Nova's `bedrock-conversation-2024`), the gate's rules and the
estimate; the run records the provider so later stages follow it.

Order matters: everything is written to local scratch and gated first, so a failure
leaves nothing under `datasets/`; the validation file is uploaded before the run is
marked `prepared`, and the training file last, so its arrival means the data is complete.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonlines

from shared.config import MAX_CONFIG_BYTES, RunConfig, parse_run_config
from shared.data_gate import (
    MIN_EXAMPLES,
    GateReport,
    enforce,
    estimate_bedrock_training,
    estimate_training,
    inspect_bedrock_jsonl,
    inspect_jsonl,
)
from shared.dataset_source import check_source_location, stream_batches
from shared.errors import UserInputError
from shared.examples import ExampleBuilder
from shared.idempotency import once
from shared.observability import logger, metrics
from shared.run_ids import derive_run_id
from shared.runs import RunsRepository
from shared.settings import settings
from shared.storage import (
    CONFIGS_PREFIX,
    DATASETS_PREFIX,
    BoundedRead,
    ObjectMissingError,
    ObjectRef,
    read_object,
    upload,
    whole_object,
)

JSONL_CONTENT_TYPE = "application/jsonl"
TRAIN_FILE, VALIDATION_FILE = "train.jsonl", "validation.jsonl"


def dataset_key(run_id: str, file_name: str) -> str:
    return f"{DATASETS_PREFIX}{run_id}/{file_name}"


def prepare_config_object(ref: ObjectRef) -> dict[str, Any]:
    """Entry point for one S3 record: at most one run per config key and content."""
    if not (ref.key.startswith(CONFIGS_PREFIX) and ref.key.endswith(".json")):
        logger.warning("Ignoring object outside configs/*.json", extra={"key": ref.key})
        return {"config_key": ref.key, "status": "ignored"}
    content_sha256 = hashlib.sha256()

    def hashed(chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            content_sha256.update(chunk)
            yield chunk

    try:
        config_object = read_object(ref, MAX_CONFIG_BYTES)
        # From the whole content, even when it is too large to use: truncation must not merge two runs.
        run_id = derive_run_id(ref.key, hashed(whole_object(ref, config_object)))
    except ObjectMissingError as error:
        logger.warning("Config object is gone; nothing to prepare", extra={"error": str(error)})
        return {"config_key": ref.key, "status": "skipped"}
    logger.append_keys(run_id=run_id)
    read = ObjectRef(ref.bucket, ref.key, config_object.version_id)
    sha256 = content_sha256.hexdigest()
    # Keyed on the version too: a duplicate event is suppressed, a re-upload may retry a failed run.
    return once(f"prepare:{run_id}:{read.version_id}", lambda: _prepare(run_id, read, config_object, sha256))


@dataclass
class _LocalFiles:
    train: Path
    validation: Path | None
    train_gate: GateReport
    validation_gate: GateReport | None


def _split_validation(all_path: Path, n: int, config: RunConfig, workdir: Path) -> tuple[Path, Path | None]:
    """Hold out a seeded random sample, keeping the original order within each file."""
    if config.validation_fraction == 0:
        return all_path, None
    held_out = set(random.Random(config.seed).sample(range(n), max(1, round(n * config.validation_fraction))))
    train, validation = workdir / TRAIN_FILE, workdir / VALIDATION_FILE
    with all_path.open("rb") as lines, train.open("wb") as t, validation.open("wb") as v:
        for index, line in enumerate(lines):
            (v if index in held_out else t).write(line)
    all_path.unlink()
    return train, validation


def _gate(path: Path, label: str, min_examples: int) -> GateReport:
    with path.open("rb") as lines:
        report = inspect_jsonl(lines)
    enforce(report, label, min_examples)
    return report


def _gate_bedrock(path: Path, label: str, training: bool) -> GateReport:
    """Nova's rules on the bytes; record and size limits are settings (the published numbers are unconfirmed)."""
    with path.open("rb") as lines:
        report = inspect_bedrock_jsonl(lines)
    config = settings()
    enforce(
        report,
        label,
        config.bedrock_min_records if training else 1,
        max_examples=config.bedrock_max_records if training else None,
        size=path.stat().st_size,
        max_bytes=config.bedrock_max_training_bytes if training else config.bedrock_max_validation_bytes,
    )
    return report


def _build_files(config: RunConfig, builder: ExampleBuilder, workdir: Path) -> _LocalFiles:
    all_path = workdir / "all.jsonl"
    with jsonlines.open(all_path, mode="w") as writer:
        for example in builder.examples(stream_batches(config.dataset, workdir, settings().data_bucket)):
            writer.write(example)
    train, validation = _split_validation(all_path, builder.counts.kept, config, workdir)
    if config.provider == "bedrock":
        train_gate = _gate_bedrock(train, "training file", training=True)
        validation_gate = _gate_bedrock(validation, "validation file", training=False) if validation else None
    else:
        train_gate = _gate(train, "training file", MIN_EXAMPLES)
        validation_gate = _gate(validation, "validation file", 1) if validation else None
    return _LocalFiles(train, validation, train_gate, validation_gate)


def _file_record(path: Path, key: str, gate: GateReport) -> dict[str, Any]:
    return {"key": key, "bytes": path.stat().st_size, "examples": gate.examples}


def _prepare(run_id: str, ref: ObjectRef, config_object: BoundedRead, sha256: str) -> dict[str, Any]:
    runs = RunsRepository(settings().runs_table)
    source = {
        "config_key": ref.key,
        "config_version": ref.version_id or "",
        "config_sha256": sha256,
    }
    if not runs.claim_for_preparation(run_id, source):
        existing = runs.get(run_id)
        status = existing.status if existing else None
        logger.info("Run already exists; nothing to do", extra={"status": status})
        return {"run_id": run_id, "status": status, "replayed": True}

    started = time.monotonic()
    workdir = settings().scratch_dir / run_id
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    builder: ExampleBuilder | None = None
    config: RunConfig | None = None
    try:
        config = parse_run_config(
            config_object.body, size=config_object.size, default_provider=settings().default_provider
        )
        check_source_location(config.dataset, settings().data_bucket)  # before anything is read
        builder = ExampleBuilder(config)
        files = _build_files(config, builder, workdir)
        outcome = _publish(run_id, config, builder, files)
    except UserInputError as error:
        counts = builder.counts.as_record() if builder else {}
        logger.warning("Run failed on its input", extra={"code": error.code, "reason": error.message})
        details: dict[str, Any] = {"counts": counts} | ({"provider": config.provider} if config else {})
        runs.record_failure(run_id, error.code, error.message, **details)
        metrics.add_metric(name="RunsFailed", unit="Count", value=1)
        return {"run_id": run_id, "status": "failed", "error": error.message}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    metrics.add_metric(name="RowsRead", unit="Count", value=builder.counts.read)
    metrics.add_metric(name="RowsKept", unit="Count", value=builder.counts.kept)
    metrics.add_metric(name="TrainingTokens", unit="Count", value=files.train_gate.total_tokens)
    metrics.add_metric(name="PrepareSeconds", unit="Seconds", value=time.monotonic() - started)
    logger.info("Run prepared", extra={"counts": outcome["counts"]})
    return {"run_id": run_id, "status": "prepared", "train_key": outcome["files"]["train"]["key"]}


def _estimate(config: RunConfig, train: GateReport) -> dict[str, Any]:
    n_epochs = config.fine_tune.hyperparameters.n_epochs
    if config.provider == "bedrock":
        return estimate_bedrock_training(train, n_epochs, settings().bedrock_training_price_per_1k_tokens).as_record()
    return estimate_training(train, n_epochs, settings().training_price_per_million_tokens).as_record()


def _publish(run_id: str, config: RunConfig, builder: ExampleBuilder, files: _LocalFiles) -> dict[str, Any]:
    """Upload validation, record the run as prepared, then upload training (the trigger)."""
    bucket = settings().data_bucket
    metadata = {"run-id": run_id}
    record: dict[str, Any] = {
        "provider": config.provider,
        "config": config.model_dump(mode="json"),
        "counts": {
            **builder.counts.as_record(),
            "train_examples": files.train_gate.examples,
            "validation_examples": files.validation_gate.examples if files.validation_gate else 0,
        },
        "files": {"train": _file_record(files.train, dataset_key(run_id, TRAIN_FILE), files.train_gate)},
        "gate": {"train": files.train_gate.as_record()},
        "estimate": _estimate(config, files.train_gate),
    }
    if files.validation and files.validation_gate:
        key = dataset_key(run_id, VALIDATION_FILE)
        upload(files.validation, ObjectRef(bucket, key), metadata, JSONL_CONTENT_TYPE)
        record["files"]["validation"] = _file_record(files.validation, key, files.validation_gate)
        record["gate"]["validation"] = files.validation_gate.as_record()
    if not RunsRepository(settings().runs_table).record_prepared(run_id, record):
        logger.info("Run was prepared by another delivery meanwhile; not uploading the training file again")
        return record
    upload(files.train, ObjectRef(bucket, record["files"]["train"]["key"]), metadata, JSONL_CONTENT_TYPE)
    return record
