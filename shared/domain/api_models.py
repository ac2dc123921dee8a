"""Request and response bodies of the ask API; they are also its published OpenAPI schema.

Responses are built field by field from run items, so an internal attribute never reaches
a caller by accident. Timestamps are ISO 8601 whatever their stored form (ISO or epoch).
"""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from shared.domain.lazy_model import LazyModel
from shared.domain.run_record import CURSOR_PATTERN
from shared.providers import DEFAULT_PROVIDER

RunId = Annotated[str, Field(min_length=1, max_length=128, description="A run id, as listed by GET /runs.")]
# What a question must hold besides spaces, tabs and line breaks (the API strips exactly these).
QUESTION_BLANKS = " \t\n\r\f\v"
EvaluationStatus = Literal["pending", "running", "succeeded", "failed"]


class _ApiModel(LazyModel):
    """Schemas built on first use, not at import: a handler pays only for the models it touches."""


class ErrorBody(_ApiModel):
    message: str = Field(description="What went wrong, for a person to read.")
    code: str = Field(description="Stable machine-readable reason, e.g. run_not_found.")


class FieldError(_ApiModel):
    loc: list[str | int] = Field(description="Where: body, query or path, then the field's name or index.")
    msg: str = Field(description="What is wrong with it (pydantic's words; the value is never echoed).")
    type: str = Field(description="pydantic's error type, e.g. missing, string_too_short, json_invalid.")


class RequestValidationBody(ErrorBody):
    """A malformed request (422): `code` is `invalid_request`, `detail` names each field that failed."""

    detail: list[FieldError]


class RunConflictBody(ErrorBody):
    """Why the run's state does not allow what was asked, with its status as recorded now."""

    status: str = Field(description="The run's status now, e.g. succeeded, or prepared when it has no job yet.")


class AskRequest(_ApiModel):
    """The model is never chosen here: it always comes from a run this deployment trained."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(
        description="The question; not blank, and at most MAX_QUESTION_CHARS characters (2000 by default): a 400 "
        "`invalid_question` otherwise.",
        json_schema_extra={"minLength": 1, "maxLength": 2000, "pattern": "[^ \\t\\n\\r\\f\\v]"},
    )
    run_id: RunId | None = Field(
        default=None,
        description="Run whose model answers; omitted or null: the latest succeeded run that still has a model.",
    )
    temperature: float = Field(
        default=0.0, ge=0, le=2, description="Sampling temperature (0: deterministic); at most 1 for a Bedrock run."
    )
    max_tokens: int = Field(default=512, ge=1, le=4096, description="Upper bound on the answer's tokens.")


class Usage(_ApiModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class AskResponse(_ApiModel):
    answer: str | None = Field(description="The model's answer; null when the model refused to answer.")
    refusal: str | None = Field(
        description="The model's refusal message when it declined to answer (OpenAI's `message.refusal`); "
        "then `answer` is null. Null when the model answered.",
    )
    model: str = Field(description="The fine-tuned model that answered.")
    run_id: str = Field(description="The run that trained it.")
    usage: Usage


class RunError(_ApiModel):
    code: str
    message: str
    openai_code: str | None = Field(default=None, description="OpenAI's own error code, when OpenAI gave one.")


class RunSummary(_ApiModel):
    run_id: str
    status: str
    provider: str = Field(
        default=DEFAULT_PROVIDER, description="Who trains and serves the run's model: openai, bedrock or open."
    )
    created_at: datetime
    updated_at: datetime
    config_key: str | None = None
    base_model: str | None = Field(
        default=None, description="The base model the run trains from (the config's fine_tune.model), or adopts."
    )
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    finished_at: datetime | None = None
    estimated_cost_usd: float | None = Field(
        default=None, description="The training estimate's cost (estimate.cost_usd); null until prepared or unpriced."
    )
    adopted: bool = Field(
        default=False,
        description="An adopted run: its model is an OpenAI fine-tune trained elsewhere (the config's adopt.model); "
        "nothing was trained, its evaluation records the model's answers.",
    )
    model_shutdown: str | None = Field(
        default=None,
        description='When the provider shuts the run\'s model down: "shuts down on YYYY-MM-DD (N days)", or '
        '"shut down on YYYY-MM-DD" once the day has come (from base_model_shutdown_date); null: no date known.',
    )
    error: RunError | None = None


class RunPage(_ApiModel):
    runs: list[RunSummary] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page.",
        json_schema_extra={"pattern": CURSOR_PATTERN},
    )


class Counts(_ApiModel):
    rows_read: int | None = None
    rows_kept: int | None = None
    rows_dropped: int | None = None
    dropped_reasons: dict[str, int] = Field(default_factory=dict)
    train_examples: int | None = None
    validation_examples: int | None = None
    evaluation_questions: int | None = Field(
        default=None, description="Held-out questions the evaluation asks (at most evaluation.max_questions)."
    )
    evaluation_questions_skipped: int | None = Field(
        default=None, description="Held-out rows not asked: their reference has no words to score against."
    )
    evaluation_questions_trained: int | None = Field(
        default=None,
        description="Held-out rows not asked: the training file holds the same question (a repeated row), or it "
        "was asked already.",
    )
    questions_from_rows_held_out: int | None = Field(
        default=None,
        description="evaluation.questions_from: kept rows held out of training because they ask one of that run's "
        "questions.",
    )


class Tokens(_ApiModel):
    """Tokens of the training file as counted by the data gate (o200k_base)."""

    total_tokens: int
    billing_tokens: int


class Estimate(_ApiModel):
    """An openai run's estimate: billed tokens counted with o200k_base, priced per million tokens by model."""

    epochs: int
    trained_tokens: int
    cost_usd: float | None = Field(description="Null when no price is known for the model: never a guess.")
    price_per_million_tokens: float | None = Field(
        description="The model's training price (TrainingPricesPerMillionTokens); null: no price known."
    )


