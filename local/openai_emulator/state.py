"""Files and uploads held by the emulator, plus the id/clock helpers the other domains share.

Nothing here locks: the server serialises every request on ``Store.lock`` (see server.py).
"""

from __future__ import annotations

import hashlib
import random
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, invalid, missing, not_found

FILE_PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
UPLOAD_PURPOSES = {"assistants", "batch", "fine-tune", "vision"}
MAX_UPLOAD_BYTES = 8 * 1024**3
UPLOAD_TTL_SECONDS = 3600
MAX_PART_BYTES = 64_000_000  # "Each Part can be at most 64 MB" (the spec's decimal megabytes)

_ID_CHARS = string.ascii_letters + string.digits


@dataclass
class StoredFile:
    obj: dict[str, Any]
    content: bytes


@dataclass
class StoredUpload:
    obj: dict[str, Any]
    parts: dict[str, bytes] = field(default_factory=dict)


class Store:
    """Files and uploads by id, with the clock everything else reads time from."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.files: dict[str, StoredFile] = {}
        self.uploads: dict[str, StoredUpload] = {}

    def now(self) -> int:
        return int(self.clock())

    @staticmethod
    def new_id(prefix: str, length: int = 24) -> str:
        return prefix + "".join(random.choices(_ID_CHARS, k=length))

    # files -------------------------------------------------------------------------------------------

    def add_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": self.new_id("file-"),
            "object": "file",
            "bytes": len(content),
            "created_at": self.now(),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[obj["id"]] = StoredFile(obj, content)
        return obj

    def create_file(self, form: dict[str, Any]) -> dict[str, Any]:
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, FormFile):
            raise missing("file")
        if not purpose:
            raise missing("purpose")
        if purpose not in FILE_PURPOSES:
            raise invalid(f"Invalid value for 'purpose': '{purpose}'.", "purpose", "invalid_value")
        return self.add_file(upload.filename, str(purpose), upload.data)

    def list_files(self, query: dict[str, str]) -> dict[str, Any]:
        """GET /files: newest first by default, filtered by purpose, paged with `after` and `limit`."""
        try:
            limit = int(query.get("limit", "10000"))
        except ValueError:
            raise invalid("Invalid value for 'limit'.", "limit", "invalid_value") from None
        if not 1 <= limit <= 10000:
            raise invalid("'limit' must be between 1 and 10000.", "limit", "invalid_value")
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid(f"Invalid value for 'order': '{order}'.", "order", "invalid_value")
        files = [f.obj for f in self.files.values() if query.get("purpose") in (None, f.obj["purpose"])]
        files = files if order == "asc" else files[::-1]
        if "after" in query:
            ids = [f["id"] for f in files]
            files = files[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
        page = files[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else "",
            "last_id": page[-1]["id"] if page else "",
            "has_more": len(files) > limit,
        }

    def get_file(self, file_id: str) -> StoredFile:
        if file_id not in self.files:
            raise not_found(f"No such File object: {file_id}", "id")
        return self.files[file_id]

    def delete_file(self, file_id: str) -> dict[str, Any]:
        self.get_file(file_id)
        del self.files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    # uploads -----------------------------------------------------------------------------------------

    def create_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        for name in ("filename", "purpose", "bytes", "mime_type"):
            if body.get(name) is None:
                raise missing(name)
        if body["purpose"] not in UPLOAD_PURPOSES:
            raise invalid(f"Invalid value for 'purpose': '{body['purpose']}'.", "purpose", "invalid_value")
        size = body["bytes"]
        if not isinstance(size, int) or not 0 < size <= MAX_UPLOAD_BYTES:
            raise invalid("'bytes' must be a positive integer of at most 8 GB.", "bytes", "invalid_value")
        created = self.now()
        obj = {
            "id": self.new_id("upload_"),
            "object": "upload",
            "bytes": size,
            "created_at": created,
            "expires_at": created + UPLOAD_TTL_SECONDS,
            "filename": body["filename"],
            "purpose": body["purpose"],
            "status": "pending",
            "file": None,
        }
        self.uploads[obj["id"]] = StoredUpload(obj)
        return obj

    def _pending_upload(self, upload_id: str) -> StoredUpload:
        upload = self.uploads.get(upload_id)
        if upload is None:
            raise not_found(f"No such Upload object: {upload_id}", "upload_id")
        if upload.obj["status"] != "pending":
            raise invalid(f"Upload {upload_id} is already {upload.obj['status']}.", "upload_id")
        return upload

    def add_upload_part(self, upload_id: str, form: dict[str, Any]) -> dict[str, Any]:
        upload = self._pending_upload(upload_id)
        data = form.get("data")
        if not isinstance(data, FormFile):
            raise missing("data")
        part: dict[str, Any] = {
            "id": self.new_id("part_"),
            "object": "upload.part",
            "created_at": self.now(),
            "upload_id": upload_id,
        }
        if len(data.data) > MAX_PART_BYTES:
            raise invalid(
                f"Each part can be at most 64 MB ({MAX_PART_BYTES} bytes); this one is {len(data.data)} bytes.", "data"
            )
        upload.parts[part["id"]] = data.data
        return part

    def complete_upload(self, upload_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Completing an upload past its ``expires_at`` answers it ``expired`` with no file (unverified:
        the spec lists the status, not when OpenAI answers it)."""
        upload = self.uploads.get(upload_id)
        if upload is not None and upload.obj["status"] == "pending" and self.now() >= upload.obj["expires_at"]:
            upload.obj["status"] = "expired"
            return upload.obj
        upload = self._pending_upload(upload_id)
        part_ids = body.get("part_ids")
        if not isinstance(part_ids, list):
            raise missing("part_ids")
        unknown = [p for p in part_ids if p not in upload.parts]
        if unknown:
            raise invalid(f"Part {unknown[0]} does not belong to upload {upload_id}.", "part_ids")
        content = b"".join(upload.parts[p] for p in part_ids)
        if len(content) != upload.obj["bytes"]:
            raise invalid(
                f"The upload declared {upload.obj['bytes']} bytes but its parts total {len(content)} bytes.",
                "part_ids",
            )
        if "md5" in body and body["md5"] != hashlib.md5(content, usedforsecurity=False).hexdigest():
            raise invalid("The md5 checksum does not match the uploaded bytes.", "md5")
        upload.obj["status"] = "completed"
        upload.obj["file"] = self.add_file(upload.obj["filename"], upload.obj["purpose"], content)
        return upload.obj


@dataclass(frozen=True)
class FormFile:
    """A file field of a multipart form, as recorded and handed to the domain."""

    filename: str
    data: bytes


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body
