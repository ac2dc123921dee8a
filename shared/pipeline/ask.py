"""Use cases behind the ask API: answer with a run's own model, list and show runs, cancel a job.

The model and system prompt always come from a run record, so callers can reach only the
models this deployment trained, prompted as they were trained. Errors a caller can fix are
`UserInputError`s; the handler turns them (and OpenAI's failures) into HTTP answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from shared.aws.runs import RunsRepository
from shared.aws.storage import REPORTS_PREFIX, ObjectRef, presigned_get_url, read_bytes
from shared.domain.api_models import (
    QUESTION_BLANKS,
    AskRequest,
    AskResponse,
    CancelResponse,
    CurvePoint,
    CurveResponse,
    DeletedModelResponse,
    EvaluationAnswersResponse,
    EvaluationResponse,
    RunDetail,
    RunPage,
    RunSummary,
    Usage,
)
from shared.domain.errors import UserInputError
from shared.domain.evaluation import NoValidationSplitError
from shared.domain.run_record import Run
from shared.domain.run_status import JOB_FINISHED, READYING_MODEL, RunStatus
from shared.domain.text import lone_surrogate
from shared.domain.training_curve import CSV_COLUMNS, csv_rows, metric_value, step_number
from shared.observability import logger, metrics
from shared.providers.base import (
    FineTuningProvider,
    JobSnapshot,
    ProviderModelGoneError,
    ProviderRefusedError,
    ServesThroughDeployments,
    provider_for,
    spec_of,
)
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


class TemperatureAboveProviderError(RunStateError):
    """The document allows up to 2 (OpenAI's range); the named run's provider takes less (Bedrock: 1)."""

    code = "temperature_above_provider_limit"


class ModelShutDownError(UserInputError):
    """The run's model can no longer answer: OpenAI has shut it down (410 Gone)."""

    code = "model_shut_down"


class ModelGoneError(ModelShutDownError):
    """OpenAI says the run's model does not exist (404 `model_not_found`) although the run recorded it:
    shut down, deleted, or out of this deployment's key's reach (410 Gone)."""

    code = "model_gone"


class NoDeploymentError(RunStateError):
    code = "no_deployment"


class NotCancellableError(RunStateError):
    code = "not_cancellable"


class JobAlreadyFinishedError(NotCancellableError):
    """The provider refused the cancel because the job had finished before our record said so."""

    code = "job_already_finished"


def _runs() -> RunsRepository:
    return RunsRepository(settings().runs_table)


def _existing_run(run_id: str) -> Run:
    run = _runs().get(run_id)
    if run is None:
        raise RunNotFoundError(f"No run with id {run_id!r}.")
    return run


def _checked_question(question: str) -> str:
    """The question as asked, its blanks (QUESTION_BLANKS, as the document's pattern names them) stripped."""
    limit = settings().max_question_chars
    if len(question) > limit:
        raise InvalidQuestionError(f"question is {len(question)} characters long; the limit is {limit} characters.")
    question = question.strip(QUESTION_BLANKS)
    if not question:
        raise InvalidQuestionError("question must not be empty.")
    escape = lone_surrogate(question)
    if escape:
        raise InvalidQuestionError(
            f"question is not valid Unicode text: {escape} is half of a surrogate pair with no other half."
        )
    return question


class LatestSucceededRun:
    """The newest succeeded run, read from DynamoDB at most once every `ttl_seconds` in this process.

    /ask without a run id would otherwise query the ByStatus index on every question. The price: for up
    to `ttl_seconds` after a newer run succeeds, an instance that has just read the previous one still
    answers with it. "No run yet" is never kept, so the first run to succeed answers at once.
    """

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._run: Run | None = None
        self._read_at = 0.0

    def get(self) -> Run | None:
        now = self._clock()
        if self._run is None or now - self._read_at >= self._ttl_seconds:
            self._run, self._read_at = _runs().latest_succeeded(), now
        return self._run

    def forget(self) -> None:
        """Read it again next time: this process has just changed a run (its model deleted)."""
        self._run = None


LATEST_SUCCEEDED_RUN_TTL_SECONDS = 5.0
latest_succeeded_run = LatestSucceededRun(LATEST_SUCCEEDED_RUN_TTL_SECONDS)


def _run_with_model(run_id: str | None) -> tuple[Run, str]:
    """The run and its fine-tuned model: a named run is always read; the latest may come from the cache."""
    if run_id is None:
        run = latest_succeeded_run.get()
        if run is None:
            raise NoModelError(
                "No succeeded run has a fine-tuned model to ask: none has succeeded yet, or their models were deleted."
            )
    else:
        run = _existing_run(run_id)
    if not run.fine_tuned_model and run.model_deleted_at:
        raise NoModelError(
            f"Run {run.run_id}'s model was deleted ({run.model_deleted_at}, DELETE /runs/{run.run_id}/model); "
            "ask another run."
        )
    if not run.fine_tuned_model:
        raise NoModelError(f"Run {run.run_id} is {run.status}; it has no fine-tuned model yet.")
    return run, run.fine_tuned_model


def _base_model(run: Run, model: str) -> str:
    configured = ((run.config or {}).get("fine_tune") or {}).get("model")
    return spec_of(run).base_of_tuned_model(model) or (configured if isinstance(configured, str) else "its base model")


def _refuse_if_shut_down(run: Run, model: str) -> None:
    """The run records its base model's shutdown date: from that day (UTC) the provider has shut the base
    model and every fine-tune of it down, so it is not asked."""
    if run.shut_down_by(datetime.now(UTC).date()):
        provider = spec_of(run)
        raise ModelShutDownError(
            f"Run {run.run_id}'s model {model} no longer answers: {provider.label} shut down the base model "
            f"{_base_model(run, model)} and every fine-tuned model built on it on {run.base_model_shutdown_date}. "
            f"{provider.successor_hint}".rstrip()
        )


def _gone(run: Run, model: str, refused: ProviderModelGoneError) -> ModelGoneError:
    provider = spec_of(run)
    recorded = run.base_model_shutdown_date
    when = f" (its base model's recorded shutdown date: {recorded})" if recorded else ""
    also = f", {provider.gone_also}" if provider.gone_also else ""
    return ModelGoneError(
        f"{provider.label} no longer knows run {run.run_id}'s model {model} (it answered {refused.status_code} "
        f"{refused.code}): the model has been shut down{when} or deleted{also}. {provider.successor_hint}".rstrip()
    )


def answer_question(request: AskRequest) -> AskResponse:
    """Ask the run's model (through the run's provider: an OpenAI fine-tune, or a Bedrock run's on-demand
    deployment) with the run's own training system prompt (None: no system message).

    A model OpenAI has shut down is a `ModelShutDownError` (by the run's recorded date, without asking
    OpenAI) or, when OpenAI answers 404 `model_not_found` for the model the run recorded, a `ModelGoneError`.
    """
    question = _checked_question(request.question)
    run, model = _run_with_model(request.run_id)
    _refuse_if_shut_down(run, model)
    provider = provider_for(run)
    if request.temperature > provider.max_temperature:
        raise TemperatureAboveProviderError(
            f"temperature {request.temperature:g} is above {provider.max_temperature:g}, the most the models of "
            f"run {run.run_id} ({provider.name}) take."
        )
    try:
        answer = provider.answer(model, run.system_prompt, question, request.temperature, request.max_tokens)
    except ProviderModelGoneError as error:
        raise _gone(run, model, error) from error
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


def list_runs(limit: int, cursor: str | None, status: RunStatus | None = None) -> RunPage:
    """Newest first (with `status`: those in it, the latest to reach it first); an invalid cursor raises
    `shared.aws.runs.InvalidCursorError`."""
    runs, next_cursor = _runs().list_newest_first(limit, cursor, status)
    return RunPage(runs=[RunSummary.model_validate(_described(run)) for run in runs], next_cursor=next_cursor)


def _described(run: Run) -> dict[str, Any]:
    """The run as recorded, its provider's fields beside the others (a recorded field of the same name wins),
    with what the API derives for a reader: adopted or trained, and when its model shuts down as of today."""
    recorded = run.recorded()
    provider_state = recorded.pop("provider_state", None) or {}
    return (
        provider_state
        | recorded
        | {
            "adopted": run.adopted_model is not None,
            "model_shutdown": run.shutdown_note(datetime.now(UTC).date()),
            "base_model": run.adopted_model or ((run.config or {}).get("fine_tune") or {}).get("model"),
            "estimated_cost_usd": (run.estimate or {}).get("cost_usd"),
        }
    )


def _report_urls(run: Run) -> dict[str, str]:
    """Signed links to the reports the run records (only its own keys, under reports/<run_id>/)."""
    keys = {name: key for name, key in (run.reports or {}).items() if isinstance(key, str)}
    evaluation_key = f"{REPORTS_PREFIX}{run.run_id}/evaluation.jsonl"
    if evaluation_key in ((run.evaluation or {}).get("report_keys") or []):
        keys["evaluation_jsonl"] = evaluation_key
    bucket = settings().data_bucket
    return {
        name: presigned_get_url(ObjectRef(bucket, key))
        for name, key in sorted(keys.items())
        if key.startswith(f"{REPORTS_PREFIX}{run.run_id}/")
    }


def get_run(run_id: str) -> RunDetail:
    run = _existing_run(run_id)
    train_gate = (run.gate or {}).get("train")
    evaluation_status = (run.evaluation_now(time.time()) or {}).get("status")
    return RunDetail.model_validate(
        {
            **_described(run),
            "tokens": train_gate,
            "evaluation_status": evaluation_status,
            "report_urls": _report_urls(run),
            "weights_manifest_url": _manifest_url(run),
        }
    )


def _manifest_url(run: Run) -> str | None:
    """A signed link to the weights' manifest an open run recorded (only under its own models/<run_id>/)."""
    key = run.state("weights_manifest_key")
    if not isinstance(key, str) or not key.startswith(f"models/{run.run_id}/"):
        return None
    return presigned_get_url(ObjectRef(settings().data_bucket, key))


def _record_job(provider: FineTuningProvider, run: Run, job: JobSnapshot) -> tuple[JobSnapshot, bool]:
    """What the provider just said about the run's job, recorded as a poll records it (but creating
    nothing: a Bedrock job that completed is `deploying` until the poll has deployed it) and, once the
    job has finished, without the error of a tracking loop that gave up on it."""
    progress = provider.advance(run, job, serve=False)
    recorded = _runs().record_job_outside_tracking(
        run.run_id, progress.job.status, {**progress.job.run_fields(), **progress.fields}, observed_at=time.time_ns()
    )
    return progress.job, recorded


def _job_if_finished(provider: FineTuningProvider, job_id: str) -> JobSnapshot | None:
    """The job, if the provider says it has finished; None if it has not, or the provider will not say."""
    try:
        job = provider.retrieve_job(job_id)
    except ProviderRefusedError:
        return None
    return job if job.terminal else None


def _ended(status: str) -> str:
    """ "already succeeded", "already failed", "already been cancelled": a status read as an English verb."""
    return "already been cancelled" if status == RunStatus.CANCELLED else f"already {status}"


def cancel_run(run_id: str) -> CancelResponse:
    """Cancel the run's job at its provider and record what the provider answered, as a poll would.

    A job that finished before the run's record caught up cannot be cancelled: the provider refuses.
    The run is then brought up to the job's real state and the caller hears why (a conflict).
    A run that is `deploying` has finished training: there is no job left to cancel.
    """
    run = _existing_run(run_id)
    status = run.status
    if status in JOB_FINISHED:  # a `tracking_failed` run's job may still be running: it can be cancelled
        raise NotCancellableError(f"Run {run_id} has {_ended(status)}; there is nothing to cancel.", status)
    if status in READYING_MODEL:
        raise NotCancellableError(
            f"Run {run_id} has finished training and its model is being "
            f"{'imported' if status == RunStatus.IMPORTING else 'deployed'}; there is no job to cancel.",
            status,
        )
    if not run.job_id:
        raise NotCancellableError(
            f"Run {run_id} is {status} and has no fine-tuning job yet; nothing to cancel.", status
        )
    provider = provider_for(run)
    try:
        snapshot = provider.cancel_job(run.job_id)
    except ProviderRefusedError:
        finished = _job_if_finished(provider, run.job_id)
        if finished is None:
            raise
        now, recorded = _record_job(provider, run, finished)
        logger.info(
            "Cancel refused: the job had already finished",
            extra={"run_id": run_id, "job_id": finished.job_id, "job_status": now.status, "recorded": recorded},
        )
        raise JobAlreadyFinishedError(
            f"Job {finished.job_id} has {_ended(finished.status)} at {finished.PROVIDER_LABEL}, so it cannot be "
            f"cancelled; run {run_id} now records it as {now.status}.",
            now.status,
        ) from None
    snapshot, recorded = _record_job(provider, run, snapshot)
    metrics.add_metric(name="RunsCancelled", unit=MetricUnit.Count, value=1)
    logger.info(
        "Job cancel requested",
        extra={"run_id": run_id, "job_id": snapshot.job_id, "job_status": snapshot.status, "recorded": recorded},
    )
    return CancelResponse(run_id=run_id, status=snapshot.status)


def delete_model(run_id: str) -> DeletedModelResponse:
    """Delete the deployment that serves a finished run's model (Bedrock runs); the run then has no model.

    A run without a deployment (an OpenAI run, a run not yet deployed, one already deleted) is a conflict,
    as is a run still `deploying` (the poll is creating it)."""
    run = _existing_run(run_id)
    if run.status not in JOB_FINISHED or not run.deployment_arn:
        raise NoDeploymentError(
            f"Run {run_id} is {run.status} and has no model deployment to delete"
            + (
                f" (its deployment {run.deleted_deployment_arn} was deleted at {run.model_deleted_at})."
                if run.model_deleted_at
                else "."
            ),
            run.status,
        )
    deployment = run.deployment_arn
    gateway = provider_for(run)
    if not isinstance(gateway, ServesThroughDeployments):  # a recorded deployment its provider cannot have made
        raise NoDeploymentError(f"Run {run_id} is served by {spec_of(run).label} without a deployment.", run.status)
    existed = gateway.delete_deployment(deployment)
    recorded = _runs().record_model_deleted(run_id, deployment)
    latest_succeeded_run.forget()
    metrics.add_metric(name="ModelsDeleted", unit=MetricUnit.Count, value=1)
    logger.info("Model deployment deleted", extra={"run_id": run_id, "deployment": deployment, "recorded": recorded})
    what = "was deleted" if existed else f"was already gone at {spec_of(run).label}"
    return DeletedModelResponse(
        run_id=run_id,
        deleted=gateway.DEPLOYMENT_KIND,
        deployment_arn=deployment,
        already_gone=not existed,
        message=f"Run {run_id}'s {gateway.DEPLOYMENT_LABEL} {deployment} {what}; the run no longer has a model to ask.",
    )


def _evaluation_response(run: Run) -> EvaluationResponse:
    evaluation = run.evaluation_now(time.time()) or {}
    questions_file = run.files.questions if run.files else None
    return EvaluationResponse.model_validate(
        {
            "run_id": run.run_id,
            "status": evaluation.get("status", "pending"),
            "questions": evaluation.get("questions", questions_file.examples if questions_file else 0),
            "match": evaluation.get("match") or ((run.config or {}).get("evaluation") or {}).get("match"),
            "arms": _with_shutdown_notes(run, evaluation.get("arms", [])),
            "report_keys": evaluation.get("report_keys", []),
            "estimate": evaluation.get("estimate"),
            "error": evaluation.get("error"),
        }
    )


def _with_shutdown_notes(run: Run, arms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each arm with when its model shuts down: the run's own arms share the run's date (OpenAI shuts a base
    model and its fine-tunes down together); a compared run's arm has that run's."""
    today = datetime.now(UTC).date()
    noted = []
    for arm in arms:
        owner = run if arm.get("name") in ("tuned", "base", "base_with_context") else _runs().get(str(arm.get("name")))
        noted.append(arm | {"model_shutdown": owner.shutdown_note(today) if owner else None})
    return noted


def get_evaluation(run_id: str) -> EvaluationResponse:
    """The run's evaluation as recorded (`pending` until it starts); a run without held-out questions is a 409."""
    run = _existing_run(run_id)
    if not (run.files and run.files.questions):
        raise NoValidationSplitError(
            f"Run {run_id} has no held-out questions to evaluate: its config has validation_fraction 0 or "
            "evaluation.enabled false. Run the config again with a validation split."
        )
    return _evaluation_response(run)


def start_evaluation(run_id: str, compare_with: list[str]) -> EvaluationResponse:
    """Claim the run's evaluation and start its state machine without waiting (it takes minutes); what cannot
    be evaluated is an `EvaluationRefusedError`.

    Imported on demand: the evaluation's modules (token counting among them) stay out of /ask's cold start.
    """
    from shared.aws.tracking import EvaluationNotStartedError
    from shared.aws.tracking import start_evaluation as start_evaluation_function
    from shared.pipeline.evaluate_run import request_evaluation

    request = request_evaluation(run_id, compare_with)
    assert request.token is not None
    try:
        start_evaluation_function(run_id, request.compare_with, request.token)
    except EvaluationNotStartedError as error:
        logger.error("Evaluation not started", extra={"reason": str(error)})
        message = f"The evaluation could not be started: {error}. Ask for it again shortly."
        _runs().fail_pending_evaluation(run_id, request.token, {"code": "evaluation_not_started", "message": message})
        raise
    logger.info("Evaluation requested", extra={"compare_with": len(request.compare_with)})
    return _evaluation_response(_existing_run(run_id))


CURVE_FILE_MAX_BYTES = 16 * 2**20
ANSWERS_FILE_MAX_BYTES = 64 * 2**20  # 1,000 questions at most, each with every arm's answer


def get_curve(run_id: str) -> CurveResponse:
    """The run's published training curve (`reports/<run_id>/metrics.csv`) as JSON rows, for the dashboard's chart;
    none until the job has ended and the curve is published."""
    run = _existing_run(run_id)
    key = (run.reports or {}).get("metrics_csv")
    if not isinstance(key, str) or not key.startswith(f"{REPORTS_PREFIX}{run_id}/"):
        return CurveResponse(run_id=run_id, published=False, rows=[])
    content = read_bytes(ObjectRef(settings().data_bucket, key), CURVE_FILE_MAX_BYTES)
    rows = [
        CurvePoint(step=step, **{name: metric_value(row.get(name)) for name in CSV_COLUMNS[1:]})
        for row in csv_rows(content)
        if (step := step_number(row.get("step"))) is not None
    ]
    return CurveResponse(run_id=run_id, published=True, rows=rows)


def get_evaluation_answers(run_id: str, offset: int, limit: int) -> EvaluationAnswersResponse:
    """A page of the evaluated questions with each arm's answer (`reports/<run_id>/evaluation.jsonl`), for the
    dashboard's per-question view; [] until an evaluation has written it. Paged: 1,000 questions of several arms
    would pass the 6 MB a Lambda may answer."""
    run = _existing_run(run_id)
    key = f"{REPORTS_PREFIX}{run_id}/evaluation.jsonl"
    if key not in ((run.evaluation or {}).get("report_keys") or []):
        return EvaluationAnswersResponse(run_id=run_id, answers=[], next_offset=None)
    content = read_bytes(ObjectRef(settings().data_bucket, key), ANSWERS_FILE_MAX_BYTES).decode("utf-8")
    lines = [line for line in content.splitlines() if line.strip()]
    page = [json.loads(line) for line in lines[offset : offset + limit]]
    return EvaluationAnswersResponse(
        run_id=run_id, answers=page, next_offset=offset + limit if offset + limit < len(lines) else None
    )