class BedrockEstimate(_ApiModel):
    """A bedrock run's estimate: tokens estimated (o200k_base as a proxy for Nova's), priced per 1,000 tokens."""

    epochs: int
    trained_tokens: int
    cost_usd: float
    price_per_1k_tokens: float
    tokens_estimated: bool
    token_counting: str


class OpenEstimate(_ApiModel):
    """An open run's estimate: GPU hours on the training instance at a stated throughput, priced per hour, and
    the serving price per Custom Model Unit-minute (Bedrock bills an imported model only while it serves)."""

    epochs: int
    trained_tokens: int
    instance_type: str
    tokens_per_second: float = Field(description="The throughput assumed (OpenTrainingTokensPerSecond).")
    gpu_hours: float = Field(description="Training time at that throughput, plus a quarter hour to start and save.")
    price_per_gpu_hour: float
    cost_usd: float
    serving_price_per_cmu_minute: float
    serving: str
    tokens_estimated: bool
    token_counting: str


class DataFile(_ApiModel):
    """A JSONL file prepared for OpenAI, as uploaded to the data bucket."""

    key: str = Field(description="S3 key in the data bucket, e.g. datasets/<run_id>/train.jsonl.")
    bytes: int
    examples: int


class DatasetObject(_ApiModel):
    uri: str = Field(description="s3://<data bucket>/data/<file>")
    version_id: str | None = Field(description="The S3 version read (null in an unversioned bucket).")
    etag: str = Field(description="Its ETag: what its content was.")


class RunFiles(_ApiModel):
    train: DataFile | None = Field(default=None, description="Null only for an adopted run (nothing trained).")
    validation: DataFile | None = Field(default=None, description="Only when validation_fraction > 0.")
    questions: DataFile | None = Field(
        default=None,
        description="The held-out questions the evaluation asks (JSONL of index, question, reference, context); "
        "only when the run is evaluated (evaluation.enabled).",
    )


class GateReport(_ApiModel):
    """The data gate's findings on one file (tokens counted with o200k_base)."""

    examples: int
    total_tokens: int
    billing_tokens: int = Field(description="Tokens billed per epoch: each example's, capped at the per-example limit.")
    max_example_tokens: int
    examples_over_token_limit: int
    duplicate_examples: int
    format_errors: dict[str, int] = Field(default_factory=dict, description="Count per kind of format error.")


class RunGate(_ApiModel):
    train: GateReport
    validation: GateReport | None = None


class JobEvent(_ApiModel):
    id: str
    created_at: datetime
    level: str
    message: str


