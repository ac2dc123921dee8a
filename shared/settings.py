"""Environment settings, validated once per cold start and read through a cached getter."""

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from shared.domain.prices import DEFAULT_TRAINING_PRICES, ModelPrice, parse_prices, parse_training_prices
from shared.providers import DEFAULT_PROVIDER, PROVIDER_NAMES

LAMBDA_SCRATCH_DIR = Path("/tmp/ragtune")  # nosec B108  # Lambda's only writable disk, private to its sandbox
DEFAULT_INFERENCE_PRICES = (
    "gpt-4o-mini=0.15/0.60,ft:gpt-4o-mini=0.30/1.20,amazon.nova-micro=0.035/0.14,amazon.nova-lite=0.06/0.24,"
    "amazon.nova-2-lite=0.30/2.50,amazon.nova-pro=0.80/3.20"
)


def _model_list(value: object) -> object:
    """`"ft:a,ft:b"` (the stack's AdoptableModels) as a set of ids; blanks and surrounding spaces ignored."""
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    return value


def _registered_provider(name: str) -> str:
    if name not in PROVIDER_NAMES:
        raise ValueError(f"must be one of {', '.join(PROVIDER_NAMES)}")
    return name


def _training_prices(value: object) -> object:
    return parse_training_prices(value) if isinstance(value, str) else value


def _prices(value: object) -> object:
    """The environment gives text; anything else (a dict in a test) is left to pydantic."""
    return parse_prices(value) if isinstance(value, str) else value


