"""The one module that speaks OpenAI (through the official SDK, never by hand).

Every call has a timeout and bounded SDK retries; failures are sorted into two kinds
callers can act on: `OpenAITransientError` (retry later: 429, 5xx, timeouts, dropped
connections) and `OpenAIRefusedError` (OpenAI said no: record it, do not retry).
The API key comes from Secrets Manager through Powertools Parameters and is cached.

Every job and file it creates carries the deployment's identity (the data bucket's name, unique
across AWS) next to the run id, and only what carries both is ever looked up, adopted or tracked:
two deployments given the same config derive the same run id, but never share a job.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from http import HTTPStatus
from typing import IO, TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from shared.aws import AWS_CLIENT_CONFIG
from shared.aws.storage import ObjectRef, S3UploadSource
from shared.domain.config import RunConfig
from shared.domain.run_record import JobEvent, Run
from shared.domain.run_status import JOB_STATUSES, USABLE, RunStatus
from shared.domain.training_curve import StepMetric, merge_steps
from shared.observability import logger
from shared.providers import base as providers
from shared.providers.base import Answer as Answer
from shared.providers.base import ForeignJobError as ForeignJobError
from shared.providers.base import (
    ProviderEmptyAnswerError,
    ProviderModelGoneError,
    ProviderNotConfiguredError,
    ProviderRefusedError,
    ProviderTransientError,
    RecordStart,
)
from shared.providers.openai import OpenAIState, fine_tune_base
from shared.providers.openai.metrics import parse_openai_step_metrics
from shared.providers.openai.settings import openai_settings
from shared.settings import settings

if TYPE_CHECKING:
    # The SDK is imported when a client is made (and where its errors are caught), not with this module:
    # its 0.7 s of imports stay out of the cold start of every function that never calls OpenAI.
    import openai
    from openai import OpenAI

SECRET_MAX_AGE_SECONDS = 300
RUN_ID_METADATA_KEY = "ragtune_run_id"
DEPLOYMENT_METADATA_KEY = "ragtune_deployment"
METADATA_MAX_VALUE_CHARS = 512  # OpenAI's job metadata: at most 16 pairs, keys of 64 and values of 512 characters
CREATE_ATTEMPTS = 3
# Events are read newest first, 100 a page, until the last one recorded; at most this many pages a poll.
EVENTS_PER_PAGE = 100
MAX_EVENT_PAGES_PER_POLL = 10
# What an Upload can end as besides `completed`, and what that means for the user.
UPLOAD_ENDED = {
    "expired": "expired before it was completed (an upload must be completed within an hour)",
    "cancelled": "was cancelled before it was completed",
}
T = TypeVar("T")


class OpenAITransientError(ProviderTransientError):
    """Worth retrying later; the name is what Step Functions' Retry matches on.

    `code` is OpenAI's own error code when it answered with one (e.g. `rate_limit_exceeded`).
    """

    CODE_FIELD: ClassVar[str] = "openai_code"
    PROVIDER: ClassVar[str] = "openai"
    CAUSES: ClassVar[str] = "rate limit, outage or timeout"
    RETRIES: ClassVar[str] = "the SDK's retries"


class OpenAIRefusedError(ProviderRefusedError):
    """OpenAI refused the request; its own message is kept for the user."""

    CODE_FIELD: ClassVar[str] = "openai_code"
    PROVIDER: ClassVar[str] = "openai"


class OpenAIModelGoneError(OpenAIRefusedError, ProviderModelGoneError):
    """OpenAI does not know the model (404 `model_not_found`): shut down, deleted, or out of the key's reach."""


class OpenAIKeyUnavailableError(ProviderNotConfiguredError):
    """The API key's secret cannot be read: a deployment problem, reported as such."""

    PROVIDER: ClassVar[str] = "openai"
    CODE: ClassVar[str] = "openai_key_unavailable"
    LOG_MESSAGE: ClassVar[str] = "OpenAI API key unavailable"
    API_MESSAGE: ClassVar[str] = (
        "This deployment cannot read its OpenAI API key; its operator has been told in the logs."
    )
    RUN_ADVICE: ClassVar[str] = ". Fix it, then upload the config again."


