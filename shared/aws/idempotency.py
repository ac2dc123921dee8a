"""Run an action at most once per key, however often its trigger is delivered.

S3 delivers events at least once and retries failed async invocations; Powertools'
idempotency records (in their own DynamoDB table) make a replay return the first
result, and make a concurrent duplicate fail fast instead of doing the work twice.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from shared.aws import client
from shared.settings import settings

IDEMPOTENCY_CONFIG = IdempotencyConfig(expires_after_seconds=24 * 3600)


@lru_cache(maxsize=1)
def _persistence(table_name: str) -> DynamoDBPersistenceLayer:
    """On the process's own DynamoDB client: a session of its own would scan botocore's data folder again."""
    return DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client("dynamodb"))


def once(key: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`key` must name the use case too (e.g. "prepare:<run_id>"): one table serves all."""

    @idempotent_function(
        data_keyword_argument="key",
        persistence_store=_persistence(settings().idempotency_table),
        config=IDEMPOTENCY_CONFIG,
    )
    def run(key: str) -> dict[str, Any]:
        return action()

    result: dict[str, Any] = run(key=key)
    return result
