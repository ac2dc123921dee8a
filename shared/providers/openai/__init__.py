"""OpenAI's fine-tuning API: everything ragtune knows of OpenAI. `SPEC` is what the registry names; the
gateway (and the openai SDK) is imported only when a run needs it."""

from typing import Annotated

from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from shared.domain.config_fields import Auto, auto_or, no_default
from shared.domain.lazy_model import LazyModel
from shared.providers.base import ProviderSpec

OPENAI_DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"


def fine_tune_base(fine_tuned_model: str) -> str | None:
    """The base model a fine-tuned model was trained from: OpenAI names them
    `ft:<base model>:<organisation>:<suffix>:<id>`. None for any other name."""
    parts = fine_tuned_model.split(":")
    return parts[1] if len(parts) > 2 and parts[0] == "ft" and parts[1] else None


class OpenAIHyperparameters(LazyModel):
    """OpenAI's own fields of `fine_tune.hyperparameters` (with `n_epochs`, 1 to 50)."""

    batch_size: Annotated[
        SkipJsonSchema[None] | Auto | Annotated[int, Field(ge=1, le=256)], auto_or("an integer from 1 to 256")
    ] = Field(default=None, description='openai only; "auto" unless given.', json_schema_extra=no_default)
    learning_rate_multiplier: Annotated[
        SkipJsonSchema[None] | Auto | Annotated[float, Field(ge=0.001, le=10, allow_inf_nan=False)],
        auto_or("a number from 0.001 to 10"),
    ] = Field(default=None, description='openai only; "auto" unless given.', json_schema_extra=no_default)


class OpenAIState(LazyModel):
    """What an OpenAI run keeps of its own (`Run.provider_state`): the ids of the files it uploaded."""

    model_config = ConfigDict(extra="allow")

    training_file_id: str | None = None
    validation_file_id: str | None = None


SPEC = ProviderSpec(
    name="openai",
    label="OpenAI",
    short_label="OpenAI",
    code_field="openai_code",
    default_model=OPENAI_DEFAULT_MODEL,
    models_note=(
        f"any model OpenAI fine-tunes (default {OPENAI_DEFAULT_MODEL}); a tuned `ft:` model only if one of this "
        "deployment's succeeded runs trained it"
    ),
    hyperparameter_fields=OpenAIHyperparameters,
    gateway_factory="shared.providers.openai.gateway:gateway",
    records_factory="shared.providers.openai.records:RECORDS",
    settings_model="shared.providers.openai.settings:OpenAISettings",
    max_epochs=50,
    epochs_rule="an integer from 1 to 50",
    adoption_factory="shared.providers.openai.adoption:adopted_model_shutdown",
    state_model=OpenAIState,
    tuned_model_prefix="ft:",
    base_of_tuned_model=fine_tune_base,
    gone_also="or this deployment's OpenAI key now belongs to another organisation",
    successor_hint=(
        'To keep answering these questions, upload the same config with "provider": "bedrock": the same data '
        "trains a model on Amazon Bedrock."
    ),
)
