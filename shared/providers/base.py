"""The provider seam: what the use cases need from whoever trains and serves a run's model.

Each provider's package implements it (`shared.providers.<name>.gateway`) and describes itself in a
`ProviderSpec`; the registry (`shared.providers`) lists them, and `provider_for(run)` picks the run's.
The gateways are the only modules that import `openai` or call `bedrock`/`bedrock-runtime` (a unit test
enforces it).

Every provider sorts its failures into the same families: `ProviderTransientError` (retry later),
`ProviderRefusedError` (the provider said no: record its message, do not retry) with
`ProviderModelGoneError` under it (a model shut down or deleted), `ProviderEmptyAnswerError` and
`ProviderNotConfiguredError` (the deployment lacks what the provider needs). Each provider
raises subclasses of its own (`OpenAITransientError`, `BedrockTransientError`, ...) because Step
Functions' Retry matches the error's class name, and each names the field of a run's `error` that
keeps the provider's own code (`openai_code`, `bedrock_code`).

Import-light on purpose: neither SDK is imported here, so a function that serves only one
provider never loads the other's.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

from pydantic import BaseModel

from shared.domain.run_record import JobEvent, Run
from shared.domain.run_status import JOB_FINISHED, RunStatus
from shared.domain.training_curve import StepMetric
from shared.providers import DEFAULT_PROVIDER, PROVIDER_NAMES, spec
from shared.settings import EnvironmentSettings, from_environment

if TYPE_CHECKING:
    from shared.domain.config import FineTuneSpec
    from shared.domain.data_gate import GateReport


class ProviderTransientError(Exception):
    """Worth retrying later (throttling, 5xx, timeouts, dropped connections).

    `code` is the provider's own error code when it gave one (e.g. `rate_limit_exceeded`,
    `ThrottlingException`); `CODE_FIELD` names where a run's `error` records it.
    """

    CODE_FIELD: ClassVar[str] = "provider_code"
    PROVIDER: ClassVar[str] = "provider"  # names the API's error codes (`<provider>_unavailable`)
    CAUSES: ClassVar[str] = "throttling, outage or timeout"  # what "not answering" means here, for the user
    RETRIES: ClassVar[str] = "the retries"  # whose retries a run's message says are spent

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ProviderRefusedError(Exception):
    """The provider refused the request; its own message is kept for the user."""

    CODE_FIELD: ClassVar[str] = "provider_code"
    PROVIDER: ClassVar[str] = "provider"  # names the API's error codes (`<provider>_refused`)

    def __init__(self, message: str, status_code: int | None, code: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code


class ProviderModelGoneError(ProviderRefusedError):
    """The provider does not know a model a run recorded (shut down, deleted): asking again will not help."""


class ProviderEmptyAnswerError(Exception):
    """The provider answered a question with neither text nor a refusal."""

    PROVIDER: ClassVar[str] = "provider"


class ProviderNotConfiguredError(Exception):
    """The deployment lacks what the provider needs (its API key cannot be read, a role is not set):
    the operator's to fix, never the user's. `CODE` is the API's and the run's error code."""

    PROVIDER: ClassVar[str] = "provider"
    CODE: ClassVar[str] = "provider_not_configured"
    LOG_MESSAGE: ClassVar[str] = "The provider is not configured"
    API_MESSAGE: ClassVar[str] = (
        "This deployment is not configured for its provider; its operator has been told in the logs."
    )
    RUN_ADVICE: ClassVar[str] = " Fix the deployment, then upload the config again."  # after the error's text


def provider_label(name: str) -> str:
    """How a sentence names the provider ("Amazon Bedrock"); "The provider" for the families' own classes."""
    return spec(name).label if name in PROVIDER_NAMES else "The provider"


class ForeignJobError(Exception):
    """A job id that is not the run's job of this deployment (its tags say so): never tracked."""


@dataclass(frozen=True)
class JobSnapshot:
    """The fields of a fine-tuning job a run records, in the common vocabulary.

    `status` is a `RunStatus` (a status the gateway does not know is kept as given). Each provider
    subclasses it to name itself in a failed job's message and the field that keeps its own code.
    """

    PROVIDER_LABEL: ClassVar[str] = "The provider"
    CODE_FIELD: ClassVar[str] = "provider_code"

    job_id: str
    status: RunStatus | str
    fine_tuned_model: str | None
    trained_tokens: int | None
    estimated_finish: int | None
    error: dict[str, Any] | None
    created_at: int
    finished_at: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in JOB_FINISHED

    def run_fields(self) -> dict[str, Any]:
        """What a run records of its job; unknown values are left out rather than stored as null.

        `finished_at` is the job's own (epoch seconds, like `estimated_finish`); when the run saw it
        finish is `status_changed_at`.
        """
        fields: dict[str, Any] = {
            "job_id": self.job_id,
            "fine_tuned_model": self.fine_tuned_model,
            "trained_tokens": self.trained_tokens,
            "estimated_finish": self.estimated_finish,
            "error": self.run_error(),
            "finished_at": self.finished_at if self.terminal else None,
        }
        return {key: value for key, value in fields.items() if value is not None}

    def run_error(self) -> dict[str, str] | None:
        """The run's `error` for this job: our code (`job_failed`, or the `run_code` the gateway gave, e.g.
        `deployment_failed`), the provider's message, and its own code under `CODE_FIELD`. A failed job
        always gets one, even when no reason was given."""
        if self.status != RunStatus.FAILED and not self.error:
            return None
        given = self.error or {}
        error = {
            "code": str(given.get("run_code") or "job_failed"),
            "message": str(given.get("message") or "").strip()
            or f"{self.PROVIDER_LABEL} reported the fine-tuning job as failed without giving a reason.",
        }
        if given.get("code"):
            error[self.CODE_FIELD] = str(given["code"])
        return error


