"""S3 access for the data bucket: bounded reads, streamed downloads and uploads."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from shared.aws import client, s3_link_signer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import S3Event
    from boto3.s3.transfer import TransferConfig

CONFIGS_PREFIX = "configs/"
DATASETS_PREFIX = "datasets/"
REPORTS_PREFIX = "reports/"  # what the pipeline writes about a run: metrics.csv, loss.png, evaluation.jsonl
PRESIGNED_URL_SECONDS = 900
_MISSING = {"NoSuchKey", "NoSuchVersion", "404", "NoSuchBucket", "AccessDenied", "403"}


class ObjectRef(NamedTuple):
    bucket: str
    key: str
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def event_objects(event: S3Event) -> list[ObjectRef]:
    """The objects an S3 notification names, one per record, keys decoded.

    S3 URL-encodes keys in events (`my run.json` arrives as `my+run.json`); Powertools' `S3Event.object_key`
    decodes them, for an event's first record, so each record is read as a one-record event of its own.
    (Parser's `S3Model` decodes nothing and requires fields moto's notifications leave out.)
    Imported here: Powertools' data classes load every event source's (15 ms of a cold start), and only the
    S3-triggered functions, which import them anyway, read an S3 event.
    """
    from aws_lambda_powertools.utilities.data_classes import S3Event

    refs = []
    for record in event.records:
        single = S3Event({"Records": [record.raw_event]})
        refs.append(ObjectRef(single.bucket_name, single.object_key, record.s3.get_object.version_id or None))
    return refs


class ObjectMissingError(Exception):
    """The object (or the right to read it) is gone: not worth retrying."""


def _version_args(ref: ObjectRef) -> dict[str, str]:
    return {"VersionId": ref.version_id} if ref.version_id else {}


class BoundedRead(NamedTuple):
    """The first bytes of an object (all of it when small enough), its real size and the version read."""

    body: bytes
    size: int
    version_id: str | None

    @property
    def complete(self) -> bool:
        return len(self.body) == self.size


def _total_size(response: dict[str, Any], body: bytes) -> int:
    """`Content-Range: bytes 0-65536/70000` carries the object's real size."""
    content_range = str(response.get("ContentRange") or "")
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else len(body)


def read_object(ref: ObjectRef, max_bytes: int) -> BoundedRead:
    """Read at most max_bytes + 1 bytes of an object, so a huge one cannot hurt, and learn its real size."""
    try:
        response = client("s3").get_object(
            Bucket=ref.bucket, Key=ref.key, Range=f"bytes=0-{max_bytes}", **_version_args(ref)
        )
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code == "InvalidRange":  # S3's answer to a range on an empty object
            head = client("s3").head_object(Bucket=ref.bucket, Key=ref.key, **_version_args(ref))
            return BoundedRead(b"", 0, head.get("VersionId"))
        if code in _MISSING:
            raise ObjectMissingError(f"{ref.uri} cannot be read: {error}") from error
        raise
    body: bytes = response["Body"].read()
    return BoundedRead(body, _total_size(response, body), response.get("VersionId"))


def _head(ref: ObjectRef) -> dict[str, Any]:
    try:
        head: dict[str, Any] = client("s3").head_object(Bucket=ref.bucket, Key=ref.key, **_version_args(ref))
    except ClientError as error:
        if error.response["Error"]["Code"] in _MISSING:
            raise ObjectMissingError(f"{ref.uri} cannot be read: {error}") from error
        raise
    return head


def current_version(ref: ObjectRef) -> tuple[ObjectRef, str]:
    """The object as it is now: `ref` pinned to its version (None in an unversioned bucket) and its ETag."""
    head = _head(ref)
    return ObjectRef(ref.bucket, ref.key, head.get("VersionId")), str(head["ETag"]).strip('"')


def object_etag(ref: ObjectRef) -> str:
    """The object's ETag, quotes stripped: what its content is, in S3's words."""
    return str(_head(ref)["ETag"]).strip('"')


def stream_object(ref: ObjectRef, chunk_bytes: int = 2**20) -> Iterator[bytes]:
    """The whole object in chunks: never more than one chunk in memory. Pin `ref.version_id` to read one version."""
    try:
        body = client("s3").get_object(Bucket=ref.bucket, Key=ref.key, **_version_args(ref))["Body"]
    except ClientError as error:
        if error.response["Error"]["Code"] in _MISSING:
            raise ObjectMissingError(f"{ref.uri} cannot be read: {error}") from error
        raise
    try:
        yield from iter(lambda: body.read(chunk_bytes), b"")
    finally:
        body.close()


def whole_object(ref: ObjectRef, read: BoundedRead) -> Iterable[bytes]:
    """All the content `read` started on: its body when complete, else the same version streamed."""
    if read.complete:
        return [read.body]
    return stream_object(ObjectRef(ref.bucket, ref.key, read.version_id or ref.version_id))


