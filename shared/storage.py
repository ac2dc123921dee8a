"""S3 access for the data bucket: bounded reads, streamed downloads and uploads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from shared.aws import client

CONFIGS_PREFIX = "configs/"
DATASETS_PREFIX = "datasets/"
# Multipart above 16 MiB, 8 MiB parts: memory stays bounded whatever the file size.
TRANSFER_CONFIG = TransferConfig(multipart_threshold=16 * 2**20, multipart_chunksize=8 * 2**20)
_MISSING = {"NoSuchKey", "NoSuchVersion", "404", "NoSuchBucket", "AccessDenied", "403"}


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    version_id: str | None = None

    @classmethod
    def from_event_record(cls, record: dict[str, Any]) -> ObjectRef:
        """S3 URL-encodes keys in events (`my run.json` arrives as `my+run.json`)."""
        s3 = record["s3"]
        return cls(
            bucket=s3["bucket"]["name"],
            key=unquote_plus(s3["object"]["key"]),
            version_id=s3["object"].get("versionId") or None,
        )

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class ObjectMissingError(Exception):
    """The object (or the right to read it) is gone: not worth retrying."""


def _version_args(ref: ObjectRef) -> dict[str, str]:
    return {"VersionId": ref.version_id} if ref.version_id else {}


def read_object(ref: ObjectRef, max_bytes: int) -> tuple[bytes, str | None]:
    """Read a small object and the version read; at most max_bytes + 1 so a huge one cannot hurt."""
    try:
        response = client("s3").get_object(
            Bucket=ref.bucket, Key=ref.key, Range=f"bytes=0-{max_bytes}", **_version_args(ref)
        )
    except ClientError as error:
        if error.response["Error"]["Code"] in _MISSING:
            raise ObjectMissingError(f"{ref.uri} cannot be read: {error}") from error
        raise
    body: bytes = response["Body"].read()
    return body, response.get("VersionId")


def download(ref: ObjectRef, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        client("s3").download_file(
            ref.bucket, ref.key, str(destination), ExtraArgs=_version_args(ref) or None,
            Config=TRANSFER_CONFIG,
        )
    except ClientError as error:
        if error.response["Error"]["Code"] in _MISSING:
            raise ObjectMissingError(f"{ref.uri} cannot be read: {error}") from error
        raise


def upload(source: Path, ref: ObjectRef, metadata: dict[str, str], content_type: str) -> None:
    client("s3").upload_file(
        str(source), ref.bucket, ref.key,
        ExtraArgs={"Metadata": metadata, "ContentType": content_type},
        Config=TRANSFER_CONFIG,
    )
