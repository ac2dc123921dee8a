"""Amazon Bedrock model customization (Nova): everything ragtune knows of Bedrock. `SPEC` is what the
registry names; the gateway (boto3's bedrock clients) is imported only when a run needs it."""

import re
from typing import Annotated

from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from shared.domain.config_fields import Auto, auto_or, no_default
from shared.domain.lazy_model import LazyModel
from shared.providers.base import ProviderSpec, ReservedText

# Nova models Bedrock fine-tunes and can then serve on demand (billed per token, no hourly charge).
BEDROCK_MODELS = {
    "amazon.nova-micro-v1:0:128k": "Nova Micro",
    "amazon.nova-lite-v1:0:300k": "Nova Lite",
    "amazon.nova-pro-v1:0:300k": "Nova Pro",
}
BEDROCK_DEFAULT_MODEL = "amazon.nova-micro-v1:0:128k"
# Fine-tunable, but refused until AWS documents serving the result on demand: training would be billed for a
# model that could never answer.
BEDROCK_UNSERVABLE = {
    "amazon.nova-2-lite-v1:0:256k": (
        "Nova 2 Lite can be fine-tuned, but AWS documents on-demand deployment of customised Nova Micro, Lite and "
        "Pro only, so its training would be billed for a model ragtune could not serve"
    ),
}
CONTEXT_SUFFIX = re.compile(r":(\d+)k$")  # "amazon.nova-micro-v1:0:128k": the variant fine-tuned
BEDROCK_SCHEMA_VERSION = "bedrock-conversation-2024"  # the training records Nova fine-tuning reads
# Text Nova treats as markup: one occurrence anywhere in the training data fails the whole job.
NOVA_RESERVED_STRINGS = ("User:", "Bot:", "Assistant:", "System:", "<image>", "<video>", "[EOS]")
NOVA_RESERVED = re.compile("|".join(re.escape(text) for text in NOVA_RESERVED_STRINGS))
BEDROCK_MAX_EPOCHS = 5
BEDROCK_LEARNING_RATE = (1e-6, 1e-4)
BEDROCK_MAX_WARMUP_STEPS = 100


def nova_context_tokens(model: str) -> int | None:
    """The context a Nova variant takes (`:128k`: 128,000 tokens), the limit of one training record."""
    match = CONTEXT_SUFFIX.search(model)
    return int(match[1]) * 1000 if match else None


def _catalogue() -> str:
    return ", ".join(f"{model_id} ({name})" for model_id, name in BEDROCK_MODELS.items())


def check_model(model: str) -> str | None:
    """Only the Nova models Bedrock fine-tunes and serves on demand; Nova 2 Lite is refused with its reason."""
    if model in BEDROCK_UNSERVABLE:
        return f"{model} is refused: {BEDROCK_UNSERVABLE[model]}; choose {_catalogue()}"
    if model not in BEDROCK_MODELS:
        return f"must be one of the Nova models Bedrock fine-tunes and serves on demand: {_catalogue()}"
    return None


class BedrockHyperparameters(LazyModel):
    """Bedrock's own fields of `fine_tune.hyperparameters` (with `n_epochs`, Nova's epochCount 1 to 5)."""

    learning_rate: Annotated[
        SkipJsonSchema[None] | Auto | Annotated[float, Field(ge=BEDROCK_LEARNING_RATE[0], le=BEDROCK_LEARNING_RATE[1])],
        auto_or("a number from 1e-06 to 0.0001"),
    ] = Field(
        default=None,
        description='bedrock only (learningRate); "auto" (Bedrock\'s default, 1e-05) unless given.',
        json_schema_extra=no_default,
    )
    warmup_steps: Annotated[
        SkipJsonSchema[None] | Auto | Annotated[int, Field(ge=0, le=BEDROCK_MAX_WARMUP_STEPS)],
        auto_or(f"an integer from 0 to {BEDROCK_MAX_WARMUP_STEPS}"),
    ] = Field(
        default=None,
        description='bedrock only (learningRateWarmupSteps); "auto" (Bedrock\'s default, 10) unless given.',
        json_schema_extra=no_default,
    )


class BedrockState(LazyModel):
    """What a Bedrock run keeps of its own (`Run.provider_state`): the job's client token, the on-demand
    deployment that serves its model, and the one `DELETE /runs/{id}/model` deleted."""

    model_config = ConfigDict(extra="allow")

    bedrock_request_token: str | None = None
    deployment_arn: str | None = None
    deleted_deployment_arn: str | None = None


SPEC = ProviderSpec(
    name="bedrock",
    label="Amazon Bedrock",
    short_label="Bedrock",
    code_field="bedrock_code",
    default_model=BEDROCK_DEFAULT_MODEL,
    models_note=f"one of {_catalogue()} (default {BEDROCK_DEFAULT_MODEL})",
    hyperparameter_fields=BedrockHyperparameters,
    gateway_factory="shared.providers.bedrock.gateway:gateway",
    records_factory="shared.providers.bedrock.records:RECORDS",
    settings_model="shared.providers.bedrock.settings:BedrockSettings",
    max_epochs=BEDROCK_MAX_EPOCHS,
    epochs_rule=f"an integer from 1 to {BEDROCK_MAX_EPOCHS} for bedrock (Bedrock's epochCount)",
    check_model=check_model,
    state_model=BedrockState,
    base_model_id=lambda model: CONTEXT_SUFFIX.sub("", model),  # Converse takes the id without `:128k`
    reserved_text=ReservedText(
        NOVA_RESERVED,
        f"Nova reserves {', '.join(NOVA_RESERVED_STRINGS)} and a training file holding one fails the whole job",
    ),
)
