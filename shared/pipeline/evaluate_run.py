"""Use case: does a run's tuned model replace the RAG data it was trained on? Ask it the held-out questions.

An evaluation asks every held-out question (`datasets/<run_id>/questions.jsonl`, written by prepare) of
each arm, scores the answers without a judge model (`shared.domain.evaluation`), writes one report line
per question to `reports/<run_id>/evaluation.jsonl` and records a summary per arm on the run. It runs as
the evaluation state machine's three steps, so no evaluation is bounded by one Lambda's 15 minutes:
`plan_evaluation` (claim, estimate, the chunks), `ask_chunk` (one Map iteration: up to CHUNK_QUESTIONS
questions of one arm, its answers written beside the report) and `merge_evaluation` (every arm's answers in
question order, scored, the report and the summaries; also the Catch's step, keeping the finished arms).
The arms:

* `tuned`: the run's model, the question alone, with the run's training system prompt;
* `base`: the model it was tuned from, the same prompt;
* `base_with_context`: the base model with the question's passage placed before it (the RAG the
  tuned model replaces), when the questions carry one;
* `<other run id>` (`compare_with`): that run's model, through that run's provider and system prompt.
  Only these arms are asked; earlier arms stay in the report and the summaries.

An arm whose model is gone (the provider refuses it as shut down or deleted, 404/410; or the run
records that it is: a shutdown date passed, a deleted model, an earlier such refusal) is built from
the answers recorded for it before (its run's report, matched by question digest), scored by
today's rule and labelled `recorded` with the recording's time and how many questions it answered.
So an OpenAI fine-tune recorded before 2027-01-14 still compares with its successor afterwards.

Cost is bounded and visible: at most `evaluation.max_questions` questions, and the estimate (calls,
tokens, worst-case cost) is recorded before the first call. One evaluation of a run at a time: it is
claimed on the run with a lease, and a duplicate delivery of a claimed request changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from pydantic import Field

from shared.aws.runs import RunsRepository, utc_now
from shared.aws.storage import REPORTS_PREFIX, ObjectMissingError, ObjectRef, delete_objects, put_bytes, read_bytes
from shared.domain.data_gate import example_tokens
from shared.domain.errors import without_internal_paths
from shared.domain.evaluation import (
    ArmAnswer,
    CompareRunNotFoundError,
    CompareRunNotUsableError,
    EvaluationLimitError,
    EvaluationRunningError,
    Match,
    NoRecordedAnswersError,
    NoValidationSplitError,
    RunNotFoundError,
    RunNotSucceededError,
    is_correct,
    question_digest,
    summarise_arm,
)
from shared.domain.lazy_model import LazyModel
from shared.domain.prices import DEFAULT_INFERENCE_PRICES, ModelPrice, parse_prices, price_for
from shared.domain.run_record import PreparedFile, Run
from shared.domain.run_status import RunStatus
from shared.observability import logger
from shared.providers.base import (
    FineTuningProvider,
    ProviderEmptyAnswerError,
    ProviderRefusedError,
    ProviderTransientError,
    provider_for,
    spec_of,
)
from shared.settings import EnvironmentSettings, from_environment, parsed_text, settings

# Longer than a Lambda's 15-minute maximum: a claim expires only once its invocation is surely over.
LEASE_SECONDS = 16 * 60
DAY_SECONDS = 24 * 3600  # the window EVALUATIONS_PER_RUN_PER_DAY counts requests over
MAX_FILE_BYTES = 64 * 2**20  # questions (1,000 at most, with their passages) and the report are read whole
TEMPERATURE = 0.0
NO_ANSWER_ERRORS = (ProviderTransientError, ProviderEmptyAnswerError)
MODEL_GONE = (HTTPStatus.NOT_FOUND, HTTPStatus.GONE)  # how providers refuse a model shut down or deleted
TUNED = "tuned"


class EvaluationSettings(EnvironmentSettings):
    """The evaluation's own settings (the stack's Evaluation* parameters)."""

    # What the arms cost: `<model-id prefix>=<input>/<output>` USD per 1M tokens, the longest matching prefix
    # wins (a Bedrock deployment is priced as its base model). Public list prices, to update.
    inference_prices_per_million_tokens: Annotated[dict[str, ModelPrice], parsed_text(parse_prices)] = Field(
        default=DEFAULT_INFERENCE_PRICES, alias="INFERENCE_PRICES_PER_MILLION_TOKENS", validate_default=True
    )
    evaluation_max_tokens: int = Field(default=300, ge=1, le=4096, alias="EVALUATION_MAX_TOKENS")
    evaluation_concurrency: int = Field(default=4, ge=1, le=32, alias="EVALUATION_CONCURRENCY")
    # Evaluations the API starts per run in any 24 hours (each one pays for every question of every arm).
    evaluations_per_run_per_day: int = Field(default=3, ge=1, le=100, alias="EVALUATIONS_PER_RUN_PER_DAY")
    # Chunks of questions the evaluation's Map asks at once (each EVALUATION_CONCURRENCY calls at a time).
    evaluation_map_concurrency: int = Field(default=4, ge=1, le=40, alias="EVALUATION_MAP_CONCURRENCY")


def evaluation_settings() -> EvaluationSettings:
    return from_environment(EvaluationSettings)


# One Map iteration's questions: at EVALUATION_CONCURRENCY 4 and about 1 s a call, ~25 s of one Lambda.
CHUNK_QUESTIONS = 100


class EvaluationRequest(LazyModel):
    """What the pipeline (after a run succeeds) or `POST /runs/{run_id}/evaluation` asks for.

    `token` is the API's claim on the run (it claims before starting us); None: the pipeline's own.
    """

    run_id: str = Field(min_length=1)
    compare_with: list[str] = Field(default_factory=list)
    token: str | None = None


class Chunk(LazyModel):
    """`count` questions from `start`, asked of the arm `arm`: one item of the plan's Map."""

    arm: str = Field(min_length=1)
    start: int = Field(ge=0)
    count: int = Field(ge=1, le=CHUNK_QUESTIONS)


