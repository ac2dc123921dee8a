"""The run config a user drops under `configs/`: schema, defaults and readable errors.

Every field but `dataset` is optional; the defaults reproduce the original notebook
(SciQ, non-empty support/answer, its system prompt and templates, gpt-4o-mini).
"""

from __future__ import annotations

import json
import re
import string
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from pydantic_core import PydanticCustomError

from shared.errors import ConfigError

CONFIG_SCHEMA_VERSION = 1  # RunConfig.version's only allowed value
MAX_CONFIG_BYTES = 64 * 1024
MAX_CONFIG_DEPTH = 32  # objects and lists within each other; a full config needs 3
# A problem stated as a sentence about its field: rendered "<field> <message>", not "<field>: <message>".
RULE_ERROR = "ragtune_rule"

DATA_PREFIX = "data/"  # the only prefix of the data bucket a dataset may be read from
DATA_FILE_TYPES = (".json", ".jsonl", ".csv", ".parquet")
_HUB_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
HUB_ID = re.compile(rf"(?P<owner>{_HUB_NAME})/(?P<name>{_HUB_NAME})")
S3_URI = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>[^\x00-\x1f\x7f]+)")
REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_.-]+)*")
# The same rule for editors validating against the published JSON Schema (the bucket is checked at run time).
SOURCE_PATTERN = (
    rf"^(?:{_HUB_NAME}/{_HUB_NAME}|s3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]/data/[^\x00-\x1f\x7f]+"
    r"\.(?:[jJ][sS][oO][nN][lL]?|[cC][sS][vV]|[pP][aA][rR][qQ][uU][eE][tT]))$"
)
SOURCE_RULE = (
    'must be a Hugging Face Hub dataset id ("owner/name", like "allenai/sciq") or '
    f"s3://<data bucket>/data/<file> ending in {', '.join(DATA_FILE_TYPES[:-1])} or {DATA_FILE_TYPES[-1]}"
)

NOTEBOOK_SYSTEM_PROMPT = "Given a science question, provide the correct answer with a detailed explanation."


class _Strict(BaseModel):
    """Unknown keys are a typo the user must hear about, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _rule(message: str) -> PydanticCustomError:
    return PydanticCustomError(RULE_ERROR, message.replace("{", "{{").replace("}", "}}"))


def _refused_source(source: str) -> str:
    """What a source that breaks the rule looks like, without echoing it (it may be a path)."""
    if source.lower().startswith("s3://"):
        match = S3_URI.fullmatch(source)
        if source[:5] != "s3://" or match is None:
            return "not an s3:// URI without a valid bucket name and key"
        key = match["key"]
        if not key.startswith(DATA_PREFIX):
            return "not an s3:// URI outside data/"
        if {".", ".."} & set(key.split("/")):
            return "not an s3:// URI with . or .. in its key"
        return "not an s3:// URI of a folder or of another type of file"
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", source):
        return "not a URL (file:, http(s): and other schemes are never fetched)"
    parts = source.split("/")
    if (
        source.startswith(("/", "~", "."))
        or "\\" in source
        or {".", ".."} & set(parts)
        or len(parts) > 2
        or source.lower().endswith(DATA_FILE_TYPES)
    ):
        return (
            "not a local path (the function never reads its own files: upload yours under data/ "
            "in the data bucket and use its s3:// URI)"
        )
    if len(parts) == 1:
        return "not a name without its owner"
    return "not a name with characters a Hub id cannot hold"


def is_hub_id(source: str) -> bool:
    return (
        HUB_ID.fullmatch(source) is not None
        and ".." not in source
        and "--" not in source
        and not source.lower().endswith(DATA_FILE_TYPES)
    )


def data_object_key(source: str) -> tuple[str, str] | None:
    """(bucket, key) of an allowed s3:// source: under data/, a supported file type, no . or .. segments."""
    match = S3_URI.fullmatch(source)
    if match is None:
        return None
    key = match["key"]
    if (
        not key.startswith(DATA_PREFIX)
        or {".", ".."} & set(key.split("/"))
        or not key.lower().endswith(DATA_FILE_TYPES)
    ):
        return None
    return match["bucket"], key


