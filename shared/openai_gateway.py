"""The one module that speaks OpenAI (through the official SDK, never by hand).

Every call has a timeout and bounded SDK retries; failures are sorted into two kinds
callers can act on: `OpenAITransientError` (retry later: 429, 5xx, timeouts, dropped
connections) and `OpenAIRefusedError` (OpenAI said no: record it, do not retry).
The API key comes from Secrets Manager through Powertools Parameters and is cached.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import IO, Any, Protocol, TypeVar, cast

import openai
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from openai import OpenAI

from shared.aws import AWS_CLIENT_CONFIG
from shared.settings import settings

SECRET_MAX_AGE_SECONDS = 300
RUN_ID_METADATA_KEY = "ragtune_run_id"
TERMINAL_JOB_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# A job worth attaching a run to: still going, or done well. A failed or cancelled one is history.
USABLE_JOB_STATUSES = frozenset({"validating_files", "queued", "running", "paused", "succeeded"})
CREATE_ATTEMPTS = 3
T = TypeVar("T")


class OpenAITransientError(Exception):
    """Worth retrying later; the name is what Step Functions' Retry matches on."""


class OpenAIRefusedError(Exception):
    """OpenAI refused the request; its own message is kept for the user."""

    def __init__(self, message: str, status_code: int | None, code: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code


class OpenAIKeyUnavailableError(Exception):
    """The API key's secret cannot be read: a deployment problem, reported as such."""


@contextmanager
def _classified_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as error:
        raise OpenAITransientError(f"OpenAI: {action} failed transiently ({type(error).__name__})") from error
    except openai.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else {}
        message = str(body.get("message") or error.message)
        raise OpenAIRefusedError(
            f"OpenAI refused {action}: {message}", error.status_code, body.get("code")
        ) from error


class UploadSource(Protocol):
    """A file to upload, readable in a stream (seekable to 0) or by byte ranges."""

    @property
    def size(self) -> int: ...

    @property
    def name(self) -> str: ...

    def open_stream(self) -> IO[bytes]: ...

    def read_range(self, start: int, end: int) -> bytes: ...


@dataclass(frozen=True)
class JobSnapshot:
    """The fields of a fine-tuning job a run records."""

    job_id: str
    status: str
    fine_tuned_model: str | None
    trained_tokens: int | None
    estimated_finish: int | None
    error: dict[str, Any] | None
    created_at: int

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    def run_fields(self) -> dict[str, Any]:
        """What a run records of its job; unknown values are left out rather than stored as null."""
        fields: dict[str, Any] = {
            "job_id": self.job_id,
            "fine_tuned_model": self.fine_tuned_model,
            "trained_tokens": self.trained_tokens,
            "estimated_finish": self.estimated_finish,
        }
        if self.error:
            fields["error"] = {"code": self.error.get("code") or "job_failed", "message": self.error.get("message", "")}
        if self.terminal:
            fields["finished_at"] = int(time.time())
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def of(cls, job: Any) -> JobSnapshot:
        error = job.error.model_dump(exclude_none=True) if job.error and job.error.message else None
        return cls(
            job_id=job.id,
            status=job.status,
            fine_tuned_model=job.fine_tuned_model,
            trained_tokens=job.trained_tokens,
            estimated_finish=job.estimated_finish,
            error=error,
            created_at=job.created_at,
        )


@dataclass(frozen=True)
class Answer:
    text: str
    model: str
    usage: dict[str, int]


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
    def __init__(self, client: OpenAI, upload_part_bytes: int, retry_backoff_seconds: float) -> None:
        self._client = client
        self._part_bytes = upload_part_bytes
        self._retry_backoff_seconds = retry_backoff_seconds

    # Files -------------------------------------------------------------------------------
    def _create_or_find(self, create: Callable[[], T], find: Callable[[], T | None]) -> T:
        """POSTs without an idempotency key, SDK retries off: after a failed attempt the object may
        exist anyway (the answer was lost, not the request), so look for it before trying again."""
        for attempt in range(1, CREATE_ATTEMPTS):
            try:
                return create()
            except OpenAITransientError:
                time.sleep(self._retry_backoff_seconds * 2 ** (attempt - 1))
                found = find()
                if found is not None:
                    return found
        return create()

    def upload_training_file(self, source: UploadSource, multipart_threshold: int) -> str:
        """files.create up to the threshold, the Uploads API (parts, one in memory at a time) above."""
        if source.size > multipart_threshold:
            return self._upload_in_parts(source)
        return self._create_or_find(lambda: self._create_file_once(source), lambda: self._find_file(source))

    def _create_file_once(self, source: UploadSource) -> str:
        with _classified_errors("the file upload"), source.open_stream() as stream:
            created = self._client.with_options(max_retries=0).files.create(
                file=(source.name, stream, "application/jsonl"), purpose="fine-tune"
            )
        return str(created.id)

    def _find_file(self, source: UploadSource) -> str | None:
        """The newest fine-tune file with this name (it carries the content's hash) and size."""
        with _classified_errors("listing files"):
            page = self._client.files.list(purpose="fine-tune", order="desc", limit=100)
        return next((f.id for f in page.data if f.filename == source.name and f.bytes == source.size), None)

    def _upload_in_parts(self, source: UploadSource) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        with _classified_errors("the multipart upload"):
            upload = self._client.uploads.create(
                bytes=source.size, filename=source.name, mime_type="application/jsonl", purpose="fine-tune"
            )
            part_ids = []
            for start in range(0, source.size, self._part_bytes):
                chunk = source.read_range(start, min(start + self._part_bytes, source.size) - 1)
                digest.update(chunk)
                part_ids.append(self._client.uploads.parts.create(upload.id, data=chunk).id)
            completed = self._client.uploads.complete(upload.id, part_ids=part_ids, md5=digest.hexdigest())
        if completed.file is None:
            raise OpenAITransientError(f"OpenAI upload {upload.id} completed without a file")
        return str(completed.file.id)

    # Jobs --------------------------------------------------------------------------------
    def find_job_for_run(self, run_id: str) -> JobSnapshot | None:
        """The run's newest usable job: a POST we never heard back about may have created one.

        Failed or cancelled jobs of an earlier attempt of the run are ignored.
        """
        with _classified_errors("listing jobs"):
            page = self._client.fine_tuning.jobs.list(metadata={RUN_ID_METADATA_KEY: run_id}, limit=20)
            jobs = [JobSnapshot.of(job) for job in page.data
                    if (job.metadata or {}).get(RUN_ID_METADATA_KEY) == run_id]
        usable = [job for job in jobs if job.status in USABLE_JOB_STATUSES]
        return max(usable, key=lambda job: job.created_at) if usable else None

    def create_job(self, request: JobRequest) -> JobSnapshot:
        return self._create_or_find(lambda: self._create_job_once(request),
                                    lambda: self.find_job_for_run(request.run_id))

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
                metadata={RUN_ID_METADATA_KEY: request.run_id},
                method=cast(Any, {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}),
                **optional,
            )
        return JobSnapshot.of(job)

    def retrieve_job(self, job_id: str) -> JobSnapshot:
        with _classified_errors("retrieving the job"):
            return JobSnapshot.of(self._client.fine_tuning.jobs.retrieve(job_id))

    def events_since(self, job_id: str, last_event_id: str | None, cap: int = 1000) -> list[dict[str, Any]]:
        """Events newer than `last_event_id`, oldest first; pages back (newest first) until it is seen."""
        fresh: list[dict[str, Any]] = []
        with _classified_errors("listing job events"):
            for event in self._client.fine_tuning.jobs.list_events(job_id, limit=100):
                if event.id == last_event_id or len(fresh) == cap:
                    break
                fresh.append({"id": event.id, "created_at": event.created_at, "level": event.level,
                              "message": event.message})
        return fresh[::-1]

    def latest_metrics(self, job_id: str) -> dict[str, Any] | None:
        with _classified_errors("listing checkpoints"):
            page = self._client.fine_tuning.jobs.checkpoints.list(job_id, limit=1)
        if not page.data:
            return None
        checkpoint = page.data[0]
        return {"step": checkpoint.step_number, **checkpoint.metrics.model_dump(exclude_none=True)}

    def cancel_job(self, job_id: str) -> JobSnapshot:
        with _classified_errors("cancelling the job"):
            return JobSnapshot.of(self._client.fine_tuning.jobs.cancel(job_id))

    # Inference ---------------------------------------------------------------------------
    def answer(self, model: str, system: str | None, question: str, temperature: float,
               max_tokens: int) -> Answer:
        messages: list[Any] = [] if system is None else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": question})
        with _classified_errors("the chat completion"):
            completion = self._client.chat.completions.create(
                model=model, messages=messages, temperature=temperature, max_completion_tokens=max_tokens
            )
        usage = completion.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}) \
            if completion.usage else {}
        return Answer(text=completion.choices[0].message.content or "", model=completion.model, usage=usage)


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
    return OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_seconds, max_retries=max_retries)


def gateway() -> OpenAIGateway:
    """`OPENAI_BASE_URL` in the environment points the SDK elsewhere (the emulator, a proxy)."""
    config = settings()
    client = _client(
        api_key_from_secret(config.openai_api_key_secret),
        os.environ.get("OPENAI_BASE_URL") or None,
        config.openai_timeout_seconds,
        config.openai_max_retries,
    )
    return OpenAIGateway(client, config.upload_part_bytes, config.openai_retry_backoff_seconds)
