"""Run ids, and where to find them in S3 keys: shared by every function, light to import."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import PurePosixPath

RUN_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,60}[a-z0-9])?$"  # what derive_run_id makes
TRAINING_KEY = re.compile(r"^datasets/(?P<run_id>[a-z0-9-]+)/train\.jsonl$")


def derive_run_id(config_key: str, config_bytes: bytes | Iterable[bytes]) -> str:
    """Readable and stable: the config's file name plus a hash of its key and its whole content.

    The content may come in chunks (a config too large to hold is hashed as it streams).
    """
    stem = PurePosixPath(config_key).stem.lower()
    slug = re.sub(r"[^a-z0-9]+", "-", stem).strip("-")[:40].strip("-") or "run"
    digest = hashlib.sha256(config_key.encode() + b"\0")
    for chunk in [config_bytes] if isinstance(config_bytes, bytes) else config_bytes:
        digest.update(chunk)
    return f"{slug}-{digest.hexdigest()[:12]}"


def run_id_of_training_key(key: str) -> str | None:
    match = TRAINING_KEY.match(key)
    return match["run_id"] if match else None
