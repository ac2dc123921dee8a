"""A run as the runs table records it.

Import-light on purpose (pydantic only): every function reads runs, and the ask and poll
functions' cold starts matter.

Statuses: `shared.domain.run_status`.
"""

from datetime import date
from functools import cache
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator
from typing_extensions import TypedDict  # pydantic validates typing's own only from Python 3.12

from shared.domain.lazy_model import LazyModel
from shared.domain.run_status import RunStatus
from shared.providers import DEFAULT_PROVIDER

# A position in a listing: the time a run was created (or reached the listed status), then its id. Every string
# of this form is a position (the page starts after it), so every cursor the document allows is accepted.
CURSOR_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z~[A-Za-z0-9._-]{1,128}$"


# A status this code does not know (a provider's new one, recorded as given) stays a plain string.
Status = Annotated[RunStatus | str, Field(union_mode="left_to_right")]
JsonObject = dict[str, Any]


class JobEvent(TypedDict):
    """One of the job's events as the run keeps it (`created_at` in epoch seconds)."""

    id: str
    created_at: int
    level: str
    message: str


@cache
def _provider_state_fields() -> frozenset[str]:
    """Every registered provider's `provider_state` fields (read once: the specs import this module)."""
    from shared.providers import PROVIDER_NAMES, spec

    return frozenset(name for provider in PROVIDER_NAMES for name in spec(provider).state_fields())


class _Recorded(LazyModel):
    # Whatever else an item holds (a field an older or newer version wrote) is kept, not refused.
    model_config = ConfigDict(extra="allow")


class RecordedError(_Recorded):
    """`code` is always ours (job_failed, openai_refused, bedrock_refused, ...); `openai_code` is OpenAI's
    own, when given, and `bedrock_code` Amazon Bedrock's (its error code, e.g. `AccessDeniedException`)."""

    code: str
    message: str
    openai_code: str | None = None
    bedrock_code: str | None = None


class PreparedFile(_Recorded):
    key: str
    bytes: int
    examples: int


class PreparedFiles(_Recorded):
    train: PreparedFile | None = None  # None: an adopted run, which trains nothing
    validation: PreparedFile | None = None
    # The held-out questions the evaluation asks (from the validation split, when evaluation is enabled).
    questions: PreparedFile | None = None


