"""Load the dataset a config names through Hugging Face `datasets`, streaming.

Streaming keeps memory flat and never writes an Arrow cache; the same code path
serves Hub ids, s3:// URIs (downloaded to scratch first) and local files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from shared.config import DatasetSpec
from shared.errors import DatasetError
from shared.storage import ObjectMissingError, ObjectRef, download

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
BATCH_SIZE = 1000

Batch = dict[str, list[Any]]


def _file_builder(path: str) -> str | None:
    return FILE_BUILDERS.get(PurePosixPath(path).suffix.lower())


def _resolve_source(spec: DatasetSpec, scratch: Path) -> tuple[str, dict[str, Any]]:
    """The `datasets.load_dataset` path and kwargs for a source."""
    if spec.source.startswith("s3://"):
        bucket, _, key = spec.source.removeprefix("s3://").partition("/")
        builder = _file_builder(key)
        if not bucket or not key or builder is None:
            raise DatasetError(
                f"dataset source {spec.source!r} must be s3://bucket/key ending in "
                f"{', '.join(FILE_BUILDERS)}"
            )
        local = scratch / "source" / PurePosixPath(key).name
        try:
            download(ObjectRef(bucket, key), local)
        except ObjectMissingError as error:
            raise DatasetError(f"dataset {spec.source} cannot be read: {error}") from error
        return builder, {"data_files": {spec.split: str(local)}}
    builder = _file_builder(spec.source)
    if builder is not None:
        if not Path(spec.source).is_file():
            raise DatasetError(f"dataset file {spec.source!r} does not exist")
        return builder, {"data_files": {spec.split: spec.source}}
    return spec.source, {}


def stream_batches(spec: DatasetSpec, scratch: Path) -> Iterator[Batch]:
    """Yield column-oriented batches; any read failure becomes a DatasetError naming the source."""
    path, kwargs = _resolve_source(spec, scratch)
    import datasets  # 0.8 s to import: only the prepare function pays for it

    try:
        dataset = datasets.load_dataset(path, split=spec.split, streaming=True, **kwargs)
        yield from dataset.iter(batch_size=BATCH_SIZE)
    except DatasetError:
        raise
    except Exception as error:  # datasets/pyarrow/fsspec raise many unrelated types
        detail = str(error).splitlines()[0][:500] if str(error) else type(error).__name__
        raise DatasetError(
            f"dataset {spec.source!r} (split {spec.split!r}) could not be read: {detail}"
        ) from error
