"""Load the dataset a config names through Hugging Face `datasets`, streaming.

Streaming keeps memory flat and never writes an Arrow cache. Two kinds of source only, as
the config's rule says: a Hub dataset id, read from the Hub alone (`hf://datasets/<id>`,
never a local directory of the same name) at its pinned revision if any; or an object
under `data/` of this deployment's data bucket, downloaded to scratch first. The function
never reads its own files, and read errors never show its paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from shared.config import SOURCE_RULE, DatasetSpec, data_object_key, is_hub_id
from shared.errors import ConfigError, DatasetError, without_internal_paths
from shared.storage import ObjectMissingError, ObjectRef, download

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
BATCH_SIZE = 1000
HUB_ONLY = "hf://datasets/"  # `datasets` then never looks for a local directory named like the id

Batch = dict[str, list[Any]]


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


def _resolve_source(spec: DatasetSpec, scratch: Path, data_bucket: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The `datasets.load_dataset` path and kwargs for a source, and the local paths to hide in errors."""
    location = check_source_location(spec, data_bucket)
    if location is None:
        return HUB_ONLY + spec.source, ({"revision": spec.revision} if spec.revision else {}), {}
    bucket, key = location
    suffix = PurePosixPath(key).suffix.lower()
    # A fixed local name: the key's own name could hold glob characters that `data_files` would expand.
    local = scratch / "source" / f"dataset{suffix}"
    try:
        download(ObjectRef(bucket, key), local)
    except ObjectMissingError as error:
        raise DatasetError(f"dataset {spec.source} cannot be read: {error}") from error
    if local.stat().st_size == 0:
        raise DatasetError(f"dataset {spec.source} is an empty file")
    return FILE_BUILDERS[suffix], {"data_files": {spec.split: str(local)}}, {str(local): spec.source}


def stream_batches(spec: DatasetSpec, scratch: Path, data_bucket: str) -> Iterator[Batch]:
    """Yield column-oriented batches; any read failure becomes a DatasetError naming the source."""
    path, kwargs, local_names = _resolve_source(spec, scratch, data_bucket)
    import datasets  # 0.8 s to import: only the prepare function pays for it

    try:
        # kwargs carry the revision when the run config pins one; otherwise the Hub's main branch is read.
        dataset = datasets.load_dataset(path, split=spec.split, streaming=True, **kwargs)  # nosec B615  # see line above
        yield from dataset.iter(batch_size=BATCH_SIZE)
    except DatasetError:
        raise
    except Exception as error:  # datasets/pyarrow/fsspec raise many unrelated types
        text = without_internal_paths(str(error), local_names)
        detail = text.splitlines()[0][:500] if text.strip() else type(error).__name__
        raise DatasetError(f"dataset {spec.source!r} (split {spec.split!r}) could not be read: {detail}") from error
