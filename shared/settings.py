"""Environment settings, validated once per cold start and read through a cached getter."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """What template.yaml's Globals and function Environment blocks provide."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    data_bucket: str = Field(alias="DATA_BUCKET")
    runs_table: str = Field(alias="RUNS_TABLE")
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")
    training_price_per_million_tokens: float = Field(
        default=3.0, ge=0, alias="TRAINING_PRICE_PER_MILLION_TOKENS"
    )
    scratch_dir: Path = Field(default=Path("/tmp/ragtune"), alias="SCRATCH_DIR")


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.model_validate(dict(os.environ))
