"""Amazon Bedrock's settings: the role its customization jobs assume, Nova's limits and training price."""

from typing import Annotated

from pydantic import BeforeValidator, Field

from shared.settings import EnvironmentSettings, blank_is_none, from_environment


class BedrockSettings(EnvironmentSettings):
    # The role Amazon Bedrock assumes to read a run's datasets/ and write its outputs/ (StartJobFunction only).
    bedrock_customization_role_arn: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(
        default=None, alias="BEDROCK_CUSTOMIZATION_ROLE_ARN"
    )
    bedrock_training_price_per_1k_tokens: float = Field(
        default=0.001, ge=0, alias="BEDROCK_TRAINING_PRICE_PER_1K_TOKENS"
    )
    # Nova's record limits are unconfirmed (commonly quoted 8 to 20,000 for text SFT): settings, easy to change.
    bedrock_min_records: int = Field(default=8, ge=1, alias="BEDROCK_MIN_RECORDS")
    bedrock_max_records: int = Field(default=20_000, ge=1, alias="BEDROCK_MAX_RECORDS")
    bedrock_max_training_bytes: int = Field(default=10**9, ge=1, alias="BEDROCK_MAX_TRAINING_BYTES")
    bedrock_max_validation_bytes: int = Field(default=100 * 10**6, ge=1, alias="BEDROCK_MAX_VALIDATION_BYTES")


def bedrock_settings() -> BedrockSettings:
    return from_environment(BedrockSettings)
