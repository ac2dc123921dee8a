"""Open weights the user owns: LoRA fine-tuning on a SageMaker training job, the merged model written to this
deployment's bucket as Hugging Face safetensors, served by Bedrock Custom Model Import. `SPEC` is what the
registry names; the gateway (boto3's sagemaker and bedrock clients) is imported only when a run needs it.

Nobody can shut such a model down: its weights stay in the user's bucket after the imported copy is deleted,
ready for a SageMaker endpoint, vLLM or llama.cpp anywhere.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from shared.domain.config_fields import Auto, auto_or, no_default
from shared.domain.lazy_model import LazyModel
from shared.providers.base import ProviderSpec


class BaseModelCard(NamedTuple):
    """A base model Custom Model Import serves (its architecture is one the import names)."""

    name: str
    architecture: str
    gated: bool  # Hugging Face asks for a token of an account that accepted the model's licence
    context_tokens: int


# Hugging Face models whose architectures Custom Model Import takes (Qwen2, Llama, Mistral), small enough
# for one GPU: the default is ungated (Apache-2.0), the gated ones need the stack's HuggingFaceTokenSecret.
OPEN_MODELS: dict[str, BaseModelCard] = {
    "Qwen/Qwen2.5-0.5B-Instruct": BaseModelCard("Qwen 2.5 0.5B Instruct", "qwen2", False, 32_768),
    "Qwen/Qwen2.5-1.5B-Instruct": BaseModelCard("Qwen 2.5 1.5B Instruct", "qwen2", False, 32_768),
    "Qwen/Qwen2.5-3B-Instruct": BaseModelCard("Qwen 2.5 3B Instruct", "qwen2", False, 32_768),
    "Qwen/Qwen2.5-7B-Instruct": BaseModelCard("Qwen 2.5 7B Instruct", "qwen2", False, 32_768),
    "meta-llama/Llama-3.2-1B-Instruct": BaseModelCard("Llama 3.2 1B Instruct", "llama", True, 131_072),
    "meta-llama/Llama-3.2-3B-Instruct": BaseModelCard("Llama 3.2 3B Instruct", "llama", True, 131_072),
    "mistralai/Mistral-7B-Instruct-v0.3": BaseModelCard("Mistral 7B Instruct v0.3", "mistral", True, 32_768),
}
OPEN_DEFAULT_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
OPEN_DEFAULT_EPOCHS = 3
OPEN_MAX_EPOCHS = 10
# The training script's defaults (shared/providers/open/training/train.py), recorded with the run's request.
OPEN_DEFAULTS: dict[str, int | float] = {
    "learning_rate": 2e-4,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "max_seq_length": 1024,
}


def _catalogue() -> str:
    return ", ".join(f"{model_id}{' (gated)' if card.gated else ''}" for model_id, card in OPEN_MODELS.items())


def check_model(model: str) -> str | None:
    """Only base models whose architecture Custom Model Import serves and that train on one GPU."""
    if model not in OPEN_MODELS:
        return f"must be one of the open-weights base models ragtune trains and Bedrock imports: {_catalogue()}"
    return None


def _open_only(what: str, default: int | float) -> str:
    return f'open only ({what}); "auto" (the training script\'s default, {default}) unless given.'


class OpenHyperparameters(LazyModel):
    """The open provider's own fields of `fine_tune.hyperparameters` (with `n_epochs`, 1 to 10)."""

    lora_learning_rate: Annotated[
        SkipJsonSchema[None] | Auto | Annotated[float, Field(ge=1e-6, le=1e-2, allow_inf_nan=False)],
        auto_or("a number from 1e-06 to 0.01"),
    ] = Field(
        default=None,
        description=_open_only("the LoRA adapter's peak learning rate", OPEN_DEFAULTS["learning_rate"]),
        json_schema_extra=no_default,
    )
    lora_r: Annotated[
        SkipJsonSchema[None] | Auto | Annotated[int, Field(ge=1, le=256)], auto_or("an integer from 1 to 256")
    ] = Field(
        default=None,
        description=_open_only("LoRA rank", OPEN_DEFAULTS["lora_r"]),
        json_schema_extra=no_default,
    )
    lora_alpha: Annotated[
        SkipJsonSchema[None] | Auto | Annotated[int, Field(ge=1, le=512)], auto_or("an integer from 1 to 512")
    ] = Field(
        default=None,
        description=_open_only("LoRA scaling alpha", OPEN_DEFAULTS["lora_alpha"]),
        json_schema_extra=no_default,
    )
    lora_dropout: Annotated[
        SkipJsonSchema[None] | Auto | Annotated[float, Field(ge=0, le=0.5, allow_inf_nan=False)],
        auto_or("a number from 0 to 0.5"),
    ] = Field(
        default=None,
        description=_open_only("LoRA dropout", OPEN_DEFAULTS["lora_dropout"]),
        json_schema_extra=no_default,
    )
    max_seq_length: Annotated[
        SkipJsonSchema[None] | Auto | Annotated[int, Field(ge=128, le=8192)], auto_or("an integer from 128 to 8192")
    ] = Field(
        default=None,
        description=_open_only("tokens per example; longer examples are truncated", OPEN_DEFAULTS["max_seq_length"]),
        json_schema_extra=no_default,
    )


class OpenState(LazyModel):
    """What an open run keeps of its own (`Run.provider_state`): the training job's model folder (the weights the
    user owns), the import job, and the imported model that serves it (`deployment_arn`, which
    `DELETE /runs/{id}/model` deletes, never the weights)."""

    model_config = ConfigDict(extra="allow")

    weights_uri: str | None = None
    weights_manifest_key: str | None = None
    import_job_arn: str | None = None
    deployment_arn: str | None = None
    deleted_deployment_arn: str | None = None


SPEC = ProviderSpec(
    name="open",
    label="AWS",  # SageMaker trains, Bedrock serves: messages name the service after the label
    short_label="Open",
    code_field="aws_code",
    default_model=OPEN_DEFAULT_MODEL,
    models_note=f"one of {_catalogue()} (default {OPEN_DEFAULT_MODEL})",
    hyperparameter_fields=OpenHyperparameters,
    gateway_factory="shared.providers.open.gateway:gateway",
    records_factory="shared.providers.open.records:RECORDS",
    settings_model="shared.providers.open.settings:OpenSettings",
    max_epochs=OPEN_MAX_EPOCHS,
    epochs_rule=f"an integer from 1 to {OPEN_MAX_EPOCHS} for open (the training script's epochs)",
    check_model=check_model,
    state_model=OpenState,
    gone_also="though its weights stay in this deployment's bucket",
    base_not_served=(
        "The base model is not imported: the open provider imports only the tuned weights (a second import would "
        "be paid for and waited on), so this arm is left out. To compare with another model, evaluate with "
        "compare_with a run of another provider."
    ),
    successor_hint=("Import its weights again (GET /runs/{run_id} names them) or serve them elsewhere."),
)
