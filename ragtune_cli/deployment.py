"""Where the commands point, and the only module of the CLI that calls AWS (CloudFormation, API Gateway, S3).

A deployment is found from a stack's outputs (`--stack NAME`), with the API key's value read
through API Gateway using the user's own AWS credentials, or from the `RAGTUNE_*` variables
that `make local` prints as one `export` line.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from ragtune_cli.errors import CliError, ErrorCode
from shared.providers import DEFAULT_PROVIDER, PROVIDER_NAMES

if TYPE_CHECKING:
    from shared.domain.config import Provider

ENVIRONMENT_VARIABLES = ("RAGTUNE_API_URL", "RAGTUNE_API_KEY", "RAGTUNE_BUCKET", "RAGTUNE_S3_ENDPOINT")
STACK_OUTPUTS = ("DataBucketName", "ApiUrl", "ApiKeyId")
# Optional: the stack's DefaultProvider parameter, for a deployment named by the variables above.
DEFAULT_PROVIDER_VARIABLE = "RAGTUNE_DEFAULT_PROVIDER"
# boto3's and the AWS CLI's default: a file this large or larger goes up in parts of this size.
PART_BYTES = 8 * 1024 * 1024
_LOCAL_CREDENTIALS_HINT = (
    "the local stack takes any: export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1"
)
_AWS_CREDENTIALS_HINT = "run `aws configure`, set AWS_PROFILE, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
NO_DEPLOYMENT = (
    "No deployment to talk to: pass --stack NAME (a deployed ragtune stack; your AWS credentials read its outputs) "
    "or set RAGTUNE_API_URL, RAGTUNE_API_KEY and RAGTUNE_BUCKET (`make local` prints them as one export line)."
)


@dataclass(frozen=True)
class Deployment:
    """A ragtune deployment's API and data bucket; `s3_endpoint` only for an S3 other than AWS's (the local stack)."""

    api_url: str
    api_key: str
    bucket: str
    s3_endpoint: str | None
    region: str | None
    described_as: str
    default_provider: Provider = (
        DEFAULT_PROVIDER  # what a config naming no provider gets there (the stack's DefaultProvider)
    )


@dataclass(frozen=True)
class StoredObject:
    """An object of the data bucket as S3 describes it; `version_id` is None in a bucket without versioning."""

    etag: str
    version_id: str | None
    size: int
    last_modified: datetime


@contextmanager
def _aws_errors(doing: str, s3_endpoint: str | None = None) -> Iterator[None]:
    """botocore's exceptions as sentences naming what was being done and what to try next."""
    from boto3.exceptions import S3UploadFailedError  # boto3 is loaded by then: the call made a client

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        hint = _LOCAL_CREDENTIALS_HINT if s3_endpoint else _AWS_CREDENTIALS_HINT
        raise CliError(f"No AWS credentials found while {doing}: {hint}.", ErrorCode.AWS_ERROR) from None
    except NoRegionError:
        raise CliError(
            f"No AWS region set while {doing}: pass --region or set AWS_DEFAULT_REGION.", ErrorCode.AWS_ERROR
        ) from None
    except EndpointConnectionError as error:
        raise CliError(f"Could not reach AWS while {doing}: {error}.", ErrorCode.AWS_ERROR) from None
    except ClientError as error:
        details = error.response.get("Error", {})
        code, message = details.get("Code", "error"), details.get("Message", str(error))
        raise CliError(f"AWS refused {doing}: {message} ({code}).", ErrorCode.AWS_ERROR) from None
    except (BotoCoreError, S3UploadFailedError) as error:
        raise CliError(f"AWS call failed while {doing}: {error}.", ErrorCode.AWS_ERROR) from None


def _client(service: str, region: str | None, endpoint_url: str | None = None) -> Any:
    # An endpoint of our own (the local stack's moto) still needs a region to sign with.
    region = region or (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    if endpoint_url and not region:
        region = "us-east-1"
    # Imported here: the commands that only call the ragtune API (show, runs, eval, ...) never load boto3 (0.13 s).
    import boto3
    from botocore.config import Config

    retries = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=retries)


