"""boto3 clients with explicit timeouts and bounded retries, created once per process."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

AWS_CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"max_attempts": 4, "mode": "standard"},
)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=AWS_CLIENT_CONFIG)


@cache
def dynamodb_table(name: str) -> Any:
    return boto3.resource("dynamodb", config=AWS_CLIENT_CONFIG).Table(name)