class Answer(NamedTuple):
    """The model's reply: `text`, or, when it declined to answer, `refusal` (and `text` is None)."""

    text: str | None
    refusal: str | None
    model: str
    usage: dict[str, int]


# Records what is known while a job is being started (file ids...) on the `starting` run.
RecordStart = Callable[[dict[str, Any]], object]


class Progress(NamedTuple):
    """What a run records of its job after the provider's own steps past training (`advance`): the
    snapshot in the run's terms (its status may be `deploying`, its model the one that answers) and
    any fields of the provider's own (a deployment's ARN, a base model's shutdown date)."""

    job: JobSnapshot
    fields: Mapping[str, Any] = MappingProxyType({})


class FineTuningProvider(Protocol):
    """One provider's fine-tuning jobs and models, as the use cases see them."""

    @property
    def name(self) -> str: ...

    @property
    def max_temperature(self) -> float:
        """The highest sampling temperature its models take (`answer`'s `temperature`)."""
        ...

    def start_job(self, run: Run, owner: str, record_start: RecordStart) -> JobSnapshot:
        """Start (or find) the prepared run's job; idempotent for the same run and `owner` (the training
        file's version): a repeated or concurrent start ends with the same single job."""
        ...

    def retrieve_job(self, job_id: str, run_id: str | None = None) -> JobSnapshot:
        """The job now; with `run_id`, a job that is not that run's of this deployment is a `ForeignJobError`."""
        ...

    def events_since(self, job_id: str, last_event_id: str | None) -> list[JobEvent]: ...

    def latest_metrics(self, job_id: str) -> dict[str, int | float] | None: ...

    def cancel_job(self, job_id: str) -> JobSnapshot: ...

    def advance(self, run: Run, job: JobSnapshot, *, serve: bool = True) -> Progress:
        """The run's progress given its job now: what happens after training, in the provider's way.

        OpenAI serves a succeeded job's model at once (and its base model's shutdown date is read once).
        Bedrock serves it through an on-demand deployment: a completed job is `deploying` until the
        deployment is Active (then `succeeded`, the deployment ARN as the model) or Failed (`failed`,
        Bedrock's reason). `serve=False` (the API's cancel) reads and records, but creates nothing.
        """
        ...

    def answer(self, model: str, system: str | None, question: str, temperature: float, max_tokens: int) -> Answer: ...

    def step_metrics(self, run: Run) -> list[StepMetric]:
        """The loss (and accuracy, where reported) of each step of the run's finished job, in step order,
        from the metrics files the provider leaves; [] while it has left none."""
        ...


@runtime_checkable
class ServesThroughDeployments(Protocol):
    """A provider that serves a tuned model through a deployment the run creates (Bedrock's on-demand
    deployments, the open provider's imported models), which `DELETE /runs/{id}/model` can delete. OpenAI serves
    its models without one. `DEPLOYMENT_KIND` names it in the API's answer, `DEPLOYMENT_LABEL` in its sentence."""

    DEPLOYMENT_KIND: ClassVar[str]
    DEPLOYMENT_LABEL: ClassVar[str]

    def delete_deployment(self, deployment_arn: str) -> bool:
        """Delete a deployment that serves a run's model; False when the provider no longer knew it."""
        ...


class GateLimits(NamedTuple):
    """What the provider takes of a training file (None: no limit of its own)."""

    min_examples: int
    max_examples: int | None = None
    max_training_bytes: int | None = None
    max_validation_bytes: int | None = None


class TrainingRecords(Protocol):
    """A provider's training file: how one example is laid out, the gate's rules for it, its limits and cost."""

    one_missing_content_per_record: bool  # a blank text is one error for the record, not one per message

    def line(self, parts: list[tuple[str, str]]) -> str:
        """One example's JSONL line from its (role, text) pairs, each text already a JSON string literal."""
        ...

    def inspect(self, lines: Iterable[bytes]) -> GateReport:
        """The gate's report on a file of such lines, as the provider would check them."""
        ...

    def token_limit(self, fine_tune: FineTuneSpec) -> int:
        """The most tokens one example may hold for the config's model (and, where it sets one, its sequence
        length): a file holding a longer one is refused before anything is spent."""
        ...

    def limits(self, *, offline: bool = False) -> GateLimits:
        """Its limits as this deployment's settings give them; offline (no stack behind it), the template's."""
        ...

    def estimate(self, train: GateReport, n_epochs: int | str, model: str, *, offline: bool = False) -> dict[str, Any]:
        """The run's training estimate (tokens billed, cost), as the run records it (offline: the template's prices)."""
        ...