class ChunkRequest(Chunk):
    """One iteration of the evaluation's Map, under the claim `token`."""

    run_id: str = Field(min_length=1)
    token: str = Field(min_length=1)
    compare_with: list[str] = Field(default_factory=list)


class ClaimedEvaluation(LazyModel):
    """The evaluation `token` claimed and the chunks its plan listed, to merge; `failure`: what the state
    machine's Catch caught."""

    run_id: str = Field(min_length=1)
    token: str = Field(min_length=1)
    compare_with: list[str] = Field(default_factory=list)
    chunks: list[Chunk] = Field(default_factory=list)
    failure: dict[str, Any] | None = None

    def failure_message(self) -> str | None:
        """The Catch's `{Error, Cause}` as a sentence: a Lambda error's Cause is its JSON (type and message)."""
        if self.failure is None:
            return None
        cause = str(self.failure.get("Cause") or "")
        try:
            parsed = json.loads(cause)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            cause = f"{parsed.get('errorType', 'Error')}: {parsed['errorMessage']}"
        error = str(self.failure.get("Error") or "States.Runtime")
        return without_internal_paths(cause if cause.startswith(error) else f"{error}: {cause}".rstrip(": "))[:1000]


@dataclass(frozen=True)
class Question:
    index: int
    question: str
    reference: str
    context: str | None


@dataclass(frozen=True)
class Arm:
    """Who is asked, and how: `run` gives the provider and the system prompt."""

    name: str
    run: Run
    model: str
    with_context: bool = False

    def prompt(self, question: Question) -> str:
        """The user message: the question, or the passage, a blank line, then the question."""
        return f"{question.context}\n\n{question.question}" if self.with_context else question.question

    @property
    def priced_as(self) -> str:
        """A Bedrock deployment (an ARN) costs what its base model costs per token."""
        return base_model(self.run) if self.model.startswith("arn:") else self.model

    @property
    def asks_the_runs_model(self) -> bool:
        """The run's own tuned model (its `tuned` arm, or the run compared with): not a base model."""
        return self.name in (TUNED, self.run.run_id)

    @property
    def recorded_as(self) -> str:
        """The arm of its run's own report that recorded this model's answers."""
        return TUNED if self.asks_the_runs_model else self.name

    def known_gone(self, today: date) -> bool:
        """The run records that this arm's model no longer answers: nothing is asked, its recording stands in."""
        shut_down = self.run.shut_down_by(today)
        if not self.asks_the_runs_model:
            return shut_down  # OpenAI shuts a base model and its fine-tunes down on the same day
        return shut_down or self.run.model_gone_at is not None or not self.run.fine_tuned_model


def base_model(run: Run) -> str:
    """The model the run was tuned from, as it is asked (Bedrock: without the context-length variant; an
    adopted model: the base its name gives)."""
    if run.adopted_model:
        return spec_of(run).base_of_tuned_model(run.adopted_model) or run.adopted_model
    configured = str(((run.config or {}).get("fine_tune") or {}).get("model") or "")
    return spec_of(run).base_model_id(configured)


