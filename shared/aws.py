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


@cache
def s3_link_signer() -> Any:
    """The S3 client that signs download links: Signature Version 4 (S3 refuses version 2 links in newer
    regions, and boto3 still signs presigned URLs with version 2 unless told)."""
    return boto3.client("s3", config=AWS_CLIENT_CONFIG.merge(Config(signature_version="s3v4")))
