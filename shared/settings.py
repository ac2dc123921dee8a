"""Environment settings: each role reads only its own, validated once per cold start at first use.

Every function reads `Settings` (the stack's resources and limits). A provider's settings sit in its package
(`shared/providers/<name>/settings.py`) and the evaluation's in `shared/pipeline/evaluate_run.py`: a function
builds and validates only the fields of what it uses (an Ask of an OpenAI run never reads Bedrock's).
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from shared.providers import DEFAULT_PROVIDER, PROVIDER_NAMES

LAMBDA_SCRATCH_DIR = Path("/tmp/ragtune")  # nosec B108  # Lambda's only writable disk, private to its sandbox


class EnvironmentSettings(BaseModel):
    """Fields read from environment variables by alias (template.yaml's Globals and Environment blocks)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


Kind = TypeVar("Kind", bound=EnvironmentSettings)


_READ: dict[type[EnvironmentSettings], EnvironmentSettings] = {}


def from_environment(kind: type[Kind]) -> Kind:
    """The role's settings from this process's environment, read once per cold start."""
    read = _READ.get(kind)
    if not isinstance(read, kind):
        read = _READ[kind] = kind.model_validate(dict(os.environ))
    return read


def forget_settings() -> None:
    """Read every role's settings again at their next use (the tests, after changing the environment)."""
    _READ.clear()


def template_defaults(kind: type[Kind]) -> Kind:
    """The template's defaults with no deployment behind them (no bucket, table or secret): what an offline
    estimate (`ragtune validate --data`) assumes of the limits and prices."""
    unset = {field.alias: "" for field in kind.model_fields.values() if field.is_required() and field.alias}
    return kind.model_validate(unset)


def read_settings(kind: type[Kind], *, offline: bool = False) -> Kind:
    """The deployment's settings of this role; offline, the template's defaults."""
    return template_defaults(kind) if offline else from_environment(kind)


def blank_is_none(value: object) -> object:
    """An optional resource the stack passes as an empty string when it has none."""
    return value or None


def parsed_text(parse: Callable[[str], object]) -> BeforeValidator:
    """A setting the environment gives as text, read by `parse`; any other value (a dict in a test) is left to
    pydantic."""
    return BeforeValidator(lambda value: parse(value) if isinstance(value, str) else value)


def _model_list(text: str) -> frozenset[str]:
    """`"ft:a,ft:b"` (the stack's AdoptableModels) as a set of ids; blanks and surrounding spaces ignored."""
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def _registered_provider(name: str) -> str:
    if name not in PROVIDER_NAMES:
        raise ValueError(f"must be one of {', '.join(PROVIDER_NAMES)}")
    return name


class Settings(EnvironmentSettings):
    """The stack's resources and limits (template.yaml's Globals and the functions' Environment blocks): what every
    function that uses the stack reads."""

    data_bucket: str = Field(alias="DATA_BUCKET")
    runs_table: str = Field(alias="RUNS_TABLE")
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")
    scratch_dir: Path = Field(default=LAMBDA_SCRATCH_DIR, alias="SCRATCH_DIR")
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN")
    notification_topic_arn: str = Field(alias="NOTIFICATION_TOPIC_ARN")
    poll_interval_seconds: int = Field(default=60, ge=0, alias="POLL_INTERVAL_SECONDS")
    max_polls_per_execution: int = Field(default=1500, ge=1, alias="MAX_POLLS_PER_EXECUTION")
    max_question_chars: int = Field(default=2000, ge=1, alias="MAX_QUESTION_CHARS")
    # The provider of a config that names none (the stack's DefaultProvider).
    default_provider: Annotated[str, AfterValidator(_registered_provider)] = Field(
        default=DEFAULT_PROVIDER, alias="DEFAULT_PROVIDER"
    )
    # OpenAI fine-tunes a config may adopt (`adopt.model`): the stack's AdoptableModels, set by the operator at
    # sam deploy; empty, nothing is adoptable. A config writer cannot reach any other model of the organisation.
    adoptable_models: Annotated[frozenset[str], parsed_text(_model_list)] = Field(
        default=frozenset(), alias="ADOPTABLE_MODELS"
    )
    # The state machine that runs an evaluation (plan, a Map over chunks of questions, merge): what POST
    # /runs/{id}/evaluation, the job tracker and PrepareFunction (an adopted run) start.
    evaluation_state_machine_arn: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(
        default=None, alias="EVALUATION_STATE_MACHINE_ARN"
    )


def settings() -> Settings:
    return from_environment(Settings)