@dataclass(frozen=True)
class Recording:
    """An arm's answers as an earlier evaluation wrote them: by question digest, only those it answered."""

    recorded_at: str | None
    answers: dict[str, dict[str, Any]]

    def overlap(self, questions: list[Question]) -> int:
        return sum(1 for question in questions if question_digest(question.question) in self.answers)

    def __or__(self, other: Recording) -> Recording:
        """This recording, its gaps filled from `other`."""
        return Recording(self.recorded_at or other.recorded_at, other.answers | self.answers)


def recording_of(run: Run, arm_name: str) -> Recording:
    """`arm_name`'s answered questions in `reports/<run_id>/evaluation.jsonl` (empty when it has none)."""
    report = _existing(_report_ref(run.run_id))
    answers = {}
    for line in map(json.loads, report.decode("utf-8").splitlines()):
        answer = line.get("arms", {}).get(arm_name)
        if answer and answer.get("error") is None:
            answers[question_digest(line["question"])] = answer
    summaries: list[dict[str, Any]] = (run.evaluation or {}).get("arms", [])
    summary = next((arm for arm in summaries if arm.get("name") == arm_name), {})
    recorded_at = summary.get("recorded", {}).get("recorded_at") or summary.get("evaluated_at")
    return Recording(recorded_at, answers)


def _runs() -> RunsRepository:
    return RunsRepository(settings().runs_table)


def plan_evaluation(request: EvaluationRequest) -> dict[str, Any]:
    """The state machine's first step: refuse what cannot be evaluated (an `EvaluationRefusedError`), claim the
    run, record the estimate before any call, and list the chunks the Map asks: each arm's questions in chunks
    of CHUNK_QUESTIONS (an arm whose model is known gone, or whose provider serves no base model, has none: the
    merge fills it in). A duplicate of a request already claimed plans nothing (`outcome` "duplicate")."""
    run, questions_file = _evaluable_run(request.run_id, needs_model=not request.compare_with)
    compared = _compared_runs(request.compare_with)
    _check_recordings(run, compared, questions_file)
    token = request.token or "pipeline:" + ",".join(request.compare_with)
    evaluation = _claim(run, questions_file, token, from_api=request.token is not None)
    if evaluation is None:
        logger.info("Evaluation already claimed by this request: nothing to do", extra={"run_id": run.run_id})
        return {"run_id": run.run_id, "outcome": "duplicate"}
    try:
        questions = _questions(questions_file)
        arms = _arms(run, compared, with_context=any(question.context for question in questions))
        evaluation |= {"questions": len(questions), "estimate": _estimate(arms, questions)}
        _runs().record_evaluation(run.run_id, evaluation)  # before any call: what the evaluation may spend
    except Exception as error:
        _record_failure(run.run_id, evaluation, _failure_message(error))
        raise
    today = datetime.now(UTC).date()
    chunks = [
        {"arm": arm.name, "start": start, "count": min(CHUNK_QUESTIONS, len(questions) - start)}
        for arm in arms
        if _asked(arm, today)
        for start in range(0, len(questions), CHUNK_QUESTIONS)
    ]
    logger.info("Evaluation planned", extra={"run_id": run.run_id, "arms": len(arms), "chunks": len(chunks)})
    return {
        "run_id": run.run_id,
        "outcome": "evaluate",
        "token": token,
        "compare_with": request.compare_with,
        "chunks": chunks,
        "map_concurrency": evaluation_settings().evaluation_map_concurrency,
    }


