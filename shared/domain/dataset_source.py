"""Load the dataset a config names, streaming, exactly as Hugging Face `datasets` reads it.

Streaming keeps memory flat and never writes an Arrow cache. Two kinds of source only, as
the config's rule says: a Hub dataset id, read from the Hub alone (`hf://datasets/<id>`,
never a local directory of the same name) at its pinned revision if any; or an object
under `data/` of this deployment's data bucket, downloaded to scratch first. The function
never reads its own files (nor files a Hub dataset's card names outside its repository), and
read errors never show its paths.

A JSON Lines or Parquet object is read with pyarrow directly (importing `datasets` alone
takes longer than reading 100k rows), in the chunks `datasets` would read and converting
only the columns the run uses. That is the very parse `datasets` makes, so the rows are the
same, as long as every column is plain text, a number, a boolean or null: any other column,
and anything `datasets` reads its own way (a JSON array, a BOM, a column of mixed types, which
it re-encodes as JSON text), hands the file to `datasets`, which skips the rows already yielded.
CSV (which `datasets` reads through pandas, with pandas' types) and the Hub go through `datasets`.
"""

from __future__ import annotations

import codecs
import io
import posixpath
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from shared.aws.storage import ObjectMissingError, ObjectRef, current_version, download
from shared.domain.config import SOURCE_RULE, DatasetSpec, data_object_key, is_hub_id
from shared.domain.errors import ConfigError, DatasetError, without_internal_paths