def same_model(model: str) -> str:
    return model


def no_base_in_name(model: str) -> None:
    """A provider whose tuned models' names do not say what they were tuned from."""
    return


class ReservedText(NamedTuple):
    """Text the provider's training refuses anywhere in a file: a template holding it is refused at once."""

    pattern: re.Pattern[str]
    reason: str  # ends the config's message: why it is refused


def any_model(model: str) -> str | None:
    """A provider that takes any model id and answers for it itself (OpenAI)."""
    return None


class ProviderSpec(NamedTuple):
    """What the shared code knows of one provider; its package holds the one instance (`SPEC`).

    Light on purpose: names, labels and rules only. The gateway (and with it the provider's SDK) is
    imported on first use of `gateway()`.
    """

    name: str
    label: str  # in sentences: "Amazon Bedrock"
    short_label: str  # in a config's messages: "Bedrock"
    code_field: str  # where a run's `error` keeps the provider's own error code
    default_model: str
    models_note: str  # which base models it takes, for the config's documentation
    # Its own fields of the config's `fine_tune.hyperparameters` (beside `n_epochs`, which all take): a
    # pydantic model whose fields default to None and say in their description whose they are.
    hyperparameter_fields: type[BaseModel]
    gateway_factory: str  # "module:function" returning its FineTuningProvider
    records_factory: str  # "module:ATTRIBUTE", its TrainingRecords
    max_epochs: int
    epochs_rule: str  # the config's message for an n_epochs out of range
    check_model: Callable[[str], str | None] = any_model  # why a base model is refused, None if taken
    reserved_text: ReservedText | None = None
    adoption_factory: str | None = None  # "module:function": a model's shutdown date, if a config may adopt it
    settings_model: str | None = None  # "module:Class": its own settings (an EnvironmentSettings), if it has any
    # What a run keeps of this provider's own (file ids, a deployment): the fields of its `provider_state`,
    # which the provider's gateway reads through this model.
    state_model: type[BaseModel] = BaseModel
    tuned_model_prefix: str | None = None  # a base model named so is a tuned one: this deployment's only
    base_model_id: Callable[[str], str] = same_model  # the configured base model as it is asked (evaluation)
    base_of_tuned_model: Callable[[str], str | None] = no_base_in_name  # what a tuned model's name says it came from
    # Said when a run's model is gone: who else may have lost it, and where the same data can train anew.
    gone_also: str = ""
    successor_hint: str = ""
    # Why an evaluation leaves the base arms out, for a provider whose base models do not answer (None: they do).
    base_not_served: str | None = None

    def gateway(self) -> FineTuningProvider:
        factory: Callable[[], FineTuningProvider] = _attribute(self.gateway_factory)
        return factory()

    @property
    def adopts_models(self) -> bool:
        """A config may adopt one of its fine-tuned models (`adopt`) to record its answers."""
        return self.adoption_factory is not None

    def adopted_model_shutdown(self, model: str) -> date | None:
        """The adoptable model's shutdown date (None: none announced); a `ConfigError` when it cannot be adopted."""
        if self.adoption_factory is None:
            raise ValueError(f"{self.label} models cannot be adopted")
        check: Callable[[str], date | None] = _attribute(self.adoption_factory)
        return check(model)

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The config's hyperparameters it takes; any other is refused for it."""
        return ("n_epochs", *self.hyperparameter_fields.model_fields)

    def state_fields(self) -> tuple[str, ...]:
        return tuple(self.state_model.model_fields)

    def check_settings(self) -> None:
        """Read its settings from this deployment's environment: a bad one fails here, naming its variable, before
        a run of it does any work."""
        if self.settings_model is not None:
            model: type[EnvironmentSettings] = _attribute(self.settings_model)
            from_environment(model)

    def records(self) -> TrainingRecords:
        found: TrainingRecords = _attribute(self.records_factory)
        return found


def _attribute(path: str) -> Any:
    """`module:attribute`, imported on first use."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def run_provider(run: Run) -> str:
    """The run's provider: recorded on the run, else in its prepared config, else the first provider (older runs)."""
    recorded = run.provider if "provider" in run.model_fields_set else (run.config or {}).get("provider")
    if recorded is None:
        return DEFAULT_PROVIDER
    if recorded not in PROVIDER_NAMES:
        raise ValueError(f"Run {run.run_id} names provider {recorded!r}; known: {', '.join(PROVIDER_NAMES)}.")
    return str(recorded)


def spec_of(run: Run) -> ProviderSpec:
    return spec(run_provider(run))


def provider_for(run: Run) -> FineTuningProvider:
    """The gateway of the run's provider (imported on demand: a function loads only the SDK it uses)."""
    return spec_of(run).gateway()