def ask_chunk(chunk: ChunkRequest) -> dict[str, Any]:
    """One Map iteration: ask the chunk's questions of its arm and write the answers (or the provider's refusal
    of the arm) to the chunk's part, where the merge reads them; then push the claim's lease on. An iteration
    delivered again finds its part and asks nothing; one whose claim has moved on asks nothing either."""
    outcome = {"arm": chunk.arm, "start": chunk.start, "asked": 0}
    run = _runs().get(chunk.run_id)
    if run is None or run.files is None or run.files.questions is None or not _holds(run, chunk.token):
        logger.warning("Chunk of an evaluation no longer claimed: nothing asked", extra={"run_id": chunk.run_id})
        return outcome | {"skipped": "claim_lost"}
    part = _part_ref(chunk.run_id, chunk.token, chunk.arm, chunk.start)
    if _existing(part):
        return outcome | {"skipped": "already_asked"}
    questions = _questions(run.files.questions)
    arm = _arm_named(run, _compared_runs(chunk.compare_with), questions, chunk.arm)
    asked = questions[chunk.start : chunk.start + chunk.count]
    try:
        answers = _ask_all(arm, asked, _match(run))
        lines = [{"index": question.index, **answer.report()} for question, answer in zip(asked, answers, strict=True)]
    except ProviderRefusedError as error:
        logger.warning("Evaluation arm refused", extra={"run_id": arm.run.run_id, "arm": arm.name, "error": str(error)})
        refusal = {"status": error.status_code, "code": f"{error.PROVIDER}_refused", "message": error.message}
        lines = [{"refused": refusal}]
    put_bytes(
        part, b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines), "application/jsonl"
    )
    _runs().renew_evaluation_lease(chunk.run_id, chunk.token, int(time.time()) + LEASE_SECONDS)
    return outcome | {"asked": len(asked)}


def merge_evaluation(claimed: ClaimedEvaluation) -> dict[str, Any]:
    """The state machine's last step, and its Catch's (`failure` set): each arm's answers from its chunks' parts
    in question order, scored by the run's rule, written into the report and summarised on the run, which ends
    `succeeded` (or `failed` with the failure, keeping every arm whose chunks all finished). The parts are then
    deleted. Run again once the evaluation is closed, it changes nothing and returns the record."""
    run = _runs().get(claimed.run_id)
    if run is None or run.files is None or run.files.questions is None or not _holds(run, claimed.token):
        return dict((run.evaluation if run else None) or {})
    evaluation: dict[str, Any] = dict(run.evaluation or {})
    failure = claimed.failure_message()
    try:
        progress = _merged(run, claimed, evaluation, complete_only=failure is not None)
    except Exception as error:
        if failure is None:
            raise  # the Catch runs this step again with the failure: the finished arms are kept then
        logger.exception("Merging the finished arms of a failed evaluation failed", extra={"run_id": run.run_id})
        progress, failure = evaluation, f"{failure}; then merging its finished arms failed: {_failure_message(error)}"
    if failure is None:
        closed = _closed(progress, "succeeded")
    else:
        closed = _closed(progress, "failed") | {"error": {"code": "evaluation_failed", "message": failure}}
    _runs().record_evaluation(run.run_id, closed)
    delete_objects([_part_ref(run.run_id, claimed.token, chunk.arm, chunk.start) for chunk in claimed.chunks])
    logger.info("Run evaluated", extra={"run_id": run.run_id, "status": closed["status"]})
    return closed


def _merged(run: Run, claimed: ClaimedEvaluation, evaluation: dict[str, Any], complete_only: bool) -> dict[str, Any]:
    """The evaluation with this one's arms merged in, its report written; `complete_only`: an arm with a chunk
    missing is left out (a failure's merge), else it is an error."""
    assert run.files is not None and run.files.questions is not None
    questions = _questions(run.files.questions)
    arms = _arms(run, _compared_runs(claimed.compare_with), with_context=any(q.context for q in questions))
    today = datetime.now(UTC).date()
    summaries, answers = [], {}
    for arm in arms:
        starts = [chunk.start for chunk in claimed.chunks if chunk.arm == arm.name]
        result = _arm_result(run, arm, questions, evaluation["match"], today, claimed.token, starts)
        if result is None and not complete_only:
            raise RuntimeError(f"the answers of arm {arm.name} are incomplete: a chunk of its questions is missing")
        if result is not None:
            summaries.append(result[0])
            answers[arm.name] = result[1]
    if not summaries:
        return evaluation
    report = _report_ref(run.run_id)
    put_bytes(report, _merged_report(_existing(report), questions, answers), "application/jsonl")
    return evaluation | {
        "arms": _merged_summaries(evaluation.get("arms", []), summaries),
        "report_keys": list(dict.fromkeys([*evaluation.get("report_keys", []), report.key])),
    }


def _holds(run: Run, token: str) -> bool:
    """The evaluation `token` claimed is the run's, and running."""
    evaluation = run.evaluation or {}
    return evaluation.get("token") == token and evaluation.get("status") == "running"


def _asked(arm: Arm, today: date) -> bool:
    """The arm's model is asked (not left out for a provider that serves no base model, not known gone)."""
    return not (_left_out(arm) or arm.known_gone(today))


def _left_out(arm: Arm) -> str | None:
    return None if arm.asks_the_runs_model else spec_of(arm.run).base_not_served


