"""Use cases behind the ask API: answer with a run's own model, list and show runs, cancel a job.

The model and system prompt always come from a run record, so callers can reach only the
models this deployment trained, prompted as they were trained. Errors a caller can fix are
`UserInputError`s; the handler turns them (and OpenAI's failures) into HTTP answers.
"""

from __future__ import annotations

import time

from aws_lambda_powertools.metrics import MetricUnit

from shared.api_models import (
    AskRequest,
    AskResponse,
    CancelResponse,
    RunDetail,
    RunPage,
    RunSummary,
    Usage,
)
from shared.errors import UserInputError
from shared.observability import logger, metrics
from shared.openai_gateway import JobSnapshot, OpenAIGateway, OpenAIRefusedError, gateway
from shared.run_record import JOB_FINISHED, Run
from shared.runs import RunsRepository
from shared.settings import settings


class InvalidQuestionError(UserInputError):
    code = "invalid_question"


class RunNotFoundError(UserInputError):
    code = "run_not_found"


class RunStateError(UserInputError):
    """The run exists, but its status does not allow what was asked; `status` is the run's, when told."""

    code = "run_state_conflict"

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class NoModelError(RunStateError):
    code = "no_model"


class NotCancellableError(RunStateError):
    code = "not_cancellable"


class JobAlreadyFinishedError(NotCancellableError):
    """OpenAI refused the cancel because the job had finished before our record said so."""

    code = "job_already_finished"


def _runs() -> RunsRepository:
    return RunsRepository(settings().runs_table)


def _existing_run(run_id: str) -> Run:
    run = _runs().get(run_id)
    if run is None:
        raise RunNotFoundError(f"No run with id {run_id!r}.")
    return run


def _checked_question(question: str) -> str:
    question = question.strip()
    if not question:
        raise InvalidQuestionError("question must not be empty.")
    limit = settings().max_question_chars
    if len(question) > limit:
        raise InvalidQuestionError(f"question is {len(question)} characters long; the limit is {limit} characters.")
    return question


def _run_with_model(run_id: str | None) -> tuple[Run, str]:
    """The run and its fine-tuned model."""
    if run_id is None:
        run = _runs().latest_succeeded()
        if run is None:
            raise NoModelError("No run has succeeded yet, so there is no fine-tuned model to ask.")
    else:
        run = _existing_run(run_id)
    if not run.fine_tuned_model:
        raise NoModelError(f"Run {run.run_id} is {run.status}; it has no fine-tuned model yet.")
    return run, run.fine_tuned_model


def answer_question(request: AskRequest) -> AskResponse:
    """Ask the run's model with the run's own training system prompt (None: no system message)."""
    question = _checked_question(request.question)
    run, model = _run_with_model(request.run_id)
    answer = gateway().answer(model, run.system_prompt, question, request.temperature, request.max_tokens)
    refused = answer.refusal is not None
    metrics.add_metric(name="QuestionsRefused" if refused else "QuestionsAnswered", unit=MetricUnit.Count, value=1)
    # The question itself is not logged: it is the caller's data, and may be sensitive.
    logger.info(
        "Question refused by the model" if refused else "Question answered",
        extra={"run_id": run.run_id, "model": answer.model, "question_chars": len(question), "usage": answer.usage},
    )
    return AskResponse(
        answer=answer.text,
        refusal=answer.refusal,
        model=answer.model,
        run_id=run.run_id,
        usage=Usage.model_validate(answer.usage),
    )


def list_runs(limit: int, cursor: str | None) -> RunPage:
    """Newest first; an invalid cursor raises `shared.runs.InvalidCursorError`."""
    runs, next_cursor = _runs().list_newest_first(limit, cursor)
    return RunPage(runs=[RunSummary.model_validate(run.recorded()) for run in runs], next_cursor=next_cursor)


def get_run(run_id: str) -> RunDetail:
    run = _existing_run(run_id)
    train_gate = (run.gate or {}).get("train")
    return RunDetail.model_validate({**run.recorded(), "tokens": train_gate})


def _record_job(run_id: str, job: JobSnapshot) -> bool:
    """What OpenAI just said about the run's job, recorded as a poll records it (and, once the job
    has finished, without the error of a tracking loop that gave up on it)."""
    return _runs().record_job_outside_tracking(run_id, job.status, job.run_fields(), observed_at=time.time_ns())


def _job_if_finished(openai: OpenAIGateway, job_id: str) -> JobSnapshot | None:
    """The job, if OpenAI says it has finished; None if it has not, or OpenAI will not say."""
    try:
        job = openai.retrieve_job(job_id)
    except OpenAIRefusedError:
        return None
    return job if job.terminal else None


def cancel_run(run_id: str) -> CancelResponse:
    """Cancel the run's job at OpenAI and record what OpenAI answered, as a poll would.

    A job that finished before the run's record caught up cannot be cancelled: OpenAI refuses.
    The run is then brought up to the job's real state and the caller hears why (a conflict).
    """
    run = _existing_run(run_id)
    status = run.status
    if status in JOB_FINISHED:  # a `tracking_failed` run's job may still be running: it can be cancelled
        raise NotCancellableError(f"Run {run_id} has already {status}; there is nothing to cancel.", status)
    if not run.job_id:
        raise NotCancellableError(
            f"Run {run_id} is {status} and has no fine-tuning job yet; nothing to cancel.", status
        )
    openai = gateway()
    try:
        snapshot = openai.cancel_job(run.job_id)
    except OpenAIRefusedError:
        finished = _job_if_finished(openai, run.job_id)
        if finished is None:
            raise
        recorded = _record_job(run_id, finished)
        logger.info(
            "Cancel refused: the job had already finished",
            extra={"run_id": run_id, "job_id": finished.job_id, "job_status": finished.status, "recorded": recorded},
        )
        raise JobAlreadyFinishedError(
            f"Job {finished.job_id} has already {finished.status} at OpenAI, so it cannot be cancelled; "
            f"run {run_id} now records it as {finished.status}.",
            finished.status,
        ) from None
    recorded = _record_job(run_id, snapshot)
    metrics.add_metric(name="RunsCancelled", unit=MetricUnit.Count, value=1)
    logger.info(
        "Job cancel requested",
        extra={"run_id": run_id, "job_id": snapshot.job_id, "job_status": snapshot.status, "recorded": recorded},
    )
    return CancelResponse(run_id=run_id, status=snapshot.status)