class Settings(BaseModel):
    """What template.yaml's Globals and function Environment blocks provide."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    data_bucket: str = Field(alias="DATA_BUCKET")
    runs_table: str = Field(alias="RUNS_TABLE")
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")
    # OpenAI fine-tuning's price by model (the stack's TrainingPricesPerMillionTokens); a model without one is
    # estimated without a cost ("no price known"), never at another model's rate.
    training_prices_per_million_tokens: Annotated[dict[str, float], BeforeValidator(_training_prices)] = Field(
        default=DEFAULT_TRAINING_PRICES, alias="TRAINING_PRICES_PER_MILLION_TOKENS", validate_default=True
    )
    scratch_dir: Path = Field(default=LAMBDA_SCRATCH_DIR, alias="SCRATCH_DIR")
    openai_api_key_secret: str = Field(alias="OPENAI_API_KEY_SECRET")
    # The SDK's endpoint (the emulator, a proxy, a compatible provider); unset or empty: the SDK's default
    openai_base_url: Annotated[str | None, BeforeValidator(lambda value: value or None)] = Field(
        default=None, alias="OPENAI_BASE_URL"
    )
    openai_timeout_seconds: float = Field(default=60.0, gt=0, alias="OPENAI_TIMEOUT_SECONDS")
    openai_max_retries: int = Field(default=2, ge=0, le=5, alias="OPENAI_MAX_RETRIES")
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN")
    notification_topic_arn: str = Field(alias="NOTIFICATION_TOPIC_ARN")
    poll_interval_seconds: int = Field(default=60, ge=0, alias="POLL_INTERVAL_SECONDS")
    max_polls_per_execution: int = Field(default=1500, ge=1, alias="MAX_POLLS_PER_EXECUTION")
    upload_multipart_threshold_bytes: int = Field(default=256 * 2**20, ge=1, alias="UPLOAD_MULTIPART_THRESHOLD_BYTES")
    # OpenAI: "Each Part can be at most 64 MB", decimal: 64 MiB (67,108,864 bytes) is over it
    upload_part_bytes: int = Field(default=64_000_000, ge=5 * 2**10, le=64_000_000, alias="UPLOAD_PART_BYTES")
    openai_retry_backoff_seconds: float = Field(default=0.5, ge=0, alias="OPENAI_RETRY_BACKOFF_SECONDS")
    max_question_chars: int = Field(default=2000, ge=1, alias="MAX_QUESTION_CHARS")
    # The provider of a config that names none (the stack's DefaultProvider).
    default_provider: Annotated[str, AfterValidator(_registered_provider)] = Field(
        default=DEFAULT_PROVIDER, alias="DEFAULT_PROVIDER"
    )
    bedrock_training_price_per_1k_tokens: float = Field(
        default=0.001, ge=0, alias="BEDROCK_TRAINING_PRICE_PER_1K_TOKENS"
    )
    # Nova's record limits are unconfirmed (commonly quoted 8 to 20,000 for text SFT): settings, easy to change.
    bedrock_min_records: int = Field(default=8, ge=1, alias="BEDROCK_MIN_RECORDS")
    bedrock_max_records: int = Field(default=20_000, ge=1, alias="BEDROCK_MAX_RECORDS")
    bedrock_max_training_bytes: int = Field(default=10**9, ge=1, alias="BEDROCK_MAX_TRAINING_BYTES")
    bedrock_max_validation_bytes: int = Field(default=100 * 10**6, ge=1, alias="BEDROCK_MAX_VALIDATION_BYTES")
    # The role Amazon Bedrock assumes to read a run's datasets/ and write its outputs/ (StartJobFunction only).
    bedrock_customization_role_arn: Annotated[str | None, BeforeValidator(lambda value: value or None)] = Field(
        default=None, alias="BEDROCK_CUSTOMIZATION_ROLE_ARN"
    )
    # The open provider (SageMaker training, Bedrock Custom Model Import): the roles each service assumes, the
    # training job's image, instance and time bound, and the prices and throughput the estimate assumes.
    open_training_role_arn: Annotated[str | None, BeforeValidator(lambda value: value or None)] = Field(
        default=None, alias="OPEN_TRAINING_ROLE_ARN"
    )
    open_import_role_arn: Annotated[str | None, BeforeValidator(lambda value: value or None)] = Field(
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
    open_hugging_face_token_secret: Annotated[str | None, BeforeValidator(lambda value: value or None)] = Field(
        default=None, alias="OPEN_HUGGING_FACE_TOKEN_SECRET"
    )
    # What the evaluation's arms cost: `<model-id prefix>=<input>/<output>` USD per 1M tokens, the longest
    # matching prefix wins (a Bedrock deployment is priced as its base model). Public list prices, to update.
    inference_prices_per_million_tokens: Annotated[dict[str, ModelPrice], BeforeValidator(_prices)] = Field(
        default=DEFAULT_INFERENCE_PRICES, alias="INFERENCE_PRICES_PER_MILLION_TOKENS", validate_default=True
    )
    evaluation_max_tokens: int = Field(default=300, ge=1, le=4096, alias="EVALUATION_MAX_TOKENS")
    evaluation_concurrency: int = Field(default=4, ge=1, le=32, alias="EVALUATION_CONCURRENCY")
    # Evaluations the API starts per run in any 24 hours (each one pays for every question of every arm).
    evaluations_per_run_per_day: int = Field(default=3, ge=1, le=100, alias="EVALUATIONS_PER_RUN_PER_DAY")
    # OpenAI fine-tunes a config may adopt (`adopt.model`): the stack's AdoptableModels, set by the operator at
    # sam deploy; empty, nothing is adoptable. A config writer cannot reach any other model of the organisation.
    adoptable_models: Annotated[frozenset[str], BeforeValidator(_model_list)] = Field(
        default=frozenset(), alias="ADOPTABLE_MODELS"
    )
    # The state machine that runs an evaluation (plan, a Map over chunks of questions, merge): what POST
    # /runs/{id}/evaluation, the job tracker and PrepareFunction (an adopted run) start.
    evaluation_state_machine_arn: Annotated[str | None, BeforeValidator(lambda value: value or None)] = Field(
        default=None, alias="EVALUATION_STATE_MACHINE_ARN"
    )
    # Chunks of questions the evaluation's Map asks at once (each EVALUATION_CONCURRENCY calls at a time).
    evaluation_map_concurrency: int = Field(default=4, ge=1, le=40, alias="EVALUATION_MAP_CONCURRENCY")


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.model_validate(dict(os.environ))


def stack_defaults() -> Settings:
    """The template's defaults with no deployment behind them (no bucket, table or secret): what an offline
    estimate (`ragtune validate --data`) assumes of the limits and prices."""
    unset = {field.alias: "" for field in Settings.model_fields.values() if field.is_required() and field.alias}
    return Settings.model_validate(unset)