def _arm_named(run: Run, compared: list[Run], questions: list[Question], name: str) -> Arm:
    arms = _arms(run, compared, with_context=any(question.context for question in questions))
    found = next((arm for arm in arms if arm.name == name), None)
    if found is None:
        raise ValueError(f"Run {run.run_id}'s evaluation has no arm {name!r}")
    return found


def _record_failure(run_id: str, evaluation: dict[str, Any], message: str) -> None:
    """A failure before the Map: the evaluation ends `failed` with the reason, keeping what was recorded."""
    recorded = _runs().get(run_id)
    latest = recorded.evaluation if recorded and recorded.evaluation else evaluation
    ours = latest if latest.get("token") == evaluation["token"] else evaluation
    failed = _closed(ours, "failed") | {"error": {"code": "evaluation_failed", "message": message}}
    _runs().record_evaluation(run_id, failed)


def _failure_message(error: BaseException) -> str:
    return without_internal_paths(f"{type(error).__name__}: {error}")


def _evaluable_run(run_id: str, needs_model: bool) -> tuple[Run, PreparedFile]:
    """The run and its held-out questions file; `needs_model`: its own model is asked (not a comparison)."""
    run = _runs().get(run_id)
    if run is None:
        raise RunNotFoundError(f"No run with id {run_id!r}.")
    if run.files is None or (run.files.validation is None and run.files.questions is None):
        raise NoValidationSplitError(
            f"Run {run_id} has no validation split, so no held-out questions: set validation_fraction > 0."
        )
    if run.files.questions is None:
        raise NoValidationSplitError(
            f"Run {run_id} has a validation split but no held-out questions file: its evaluation was disabled."
        )
    if run.status != RunStatus.SUCCEEDED:
        raise RunNotSucceededError(f"Run {run_id} is {run.status}; only a succeeded run is evaluated.")
    if needs_model and not run.fine_tuned_model:
        raise RunNotSucceededError(f"Run {run_id} has no model any more (it was deleted): nothing to evaluate.")
    return run, run.files.questions


def _compared_runs(run_ids: list[str]) -> list[Run]:
    """Succeeded runs with a model to ask, or whose model is gone but whose answers were recorded."""
    compared = []
    for run_id in dict.fromkeys(run_ids):  # each once, in the order given
        other = _runs().get(run_id)
        if other is None:
            raise CompareRunNotFoundError(f"No run with id {run_id!r} to compare with.")
        if other.status != RunStatus.SUCCEEDED or not (other.fine_tuned_model or other.evaluation):
            raise CompareRunNotUsableError(
                f"Run {run_id} is {other.status} and has no model to ask; only a succeeded run with a model compares."
            )
        compared.append(other)
    return compared


def _check_recordings(run: Run, compared: list[Run], questions_file: PreparedFile) -> None:
    """A compared run whose model is known to be gone answers from its recording: refuse (409) one that
    recorded none of this run's questions, before anything is claimed or asked."""
    today = datetime.now(UTC).date()
    gone = [other for other in compared if Arm(other.run_id, other, _model_of(other)).known_gone(today)]
    questions = _questions(questions_file) if gone else []
    for other in gone:
        if (recording_of(run, other.run_id) | recording_of(other, TUNED)).overlap(questions) == 0:
            raise NoRecordedAnswersError(_no_recording_message(run, other, len(questions)))


def _no_recording_message(run: Run, other: Run, questions: int) -> str:
    return (
        f"Run {other.run_id}'s model no longer answers, and its recorded answers hold none of run {run.run_id}'s "
        f"{questions} questions: train or prepare run {run.run_id} again with evaluation.questions_from set to "
        f"{other.run_id}, so that it is asked the questions {other.run_id} answered."
    )


def _model_of(run: Run) -> str:
    """The run's model, or the one it had (a deleted deployment's ARN, as its recording names it)."""
    return str(run.fine_tuned_model or run.deleted_deployment_arn or run.adopted_model or "")


def _arms(run: Run, compared: list[Run], with_context: bool) -> list[Arm]:
    if compared:
        return [
            Arm(other.run_id, other, str(other.fine_tuned_model or other.deleted_deployment_arn)) for other in compared
        ]
    arms = [Arm("tuned", run, str(run.fine_tuned_model)), Arm("base", run, base_model(run))]
    return arms + ([Arm("base_with_context", run, base_model(run), with_context=True)] if with_context else [])


