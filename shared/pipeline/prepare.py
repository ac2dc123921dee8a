"""Use case: a config object in S3 becomes gated fine-tuning JSONL under `datasets/<run_id>/`.

The config's provider (the stack's default when it names none) decides the records' format
(OpenAI chat examples or Nova's `bedrock-conversation-2024`), the gate's rules and the
estimate; the run records the provider so later stages follow it.

Each example is gated as it is written, in one pass: its format checked and its tokens
counted from the very object encoded on its line (which is what parsing the line back would
give), its line's digest kept for the duplicate count. The seeded split, which needs the
number of kept rows, then sends each line, with what the gate found in it, to its file.

Order matters: everything is written to local scratch and gated first, so a failure
leaves nothing under `datasets/`; the validation file (and, when the run is evaluated, the
held-out questions file) is uploaded before the run is marked `prepared`, and the training
file last, so its arrival means the data is complete.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from array import array
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from shared.aws.idempotency import once
from shared.aws.runs import RunsRepository
from shared.aws.storage import (
    CONFIGS_PREFIX,
    DATASETS_PREFIX,
    BoundedRead,
    ObjectMissingError,
    ObjectRef,
    read_object,
    upload,
    whole_object,
)
from shared.domain.config import RunConfig, parse_run_config
from shared.domain.config_fields import MAX_CONFIG_BYTES
from shared.domain.data_gate import (
    GateReport,
    built_example_errors,
    enforce,
    line_digest,
    tally_file,
)
from shared.domain.dataset_source import (
    SourceObject,
    check_source_location,
    import_arrow_in_background,
    pin_source,
    stream_batches,
)
from shared.domain.errors import ConfigError, UserInputError
from shared.domain.evaluation import normalise, question_digest
from shared.domain.examples import BuiltBatch, ExampleBuilder
from shared.domain.run_ids import derive_run_id
from shared.domain.tokens import TokenCounter
from shared.observability import logger, metrics
from shared.pipeline.adoption import check_adoptable, recorded_questions, start_adopted_evaluation
from shared.providers import spec
from shared.settings import settings

JSONL_CONTENT_TYPE = "application/jsonl"
TRAIN_FILE, VALIDATION_FILE, QUESTIONS_FILE = "train.jsonl", "validation.jsonl", "questions.jsonl"
_WRITE_BUFFER_BYTES = 2**20
# Exactly what jsonlines writes (the notebook's writer): JSON with ", " and ": ", non-ASCII kept as is.
# No circular-reference check: the examples are trees this module builds (a third faster).
_to_json = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode


def _jsonl_line(value: Any) -> bytes:
    return (_to_json(value) + "\n").encode()


def dataset_key(run_id: str, file_name: str) -> str:
    return f"{DATASETS_PREFIX}{run_id}/{file_name}"


def prepare_config_object(ref: ObjectRef) -> dict[str, Any]:
    """Entry point for one S3 record: at most one run per config key and content."""
    if not (ref.key.startswith(CONFIGS_PREFIX) and ref.key.endswith(".json")):
        logger.warning("Ignoring object outside configs/*.json", extra={"key": ref.key})
        return {"config_key": ref.key, "status": "ignored"}
    # The token worker starts now, and loads its encoding on the other core while the config is read.
    import_arrow_in_background()
    with TokenCounter() as counter:
        return _prepare_once(ref, counter)


def _prepare_once(ref: ObjectRef, counter: TokenCounter) -> dict[str, Any]:
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
    return once(f"prepare:{run_id}:{read.version_id}", lambda: _prepare(run_id, read, config_object, sha256, counter))


@dataclass
class _Questions:
    """The held-out questions file: `written` lines; held-out rows passed over: `skipped` for a reference with
    no words, `trained` for a question the training file holds too (a repeated row) or already written."""

    path: Path
    written: int = 0
    skipped: int = 0
    trained: int = 0
    # `evaluation.questions_from`: the kept rows held out because they ask one of that run's questions.
    matched_rows: int | None = None

    def counts(self) -> dict[str, int]:
        counts = {
            "evaluation_questions": self.written,
            "evaluation_questions_skipped": self.skipped,
            "evaluation_questions_trained": self.trained,
        }
        return counts | ({} if self.matched_rows is None else {"questions_from_rows_held_out": self.matched_rows})


@dataclass
class _LocalFiles:
    train: Path
    validation: Path | None
    train_gate: GateReport
    validation_gate: GateReport | None
    questions: _Questions | None
    source: SourceObject | None = None  # the data bucket object read (None: a Hub dataset)


@dataclass
class _GatedLines:
    """What the gate found in each line of all.jsonl, by line: kept until the split picks each line's file.

    Tokens are counted on the token worker as the lines are written, and read back once all are.
    """

    one_error_per_record: bool  # the provider's rule for blank texts (TrainingRecords)
    lines: int = 0
    digests: bytearray = field(default_factory=bytearray)  # 16 bytes a line
    blank_texts: dict[int, int] = field(default_factory=dict)  # only the lines that have some
    tokens: Any = None  # numpy int64, one per line, once counted

    def add(self, built: BuiltBatch) -> None:
        for position, blanks in built.blank_texts.items():
            self.blank_texts[self.lines + position] = blanks
        self.digests += b"".join(map(line_digest, built.lines()))
        self.lines += len(built.ends)

    def add_token_counts(self, counts: array[int], builder: ExampleBuilder) -> None:
        """Each line's tokens the cookbook's way: the counts of the texts sent, in order (roles and constant
        texts first, then each line's varying texts), plus 3 per message and 3 for the reply."""
        import numpy as np  # as in the gate

        shared = len(builder.roles) + len(builder.constant_texts)
        counted = np.frombuffer(counts, dtype=np.int64)
        constant = 3 + 3 * len(builder.roles) + int(counted[:shared].sum())
        varying = counted[shared:].reshape(self.lines, builder.varying).sum(axis=1, dtype=np.int64)
        self.tokens = varying + constant

    def errors(self, index: int) -> list[str]:
        return built_example_errors(self.blank_texts.get(index, 0), self.one_error_per_record)

    def report(self, indices: Any, token_limit: int | None) -> GateReport:
        """The gate's report on the lines at `indices` (sorted numpy array), in that order."""
        import numpy as np

        with_errors = np.fromiter(sorted(self.blank_texts), dtype=np.int64, count=len(self.blank_texts))
        bad = np.isin(indices, with_errors)
        errors = ((int(number) + 1, self.errors(int(indices[number]))) for number in np.flatnonzero(bad))
        good = indices[~bad]
        digests = np.frombuffer(self.digests, dtype=np.uint8).reshape(-1, 16)[good].tobytes()
        return tally_file(len(indices), errors, digests, self.tokens[good], token_limit)


def _split_validation(
    all_path: Path,
    questions_path: Path | None,
    gated: _GatedLines,
    config: RunConfig,
    workdir: Path,
    recorded: list[dict[str, Any]] | None,
) -> _LocalFiles:
    """Hold out a seeded random sample, and every row asking one of the `recorded` questions (another
    run's, `evaluation.questions_from`), keeping the original order within each file.

    `questions_path` holds one line of question fields per line of `all_path`; the questions file is
    the `recorded` questions exactly, else the held-out rows': the first `max_questions` with a
    reference, in validation order.
    """
    import numpy as np  # as in the gate

    n = gated.lines
    token_limit = spec(config.provider).records().token_limit(config.fine_tune)
    fraction = config.validation_fraction
    held_out = set(random.Random(config.seed).sample(range(n), max(1, round(n * fraction)))) if fraction else set()
    questions = None
    if recorded is not None and questions_path:
        matched = _rows_asking(questions_path, recorded)
        held_out |= matched
        questions = _write_recorded_questions(recorded, workdir)
        questions.matched_rows = len(matched)
    elif questions_path:
        questions = _write_questions(questions_path, held_out, config.evaluation.max_questions, workdir)
    if questions_path:
        questions_path.unlink()
    local = _LocalFiles(all_path, None, gated.report(np.arange(n), token_limit), None, questions)
    if not held_out:
        return local
    is_held_out = np.zeros(n, dtype=bool)
    is_held_out[list(held_out)] = True
    train, validation = workdir / TRAIN_FILE, workdir / VALIDATION_FILE
    with (
        all_path.open("rb") as lines,
        train.open("wb", buffering=_WRITE_BUFFER_BYTES) as t,
        validation.open("wb", buffering=_WRITE_BUFFER_BYTES) as v,
    ):
        for line, held in zip(lines, is_held_out.tolist(), strict=True):
            (v if held else t).write(line)
    all_path.unlink()
    train_report = gated.report(np.flatnonzero(~is_held_out), token_limit)
    validation_report = gated.report(np.flatnonzero(is_held_out), token_limit)
    return _LocalFiles(train, validation, train_report, validation_report, questions)


def _rows_asking(fields_path: Path, recorded: list[dict[str, Any]]) -> set[int]:
    """The kept rows whose question, as the user turn asks it, is one of the `recorded` questions."""
    wanted = {question_digest(str(question["question"])) for question in recorded}
    with fields_path.open("rb") as lines:
        return {index for index, line in enumerate(lines) if question_digest(json.loads(line)["question"]) in wanted}


def _write_recorded_questions(recorded: list[dict[str, Any]], workdir: Path) -> _Questions:
    """Another run's questions, line for line: this run is asked exactly what that run was asked."""
    questions = _Questions(workdir / QUESTIONS_FILE)
    with questions.path.open("wb") as writer:
        writer.write(b"".join(_jsonl_line(question) for question in recorded))
    questions.written = len(recorded)
    return questions


def _write_questions(fields_path: Path, held_out: set[int], max_questions: int, workdir: Path) -> _Questions:
    """`index` is the question's line number in validation.jsonl, where the same user text is.

    A held-out question is only asked if it was never trained: a source that repeats a row can put one
    copy in each file, and the tuned model would then be asked what it learned."""
    questions = _Questions(workdir / QUESTIONS_FILE)
    with fields_path.open("rb") as lines:
        asked = {
            _text_digest(json.loads(line)["question"]) for index, line in enumerate(lines) if index not in held_out
        }
    with fields_path.open("rb") as lines, questions.path.open("wb") as writer:
        validation_index = -1
        for index, line in enumerate(lines):
            if questions.written == max_questions:
                break
            if index not in held_out:
                continue
            validation_index += 1
            fields = json.loads(line)
            if not normalise(fields["reference"]):
                questions.skipped += 1
                continue
            digest = _text_digest(fields["question"])
            if digest in asked:
                questions.trained += 1
                continue
            asked.add(digest)
            writer.write(_jsonl_line({"index": validation_index, **fields}))
            questions.written += 1
    return questions


def _text_digest(text: str) -> bytes:
    """The gate's line digest of a question's text: equal texts, equal digests."""
    return line_digest(text.encode("utf-8", "surrogatepass"))


def _enforce_gate(files: _LocalFiles, config: RunConfig) -> None:
    """The provider's limits on the training and validation files. An adopted run uploads no training data,
    so no gate applies to it."""
    if config.adopt is not None:
        return
    records = spec(config.provider).records()
    limits, token_limit = records.limits(), records.token_limit(config.fine_tune)
    enforce(
        files.train_gate,
        "training file",
        limits.min_examples,
        max_examples=limits.max_examples,
        size=files.train.stat().st_size,
        max_bytes=limits.max_training_bytes,
        token_limit=token_limit,
    )
    if files.validation and files.validation_gate:
        enforce(
            files.validation_gate,
            "validation file",
            1,
            size=files.validation.stat().st_size,
            max_bytes=limits.max_validation_bytes,
            token_limit=token_limit,
        )


def _build_files(
    config: RunConfig,
    builder: ExampleBuilder,
    workdir: Path,
    counter: TokenCounter,
    recorded: list[dict[str, Any]] | None,
) -> _LocalFiles:
    all_path = workdir / "all.jsonl"
    # Beside all.jsonl, line for line: each kept row's question fields, for the held-out ones to be picked later.
    questions_path = workdir / "all-questions.jsonl" if config.evaluation.enabled else None
    gated = _GatedLines(one_error_per_record=spec(config.provider).records().one_missing_content_per_record)
    source = pin_source(config.dataset, settings().data_bucket)
    counter.submit([*builder.roles, *builder.constant_texts])
    with ExitStack() as open_files:
        writer = open_files.enter_context(all_path.open("wb", buffering=_WRITE_BUFFER_BYTES))
        question_writer = (
            open_files.enter_context(questions_path.open("wb", buffering=_WRITE_BUFFER_BYTES))
            if questions_path
            else None
        )
        for built in builder.batches(stream_batches(config.dataset, workdir, settings().data_bucket, source)):
            counter.submit(built.texts)
            writer.write(built.jsonl)
            gated.add(built)
            if question_writer and built.questions:
                question_writer.write(b"".join(_jsonl_line(fields.as_record()) for fields in built.questions))
    gated.add_token_counts(counter.counts(), builder)
    files = _split_validation(all_path, questions_path, gated, config, workdir, recorded)
    files.source = source
    _enforce_gate(files, config)
    return files


def _check_base_model(config: RunConfig, runs: RunsRepository) -> None:
    """An OpenAI config may continue training a tuned model (`ft:...`) only if this deployment trained it:
    the organisation's other tuned models are not this deployment's to train on or to ask."""
    model = config.fine_tune.model
    prefix = spec(config.provider).tuned_model_prefix
    if prefix and model.startswith(prefix) and runs.succeeded_run_with_model(model) is None:
        raise ConfigError(
            f"fine_tune.model {model!r} is a tuned model this deployment did not train: name a base model, or the "
            "fine_tuned_model of one of this deployment's succeeded runs"
        )


def _file_record(path: Path, key: str, gate: GateReport) -> dict[str, Any]:
    return {"key": key, "bytes": path.stat().st_size, "examples": gate.examples}


def _prepare(
    run_id: str, ref: ObjectRef, config_object: BoundedRead, sha256: str, counter: TokenCounter
) -> dict[str, Any]:
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
        spec(config.provider).check_settings()  # the deployment's own settings for the provider, before any work
        check_source_location(config.dataset, settings().data_bucket)  # before anything is read
        shutdown = check_adoptable(config) if config.adopt else None  # the only OpenAI call prepare makes
        _check_base_model(config, runs)
        recorded = recorded_questions(config, runs)
        builder = ExampleBuilder(config)
        files = _build_files(config, builder, workdir, counter, recorded)
        if config.adopt:
            outcome = _publish_adopted(run_id, config, builder, files, shutdown)
        else:
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
    metrics.add_metric(name="PrepareSeconds", unit="Seconds", value=time.monotonic() - started)
    if config.adopt:
        logger.info("Run adopted its model", extra={"counts": outcome["counts"], "model": config.adopt.model})
        return {"run_id": run_id, "status": "succeeded", "fine_tuned_model": config.adopt.model}
    metrics.add_metric(name="TrainingTokens", unit="Count", value=files.train_gate.total_tokens)
    logger.info("Run prepared", extra={"counts": outcome["counts"]})
    return {"run_id": run_id, "status": "prepared", "train_key": outcome["files"]["train"]["key"]}


def _estimate(config: RunConfig, train: GateReport) -> dict[str, Any]:
    n_epochs = config.fine_tune.hyperparameters.n_epochs
    return spec(config.provider).records().estimate(train, n_epochs, config.fine_tune.model)


def _source_record(files: _LocalFiles) -> dict[str, Any]:
    """`dataset_object`: which version of which data file the run was prepared from (a same-named upload later
    is another file)."""
    return {"dataset_object": files.source.as_record()} if files.source else {}


def _upload_questions(run_id: str, questions: _Questions) -> dict[str, Any]:
    key = dataset_key(run_id, QUESTIONS_FILE)
    upload(questions.path, ObjectRef(settings().data_bucket, key), {"run-id": run_id}, JSONL_CONTENT_TYPE)
    return {"key": key, "bytes": questions.path.stat().st_size, "examples": questions.written}


def _publish_adopted(
    run_id: str, config: RunConfig, builder: ExampleBuilder, files: _LocalFiles, shutdown: date | None
) -> dict[str, Any]:
    """Upload the questions only (nothing is trained), record the run succeeded with the adopted model, and
    start the evaluation that records its answers."""
    assert config.adopt is not None and files.questions is not None  # the config requires questions
    record: dict[str, Any] = (
        {
            "provider": config.provider,
            "config": config.model_dump(mode="json"),
            "counts": builder.counts.as_record() | files.questions.counts(),
            "files": {"questions": _upload_questions(run_id, files.questions)},
            "fine_tuned_model": config.adopt.model,
        }
        | ({"base_model_shutdown_date": shutdown.isoformat()} if shutdown else {})
        | _source_record(files)
    )
    runs = RunsRepository(settings().runs_table)
    if runs.record_adopted(run_id, record):
        start_adopted_evaluation(runs, run_id)
    else:
        logger.info("Run was adopted by another delivery meanwhile; not evaluating it again")
    return record


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
    } | _source_record(files)
    if files.validation and files.validation_gate:
        key = dataset_key(run_id, VALIDATION_FILE)
        upload(files.validation, ObjectRef(bucket, key), metadata, JSONL_CONTENT_TYPE)
        record["files"]["validation"] = _file_record(files.validation, key, files.validation_gate)
        record["gate"]["validation"] = files.validation_gate.as_record()
    if files.questions:
        record["files"]["questions"] = _upload_questions(run_id, files.questions)
        record["counts"] |= files.questions.counts()
    if not RunsRepository(settings().runs_table).record_prepared(run_id, record):
        logger.info("Run was prepared by another delivery meanwhile; not uploading the training file again")
        return record
    upload(files.train, ObjectRef(bucket, record["files"]["train"]["key"]), metadata, JSONL_CONTENT_TYPE)
    return record
