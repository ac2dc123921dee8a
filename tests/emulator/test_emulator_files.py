"""Files and uploads through the real SDK."""

from __future__ import annotations

import hashlib

import httpx2
import openai
import pytest
from openai import OpenAI

from local.openai_emulator import OpenAIEmulator

from .conftest import FakeClock, training_jsonl


def test_file_create_retrieve_content_delete(client: OpenAI, emu: OpenAIEmulator) -> None:
    data = training_jsonl()
    created = client.files.create(file=("train.jsonl", data), purpose="fine-tune")
    assert (created.object, created.purpose, created.bytes, created.filename) == (
        "file",
        "fine-tune",
        len(data),
        "train.jsonl",
    )
    assert client.files.retrieve(created.id).id == created.id
    assert client.files.content(created.id).content == data
    assert emu.requests[0].body["purpose"] == "fine-tune"
    deleted = client.files.delete(created.id)
    assert deleted.deleted and created.id not in emu.files
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_file_bad_purpose_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("x.jsonl", b"{}"), purpose="nonsense")  # type: ignore[arg-type]
    assert caught.value.body == {
        "message": "Invalid value for 'purpose': 'nonsense'.",
        "type": "invalid_request_error",
        "param": "purpose",
        "code": "invalid_value",
    }


def test_upload_in_parts_creates_the_file(client: OpenAI, emu: OpenAIEmulator) -> None:
    data = training_jsonl()
    upload = client.uploads.create(bytes=len(data), filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    assert upload.status == "pending" and upload.file is None
    half = len(data) // 2
    parts = [client.uploads.parts.create(upload.id, data=chunk) for chunk in (data[:half], data[half:])]
    assert parts[0].object == "upload.part" and parts[0].upload_id == upload.id
    done = client.uploads.complete(upload.id, part_ids=[p.id for p in parts], md5=hashlib.md5(data).hexdigest())
    assert done.status == "completed" and done.file is not None
    assert emu.files[done.file.id].content == data


def test_upload_complete_rejects_wrong_size_and_md5(client: OpenAI) -> None:
    upload = client.uploads.create(bytes=10, filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    part = client.uploads.parts.create(upload.id, data=b"12345")
    with pytest.raises(openai.BadRequestError, match="declared 10 bytes"):
        client.uploads.complete(upload.id, part_ids=[part.id])
    other = client.uploads.parts.create(upload.id, data=b"67890")
    with pytest.raises(openai.BadRequestError, match="md5"):
        client.uploads.complete(upload.id, part_ids=[part.id, other.id], md5="0" * 32)


def test_upload_requires_its_fields(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/uploads", body={"filename": "a", "purpose": "fine-tune", "bytes": 3}, cast_to=object)
    assert caught.value.code == "missing_required_parameter" and caught.value.param == "mime_type"


def test_missing_api_key_is_401(emu: OpenAIEmulator) -> None:
    response = httpx2.get(f"{emu.base_url}/files/file-x")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_route_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="Invalid URL"):
        client.get("/nothing/here", cast_to=object)


def test_a_part_over_64_mb_is_refused(client: OpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    from local.openai_emulator import state

    monkeypatch.setattr(state, "MAX_PART_BYTES", 8)  # the real limit is 64,000,000 bytes: too big to send here
    upload = client.uploads.create(bytes=17, filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    assert client.uploads.parts.create(upload.id, data=b"12345678").upload_id == upload.id  # exactly the limit
    with pytest.raises(openai.BadRequestError, match="at most 64 MB"):
        client.uploads.parts.create(upload.id, data=b"123456789")


def test_completing_an_upload_after_it_expired_answers_expired_without_a_file(
    slow_client: OpenAI, slow_emu: OpenAIEmulator, clock: FakeClock
) -> None:
    upload = slow_client.uploads.create(bytes=5, filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    part = slow_client.uploads.parts.create(upload.id, data=b"12345")
    clock.advance(3600)  # an upload lives one hour

    done = slow_client.uploads.complete(upload.id, part_ids=[part.id])

    assert (done.status, done.file) == ("expired", None)
    assert not slow_emu.files