class OpenAIEmptyAnswerError(ProviderEmptyAnswerError):
    """A chat completion came back with nothing to give the caller: no choices, or a message
    with neither content nor a refusal. Not a refusal (OpenAI said yes), not worth a blind retry here."""

    PROVIDER: ClassVar[str] = "openai"


def _retryable(error: openai.APIStatusError) -> bool:
    """The SDK's own rule (`_should_retry`): `x-should-retry` decides when OpenAI sends it,
    otherwise 408 (request timeout), 409 (lock timeout), 429 and 5xx are worth another try."""
    should_retry = error.response.headers.get("x-should-retry")
    if should_retry in ("true", "false"):
        return should_retry == "true"
    return error.status_code in (408, 409, 429) or error.status_code >= 500


@contextmanager
def _classified_errors(action: str) -> Iterator[None]:
    import openai

    try:
        yield
    except openai.APIConnectionError as error:  # timeouts included
        raise OpenAITransientError(f"OpenAI: {action} failed transiently ({type(error).__name__})") from error
    except openai.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else {}
        if _retryable(error):
            raise OpenAITransientError(
                f"OpenAI: {action} failed transiently ({type(error).__name__}, HTTP {error.status_code})",
                body.get("code"),
            ) from error
        message = str(body.get("message") or error.message)
        gone = error.status_code == HTTPStatus.NOT_FOUND and body.get("code") == "model_not_found"
        refused = OpenAIModelGoneError if gone else OpenAIRefusedError
        raise refused(f"OpenAI refused {action}: {message}", error.status_code, body.get("code")) from error


class UploadSource(Protocol):
    """A file to upload, readable in a stream (seekable to 0) or by byte ranges."""

    @property
    def size(self) -> int: ...

    @property
    def name(self) -> str: ...

    def open_stream(self) -> IO[bytes]: ...

    def read_range(self, start: int, end: int) -> bytes: ...


def job_status(status: str) -> RunStatus | str:
    """An OpenAI job status in the common vocabulary (`shared.domain.run_record`): OpenAI's statuses are its job
    statuses, spelled the same (`paused` too, which the spec's enum omits). A status we do not know is
    kept as given: recorded on the run, and tracked on (it is not finished)."""
    return RunStatus(status) if status in JOB_STATUSES else status


class JobSnapshot(providers.JobSnapshot):
    """An OpenAI job in the common shape (`shared.providers.base.JobSnapshot`); OpenAI's own error code is
    kept as `openai_code`."""

    PROVIDER_LABEL: ClassVar[str] = "OpenAI"
    CODE_FIELD: ClassVar[str] = "openai_code"

    @classmethod
    def of(cls, job: Any) -> JobSnapshot:
        error = job.error.model_dump(exclude_none=True) if job.error else None
        return cls(
            job_id=job.id,
            status=job_status(job.status),
            fine_tuned_model=job.fine_tuned_model,
            trained_tokens=job.trained_tokens,
            estimated_finish=job.estimated_finish,
            error=error or None,
            created_at=job.created_at,
            finished_at=job.finished_at,
            metadata=dict(job.metadata or {}),
        )


@dataclass(frozen=True)
class JobRequest:
    run_id: str
    model: str
    training_file_id: str
    validation_file_id: str | None
    suffix: str | None
    seed: int
    hyperparameters: dict[str, Any]