class RunDetail(RunSummary):
    # The summary's fields, then everything else the run records (no docstring: it would become the
    # published schema's description).
    status_changed_at: datetime | None = None
    config_version: str | None = Field(default=None, description="S3 version id of the config object.")
    config: dict[str, Any] | None = Field(
        default=None,
        description="The resolved run config as recorded when the run was prepared, every default filled in "
        "(shaped as docs/run-config.schema.json describes); null until the run is prepared.",
    )
    counts: Counts | None = None
    dataset_object: DatasetObject | None = Field(
        default=None,
        description="The data file the run was prepared from, pinned (null for a Hub dataset, or until prepared).",
    )
    files: RunFiles | None = Field(default=None, description="The prepared JSONL files; null until prepared.")
    gate: RunGate | None = Field(default=None, description="The data gate's report per file; null until prepared.")
    tokens: Tokens | None = None
    estimate: Estimate | BedrockEstimate | OpenEstimate | None = None
    training_file_id: str | None = Field(default=None, description="OpenAI file id of the uploaded training file.")
    validation_file_id: str | None = Field(default=None, description="OpenAI file id of the validation file.")
    job_id: str | None = None
    estimated_finish: datetime | None = None
    deployment_arn: str | None = Field(
        default=None,
        description="Bedrock runs: the on-demand custom model deployment that serves the model; open runs: the "
        "imported model (Bedrock Custom Model Import) that serves it.",
    )
    weights_uri: str | None = Field(
        default=None,
        description="Open runs: the merged model's folder in this deployment's bucket (Hugging Face safetensors, "
        "config and tokenizer): the user's to keep, download and serve anywhere; never deleted by ragtune.",
    )
    weights_manifest_url: str | None = Field(
        default=None,
        description="Open runs: a short-lived (15 minutes) download link to the weights' manifest (files, sizes, "
        "how to download and serve them).",
    )
    model_deleted_at: datetime | None = Field(
        default=None, description="When DELETE /runs/{run_id}/model deleted the run's deployment."
    )
    deleted_deployment_arn: str | None = Field(default=None, description="The deployment that was deleted.")
    base_model_shutdown_date: date | None = Field(
        default=None,
        description="OpenAI runs: the day OpenAI shuts the base model down, and the tuned model with it (from "
        "OpenAI's GET /v1/models/{model}, read when the job succeeded, or for an adopted run when it was "
        "adopted); from that day /ask answers 410. Null when OpenAI announced no date or it could not be read.",
    )
    model_gone_at: datetime | None = Field(
        default=None,
        description="When the provider first refused the run's model as gone (shut down or deleted): its "
        "evaluation arms are built from its recorded answers from then on.",
    )
    metrics: dict[str, int | float] | None = Field(default=None, description="Latest checkpoint's metrics.")
    notification_error: str | None = Field(
        default=None,
        description="Why the notice that the run finished could not be published on the notifications topic; "
        "the run itself is not affected.",
    )
    events: list[JobEvent] = Field(default_factory=list, description="Recent fine-tuning job events.")
    evaluation_status: EvaluationStatus | None = Field(
        default=None, description="The evaluation's status (GET /runs/{run_id}/evaluation has its results)."
    )
    report_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Short-lived (15 minutes) download links to the run's reports, by name: `loss_png` (the "
        "training and validation loss curve), `metrics_csv` (per-step metrics: step, train_loss, valid_loss, "
        "train_accuracy, valid_accuracy), `evaluation_jsonl` (every held-out question with each arm's answer). "
        "Only those that exist: the curve once the job has finished, the evaluation once it has run.",
    )


class RecordedArm(_ApiModel):
    recorded_at: datetime | None = Field(description="When the recorded answers were given.")
    questions: int = Field(description="This evaluation's questions; the arm answered `questions` of them.")


