"""The open provider's settings (SageMaker training, Bedrock Custom Model Import): the roles each service
assumes, the training job's image, instance and time bound, and the prices and throughput the estimate assumes."""

from typing import Annotated

from pydantic import BeforeValidator, Field

from shared.settings import EnvironmentSettings, blank_is_none, from_environment


class OpenSettings(EnvironmentSettings):
    open_training_role_arn: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(
        default=None, alias="OPEN_TRAINING_ROLE_ARN"
    )
    open_import_role_arn: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(
        default=None, alias="OPEN_IMPORT_ROLE_ARN"
    )
    open_training_image_uri: str = Field(default="", alias="OPEN_TRAINING_IMAGE_URI")
    open_training_instance_type: str = Field(default="ml.g5.2xlarge", alias="OPEN_TRAINING_INSTANCE_TYPE")
    open_training_max_runtime_seconds: int = Field(
        default=6 * 3600, ge=600, le=28 * 24 * 3600, alias="OPEN_TRAINING_MAX_RUNTIME_SECONDS"
    )
    open_training_volume_gb: int = Field(default=100, ge=1, le=16384, alias="OPEN_TRAINING_VOLUME_GB")
    open_training_price_per_hour: float = Field(default=1.515, ge=0, alias="OPEN_TRAINING_PRICE_PER_HOUR")
    open_training_tokens_per_second: float = Field(default=2500, gt=0, alias="OPEN_TRAINING_TOKENS_PER_SECOND")
    open_serving_price_per_cmu_minute: float = Field(default=0.0785, ge=0, alias="OPEN_SERVING_PRICE_PER_CMU_MINUTE")
    # A Secrets Manager secret holding a Hugging Face token, for gated base models (empty: ungated ones only).
    open_hugging_face_token_secret: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(
        default=None, alias="OPEN_HUGGING_FACE_TOKEN_SECRET"
    )


def open_settings() -> OpenSettings:
    return from_environment(OpenSettings)
