"""The run config a user drops under `configs/`: schema, defaults and readable errors.

Every field but `dataset` is optional; the defaults reproduce the original notebook
(SciQ, non-empty support/answer, its system prompt and templates, gpt-4o-mini).

`provider` picks who trains the model (`openai` or `bedrock`). Absent, it is the stack's
`DefaultProvider`, passed in when the run is prepared (`parse_run_config(...,
default_provider=...)`), so a validated config always names its provider. The provider
decides `fine_tune.model`'s default and allowed values and which hyperparameters exist:
`n_epochs` for both, `batch_size` and `learning_rate_multiplier` for OpenAI only,
`learning_rate` and `warmup_steps` for Bedrock only. A provider's hyperparameter given for
the other one is refused with a sentence saying so, never silently ignored.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from shared.domain.config_fields import MAX_CONFIG_BYTES, RULE_ERROR, Auto
from shared.domain.config_fields import Strict as _Strict
from shared.domain.config_fields import no_default as _no_default
from shared.domain.config_fields import rule as _rule
from shared.domain.errors import ConfigError
from shared.domain.run_ids import RUN_ID_PATTERN
from shared.domain.text import lone_surrogate
from shared.providers import DEFAULT_PROVIDER, PROVIDER_NAMES, spec
from shared.providers.base import ProviderSpec

CONFIG_SCHEMA_VERSION = 1  # RunConfig.version's only allowed value
MAX_CONFIG_DEPTH = 32  # objects and lists within each other; a full config needs 3

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

if TYPE_CHECKING:
    Provider = str
else:  # the registry's names: pydantic checks them, the JSON schema lists them
    Provider = Literal[PROVIDER_NAMES]


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


MAX_EXAMPLES_LIMIT = 10**9  # far beyond what one prepare reads in 15 minutes, far below DynamoDB's 38 digits
MIN_VALIDATION_FRACTION = 1e-4  # a positive fraction below it is a typo (and 1e-300 underflows DynamoDB)


def _number(
    rule: str, integer: bool = False, smallest_positive: float | None = None, optional: bool = False
) -> WrapValidator:
    """A number field's one sentence for every refusal: a boolean, a string, NaN or an infinity (JSON readers
    accept them), a fraction where an integer belongs, or a value outside the range; bounded, so every
    value stored on the run fits DynamoDB's numbers."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if value is None and optional:
            return None
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not math.isfinite(value) or (integer and not float(value).is_integer()):
            raise _rule(f"must be {rule}")
        try:
            checked = handler(value)
        except ValidationError:
            raise _rule(f"must be {rule}") from None
        if smallest_positive is not None and 0 < checked < smallest_positive:
            raise _rule(f"must be {rule}")
        return checked

    return WrapValidator(validate)


def _not_taken(name: str, provider: ProviderSpec) -> str:
    owners = [spec(owner).short_label for owner in PROVIDER_NAMES if name in spec(owner).hyperparameters]
    return (
        f"is a hyperparameter of {' and '.join(owners)} fine-tuning only: "
        f"{provider.short_label} does not take it (provider is {provider.name}; its hyperparameters are "
        f"{', '.join(provider.hyperparameters)})"
    )


def _without_none(dumped: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in dumped.items() if key != name or value is not None}


