"""Injected faults as the SDK experiences them, and that `times` is respected."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from local.openai_emulator import OpenAIEmulator

from .conftest import client_for, upload_training

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_429_twice_then_success(client: OpenAI, emu: OpenAIEmulator) -> None:
    training = upload_training(client)
    emu.inject_fault("/fine_tuning/jobs", method="POST", status=429, times=2, retry_after=0.01)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as caught:
            client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training)
        assert caught.value.code == "rate_limit_exceeded"
        assert caught.value.response.headers["retry-after"] == "1"
    assert client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training).status == "validating_files"
    assert [r.status for r in emu.requests[-3:]] == [429, 429, 200]


def test_sdk_retries_through_429s_using_retry_after(emu: OpenAIEmulator) -> None:
    client = client_for(emu, max_retries=2)
    emu.inject_fault("/chat/completions", status=429, times=2, retry_after=0.01)
    assert client.chat.completions.create(**CHAT).choices[0].message.content  # type: ignore[call-overload]
    assert [r.status for r in emu.requests] == [429, 429, 200]


@pytest.mark.parametrize(("status", "error"), [(500, openai.InternalServerError), (503, openai.InternalServerError)])
def test_server_errors(client: OpenAI, emu: OpenAIEmulator, status: int, error: type[Exception]) -> None:
    emu.inject_fault("/chat/completions", status=status)
    with pytest.raises(error) as caught:
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert isinstance(caught.value, openai.APIStatusError) and caught.value.status_code == status
    assert caught.value.type == "server_error"
    assert client.chat.completions.create(**CHAT).choices  # type: ignore[call-overload]  # times=1 cleared it


def test_slow_fault_times_out_the_client(emu: OpenAIEmulator) -> None:
    client = client_for(emu, timeout=0.2)
    emu.inject_fault("/chat/completions", "slow", delay=0.6)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert client.chat.completions.create(**CHAT).choices  # type: ignore[call-overload]


def test_drop_fault_is_a_connection_error(client: OpenAI, emu: OpenAIEmulator) -> None:
    emu.inject_fault(r"/files/[^/]+", "drop", method="GET", times=2)
    file_id = upload_training(client)  # POST /files does not match
    for _ in range(2):
        with pytest.raises(openai.APIConnectionError):
            client.files.retrieve(file_id)
    assert client.files.retrieve(file_id).id == file_id
    assert emu.faults.pending() == []


def test_faults_only_hit_matching_requests(client: OpenAI, emu: OpenAIEmulator) -> None:
    emu.inject_fault("/fine_tuning/jobs", method="POST", status=500)
    assert client.fine_tuning.jobs.list().data == []  # GET is not affected
    assert len(emu.faults.pending()) == 1


def test_bad_fault_kind_is_refused(emu: OpenAIEmulator) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        emu.inject_fault("/x", "explode")  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "code"), [(408, "timeout"), (409, "conflict")])
def test_408_and_409_are_openai_shaped_and_the_sdk_retries_them(emu: OpenAIEmulator, status: int, code: str) -> None:
    emu.inject_fault("/chat/completions", status=status, times=2)
    with pytest.raises(openai.APIStatusError) as caught:
        client_for(emu).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert (caught.value.status_code, caught.value.code) == (status, code)

    assert client_for(emu, max_retries=1).chat.completions.create(**CHAT).choices  # type: ignore[call-overload]
    assert [r.status for r in emu.requests] == [status, status, 200]


def test_a_fault_can_carry_headers_such_as_x_should_retry(client: OpenAI, emu: OpenAIEmulator) -> None:
    emu.inject_fault("/chat/completions", status=503, headers={"x-should-retry": "false"})
    with pytest.raises(openai.InternalServerError) as caught:
        client_for(emu, max_retries=2).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(emu.requests) == 1  # the SDK obeys the header: no retry
