"""OpenAI's settings: the key's secret, the SDK's endpoint and bounds, upload sizes and training prices."""

from typing import Annotated

from pydantic import BeforeValidator, Field

from shared.domain.prices import DEFAULT_TRAINING_PRICES, parse_training_prices
from shared.settings import EnvironmentSettings, blank_is_none, from_environment, parsed_text


class OpenAISettings(EnvironmentSettings):
    openai_api_key_secret: str = Field(alias="OPENAI_API_KEY_SECRET")
    # The SDK's endpoint (the emulator, a proxy, a compatible provider); unset or empty: the SDK's default
    openai_base_url: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(
        default=None, alias="OPENAI_BASE_URL"
    )
    openai_timeout_seconds: float = Field(default=60.0, gt=0, alias="OPENAI_TIMEOUT_SECONDS")
    openai_max_retries: int = Field(default=2, ge=0, le=5, alias="OPENAI_MAX_RETRIES")
    openai_retry_backoff_seconds: float = Field(default=0.5, ge=0, alias="OPENAI_RETRY_BACKOFF_SECONDS")
    upload_multipart_threshold_bytes: int = Field(default=256 * 2**20, ge=1, alias="UPLOAD_MULTIPART_THRESHOLD_BYTES")
    # OpenAI: "Each Part can be at most 64 MB", decimal: 64 MiB (67,108,864 bytes) is over it
    upload_part_bytes: int = Field(default=64_000_000, ge=5 * 2**10, le=64_000_000, alias="UPLOAD_PART_BYTES")
    # Fine-tuning's price by model (the stack's TrainingPricesPerMillionTokens); a model without one is
    # estimated without a cost ("no price known"), never at another model's rate.
    training_prices_per_million_tokens: Annotated[dict[str, float], parsed_text(parse_training_prices)] = Field(
        default=DEFAULT_TRAINING_PRICES, alias="TRAINING_PRICES_PER_MILLION_TOKENS", validate_default=True
    )


def openai_settings() -> OpenAISettings:
    return from_environment(OpenAISettings)