if TYPE_CHECKING:
    import pyarrow as pa

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
BATCH_SIZE = 1000
ARROW_BATCH_ROWS = 16_384  # what Arrow reads goes on in bigger batches: fewer calls, the same rows
HUB_ONLY = "hf://datasets/"  # `datasets` then never looks for a local directory named like the id
# `datasets`' JSON reader: 10 MiB chunks ending at a line's end, each parsed with this block size.
JSON_CHUNK_BYTES = 10 << 20
JSON_BLOCK_BYTES = max(JSON_CHUNK_BYTES // 32, 16 << 10)

Batch = Mapping[str, list[Any]]


class _ColumnsOnDemand(Mapping[str, list[Any]]):
    """One Arrow record batch as column name -> cells, converting a column to Python objects when asked for."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        self._batch = batch

    @property
    def record_batch(self) -> pa.RecordBatch:
        """The batch itself, for a reader of whole Arrow columns."""
        return self._batch

    def __getitem__(self, name: str) -> list[Any]:
        if name not in self._batch.schema.names:
            raise KeyError(name)
        cells: list[Any] = self._batch.column(name).to_pylist()
        return cells

    def __iter__(self) -> Iterator[str]:
        return iter(self._batch.schema.names)

    def __len__(self) -> int:
        return len(self._batch.schema.names)


class _DatasetsReadsItsOwnWay(Exception):
    """The file holds what only `datasets` reads as `datasets` does: it reads the rest of the file."""


def import_arrow_in_background() -> None:
    """pyarrow takes about 0.15 s to import: a thread imports it while the caller waits on S3 and DynamoDB."""
    threading.Thread(target=_import_arrow, name="import-pyarrow", daemon=True).start()


def _import_arrow() -> None:
    import pyarrow.compute
    import pyarrow.json  # noqa: F401  # what reading JSON Lines and building examples use


def check_source_location(spec: DatasetSpec, data_bucket: str) -> tuple[str, str] | None:
    """The config model cannot know the bucket: an s3:// source must be this deployment's data bucket.

    Checked in code as well as by IAM (the local stack has no IAM), before anything is read.
    Returns the source's (bucket, key), or None for a Hub dataset id.
    """
    if is_hub_id(spec.source):
        return None
    location = data_object_key(spec.source)
    if location is None:  # a validated config never gets here
        raise ConfigError(f"dataset.source {SOURCE_RULE}")
    bucket, _ = location
    if bucket != data_bucket:
        raise ConfigError(
            f"dataset.source must be in this deployment's data bucket, s3://{data_bucket}/data/<file>, "
            f"not in bucket {bucket!r}"
        )
    return location


@dataclass(frozen=True)
class SourceObject:
    """The data bucket object a run reads, pinned: a later upload under the same name is another object."""

    ref: ObjectRef
    etag: str

    def as_record(self) -> dict[str, Any]:
        return {"uri": f"s3://{self.ref.bucket}/{self.ref.key}", "version_id": self.ref.version_id, "etag": self.etag}


def pin_source(spec: DatasetSpec, data_bucket: str) -> SourceObject | None:
    """An s3:// source's current version and ETag (None for a Hub dataset), read before the object is: the run
    records which file it was prepared from, and reads exactly that version."""
    location = check_source_location(spec, data_bucket)
    if location is None:
        return None
    try:
        ref, etag = current_version(ObjectRef(*location))
    except ObjectMissingError as error:
        raise DatasetError(f"dataset {spec.source} cannot be read: {error}") from error
    return SourceObject(ref, etag)


def _resolve_source(
    spec: DatasetSpec, scratch: Path, data_bucket: str, pinned: SourceObject | None
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The `datasets.load_dataset` path and kwargs for a source, and the local paths to hide in errors."""
    location = check_source_location(spec, data_bucket)
    if location is None:
        return HUB_ONLY + spec.source, ({"revision": spec.revision} if spec.revision else {}), {}
    bucket, key = location
    suffix = PurePosixPath(key).suffix.lower()
    # A fixed local name: the key's own name could hold glob characters that `data_files` would expand.
    local = scratch / "source" / f"dataset{suffix}"
    try:
        download(pinned.ref if pinned else ObjectRef(bucket, key), local)
    except ObjectMissingError as error:
        raise DatasetError(f"dataset {spec.source} cannot be read: {error}") from error
    if local.stat().st_size == 0:
        raise DatasetError(f"dataset {spec.source} is an empty file")
    return FILE_BUILDERS[suffix], {"data_files": {spec.split: str(local)}}, {str(local): spec.source}


def _plain(schema: pa.Schema) -> bool:
    import pyarrow.types as kinds

    plain = (kinds.is_string, kinds.is_large_string, kinds.is_integer, kinds.is_floating, kinds.is_boolean)
    return all(any(kind(field.type) for kind in (*plain, kinds.is_null)) for field in schema)


class _NotUtf8Error(Exception):
    """A JSON Lines file holds bytes UTF-8 does not allow (Arrow would hand them on, and decoding them later
    would crash); `line` is the first line holding one."""

    def __init__(self, line: int, byte: int) -> None:
        super().__init__(f"line {line} holds the byte {byte:#04x}, which UTF-8 does not allow")
        self.line = line


def _json_chunks(local: Path) -> Iterator[bytes]:
    """Whole lines, about JSON_CHUNK_BYTES at a time, each checked to be UTF-8 (a C-speed decode)."""
    lines_before = 0
    with local.open("rb") as file:
        for chunk in iter(lambda: file.read(JSON_CHUNK_BYTES), b""):
            chunk += file.readline()
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _NotUtf8Error(lines_before + chunk.count(b"\n", 0, error.start) + 1, chunk[error.start]) from None
            lines_before += chunk.count(b"\n")
            yield chunk


def _arrow_json_batches(local: Path) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pyarrow.json as arrow_json

    names = None
    for index, chunk in enumerate(_json_chunks(local)):
        if index == 0 and (chunk.startswith(codecs.BOM_UTF8) or chunk.lstrip().startswith(b"[")):
            raise _DatasetsReadsItsOwnWay
        block = len(chunk) if len(chunk) // 8 > JSON_BLOCK_BYTES else JSON_BLOCK_BYTES
        try:
            table = arrow_json.read_json(io.BytesIO(chunk), read_options=arrow_json.ReadOptions(block_size=block))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise _DatasetsReadsItsOwnWay from error
        if not _plain(table.schema) or names not in (None, table.schema.names):
            raise _DatasetsReadsItsOwnWay
        names = table.schema.names
        yield from table.to_batches(max_chunksize=ARROW_BATCH_ROWS)


def _arrow_parquet_batches(local: Path) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as parquet

    with parquet.ParquetFile(local) as file:
        if not _plain(file.schema_arrow):
            raise _DatasetsReadsItsOwnWay
        yield from file.iter_batches(batch_size=ARROW_BATCH_ROWS)


def _skip_rows(batches: Iterator[Batch], rows: int) -> Iterator[Batch]:
    for batch in batches:
        size = len(next(iter(batch.values()), []))
        if rows >= size:
            rows -= size
            continue
        yield {name: cells[rows:] for name, cells in batch.items()} if rows else batch
        rows = 0


def _datasets_batches(path: str, spec: DatasetSpec, kwargs: dict[str, Any]) -> Iterator[Batch]:
    """What `datasets.load_dataset(path, split=..., streaming=True)` does, with a look at the files in between."""
    import datasets  # 1-2 s to import: only the Hub, CSV and unusual JSON or Parquet pay for it

    # kwargs carry the revision when the run config pins one; otherwise the Hub's main branch is read.
    builder = datasets.load_dataset_builder(path, **kwargs)
    if path.startswith(HUB_ONLY):
        _only_its_own_files(path.removeprefix(HUB_ONLY), builder.config.data_files or {})
    yield from builder.as_streaming_dataset(split=spec.split).iter(batch_size=BATCH_SIZE)


def _only_its_own_files(repo_id: str, data_files: Mapping[str, Iterable[str]]) -> None:
    """A Hub dataset's card chooses its data files, and `datasets` globs an absolute path in it on this
    function's own disk (and fetches a URL): a config naming a public dataset could read the function's
    files. Every file must be in the dataset's own repository, at whatever revision."""
    own = f"datasets/{repo_id}@"
    for files in data_files.values():
        for file in files:
            if not (file.startswith("hf://") and posixpath.normpath(file.removeprefix("hf://")).startswith(own)):
                raise DatasetError(
                    f"dataset {repo_id!r} lists data files outside its own Hub repository (its card's data_files "
                    "or data_dir); only a dataset's own files are read"
                )


def _batches(path: str, spec: DatasetSpec, kwargs: dict[str, Any]) -> Iterator[Batch]:
    data_files = kwargs.get("data_files")
    arrow_reader = {"json": _arrow_json_batches, "parquet": _arrow_parquet_batches}.get(path)
    if data_files is None or arrow_reader is None:
        yield from _datasets_batches(path, spec, kwargs)
        return
    rows = 0
    try:
        for batch in arrow_reader(Path(data_files[spec.split])):
            rows += batch.num_rows
            yield _ColumnsOnDemand(batch)
    except _DatasetsReadsItsOwnWay:
        yield from _skip_rows(_datasets_batches(path, spec, kwargs), rows)


def stream_batches(
    spec: DatasetSpec, scratch: Path, data_bucket: str, pinned: SourceObject | None = None
) -> Iterator[Batch]:
    """Yield column-oriented batches (of the `pinned` version of an s3:// source, when given); any read failure
    becomes a DatasetError naming the source."""
    path, kwargs, local_names = _resolve_source(spec, scratch, data_bucket, pinned)
    try:
        yield from _batches(path, spec, kwargs)
    except DatasetError:
        raise
    except _NotUtf8Error as error:
        raise DatasetError(f"dataset {spec.source!r} is not UTF-8 text: {error}; save the file as UTF-8") from None
    except Exception as error:  # datasets/pyarrow/fsspec raise many unrelated types
        text = without_internal_paths(str(error), local_names)
        detail = text.splitlines()[0][:500] if text.strip() else type(error).__name__
        raise DatasetError(f"dataset {spec.source!r} (split {spec.split!r}) could not be read: {detail}") from error