class Run(_Recorded):
    """One item of the runs table, as read (numbers already ints and floats, not Decimals).

    Writes stay partial updates of the item; `recorded()` is the item as stored, field for field (a record
    written before `provider_state` existed reads with its provider's fields moved into it).
    Timestamps keep their stored form: ISO 8601 strings for ours, epoch seconds for the job's.
    """

    run_id: str
    entity: str = "run"
    status: Status
    provider: str = Field(
        default=DEFAULT_PROVIDER, description="Who runs the job; not stored while OpenAI is the only one."
    )
    created_at: str
    updated_at: str
    status_changed_at: str | None = None
    notified_at: str | None = None
    notification_error: str | None = None  # a finished run's notice that SNS did not take
    # The config object the run comes from (prepare).
    config_key: str | None = None
    config_version: str | None = None
    config_sha256: str | None = None
    # Prepared data; carried as recorded (`config` is never re-validated against today's RunConfig).
    config: JsonObject | None = None
    # The data bucket object prepared from: {uri, version_id, etag} (absent for a Hub dataset).
    dataset_object: JsonObject | None = None
    counts: JsonObject | None = None
    files: PreparedFiles | None = None
    gate: dict[str, JsonObject] | None = None
    estimate: JsonObject | None = None
    # Starting the job.
    start_owner: str | None = None
    job_id: str | None = None
    execution_arn: str | None = None
    # The job, as the last poll (or a cancel) saw it.
    job_observed_at: int | None = None
    fine_tuned_model: str | None = None
    # What the run's provider keeps of its own, as its spec's `state_model` types it (OpenAI: the uploaded
    # files' ids; Bedrock: the job's client token, the deployment that serves the model, the one deleted).
    provider_state: JsonObject | None = None
    # When `DELETE /runs/{id}/model` deleted the model's deployment (the run then has no model).
    model_deleted_at: str | None = None
    # OpenAI runs: when the base model (and so the tuned one) shuts down, "YYYY-MM-DD", read once the job
    # has succeeded (`GET /models/{model}`); absent when OpenAI announced no date or could not be asked.
    # An adopted run: the date GET /models/{model} gives for the adopted model itself (fine-tunes follow their base).
    base_model_shutdown_date: str | None = None
    # When the provider first refused the run's model as gone (shut down or deleted, 404/410): its evaluation
    # arms are built from the answers recorded before (reports/<run_id>/evaluation.jsonl), without asking.
    model_gone_at: str | None = None
    trained_tokens: int | None = None
    estimated_finish: int | None = None
    finished_at: int | None = None
    metrics: JsonObject | None = None
    events: list[JobEvent] = Field(default_factory=list)
    event_count: int = 0
    last_event_id: str | None = None
    error: RecordedError | None = None
    # After the job finished: what was written under reports/<run_id>/ (`metrics_csv`, `loss_png`: their keys).
    reports: JsonObject | None = None
    # The evaluation on the held-out questions: its status, per-arm summaries and report keys.
    evaluation: JsonObject | None = None

    @model_validator(mode="before")
    @classmethod
    def _provider_state_of_older_records(cls, data: Any) -> Any:
        """Records written before `provider_state` kept the provider's fields at the top: read them into it."""
        if not isinstance(data, dict):
            return data
        older = {name: data[name] for name in _provider_state_fields() & data.keys()}
        if not older:
            return data
        rest = {name: value for name, value in data.items() if name not in older}
        return rest | {"provider_state": {**older, **(data.get("provider_state") or {})}}

    def state(self, name: str) -> Any:
        """One field of `provider_state` (None when the provider has not recorded it)."""
        return (self.provider_state or {}).get(name)

    @property
    def deployment_arn(self) -> str | None:
        """The deployment that serves the run's model, for a provider that serves through one (Bedrock)."""
        value = self.state("deployment_arn")
        return str(value) if value else None

    @property
    def deleted_deployment_arn(self) -> str | None:
        value = self.state("deleted_deployment_arn")
        return str(value) if value else None

    def recorded(self) -> JsonObject:
        """The item's fields as stored (JSON values; defaults of absent fields left out; an older record's
        provider fields in `provider_state`)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def evaluation_now(self, now: float) -> JsonObject | None:
        """The evaluation as it stands at `now`: a claim (pending or running) whose lease has run out belongs
        to an invocation that timed out, ran out of memory or never started, and nothing will finish it."""
        evaluation = self.evaluation
        if not evaluation or evaluation.get("status") not in ("pending", "running"):
            return evaluation
        lease_until = evaluation.get("lease_until")
        if not isinstance(lease_until, int | float) or lease_until > now:
            return evaluation
        stopped = {
            "code": "evaluation_stopped",
            "message": f"The evaluation stopped without finishing (its invocation timed out, ran out of memory or "
            f"never started); ask for it again with POST /runs/{self.run_id}/evaluation.",
        }
        return {**evaluation, "status": "failed", "error": stopped}

    @property
    def adopted_model(self) -> str | None:
        """The OpenAI fine-tune an adopted run evaluates (trained elsewhere; this deployment trained nothing)."""
        adopt = (self.config or {}).get("adopt") or {}
        model = adopt.get("model")
        return model if isinstance(model, str) else None

    def shut_down_by(self, today: date) -> bool:
        """The recorded shutdown date has come (UTC): OpenAI has shut the base model and its fine-tunes down."""
        return bool(self.base_model_shutdown_date) and date.fromisoformat(str(self.base_model_shutdown_date)) <= today

    def shutdown_note(self, today: date) -> str | None:
        """ "shuts down on 2027-01-14 (38 days)", or "shut down on ..." once the day has come (or, when the
        provider refused the model as gone earlier, the day it did); None: no date."""
        if self.model_gone_at:
            return f"shut down on {self.model_gone_at[:10]} (the provider no longer serves it)"
        if not self.base_model_shutdown_date:
            return None
        if self.shut_down_by(today):
            return f"shut down on {self.base_model_shutdown_date}"
        days = (date.fromisoformat(self.base_model_shutdown_date) - today).days
        return f"shuts down on {self.base_model_shutdown_date} ({days} day{'s' if days != 1 else ''})"

    @property
    def system_prompt(self) -> str | None:
        """The system message the run's model was trained with (None: none)."""
        template = (self.config or {}).get("template") or {}
        system = template.get("system")
        return system if isinstance(system, str) else None
