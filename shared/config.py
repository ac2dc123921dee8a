"""The run config a user drops under `configs/`: schema, defaults and readable errors.

Every field but `dataset` is optional; the defaults reproduce the original notebook
(SciQ, non-empty support/answer, its system prompt and templates, gpt-4o-mini).
"""

from __future__ import annotations

import json
import string
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import ConfigError

CONFIG_SCHEMA_VERSION = 1  # RunConfig.version's only allowed value
MAX_CONFIG_BYTES = 64 * 1024

NOTEBOOK_SYSTEM_PROMPT = (
    "Given a science question, provide the correct answer with a detailed explanation."
)


class _Strict(BaseModel):
    """Unknown keys are a typo the user must hear about, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    source: str = Field(
        min_length=1,
        description="Hugging Face dataset id, s3:// URI, or path to a .json/.jsonl/.csv/.parquet file.",
    )
    split: str = Field(default="train", min_length=1, description="Split to read.")


class FilterSpec(_Strict):
    non_empty: list[str] = Field(
        default=["support", "correct_answer"],
        description="Columns that must be present and not the empty string for a row to be kept.",
    )


def template_placeholders(text: str) -> list[str]:
    """Column names a template refers to; only plain `{column}` placeholders are allowed."""
    names: list[str] = []
    for _, field, format_spec, conversion in string.Formatter().parse(text):
        if field is None:
            continue
        if not field.isidentifier() or format_spec or conversion:
            raise ValueError(
                f"placeholder {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + format_spec if format_spec else ''}}} is not a plain column name "
                "like {question}; write {{ and }} for literal braces"
            )
        names.append(field)
    return names


class TemplateSpec(_Strict):
    system: str | None = Field(
        default=NOTEBOOK_SYSTEM_PROMPT, description="System message; null for none."
    )
    user: str = Field(default="{question}", min_length=1)
    assistant: str = Field(default="{correct_answer} Explanation: {support}", min_length=1)

    @field_validator("system", "user", "assistant")
    @classmethod
    def _placeholders_are_plain(cls, value: str | None) -> str | None:
        if value is not None:
            template_placeholders(value)
        return value

    def placeholders(self) -> list[str]:
        texts = [self.system or "", self.user, self.assistant]
        return sorted({name for text in texts for name in template_placeholders(text)})


Auto = Literal["auto"]


class Hyperparameters(_Strict):
    n_epochs: Auto | Annotated[int, Field(ge=1, le=50)] = "auto"
    batch_size: Auto | Annotated[int, Field(ge=1, le=256)] = "auto"
    learning_rate_multiplier: Auto | Annotated[float, Field(gt=0, le=10)] = "auto"


class FineTuneSpec(_Strict):
    model: str = Field(default="gpt-4o-mini-2024-07-18", min_length=1)
    suffix: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Up to 64 characters, added to the tuned model's name.",
    )
    hyperparameters: Hyperparameters = Hyperparameters()


class RunConfig(_Strict):
    """Version 1 of the run config."""

    version: Literal[1] = Field(default=1, description="Schema version of this config.")
    dataset: DatasetSpec
    filter: FilterSpec = FilterSpec()
    template: TemplateSpec = TemplateSpec()
    validation_fraction: float = Field(
        default=0.0, ge=0.0, le=0.5, description="Share of kept rows held out for validation."
    )
    max_examples: int | None = Field(
        default=None, ge=10, description="Keep only the first N rows that pass the filter."
    )
    seed: int = Field(default=42, ge=0, le=2**31 - 1)
    fine_tune: FineTuneSpec = FineTuneSpec()

    def required_columns(self) -> list[str]:
        return sorted(set(self.template.placeholders()) | set(self.filter.non_empty))


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the offending field, for the run's error."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-"))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{where or 'config'}: {message}")
    return "; ".join(problems)


def parse_run_config(raw: bytes) -> RunConfig:
    """Bytes from S3 to a validated config, or a ConfigError a user can act on."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config is {len(raw)} bytes; the limit is {MAX_CONFIG_BYTES}")
    try:
        document: Any = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"config is not UTF-8 text: {error}") from error
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"config is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from error
    if not isinstance(document, dict):
        raise ConfigError("config must be a JSON object")
    try:
        return RunConfig.model_validate(document)
    except ValidationError as error:
        raise ConfigError(f"config is invalid: {describe_validation_error(error)}") from error


def run_config_json_schema() -> dict[str, Any]:
    schema = RunConfig.model_json_schema()
    schema["$id"] = f"https://ragtune.dev/schemas/run-config.v{CONFIG_SCHEMA_VERSION}.json"
    schema["title"] = "ragtune run config"
    return schema
