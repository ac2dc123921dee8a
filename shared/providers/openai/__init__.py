"""OpenAI's fine-tuning API: everything ragtune knows of OpenAI. `SPEC` is what the registry names; the
gateway (and the openai SDK) is imported only when a run needs it."""

from shared.providers.base import ProviderSpec

OPENAI_DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"

SPEC = ProviderSpec(
    name="openai",
    label="OpenAI",
    short_label="OpenAI",
    code_field="openai_code",
    default_model=OPENAI_DEFAULT_MODEL,
    hyperparameters=("n_epochs", "batch_size", "learning_rate_multiplier"),
    gateway_factory="shared.providers.openai.gateway:gateway",
    max_epochs=50,
    epochs_rule="an integer from 1 to 50",
    adopts_models=True,
)