def from_stack(stack: str, region: str | None) -> Deployment:
    """The stack's outputs, and its API key's value (apigateway:GET on the key)."""
    where = f"stack {stack!r}" + (f" in {region}" if region else "")
    cloudformation = _client("cloudformation", region)
    try:
        with _aws_errors(f"reading the outputs of {where}"):
            [described] = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except CliError as error:
        if "does not exist" in error.message:
            raise CliError(
                f"Stack {stack!r} was not found{' in ' + region if region else ' in your default region'}: "
                "check its name (`aws cloudformation list-stacks`) and pass --region if it lives elsewhere.",
                ErrorCode.NO_DEPLOYMENT,
            ) from None
        raise
    outputs = {output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs", [])}
    missing = [name for name in STACK_OUTPUTS if name not in outputs]
    if missing:
        raise CliError(
            f"Stack {stack!r} has no output {', '.join(missing)}: is it a ragtune stack, and has it finished "
            f"deploying (status {described.get('StackStatus', 'unknown')})?",
            ErrorCode.NO_DEPLOYMENT,
        )
    apigateway = _client("apigateway", region)
    with _aws_errors(f"reading the API key of {where}"):
        key = apigateway.get_api_key(apiKey=outputs["ApiKeyId"], includeValue=True)["value"]
    parameters = {item["ParameterKey"]: item.get("ParameterValue") for item in described.get("Parameters", [])}
    return Deployment(
        api_url=outputs["ApiUrl"].rstrip("/"),
        api_key=key,
        bucket=outputs["DataBucketName"],
        s3_endpoint=None,  # AWS's own S3: RAGTUNE_S3_ENDPOINT belongs to the local stack's variables
        region=region,
        described_as=where,
        default_provider=_provider(parameters.get("DefaultProvider") or "") or DEFAULT_PROVIDER,
    )


def _provider(name: str) -> Provider | None:
    return name if name in PROVIDER_NAMES else None


def from_environment() -> Deployment:
    """RAGTUNE_API_URL, RAGTUNE_API_KEY and RAGTUNE_BUCKET (all three), RAGTUNE_S3_ENDPOINT when not AWS's S3."""
    values = {name: os.environ.get(name, "").strip() for name in ENVIRONMENT_VARIABLES}
    if not any(values[name] for name in ENVIRONMENT_VARIABLES[:3]):
        raise CliError(NO_DEPLOYMENT, ErrorCode.NO_DEPLOYMENT)
    missing = [name for name in ENVIRONMENT_VARIABLES[:3] if not values[name]]
    if missing:
        raise CliError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: set all of RAGTUNE_API_URL, "
            "RAGTUNE_API_KEY and RAGTUNE_BUCKET, or pass --stack NAME instead.",
            ErrorCode.NO_DEPLOYMENT,
        )
    named = os.environ.get(DEFAULT_PROVIDER_VARIABLE, "").strip() or DEFAULT_PROVIDER
    default_provider = _provider(named)
    if default_provider is None:
        raise CliError(
            f"{DEFAULT_PROVIDER_VARIABLE} is {named!r}: set it to the stack's DefaultProvider, "
            f"{', '.join(PROVIDER_NAMES[:-1])} or {PROVIDER_NAMES[-1]}, or leave it unset for {DEFAULT_PROVIDER}.",
            ErrorCode.NO_DEPLOYMENT,
        )
    return Deployment(
        api_url=values["RAGTUNE_API_URL"].rstrip("/"),
        api_key=values["RAGTUNE_API_KEY"],
        bucket=values["RAGTUNE_BUCKET"],
        s3_endpoint=values["RAGTUNE_S3_ENDPOINT"] or None,
        region=None,
        described_as=f"the deployment at {values['RAGTUNE_API_URL']}",
        default_provider=default_provider,
    )


def find(stack: str | None, region: str | None) -> Deployment:
    """--stack wins over the environment, so a shell set up for the local stack can still reach AWS."""
    return from_stack(stack, region) if stack else from_environment()


def upload(deployment: Deployment, key: str, body: bytes) -> None:
    """One object into the data bucket (a config under configs/ starts a run as soon as it lands)."""
    s3 = _client("s3", deployment.region, deployment.s3_endpoint)
    with _aws_errors(f"uploading s3://{deployment.bucket}/{key}", deployment.s3_endpoint):
        s3.put_object(Bucket=deployment.bucket, Key=key, Body=body)


def upload_file(deployment: Deployment, key: str, path: Path) -> StoredObject:
    """A data file, in managed multipart parts when it is large; what the bucket then holds at `key`."""
    s3 = _client("s3", deployment.region, deployment.s3_endpoint)
    with _aws_errors(f"uploading {path} to s3://{deployment.bucket}/{key}", deployment.s3_endpoint):
        from boto3.s3.transfer import TransferConfig

        parts = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES)
        s3.upload_file(str(path), deployment.bucket, key, Config=parts)
        return _described(s3.head_object(Bucket=deployment.bucket, Key=key))


def stored(deployment: Deployment, key: str) -> StoredObject | None:
    """What the data bucket holds at `key`; None when nothing."""
    s3 = _client("s3", deployment.region, deployment.s3_endpoint)
    with _aws_errors(f"reading s3://{deployment.bucket}/{key}", deployment.s3_endpoint):
        try:
            return _described(s3.head_object(Bucket=deployment.bucket, Key=key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise


def _described(head: dict[str, Any]) -> StoredObject:
    version = head.get("VersionId")
    return StoredObject(
        etag=str(head["ETag"]).strip('"'),
        version_id=None if version in (None, "null") else str(version),
        size=int(head["ContentLength"]),
        last_modified=head["LastModified"],
    )


def holds(stored: StoredObject, path: Path) -> bool:
    """Whether the object is `path`'s content, by size then ETag: the file's MD5, or for a multipart upload the MD5
    of its parts' MD5s and "-<parts>" (parts of PART_BYTES, as `upload_file` and the AWS CLI send them: another
    part size reads as other content)."""
    if stored.size != path.stat().st_size:
        return False
    whole, parts = hashlib.md5(usedforsecurity=False), []
    with path.open("rb") as file:
        while chunk := file.read(PART_BYTES):
            whole.update(chunk)
            parts.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    if "-" not in stored.etag:
        return whole.hexdigest() == stored.etag
    return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}" == stored.etag