class _HyperparametersBase(_Strict):
    """The epochs every provider takes, and the rules for the fields each provider's package declares
    (`ProviderSpec.hyperparameter_fields`): its own default to "auto", another's are refused by name."""

    # The provider whose hyperparameters these are: each provider validates with its own subclass.
    PROVIDER: ClassVar[str] = DEFAULT_PROVIDER

    n_epochs: Auto | Annotated[int, Field(ge=1, le=50)] = Field(
        default="auto",
        description=(
            'Epochs: 1 to 50 for openai, 1 to 5 for bedrock (Bedrock\'s epochCount), 1 to 10 for open; "auto": the '
            "provider's default."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _provider_defaults(cls, data: Any) -> Any:
        """The provider's own hyperparameters default to "auto"; the other's stay absent, and refused if given."""
        if not isinstance(data, dict):
            return data
        return {**dict.fromkeys(spec(cls.PROVIDER).hyperparameters, "auto"), **data}

    @field_validator("n_epochs", mode="wrap")
    @classmethod
    def _epochs_of_the_provider(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """OpenAI allows 1 to 50 epochs, Bedrock's Nova 1 to 5: the message names the provider's range."""
        provider = spec(cls.PROVIDER)
        rule = f'must be "auto" or {provider.epochs_rule}'
        if isinstance(value, bool) or value is None:
            raise _rule(rule)
        try:
            epochs = handler(value)
        except ValidationError:
            raise _rule(rule) from None
        if isinstance(epochs, int) and epochs > provider.max_epochs:
            raise _rule(rule)
        return epochs

    @field_validator("*", mode="wrap")
    @classmethod
    def _belongs_to_the_provider(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        provider = spec(cls.PROVIDER)
        assert info.field_name is not None
        if info.field_name == "n_epochs":  # every provider's, checked on its own
            return handler(value)
        if info.field_name not in provider.hyperparameters:
            raise _rule(_not_taken(info.field_name, provider))
        if value is None:
            raise _rule('must not be null: write "auto" for the provider\'s default, or leave it out')
        return handler(value)

    @model_serializer(mode="wrap")
    def _without_the_other_providers(self, handler: Any) -> dict[str, Any]:
        """Only the provider's hyperparameters: OpenAI's record and request stay exactly as they were."""
        dumped: dict[str, Any] = handler(self)
        return {name: value for name, value in dumped.items() if value is not None}


if TYPE_CHECKING:
    Hyperparameters = _HyperparametersBase
else:  # every provider's fields, so a config naming another provider's hyperparameter is told whose it is
    Hyperparameters = type(
        "Hyperparameters",
        # pydantic collects fields from the last base to the first: the registry's order, as before
        (*(spec(name).hyperparameter_fields for name in reversed(PROVIDER_NAMES)), _HyperparametersBase),
        {
            "__module__": __name__,
            "__doc__": '`"auto"` leaves a value to the provider; a hyperparameter of the other provider is refused.',
            "model_config": ConfigDict(extra="forbid", frozen=True),
        },
    )


class FineTuneSpec(_Strict):
    PROVIDER: ClassVar[str] = DEFAULT_PROVIDER  # as for Hyperparameters: one subclass per provider

    model: str = Field(
        default=spec(DEFAULT_PROVIDER).default_model,
        min_length=1,
        json_schema_extra=_no_default,
        description=("Base model. " + ". ".join(f"{name}: {spec(name).models_note}" for name in PROVIDER_NAMES) + "."),
    )
    suffix: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Up to 64 characters, added to the tuned model's name (Bedrock: the custom model's name).",
    )
    hyperparameters: Hyperparameters = Field(default_factory=dict, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _provider_model(cls, data: Any) -> Any:
        """`fine_tune` as RunConfig hands it over (for this class's provider); the provider's default model."""
        if isinstance(data, _ForProvider):
            data = data.fields
        if isinstance(data, FineTuneSpec) and not isinstance(data, cls):  # one built for another provider
            data = data.model_dump(exclude_unset=True)
        if isinstance(data, dict) and "model" not in data:
            return {**data, "model": spec(cls.PROVIDER).default_model}
        return data

    @field_validator("model")
    @classmethod
    def _model_of_the_provider(cls, model: str) -> str:
        refusal = spec(cls.PROVIDER).check_model(model)
        if refusal:
            raise _rule(refusal)
        return model


@dataclass(frozen=True)
class _ForProvider:
    """`fine_tune` as given, with the provider RunConfig resolved for it: the discriminator picks that provider's
    FineTuneSpec. A Python object, not a key of the document, so no config can pose as one."""

    provider: str
    fields: Any


def _fine_tune_spec_for(provider: str) -> type[FineTuneSpec]:
    """The provider's FineTuneSpec: the same fields, checked by that provider's rules (its spec)."""
    # Named as their bases: pydantic's messages name the class ("instance of Hyperparameters").
    own = {"PROVIDER": provider, "__module__": __name__, "__qualname__": f"Hyperparameters[{provider}]"}
    hyperparameters = type("Hyperparameters", (Hyperparameters,), own)
    namespace = {
        "PROVIDER": provider,
        "__module__": __name__,
        "__qualname__": f"FineTuneSpec[{provider}]",
        "__annotations__": {"hyperparameters": hyperparameters},
        "hyperparameters": Field(default_factory=dict, validate_default=True),
    }
    return type("FineTuneSpec", (FineTuneSpec,), namespace)


_FINE_TUNE_TAG = "provider:"  # how a location names the union member: left out of messages


def _fine_tune_provider(value: Any) -> str | None:
    if isinstance(value, _ForProvider):
        return _FINE_TUNE_TAG + value.provider
    return _FINE_TUNE_TAG + value.PROVIDER if isinstance(value, FineTuneSpec) else None


if TYPE_CHECKING:
    ProviderFineTune = FineTuneSpec
else:
    ProviderFineTune = Annotated[
        functools.reduce(
            operator.or_,
            (Annotated[_fine_tune_spec_for(name), Tag(_FINE_TUNE_TAG + name)] for name in PROVIDER_NAMES),
        ),
        Discriminator(_fine_tune_provider),
    ]


Match = Literal["start", "anywhere"]
MAX_EVALUATION_QUESTIONS = 1000
# OpenAI names a tuned model ft:<base model>:<organisation>:<suffix>:<id> (suffix may be empty).
TUNED_MODEL_PATTERN = r"^ft:[A-Za-z0-9._-]+:[A-Za-z0-9._-]*:[A-Za-z0-9._-]*:[A-Za-z0-9._-]+$"


class EvaluationSpec(_Strict):
    """The held-out questions the tuned model is checked on against the base model, with and without the passage.

    `enabled` left out follows the validation split (on when `validation_fraction` > 0): a validated
    RunConfig always holds a boolean, resolved against its own split.
    """

    enabled: SkipJsonSchema[None] | bool = Field(
        default=None,
        description="Evaluate the tuned model on the held-out questions; default: true when validation_fraction > 0.",
        json_schema_extra=_no_default,
    )
    max_questions: Annotated[int, _number(f"an integer from 1 to {MAX_EVALUATION_QUESTIONS}", integer=True)] = Field(
        default=100,
        ge=1,
        le=MAX_EVALUATION_QUESTIONS,
        description="Ask at most this many held-out questions (the first ones, in validation-file order).",
    )
    context_column: str | None = Field(
        default="support",
        min_length=1,
        description=(
            "Column holding the passage a RAG system would retrieve, placed before the question for the "
            "base_with_context arm; null for no such arm."
        ),
    )
    reference_column: str = Field(
        default="correct_answer", min_length=1, description="Column holding the reference answer answers are scored on."
    )
    match: Match = Field(
        default="start",
        description=(
            "Where the normalised reference must appear in the normalised answer to count as correct: "
            "at its start, or anywhere."
        ),
    )
    questions_from: str | None = Field(
        default=None,
        description=(
            "The run id of one of this deployment's succeeded runs with held-out questions: this run asks exactly "
            "those questions (max_questions does not apply), and a row whose question is one of them is held out, "
            "never trained on, whatever validation_fraction says. For a successor judged against an older model."
        ),
        json_schema_extra={"pattern": RUN_ID_PATTERN},
    )

    @model_serializer(mode="wrap")
    def _without_unset_questions_from(self, handler: Any) -> dict[str, Any]:
        """A config that names no run to take questions from records exactly what it recorded before."""
        return _without_none(handler(self), "questions_from")

    @field_validator("questions_from")
    @classmethod
    def _questions_from_is_a_run_id(cls, run_id: str | None) -> str | None:
        if run_id is not None and re.fullmatch(RUN_ID_PATTERN, run_id) is None:
            raise _rule("must be a run id as GET /runs lists it (lowercase letters, digits and -, up to 62)")
        return run_id

    @field_validator("enabled", mode="before")
    @classmethod
    def _enabled_is_a_boolean(cls, enabled: Any) -> Any:
        """Only a value the user wrote reaches here: null would read as "off" while meaning "the default"."""
        if not isinstance(enabled, bool):
            raise _rule("must be true or false; leave it out to evaluate exactly when validation_fraction > 0")
        return enabled

    def columns(self) -> list[str]:
        """The dataset columns the evaluation reads, when it is enabled."""
        if not self.enabled:
            return []
        return [self.reference_column] + ([self.context_column] if self.context_column else [])


class AdoptSpec(_Strict):
    """An OpenAI fine-tuned model trained elsewhere (the original notebook, your own code), evaluated as a run."""

    model: str = Field(
        description=(
            "The fine-tuned model's id (ft:<base>:<organisation>:<suffix>:<id>). It must be on the deployment's "
            "AdoptableModels list (a sam deploy parameter) and exist at OpenAI. Nothing is trained: the run "
            "records the model's answers to the held-out questions, which outlive the model."
        ),
        json_schema_extra={"pattern": TUNED_MODEL_PATTERN, "maxLength": 256},
    )

    @field_validator("model")
    @classmethod
    def _model_is_a_fine_tune(cls, model: str) -> str:
        if len(model) > 256 or re.fullmatch(TUNED_MODEL_PATTERN, model) is None:
            raise _rule(
                "must be an OpenAI fine-tuned model id, ft:<base model>:<organisation>:<suffix>:<id> "
                "(a base model has nothing of yours to keep: train a run instead)"
            )
        return model


def _default_shown(model: type[_Strict]) -> Callable[[dict[str, Any]], None]:
    """The schema shows a factory's default as an instance's, built when the schema is, not at import."""

    def show(schema: dict[str, Any]) -> None:
        schema["default"] = model().model_dump(mode="json")

    return show


class RunConfig(_Strict):
    """Version 1 of the run config."""

    version: Literal[1] = Field(default=1, description="Schema version of this config.")
    provider: Provider = Field(
        default=DEFAULT_PROVIDER,
        description=(
            "Who fine-tunes the model: openai, bedrock (Amazon Bedrock, Nova models) or open (open weights the user "
            "owns: LoRA on SageMaker, served by Bedrock Custom Model Import). "
            "Absent: the stack's DefaultProvider parameter (openai unless changed)."
        ),
        json_schema_extra=_no_default,
    )
    dataset: DatasetSpec
    # Factories, not instances: an instance here would build both schemas at import (see _default_shown).
    filter: FilterSpec = Field(default_factory=FilterSpec, json_schema_extra=_default_shown(FilterSpec))
    template: TemplateSpec = Field(default_factory=TemplateSpec, json_schema_extra=_default_shown(TemplateSpec))
    validation_fraction: Annotated[
        float,
        _number(
            f"0 (no validation split) or a number from {MIN_VALIDATION_FRACTION} to 0.5",
            smallest_positive=MIN_VALIDATION_FRACTION,
        ),
    ] = Field(default=0.0, ge=0.0, le=0.5, description="Share of kept rows held out for validation.")
    max_examples: Annotated[
        int | None,
        _number(
            f"an integer from 10 to {MAX_EXAMPLES_LIMIT:,} (or left out for every row)", integer=True, optional=True
        ),
    ] = Field(
        default=None, ge=10, le=MAX_EXAMPLES_LIMIT, description="Keep only the first N rows that pass the filter."
    )
    seed: Annotated[int, _number(f"an integer from 0 to {2**31 - 1}", integer=True)] = Field(
        default=42, ge=0, le=2**31 - 1
    )
    fine_tune: ProviderFineTune = Field(default_factory=dict, validate_default=True)
    evaluation: EvaluationSpec = Field(default_factory=dict, validate_default=True)
    adopt: AdoptSpec | None = Field(
        default=None,
        description=(
            "Adopt an OpenAI fine-tuned model instead of training one: no training file, no job; the run succeeds "
            "with that model and its evaluation records its answers. Takes no provider other than openai and no "
            "fine_tune; needs held-out questions (validation_fraction > 0 or evaluation.questions_from)."
        ),
    )

    @model_validator(mode="wrap")
    @classmethod
    def _resolve_provider(cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """An absent provider becomes the deployment's default (an adopted model's is OpenAI's); `fine_tune` is
        checked by that provider's FineTuneSpec."""
        if not isinstance(data, dict):
            return handler(data)
        if data.get("adopt") is not None:
            _check_adopt_alone(data)
            data = {**data, "provider": data.get("provider") or _ADOPTING_PROVIDER}
        if data.get("provider") is None:
            default = (info.context or {}).get("default_provider", DEFAULT_PROVIDER)
            data = {**data, "provider": default}
        provider = data["provider"] if data["provider"] in PROVIDER_NAMES else DEFAULT_PROVIDER
        return handler({**data, "fine_tune": _ForProvider(provider, data.get("fine_tune", {}))})

    @field_validator("template")
    @classmethod
    def _template_fits_the_provider(cls, template: TemplateSpec, info: ValidationInfo) -> TemplateSpec:
        provider = info.data.get("provider")
        reserved = spec(provider).reserved_text if provider in PROVIDER_NAMES else None
        for part in ("system", "user", "assistant"):
            found = reserved.pattern.search(getattr(template, part) or "") if reserved else None
            if reserved and found:
                raise _rule(f'{part} must not hold "{found.group()}" for {provider}: {reserved.reason}')
        return template

    @field_validator("evaluation")
    @classmethod
    def _evaluation_needs_a_validation_split(cls, evaluation: EvaluationSpec, info: ValidationInfo) -> EvaluationSpec:
        """The questions are the held-out rows: no split, nothing to ask."""
        if "validation_fraction" not in info.data:  # invalid itself, and already reported
            return evaluation
        has_split = info.data["validation_fraction"] > 0 or evaluation.questions_from is not None
        if evaluation.enabled is None:
            return evaluation.model_copy(update={"enabled": has_split})
        if evaluation.enabled and not has_split:
            raise _rule(
                "needs a validation split: evaluation.enabled is true but validation_fraction is 0, and the "
                "questions it asks are the held-out rows; set validation_fraction above 0 (at most 0.5) or "
                "evaluation.enabled to false"
            )
        if evaluation.questions_from is not None and not evaluation.enabled:
            raise _rule("cannot be disabled with evaluation.questions_from, whose questions the evaluation asks")
        return evaluation

    @model_serializer(mode="wrap")
    def _without_unset_adopt(self, handler: Any) -> dict[str, Any]:
        """A run that trains records exactly the config it recorded before adopting existed."""
        return _without_none(handler(self), "adopt")

    @model_validator(mode="after")
    def _adopted_model_is_evaluated(self) -> RunConfig:
        """An adopted run exists to record the model's answers: without questions it would do nothing."""
        if self.adopt is not None and not self.evaluation.enabled:
            raise _rule(
                "adopts a model, and needs held-out questions to record its answers: set validation_fraction above "
                "0 (at most 0.5) or evaluation.questions_from, and leave evaluation.enabled out"
            )
        return self

    def required_columns(self) -> list[str]:
        return sorted(set(self.template.placeholders()) | set(self.filter.non_empty) | set(self.evaluation.columns()))


# Fields an adopted run would silently ignore (nothing is trained): refused, never dropped.
_TRAINING_ONLY_FIELDS = ("fine_tune",)


# The provider whose fine-tuned models a run can adopt (OpenAI: they shut down with their base model).
_ADOPTING_PROVIDER = next(name for name in PROVIDER_NAMES if spec(name).adopts_models)


def _check_adopt_alone(data: dict[str, Any]) -> None:
    if data.get("provider") not in (None, _ADOPTING_PROVIDER):
        raise _rule(
            f"adopts an {spec(_ADOPTING_PROVIDER).label} fine-tuned model, so provider must be {_ADOPTING_PROVIDER} "
            f"or left out, not {data['provider']!r}"
        )
    ignored = [name for name in _TRAINING_ONLY_FIELDS if name in data]
    if ignored:
        raise _rule(
            f"adopts a model and trains nothing, so {', '.join(ignored)} would be ignored: remove it, or remove "
            "adopt to train a model"
        )


def _is_field_name(part: str | int) -> bool:
    """pydantic adds union members (`literal['auto']`, `constrained-int`) and validators to locations."""
    return isinstance(part, int) or not part.startswith(("function-", "literal[", "constrained-", _FINE_TUNE_TAG))


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


def _object_without_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key written twice in one object is refused: JSON readers keep one of them (which one differs), so a
    config's meaning would depend on the reader."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ConfigError(f'config is not valid: the key "{key}" appears twice in one object; write it once')
        document[key] = value
    return document


def _check_unicode(document: Any) -> None:
    escape = lone_surrogate(json.dumps(document, ensure_ascii=False))
    if escape:
        raise ConfigError(f"config is not valid Unicode text: {escape} is half of a surrogate pair with no other half")


def parse_run_config(raw: bytes, size: int | None = None, default_provider: str = DEFAULT_PROVIDER) -> RunConfig:
    """Bytes from S3 to a validated config, or a ConfigError a user can act on.

    `size` is the object's real size when `raw` holds only its first bytes; `default_provider`
    (the stack's DefaultProvider) applies when the config names none.
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
        document: Any = json.loads(text, object_pairs_hook=_object_without_repeated_keys)
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
        return RunConfig.model_validate(document, context={"default_provider": default_provider})
    except ValidationError as error:
        raise ConfigError(f"config is invalid: {describe_validation_error(error)}") from error


# RunConfig as its JSON Schema shows it: one `fine_tune` whose descriptions say what differs by provider
# (validation picks the provider's own FineTuneSpec). Its docstring is the schema's description.
class _DocumentedRunConfig(RunConfig):
    """Version 1 of the run config."""

    model_config = ConfigDict(title="RunConfig")

    fine_tune: FineTuneSpec = Field(default_factory=dict, validate_default=True)


def run_config_json_schema() -> dict[str, Any]:
    schema = _DocumentedRunConfig.model_json_schema()
    schema["$id"] = f"https://ragtune.dev/schemas/run-config.v{CONFIG_SCHEMA_VERSION}.json"
    schema["title"] = "ragtune run config"
    return schema