class DatasetSpec(_Strict):
    source: str = Field(
        min_length=1,
        description=(
            'Hugging Face Hub dataset id ("owner/name"), or s3://<data bucket>/data/<file> ending in '
            ".json, .jsonl, .csv or .parquet. Nothing else is read: no local paths, no URLs, no other bucket."
        ),
        json_schema_extra={"pattern": SOURCE_PATTERN},
    )
    split: str = Field(default="train", min_length=1, description="Split to read.")
    revision: str | None = Field(
        default=None,
        description="Hub datasets only: the commit sha, tag or branch to read (pin it to make a run repeatable).",
    )

    @field_validator("source")
    @classmethod
    def _source_is_the_hub_or_the_data_bucket(cls, source: str) -> str:
        if source and not is_hub_id(source) and data_object_key(source) is None:
            raise _rule(f"{SOURCE_RULE}, {_refused_source(source)}")
        return source

    @field_validator("revision")
    @classmethod
    def _revision_is_a_hub_revision(cls, revision: str | None, info: ValidationInfo) -> str | None:
        if revision is None:
            return None
        if len(revision) > 128 or REVISION.fullmatch(revision) is None or ".." in revision:
            raise _rule(
                "must be a commit sha, tag or branch of the Hub dataset: up to 128 letters, digits, "
                "'.', '_', '-' and '/' between names"
            )
        source = info.data.get("source")
        if source is not None and not is_hub_id(source):
            raise _rule("applies only to a Hugging Face Hub dataset id, not to an s3:// source")
        return revision


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
    system: str | None = Field(default=NOTEBOOK_SYSTEM_PROMPT, description="System message; null for none.")
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


def _auto_or(rule: str) -> WrapValidator:
    """One sentence for a union's failure instead of one pydantic line per member; booleans are not numbers."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, bool):
            raise _rule(f'must be "auto" or {rule}')
        try:
            return handler(value)
        except ValidationError:
            raise _rule(f'must be "auto" or {rule}') from None

    return WrapValidator(validate)


class Hyperparameters(_Strict):
    n_epochs: Annotated[Auto | Annotated[int, Field(ge=1, le=50)], _auto_or("an integer from 1 to 50")] = "auto"
    batch_size: Annotated[Auto | Annotated[int, Field(ge=1, le=256)], _auto_or("an integer from 1 to 256")] = "auto"
    learning_rate_multiplier: Annotated[
        Auto | Annotated[float, Field(gt=0, le=10)], _auto_or("a number greater than 0 and at most 10")
    ] = "auto"


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


def _is_field_name(part: str | int) -> bool:
    """pydantic adds union members (`literal['auto']`, `constrained-int`) and validators to locations."""
    return isinstance(part, int) or not part.startswith(("function-", "literal[", "constrained-"))


def describe_validation_error(error: ValidationError) -> str:
    """One sentence per problem, each naming the offending field, for the run's error."""
    problems: list[str] = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"] if _is_field_name(part)) or "config"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        problem = f"{where} {message}" if item["type"] == RULE_ERROR else f"{where}: {message}"
        if problem not in problems:
            problems.append(problem)
    return "; ".join(problems)


# A string (possibly unterminated, to the end) or one bracket: enough to measure nesting before parsing.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def _nested_deeper_than(text: str, limit: int) -> bool:
    depth = 0
    for token in _JSON_TOKENS.finditer(text):
        first = token.group()[0]
        if first in "[{":
            depth += 1
            if depth > limit:
                return True
        elif first in "]}":
            depth -= 1
    return False


def _check_unicode(document: Any) -> None:
    """JSON escapes can spell lone surrogates (\\ud800), which no UTF-8 writer downstream accepts."""
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        escape = f"\\u{ord(error.object[error.start]):04x}"
        raise ConfigError(
            f"config is not valid Unicode text: {escape} is half of a surrogate pair with no other half"
        ) from None


def parse_run_config(raw: bytes, size: int | None = None) -> RunConfig:
    """Bytes from S3 to a validated config, or a ConfigError a user can act on.

    `size` is the object's real size when `raw` holds only its first bytes.
    """
    size = len(raw) if size is None else size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config is {size} bytes; the limit is {MAX_CONFIG_BYTES}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config is not UTF-8 text: {error}") from error
    if _nested_deeper_than(text, MAX_CONFIG_DEPTH):
        raise ConfigError(f"config is nested more than {MAX_CONFIG_DEPTH} levels deep; the limit is {MAX_CONFIG_DEPTH}")
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"config is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from error
    except RecursionError:  # the depth check above should make this unreachable
        raise ConfigError(f"config is nested too deep; the limit is {MAX_CONFIG_DEPTH}") from None
    if not isinstance(document, dict):
        raise ConfigError("config must be a JSON object")
    _check_unicode(document)
    try:
        return RunConfig.model_validate(document)
    except ValidationError as error:
        raise ConfigError(f"config is invalid: {describe_validation_error(error)}") from error


def run_config_json_schema() -> dict[str, Any]:
    schema = RunConfig.model_json_schema()
    schema["$id"] = f"https://ragtune.dev/schemas/run-config.v{CONFIG_SCHEMA_VERSION}.json"
    schema["title"] = "ragtune run config"
    return schema