@cache
def _transfer_config() -> TransferConfig:
    """Multipart above 16 MiB, 8 MiB parts, at most 4 in flight (boto3's default 10 put peak memory at 1M rows
    1.28-1.43x the 100k peak, 4 holds it at 1.15-1.17x): memory stays bounded whatever the file size.
    Made at the first transfer; boto3's transfer module loads with the first S3 client (boto3 adds its transfer
    methods then), not at import: the API makes one only for the requests that read or sign an object."""
    from boto3.s3 import transfer

    return transfer.TransferConfig(multipart_threshold=16 * 2**20, multipart_chunksize=8 * 2**20, max_concurrency=4)


def download(ref: ObjectRef, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        client("s3").download_file(
            ref.bucket,
            ref.key,
            str(destination),
            ExtraArgs=_version_args(ref) or None,
            Config=_transfer_config(),
        )
    except ClientError as error:
        if error.response["Error"]["Code"] in _MISSING:
            raise ObjectMissingError(f"{ref.uri} cannot be read: {error}") from error
        raise


def upload(source: Path, ref: ObjectRef, metadata: dict[str, str], content_type: str) -> None:
    client("s3").upload_file(
        str(source),
        ref.bucket,
        ref.key,
        ExtraArgs={"Metadata": metadata, "ContentType": content_type},
        Config=_transfer_config(),
    )


def put_bytes(ref: ObjectRef, body: bytes, content_type: str) -> None:
    """A small object written whole (a report: a CSV, a PNG, a JSONL of at most a few MB)."""
    client("s3").put_object(Bucket=ref.bucket, Key=ref.key, Body=body, ContentType=content_type)


def delete_objects(refs: list[ObjectRef]) -> None:
    """Small objects of one bucket deleted in batches of S3's 1,000 (one missing is no error)."""
    for first in range(0, len(refs), 1000):
        batch = refs[first : first + 1000]
        response = client("s3").delete_objects(
            Bucket=batch[0].bucket, Delete={"Objects": [{"Key": ref.key} for ref in batch], "Quiet": True}
        )
        if response.get("Errors"):
            raise RuntimeError(f"S3 kept {len(response['Errors'])} objects: {response['Errors'][0].get('Code')}")


def read_bytes(ref: ObjectRef, max_bytes: int) -> bytes:
    """A whole object known to be small; larger than `max_bytes` is an error, not a truncation."""
    read = read_object(ref, max_bytes)
    if not read.complete:
        raise ValueError(f"{ref.uri} is {read.size} bytes; at most {max_bytes} are read whole")
    return read.body


def presigned_get_url(ref: ObjectRef, expires_in: int = PRESIGNED_URL_SECONDS) -> str:
    """A short-lived download link (signed locally with the caller's credentials: no request is made)."""
    url: str = s3_link_signer().generate_presigned_url(
        "get_object", Params={"Bucket": ref.bucket, "Key": ref.key}, ExpiresIn=expires_in
    )
    return url


class _S3ObjectStream(io.RawIOBase):
    """A seekable read stream over one S3 object, never more than one chunk in memory.

    The HTTP client learns the length from seek/tell and rewinds with seek(0) before a
    retry; each rewind re-opens the object at that offset with a ranged GET.
    """

    def __init__(self, ref: ObjectRef, size: int) -> None:
        super().__init__()
        self._ref, self._size, self._position = ref, size, 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self._position + offset, io.SEEK_END: self._size + offset}[whence]
        if target != self._position:
            self._close_body()
        self._position = target
        return target

    def readinto(self, buffer: Any) -> int:
        if self._position >= self._size:
            return 0
        if self._body is None:
            self._body = client("s3").get_object(
                Bucket=self._ref.bucket,
                Key=self._ref.key,
                Range=f"bytes={self._position}-",
                **_version_args(self._ref),
            )["Body"]
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._close_body()
        super().close()


class S3UploadSource(NamedTuple):
    """An S3 object as the OpenAI gateway's UploadSource: streamed or read by ranges."""

    ref: ObjectRef
    size: int
    name: str

    @classmethod
    def of(cls, ref: ObjectRef, stem: str) -> S3UploadSource:
        """Named `<stem>-<ETag prefix>.jsonl`: other content, other name."""
        head = _head(ref)
        etag = str(head["ETag"]).strip('"')[:12]
        return cls(ref, int(head["ContentLength"]), f"{stem}-{etag}.jsonl")

    def open_stream(self) -> IO[bytes]:
        return io.BufferedReader(_S3ObjectStream(self.ref, self.size), buffer_size=256 * 1024)

    def read_range(self, start: int, end: int) -> bytes:
        response = client("s3").get_object(
            Bucket=self.ref.bucket, Key=self.ref.key, Range=f"bytes={start}-{end}", **_version_args(self.ref)
        )
        data: bytes = response["Body"].read()
        return data