class OpenAIGateway:
    def __init__(
        self, client: OpenAI, upload_part_bytes: int, retry_backoff_seconds: float, *, deployment: str
    ) -> None:
        """`deployment` names this deployment at OpenAI (the data bucket): it tags every job and file."""
        if not 0 < len(deployment) <= METADATA_MAX_VALUE_CHARS:
            raise ValueError(f"deployment identity {deployment!r}: 1 to {METADATA_MAX_VALUE_CHARS} characters")
        self._client = client
        self._part_bytes = upload_part_bytes
        self._retry_backoff_seconds = retry_backoff_seconds
        self._deployment = deployment

    @property
    def name(self) -> str:
        return "openai"

    @property
    def max_temperature(self) -> float:
        return 2.0  # chat completions take 0 to 2

    # Ownership ---------------------------------------------------------------------------
    def job_metadata(self, run_id: str) -> dict[str, str]:
        """What tags a job as `run_id`'s of this deployment (2 of OpenAI's 16 pairs; short keys and values)."""
        return {RUN_ID_METADATA_KEY: run_id, DEPLOYMENT_METADATA_KEY: self._deployment}

    def is_own_job(self, job: JobSnapshot, run_id: str) -> bool:
        return all(job.metadata.get(key) == value for key, value in self.job_metadata(run_id).items())

    def file_name(self, source: UploadSource) -> str:
        """`<deployment>_<source name>`: files.create takes no metadata, so the name carries the identity
        (a source name, `<run id>-<train|validation>-<ETag>.jsonl`, holds no `_`: the last one splits them)."""
        return f"{self._deployment}_{source.name}"

    # Files -------------------------------------------------------------------------------
    def _create_or_find(self, create: Callable[[], T], find: Callable[[], T | None]) -> T:
        """POSTs without an idempotency key, SDK retries off: after a failed attempt the object may
        exist anyway (the answer was lost, not the request), so look for it before trying again, and
        after the last attempt too, rather than leave a job running that no run tracks."""
        attempt = 1
        while True:
            try:
                return create()
            except OpenAITransientError:
                time.sleep(self._retry_backoff_seconds * 2 ** (attempt - 1))
                found = find()
                if found is not None:
                    return found
                if attempt == CREATE_ATTEMPTS:
                    raise
                attempt += 1

    def upload_training_file(self, source: UploadSource, multipart_threshold: int) -> str:
        """files.create up to the threshold, the Uploads API (parts, one in memory at a time) above."""
        if source.size > multipart_threshold:
            return self._upload_in_parts(source)
        return self._create_or_find(lambda: self._create_file_once(source), lambda: self._find_file(source))

    def _create_file_once(self, source: UploadSource) -> str:
        with _classified_errors("the file upload"), source.open_stream() as stream:
            created = self._client.with_options(max_retries=0).files.create(
                file=(self.file_name(source), stream, "application/jsonl"), purpose="fine-tune"
            )
        return str(created.id)

    def _find_file(self, source: UploadSource) -> str | None:
        """The newest fine-tune file with this deployment's name for it (which carries the run id and
        the content's hash) and its size; another deployment's file of the same run has another name."""
        name = self.file_name(source)
        with _classified_errors("listing files"):
            page = self._client.files.list(purpose="fine-tune", order="desc", limit=100)
        return next((f.id for f in page.data if f.filename == name and f.bytes == source.size), None)

    def _upload_in_parts(self, source: UploadSource) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        name = self.file_name(source)
        with _classified_errors("the multipart upload"):
            upload = self._client.uploads.create(
                bytes=source.size, filename=name, mime_type="application/jsonl", purpose="fine-tune"
            )
            part_ids = []
            for start in range(0, source.size, self._part_bytes):
                chunk = source.read_range(start, min(start + self._part_bytes, source.size) - 1)
                digest.update(chunk)
                part_ids.append(self._client.uploads.parts.create(upload.id, data=chunk).id)
            completed = self._client.uploads.complete(upload.id, part_ids=part_ids, md5=digest.hexdigest())
        if completed.status in UPLOAD_ENDED:  # OpenAI will not make this upload a file: a refusal, not a blip
            raise OpenAIRefusedError(
                f"OpenAI's upload {upload.id} of {name} {UPLOAD_ENDED[completed.status]}. "
                "Upload the config again to retry.",
                None,
                None,
            )
        if completed.file is None:
            raise OpenAITransientError(f"OpenAI upload {upload.id} completed without a file")
        return str(completed.file.id)

    # Jobs --------------------------------------------------------------------------------
    def find_job_for_run(self, run_id: str) -> JobSnapshot | None:
        """The run's newest usable job of this deployment: a POST we never heard back about may have
        created one. Jobs of other deployments (same run id, other bucket) are never candidates.

        Failed or cancelled jobs of an earlier attempt of the run are ignored.
        """
        with _classified_errors("listing jobs"):
            page = self._client.fine_tuning.jobs.list(metadata=self.job_metadata(run_id), limit=20)
            jobs = [snapshot for snapshot in map(JobSnapshot.of, page.data) if self.is_own_job(snapshot, run_id)]
        usable = [job for job in jobs if job.status in USABLE]
        return max(usable, key=lambda job: job.created_at) if usable else None

    def create_job(self, request: JobRequest) -> JobSnapshot:
        return self._create_or_find(
            lambda: self._create_job_once(request), lambda: self.find_job_for_run(request.run_id)
        )

    def start_job(self, run: Run, owner: str, record_start: RecordStart) -> JobSnapshot:
        """The run's job: found (a POST's answer may have been lost), or created after uploading the
        training (and validation) file; each file id is recorded as soon as it exists, so a retried
        start uploads nothing twice. `owner` (the training file's version) is not needed: the run's
        job is found by its metadata."""
        run_id = run.run_id
        existing = self.find_job_for_run(run_id)
        if existing:
            logger.info("Found the run's job at OpenAI; not creating another", extra={"job_id": existing.job_id})
            return existing
        if run.files is None or run.files.train is None or run.config is None:  # only a prepared run is started
            raise RuntimeError(f"Run {run_id} is {run.status} but records no training file or config.")
        state = OpenAIState.model_validate(run.provider_state or {})
        training_file_id = state.training_file_id or self._upload_run_file(run_id, run.files.train.key, "train")
        record_start({"provider_state": {"training_file_id": training_file_id}})
        validation_file_id = state.validation_file_id
        if run.files.validation is not None and not validation_file_id:
            validation_file_id = self._upload_run_file(run_id, run.files.validation.key, "validation")
            record_start({"provider_state": {"validation_file_id": validation_file_id}})
        config = RunConfig.model_validate(run.config)
        return self.create_job(
            JobRequest(
                run_id=run_id,
                model=config.fine_tune.model,
                training_file_id=training_file_id,
                validation_file_id=validation_file_id,
                suffix=config.fine_tune.suffix,
                seed=config.seed,
                hyperparameters=config.fine_tune.hyperparameters.model_dump(exclude_none=True),
            )
        )

    def _upload_run_file(self, run_id: str, key: str, name: str) -> str:
        """Named after the run and the content's ETag (`file_name` adds the deployment), so a lost
        answer can be found again by name."""
        source = S3UploadSource.of(ObjectRef(settings().data_bucket, key), f"{run_id}-{name}")
        return self.upload_training_file(source, openai_settings().upload_multipart_threshold_bytes)

    def _create_job_once(self, request: JobRequest) -> JobSnapshot:
        hyperparameters = {key: value for key, value in request.hyperparameters.items() if value != "auto"}
        optional: dict[str, Any] = {}
        if request.validation_file_id:
            optional["validation_file"] = request.validation_file_id
        if request.suffix:
            optional["suffix"] = request.suffix
        with _classified_errors("creating the fine-tuning job"):
            job = self._client.with_options(max_retries=0).fine_tuning.jobs.create(
                model=request.model,
                training_file=request.training_file_id,
                seed=request.seed,
                metadata=self.job_metadata(request.run_id),
                method=cast(Any, {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}),
                **optional,
            )
        return JobSnapshot.of(job)

    def retrieve_job(self, job_id: str, run_id: str | None = None) -> JobSnapshot:
        """With `run_id`: only that run's job of this deployment, else `ForeignJobError`."""
        with _classified_errors("retrieving the job"):
            job = JobSnapshot.of(self._client.fine_tuning.jobs.retrieve(job_id))
        if run_id is not None and not self.is_own_job(job, run_id):
            raise ForeignJobError(
                f"Job {job_id} was not created by this deployment for run {run_id} (its metadata "
                f"{RUN_ID_METADATA_KEY}={job.metadata.get(RUN_ID_METADATA_KEY)!r}, "
                f"{DEPLOYMENT_METADATA_KEY}={job.metadata.get(DEPLOYMENT_METADATA_KEY)!r}); it is not tracked."
            )
        return job

    def events_since(self, job_id: str, last_event_id: str | None) -> list[JobEvent]:
        """Events newer than `last_event_id`, oldest first; pages back (newest first) until it is seen,
        at most `MAX_EVENT_PAGES_PER_POLL` pages. Past that bound the older unseen events are skipped
        (the run keeps the 20 newest), so one poll costs a bounded number of requests whatever OpenAI says."""
        fresh: list[JobEvent] = []
        with _classified_errors("listing job events"):
            page = self._client.fine_tuning.jobs.list_events(job_id, limit=EVENTS_PER_PAGE)
            for pages_read in range(1, MAX_EVENT_PAGES_PER_POLL + 1):
                for event in page.data:
                    if event.id == last_event_id:
                        return fresh[::-1]
                    fresh.append(
                        {"id": event.id, "created_at": event.created_at, "level": event.level, "message": event.message}
                    )
                if pages_read == MAX_EVENT_PAGES_PER_POLL or not page.has_next_page():
                    break
                page = page.get_next_page()
        return fresh[::-1]

    def latest_metrics(self, job_id: str) -> dict[str, int | float] | None:
        """The newest checkpoint's metrics; `step` is the checkpoint's `step_number`, whatever its metrics say."""
        with _classified_errors("listing checkpoints"):
            page = self._client.fine_tuning.jobs.checkpoints.list(job_id, limit=1)
        if not page.data:
            return None
        checkpoint = page.data[0]
        return {**checkpoint.metrics.model_dump(exclude_none=True), "step": checkpoint.step_number}

    def step_metrics(self, run: Run) -> list[StepMetric]:
        """Every step's metrics from the job's result files (OpenAI's step_metrics.csv, which it may serve
        base64-encoded); [] for a run without a job or a job that has written none yet."""
        if not run.job_id:
            return []
        with _classified_errors("retrieving the job's result files"):
            job = self._client.fine_tuning.jobs.retrieve(run.job_id)
            contents = [self._client.files.content(file_id).content for file_id in job.result_files or []]
        return merge_steps(*map(parse_openai_step_metrics, contents))

    def cancel_job(self, job_id: str) -> JobSnapshot:
        with _classified_errors("cancelling the job"):
            return JobSnapshot.of(self._client.fine_tuning.jobs.cancel(job_id))

    def advance(self, run: Run, job: providers.JobSnapshot, *, serve: bool = True) -> providers.Progress:
        """A succeeded job's model answers at once; the poll that sees it succeed (not the API's cancel)
        also records the day OpenAI shuts its base model down, once."""
        if not (serve and job.status == RunStatus.SUCCEEDED and not run.base_model_shutdown_date):
            return providers.Progress(job)
        shutdown = self._shutdown_date_of(run, job)
        return providers.Progress(job, {"base_model_shutdown_date": shutdown} if shutdown else {})

    def _shutdown_date_of(self, run: Run, job: providers.JobSnapshot) -> str | None:
        """The day ("YYYY-MM-DD") OpenAI shuts the run's base model down, and its fine-tunes with it. The base
        is read from the tuned model's name (`ft:<base>:...`, the snapshot even when the config named an
        alias), else the config's. None when unknown: never a failure."""
        configured = ((run.config or {}).get("fine_tune") or {}).get("model")
        base = fine_tune_base(job.fine_tuned_model or "") or (configured if isinstance(configured, str) else None)
        shutdown = self.base_model_shutdown_date(base) if base else None
        return shutdown.isoformat() if shutdown else None

    # Models ------------------------------------------------------------------------------
    def base_model_shutdown_date(self, model: str) -> date | None:
        """When OpenAI shuts `model` down (`GET /models/{model}`'s `shutdown_date`), None when it announces
        none. Never raises: this is information, never a reason to fail a run. A failure to read it (OpenAI
        down, the model unknown, a date that is not YYYY-MM-DD) logs a warning and answers None."""
        import openai

        try:
            return self.model_shutdown_date(model)
        except (OpenAITransientError, OpenAIRefusedError, openai.OpenAIError) as error:
            logger.warning("Model's shutdown date unreadable", extra={"model": model, "error": str(error)})
            return None

    def model_shutdown_date(self, model: str) -> date | None:
        """`GET /models/{model}`: the day OpenAI shuts it down, None when it announces none or gives no date.
        A model OpenAI does not know (or no longer serves) is an `OpenAIRefusedError` (404 model_not_found)."""
        with _classified_errors(f"retrieving model {model}"):
            described = self._client.models.retrieve(model)
        given = described.shutdown_date or (described.model_extra or {}).get("shutdown_date")
        if not given:
            return None
        try:
            return date.fromisoformat(str(given))
        except ValueError:
            logger.warning("Model's shutdown date is not a date", extra={"model": model, "shutdown_date": given})
            return None

    # Inference ---------------------------------------------------------------------------
    def answer(self, model: str, system: str | None, question: str, temperature: float, max_tokens: int) -> Answer:
        messages: list[Any] = [] if system is None else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": question})
        with _classified_errors("the chat completion"):
            completion = self._client.chat.completions.create(
                model=model, messages=messages, temperature=temperature, max_completion_tokens=max_tokens
            )
        if not completion.choices:
            raise OpenAIEmptyAnswerError("OpenAI's chat completion held no choices, so there is no answer to give.")
        message = completion.choices[0].message
        if message.content is None and not message.refusal:
            raise OpenAIEmptyAnswerError("OpenAI's chat completion held neither an answer nor a refusal.")
        usage = (
            completion.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"})
            if completion.usage
            else {}
        )
        return Answer(text=message.content, refusal=message.refusal or None, model=completion.model, usage=usage)