def request_evaluation(run_id: str, compare_with: list[str]) -> EvaluationRequest:
    """For the API, which cannot wait for the evaluation: refuse what cannot be evaluated, claim the run's
    evaluation as `pending` under a new token, and return the request to start (it alone will proceed)."""
    run, questions_file = _evaluable_run(run_id, needs_model=not compare_with)
    _check_recordings(run, _compared_runs(compare_with), questions_file)
    token = uuid.uuid4().hex
    _claim(run, questions_file, token, from_api=False, status="pending", requested=True)
    return EvaluationRequest(run_id=run_id, compare_with=compare_with, token=token)


def _claim(
    run: Run,
    questions_file: PreparedFile,
    token: str,
    from_api: bool,
    status: str = "running",
    requested: bool = False,
) -> dict[str, Any] | None:
    """Take the run's evaluation for `token` (`status` with a lease); None when this request is a
    duplicate (its token already ran, runs, or was superseded). Another live evaluation is refused, and so is
    an API request (`requested`) past the day's limit: the claim's compare-and-swap counts them exactly."""
    seen, now = run.evaluation, time.time()
    decision = _claim_decision(seen, token, from_api, now)
    if decision == "duplicate":
        return None
    if decision == "busy":
        raise EvaluationRunningError(f"Run {run.run_id} is being evaluated already; try again once it has finished.")
    earlier = seen or {}
    requests = [when for when in earlier.get("requests", []) if when > now - DAY_SECONDS]
    if requested:
        _check_daily_limit(run.run_id, requests, now)
        requests.append(int(now))
    stamp = utc_now()
    evaluation = {
        "status": status,
        "questions": questions_file.examples,
        "match": _match(run),
        "token": token,
        "lease_until": int(now) + LEASE_SECONDS,
        "requested_at": earlier.get("requested_at", stamp) if earlier.get("token") == token else stamp,
        "arms": earlier.get("arms", []),
        "report_keys": earlier.get("report_keys", []),
        "requests": requests,
    } | ({"started_at": stamp} if status == "running" else {})
    if not _runs().claim_evaluation(run.run_id, evaluation, seen):
        raise EvaluationRunningError(f"Run {run.run_id}'s evaluation was claimed at the same moment; try again.")
    return evaluation


def _check_daily_limit(run_id: str, requests: list[int], now: float) -> None:
    """Each evaluation asks every question of every arm (a 1,000-question run: about 3,000 paid calls)."""
    limit = evaluation_settings().evaluations_per_run_per_day
    if len(requests) >= limit:
        retry_after = max(1, int(min(requests) + DAY_SECONDS - now) + 1)
        raise EvaluationLimitError(
            f"Run {run_id} was evaluated {len(requests)} times in the last 24 hours, the most this deployment allows "
            f"(the stack parameter EvaluationsPerRunPerDay); ask again in {retry_after // 3600} h "
            f"{retry_after % 3600 // 60} min.",
            retry_after,
        )


def _claim_decision(
    seen: dict[str, Any] | None, token: str, from_api: bool, now: float
) -> Literal["claim", "duplicate", "busy"]:
    """Whether `token` may take the run's evaluation as last `seen`; a lease (pending or running) that
    has run out belongs to an invocation that died or never started."""
    if seen is None:
        return "claim"
    status = seen.get("status")
    live = status in ("pending", "running") and seen.get("lease_until", 0) > now
    if seen.get("token") == token:
        # Ours: start it if the API left it pending, take it over if its invocation died; else it is done or doing.
        return "claim" if status == "pending" or (status == "running" and not live) else "duplicate"
    if from_api:
        return "duplicate"  # the API has claimed the run again since: this older request was superseded
    return "busy" if live else "claim"


def _match(run: Run) -> Match:
    return "anywhere" if ((run.config or {}).get("evaluation") or {}).get("match") == "anywhere" else "start"


def _questions(questions_file: PreparedFile) -> list[Question]:
    lines = read_bytes(ObjectRef(settings().data_bucket, questions_file.key), MAX_FILE_BYTES).decode("utf-8")
    return [Question(**json.loads(line)) for line in lines.splitlines() if line.strip()]


