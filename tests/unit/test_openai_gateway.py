"""The OpenAI gateway against a scripted transport: how answers are classified, what uploads end as, limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from openai import OpenAI

from shared.domain.run_ids import derive_run_id
from shared.providers.openai import fine_tune_base
from shared.providers.openai.gateway import (
    OpenAIGateway,
    OpenAIRefusedError,
    OpenAITransientError,
)
from shared.providers.openai.settings import OpenAISettings

DEPLOYMENT = "ragtune-data-123456789012-us-east-1"
JOB = {
    "object": "fine_tuning.job",
    "id": "ftjob-1",
    "created_at": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "organization_id": "org",
    "status": "running",
    "training_file": "file-1",
    "validation_file": None,
    "fine_tuned_model": None,
    "finished_at": None,
    "trained_tokens": None,
    "result_files": [],
    "error": None,
    "hyperparameters": {},
    "seed": 1,
    "metadata": None,
}


def gateway_over(answer: Callable[[httpx2.Request], httpx2.Response], requests: list[httpx2.Request]) -> OpenAIGateway:
    def transport(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return answer(request)

    client = OpenAI(
        api_key="test",
        base_url="http://openai.test/v1",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=httpx2.MockTransport(transport)),
    )
    return OpenAIGateway(client, upload_part_bytes=5120, retry_backoff_seconds=0, deployment=DEPLOYMENT)


def error_answer(status: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    body = {"error": {"message": f"emulated {status}", "type": "x", "param": None, "code": f"code_{status}"}}
    return httpx2.Response(status, json=body, headers=headers or {})


@pytest.mark.parametrize(
    ("status", "headers", "kind"),
    [
        (408, {}, OpenAITransientError),
        (409, {}, OpenAITransientError),
        (429, {}, OpenAITransientError),
        (500, {}, OpenAITransientError),
        (503, {}, OpenAITransientError),
        (400, {}, OpenAIRefusedError),
        (403, {}, OpenAIRefusedError),
        (404, {}, OpenAIRefusedError),
        (400, {"x-should-retry": "true"}, OpenAITransientError),
        (503, {"x-should-retry": "false"}, OpenAIRefusedError),
        (409, {"x-should-retry": "false"}, OpenAIRefusedError),
    ],
)
def test_errors_are_classified_as_the_sdk_decides_retries(
    status: int, headers: dict[str, str], kind: type[Exception]
) -> None:
    requests: list[httpx2.Request] = []
    with pytest.raises(kind) as raised:
        gateway_over(lambda _: error_answer(status, headers), requests).retrieve_job("ftjob-1")
    assert len(requests) == 1
    if isinstance(raised.value, OpenAIRefusedError):  # OpenAI's own message and code are kept
        assert (raised.value.status_code, raised.value.code) == (status, f"code_{status}")
        assert raised.value.message.endswith(f"emulated {status}")


@pytest.mark.parametrize(
    ("status", "says"),
    [
        ("expired", "expired before it was completed (an upload must be completed within an hour)"),
        ("cancelled", "was cancelled before it was completed"),
    ],
)
def test_an_upload_ending_expired_or_cancelled_is_a_refusal_with_its_own_message(status: str, says: str) -> None:
    requests: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        upload = {
            "object": "upload",
            "id": "upload_1",
            "bytes": 6000,
            "created_at": 1,
            "expires_at": 3601,
            "filename": "x",
            "purpose": "fine-tune",
            "status": "pending",
            "file": None,
        }
        if request.url.path.endswith("/parts"):
            return httpx2.Response(
                200,
                json={"object": "upload.part", "id": f"part_{len(requests)}", "created_at": 1, "upload_id": "upload_1"},
            )
        if request.url.path.endswith("/complete"):
            return httpx2.Response(200, json={**upload, "status": status})
        return httpx2.Response(200, json=upload)

    class Source:
        size, name = 6000, "run-0123456789ab-train-0a1b2c3d4e5f.jsonl"

        def read_range(self, start: int, end: int) -> bytes:
            return b"x" * (end - start + 1)

        def open_stream(self) -> Any:
            raise AssertionError("parts are read by range")

    with pytest.raises(OpenAIRefusedError) as refused:
        gateway_over(answer, requests).upload_training_file(Source(), multipart_threshold=1024)

    assert refused.value.message == (
        f"OpenAI's upload upload_1 of {DEPLOYMENT}_{Source.name} {says}. Upload the config again to retry."
    )
    assert [r.url.path for r in requests] == [
        "/v1/uploads",
        *["/v1/uploads/upload_1/parts"] * 2,
        "/v1/uploads/upload_1/complete",
    ]  # 5120 + 880 bytes; no retry


def test_upload_parts_stay_within_openais_64_mb() -> None:
    required = {"OPENAI_API_KEY_SECRET": "s"}
    assert OpenAISettings.model_validate(required).upload_part_bytes == 64_000_000
    assert OpenAISettings.model_validate({**required, "UPLOAD_PART_BYTES": "64000000"}).upload_part_bytes == 64_000_000
    with pytest.raises(pydantic.ValidationError, match="64000000"):
        OpenAISettings.model_validate({**required, "UPLOAD_PART_BYTES": str(64 * 2**20)})  # 64 MiB is over 64 MB


def test_job_metadata_names_run_and_deployment_within_openais_limits() -> None:
    longest_run_id = derive_run_id("configs/" + "x" * 200 + ".json", b"{}")
    longest_bucket = "b" * 63
    metadata = gateway_over(lambda _: httpx2.Response(500), []).job_metadata(longest_run_id)
    assert metadata["ragtune_run_id"] == longest_run_id
    assert len(metadata) <= 16 and all(len(k) <= 64 and len(v) <= 512 for k, v in metadata.items())
    client = OpenAI(api_key="test", base_url="http://openai.test/v1")
    assert (
        OpenAIGateway(client, 5120, 0, deployment=longest_bucket).job_metadata("r")["ragtune_deployment"]
        == longest_bucket
    )
    with pytest.raises(ValueError, match="deployment identity"):
        OpenAIGateway(client, 5120, 0, deployment="")


def model_answer(shutdown_date: Any = "absent") -> httpx2.Response:
    """A Model object as the spec shapes it; `shutdown_date` left out unless given (null included)."""
    model = {"id": "gpt-4o-mini-2024-07-18", "object": "model", "created": 1721172741, "owned_by": "system"}
    return httpx2.Response(200, json=model if shutdown_date == "absent" else {**model, "shutdown_date": shutdown_date})


def test_the_base_models_shutdown_date_is_read_from_get_models() -> None:
    requests: list[httpx2.Request] = []
    gateway = gateway_over(lambda _: model_answer("2027-01-14"), requests)

    assert gateway.base_model_shutdown_date("gpt-4o-mini-2024-07-18") == date(2027, 1, 14)
    [request] = requests
    assert (request.method, request.url.path) == ("GET", "/v1/models/gpt-4o-mini-2024-07-18")


@pytest.mark.parametrize(
    "answer",
    [
        model_answer(),  # no shutdown_date field at all
        model_answer(None),  # no date announced
        model_answer("soon"),  # not a date
        error_answer(404),  # the model is unknown
        error_answer(500),  # OpenAI is down
        error_answer(429),
    ],
)
def test_an_unreadable_shutdown_date_is_none_never_an_error(answer: httpx2.Response) -> None:
    assert gateway_over(lambda _: answer, []).base_model_shutdown_date("gpt-4o-mini-2024-07-18") is None


def test_a_dropped_connection_reading_the_date_is_none_too() -> None:
    def drop(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("dropped", request=request)

    assert gateway_over(drop, []).base_model_shutdown_date("gpt-4o-mini-2024-07-18") is None


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("ft:gpt-4o-mini-2024-07-18:org:suffix:abc123", "gpt-4o-mini-2024-07-18"),
        ("ft:gpt-4o-mini-2024-07-18:org::abc123", "gpt-4o-mini-2024-07-18"),
        ("ft:gpt-4o-mini-2024-07-18:org:s:abc123:ckpt-step-10", "gpt-4o-mini-2024-07-18"),
        ("gpt-4o-mini", None),
        ("ft:", None),
        ("arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/x", None),
    ],
)
def test_a_fine_tunes_base_model_is_read_from_its_name(model: str, base: str | None) -> None:
    assert fine_tune_base(model) == base