class EvaluationArm(_ApiModel):
    """One model (and prompt) asked every held-out question."""

    name: str = Field(
        description="`tuned` (the run's model, the question), `base` (the base model, the question), "
        "`base_with_context` (the base model, the row's passage then the question: the RAG the tuned model "
        "replaces), or another run's id (that run's model, added by POST /runs/{run_id}/evaluation)."
    )
    model: str
    accuracy: float | None = Field(description="Share of answered questions scored correct; null if none answered.")
    ci95: tuple[float, float] | None = Field(description="Wilson 95% interval of the accuracy.")
    questions: int = Field(description="Questions answered (asked minus errors).")
    correct: int | None = None
    errors: int | None = Field(default=None, description="Questions the provider failed to answer (not scored).")
    prompt_tokens_mean: float | None = None
    completion_tokens_mean: float | None = None
    latency_ms_p50: float | None = None
    cost_per_1k_usd: float | None = Field(
        description="What 1,000 such questions cost at the template's InferencePricesPerMillionTokens; null for "
        "a model without a price."
    )
    error: ErrorBody | None = Field(default=None, description="Why the arm could not be evaluated (e.g. model gone).")
    evaluated_at: datetime | None = None
    recorded: RecordedArm | None = Field(
        default=None,
        description="Set when the arm's model no longer answers (shut down or deleted): the arm is built from the "
        "answers recorded for it before, matched by question and scored by today's rule. `questions` above "
        "counts the questions it answered then.",
    )
    model_shutdown: str | None = Field(
        default=None,
        description='When the provider shuts this arm\'s model down: "shuts down on YYYY-MM-DD (N days)" (null: no '
        "date known).",
    )


class EvaluationEstimate(_ApiModel):
    """Recorded before the first model call: what the evaluation may spend at most."""

    calls: int
    prompt_tokens: int
    max_completion_tokens: int
    max_cost_usd: float | None = None


class EvaluationResponse(_ApiModel):
    run_id: str
    status: EvaluationStatus
    questions: int = Field(description="Held-out questions asked of each arm.")
    match: Literal["start", "anywhere"] | None = Field(
        default=None,
        description="How an answer is scored: the normalised reference (case, punctuation and whitespace folded) "
        "at the `start` of the normalised answer, or `anywhere` in it (the config's evaluation.match).",
    )
    arms: list[EvaluationArm] = Field(default_factory=list)
    report_keys: list[str] = Field(default_factory=list, description="S3 keys of the reports in the data bucket.")
    estimate: EvaluationEstimate | None = None
    error: ErrorBody | None = None


class EvaluationRequest(_ApiModel):
    """Compare runs on this run's held-out questions; an empty body runs (again) the tuned/base arms."""

    model_config = ConfigDict(extra="forbid")

    compare_with: list[RunId] = Field(
        default_factory=list,
        max_length=5,
        description="Runs (of this deployment, succeeded) whose models answer this run's held-out questions, one "
        "arm each, named by run id; a run whose model is gone answers from its recorded answers. Arms already in "
        "the report are kept.",
    )


class DeletedModelResponse(_ApiModel):
    run_id: str
    deleted: str = Field(
        description="What was deleted: `custom_model_deployment` (a Bedrock run's on-demand deployment) or "
        "`imported_model` (an open run's imported model; its weights stay in the bucket)."
    )
    deployment_arn: str = Field(description="The deployment that no longer serves the run's model.")
    already_gone: bool = Field(description="True when Amazon Bedrock no longer knew the deployment.")
    message: str


class CancelResponse(_ApiModel):
    run_id: str
    status: str = Field(
        description="The job's status as its provider (OpenAI, Amazon Bedrock) reported it after the cancel request."
    )


class CurvePoint(_ApiModel):
    step: int
    train_loss: float | None = None
    valid_loss: float | None = None
    train_accuracy: float | None = None
    valid_accuracy: float | None = None


class CurveResponse(_ApiModel):
    """A run's training curve as published once its job ended (`reports/<run_id>/metrics.csv`), as JSON."""

    run_id: str
    published: bool = Field(description="False until the job has ended and its curve is published; rows are [] then.")
    rows: list[CurvePoint]


class EvaluationAnswersResponse(_ApiModel):
    """Every evaluated question with each arm's answer (`reports/<run_id>/evaluation.jsonl`), as JSON."""

    run_id: str
    answers: list[dict[str, Any]] = Field(
        description="One per question: `index`, `question`, `reference`, and `arms`: by arm name, `model`, "
        "`answer`, `refusal`, `correct`, `prompt_tokens`, `completion_tokens`, `latency_ms` (and `error`)."
    )
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null on the last page.")