def _estimate(arms: list[Arm], questions: list[Question]) -> dict[str, Any]:
    """The most the evaluation can spend: every call's prompt tokens (counted as the data gate counts a
    training example), every answer at max_tokens; no cost when an arm's model is not priced."""
    config = evaluation_settings()
    prompt_tokens, max_cost, priced = 0, 0.0, True
    for arm in arms:
        system = [] if arm.run.system_prompt is None else [{"role": "system", "content": arm.run.system_prompt}]
        tokens = sum(example_tokens([*system, {"role": "user", "content": arm.prompt(q)}]) for q in questions)
        prompt_tokens += tokens
        price = price_for(arm.priced_as, config.inference_prices_per_million_tokens)
        if price is None:
            priced = False
        else:
            max_cost += (tokens * price.input + len(questions) * config.evaluation_max_tokens * price.output) / 1e6
    calls = len(arms) * len(questions)
    return {
        "calls": calls,
        "prompt_tokens": prompt_tokens,
        "max_completion_tokens": calls * config.evaluation_max_tokens,
        "max_cost_usd": round(max_cost, 4) if priced else None,
    }


def _arm_result(
    run: Run, arm: Arm, questions: list[Question], match: Match, today: date, token: str, starts: list[int]
) -> tuple[dict[str, Any], list[ArmAnswer | None]] | None:
    """The arm's summary and its answers in question order (None in the list: not answered, a recording's gap),
    from the parts of its chunks (`starts`; none: its model was not asked); None when a part is missing."""
    left_out = _left_out(arm)
    if left_out:
        unanswered = {"ci95": None, "errors": 0, "error": {"code": "base_not_served", "message": left_out}}
        return summarise_arm(arm.name, arm.model, [], None, utc_now()) | unanswered, []
    if not starts:
        return _recorded_arm(run, arm, questions, match)  # known gone when planned
    lines: list[dict[str, Any]] = []
    for start in sorted(starts):
        part = _existing(_part_ref(run.run_id, token, arm.name, start))
        if not part:
            return None
        lines.extend(map(json.loads, part.decode("utf-8").splitlines()))
    refusal = next((line["refused"] for line in lines if "refused" in line), None)
    if refusal is not None:
        if refusal["status"] not in MODEL_GONE:
            return _refused_summary(arm, refusal["code"], refusal["message"], len(questions)), []
        if arm.asks_the_runs_model:
            _runs().record_model_gone(arm.run.run_id)
        return _recorded_arm(run, arm, questions, match)
    answered = [ArmAnswer.from_report(line) for line in lines]
    price = price_for(arm.priced_as, evaluation_settings().inference_prices_per_million_tokens)
    return summarise_arm(arm.name, arm.model, answered, price, utc_now()), list(answered)


def _recorded_arm(
    run: Run, arm: Arm, questions: list[Question], match: Match
) -> tuple[dict[str, Any], list[ArmAnswer | None]]:
    """A gone model's arm from its recorded answers to these questions, scored by today's rule: those this
    run's report holds for the arm (an earlier comparison), else those of the arm's own run's evaluation."""
    recording = recording_of(run, arm.name) | recording_of(arm.run, arm.recorded_as)
    answers: list[ArmAnswer | None] = []
    for question in questions:
        recorded = recording.answers.get(question_digest(question.question))
        answers.append(None if recorded is None else _rescored(recorded, question, match))
    answered = [answer for answer in answers if answer is not None]
    if not answered:
        message = (
            f"The model {arm.model} (run {arm.run.run_id}) no longer answers, and no answer of it to these "
            f"{len(questions)} questions was recorded before."
        )
        error = {"code": NoRecordedAnswersError.code, "message": message}
        unanswered = {"ci95": None, "errors": len(questions), "error": error}
        return summarise_arm(arm.name, arm.model, [], None, utc_now()) | unanswered, []
    price = price_for(arm.priced_as, evaluation_settings().inference_prices_per_million_tokens)
    summary = summarise_arm(arm.name, arm.model, answered, price, utc_now())
    return summary | {"recorded": {"recorded_at": recording.recorded_at, "questions": len(questions)}}, answers


def _rescored(recorded: dict[str, Any], question: Question, match: Match) -> ArmAnswer:
    return ArmAnswer(
        model=str(recorded.get("model")),
        answer=recorded.get("answer"),
        refusal=recorded.get("refusal"),
        correct=is_correct(recorded.get("answer"), question.reference, match),
        prompt_tokens=recorded.get("prompt_tokens"),
        completion_tokens=recorded.get("completion_tokens"),
        latency_ms=int(recorded.get("latency_ms") or 0),
    )


def _closed(evaluation: dict[str, Any], status: str) -> dict[str, Any]:
    """The evaluation once over: no lease any more, no earlier error."""
    kept = {key: value for key, value in evaluation.items() if key not in ("lease_until", "error")}
    return kept | {"status": status, "finished_at": utc_now()}