@lru_cache(maxsize=1)
def _secrets() -> SecretsProvider:
    return SecretsProvider(boto_config=AWS_CLIENT_CONFIG)


def api_key_from_secret(secret_name: str) -> str:
    """The key, from Secrets Manager (cached for 5 minutes); never logged."""
    try:
        value = _secrets().get(secret_name, max_age=SECRET_MAX_AGE_SECONDS)
    except GetParameterError as error:
        raise OpenAIKeyUnavailableError(
            f"The OpenAI API key cannot be read from Secrets Manager secret {secret_name!r}: {error}"
        ) from error
    return str(value).strip()


@lru_cache(maxsize=4)
def _client(api_key: str, base_url: str | None, timeout_seconds: float, max_retries: int) -> OpenAI:
    """One pooled client per key and endpoint; a rotated key gets a new one within 5 minutes."""
    from openai import OpenAI

    return OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_seconds, max_retries=max_retries)


def gateway() -> OpenAIGateway:
    """`OpenAISettings.openai_base_url` (`OPENAI_BASE_URL`) points the SDK elsewhere (the emulator, a proxy)."""
    config = openai_settings()
    client = _client(
        api_key_from_secret(config.openai_api_key_secret),
        config.openai_base_url,
        config.openai_timeout_seconds,
        config.openai_max_retries,
    )
    return OpenAIGateway(
        client, config.upload_part_bytes, config.openai_retry_backoff_seconds, deployment=settings().data_bucket
    )