def _ask_all(arm: Arm, questions: list[Question], match: Match) -> list[ArmAnswer]:
    """Every question, `evaluation_concurrency` at a time, answers in question order. A refusal (the model
    is gone, access denied) ends the arm: it is raised, and the questions not yet asked are dropped; a
    refusal of one question's request (400) is an error on that question only."""
    provider = provider_for(arm.run)
    with ThreadPoolExecutor(max_workers=evaluation_settings().evaluation_concurrency) as pool:
        futures = [pool.submit(_ask, provider, arm, question, match) for question in questions]
        try:
            return [future.result() for future in futures]
        except ProviderRefusedError:
            for future in futures:
                future.cancel()
            raise


def _ask(provider: FineTuningProvider, arm: Arm, question: Question, match: Match) -> ArmAnswer:
    """One answer, scored and timed. No answer after the gateway's retries is an error, not a wrong answer."""
    started = time.perf_counter()
    try:
        reply = provider.answer(
            arm.model,
            arm.run.system_prompt,
            arm.prompt(question),
            TEMPERATURE,
            evaluation_settings().evaluation_max_tokens,
        )
    except NO_ANSWER_ERRORS as error:
        return ArmAnswer(arm.model, None, None, None, None, None, _ms_since(started), error=str(error))
    except ProviderRefusedError as refused:
        if refused.status_code != HTTPStatus.BAD_REQUEST:
            raise  # the model is gone, access is denied: the arm ends
        # This question's request (its length, its content): an error on it alone, the arm goes on
        reason = f"refused this question: {refused.message}"
        return ArmAnswer(arm.model, None, None, None, None, None, _ms_since(started), error=reason)
    return ArmAnswer(
        model=reply.model,
        answer=reply.text,
        refusal=reply.refusal,
        correct=is_correct(reply.text, question.reference, match),
        prompt_tokens=reply.usage.get("prompt_tokens"),
        completion_tokens=reply.usage.get("completion_tokens"),
        latency_ms=_ms_since(started),
    )


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _refused_summary(arm: Arm, code: str, message: str, questions: int) -> dict[str, Any]:
    """An arm its provider refused (access denied, a deployment not ready): no answers, the reason kept."""
    return summarise_arm(arm.name, arm.model, [], None, utc_now()) | {
        "ci95": None,
        "errors": questions,
        "error": {"code": code, "message": message},
    }


def _merged_summaries(earlier: list[dict[str, Any]], latest: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier arms kept in their order, an arm of the same name replaced, new ones appended. A refused
    arm never erases answers recorded before: the earlier summary stays, with the refusal beside it."""
    merged = {summary["name"]: summary for summary in earlier}
    for summary in latest:
        before = merged.get(summary["name"])
        if "error" in summary and before is not None and "error" not in before and before["questions"] > 0:
            merged[summary["name"]] = before | {"error": summary["error"]}
        else:
            merged[summary["name"]] = summary
    return list(merged.values())


def _report_ref(run_id: str) -> ObjectRef:
    return ObjectRef(settings().data_bucket, f"{REPORTS_PREFIX}{run_id}/evaluation.jsonl")


def _existing(report: ObjectRef) -> bytes:
    try:
        return read_bytes(report, MAX_FILE_BYTES)
    except ObjectMissingError:
        return b""


def _part_ref(run_id: str, token: str, arm: str, start: int) -> ObjectRef:
    """Where one chunk writes its answers: beside the report, named by digests of the claim and the arm (a run id,
    or tuned/base/base_with_context); the merge deletes it."""
    claim, arm_digest = (hashlib.sha256(text.encode()).hexdigest()[:16] for text in (token, arm))
    return ObjectRef(
        settings().data_bucket, f"{REPORTS_PREFIX}{run_id}/evaluation-parts/{claim}/{arm_digest}-{start:06d}.jsonl"
    )


def _merged_report(existing: bytes, questions: list[Question], answers: dict[str, list[ArmAnswer | None]]) -> bytes:
    """One line per question: earlier lines keep their arms, this evaluation's arms are set (replaced) on them."""
    lines = {line["index"]: line for line in map(json.loads, existing.decode("utf-8").splitlines())}
    for position, question in enumerate(questions):
        new_line = {"index": question.index, "question": question.question, "reference": question.reference, "arms": {}}
        line = lines.setdefault(question.index, new_line)
        for name, arm_answers in answers.items():
            answer = arm_answers[position] if position < len(arm_answers) else None
            if answer is not None:
                line["arms"][name] = answer.report()
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines.values()).encode("utf-8")
