"""Fixtures for the OpenAI emulator tests: a running emulator, an SDK client, training data, a fake clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from local.openai_emulator import OpenAIEmulator


class FakeClock:
    """Time that only moves when a test says so, for deterministic job phases."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def training_jsonl(n: int = 12) -> bytes:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "You answer questions about the colour catalogue."},
                {"role": "user", "content": f"What colour is catalogue item number {i}?"},
                {"role": "assistant", "content": f"Catalogue item {i} is shade-{i}."},
            ]
        }
        for i in range(n)
    ]
    return "\n".join(json.dumps(r) for r in rows).encode()


@pytest.fixture
def emu() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(phase_seconds=0.0) as emulator:
        yield emulator


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def slow_emu(clock: FakeClock) -> Iterator[OpenAIEmulator]:
    """Each job phase lasts 10 fake seconds."""
    with OpenAIEmulator(phase_seconds=10.0, clock=clock) as emulator:
        yield emulator


def client_for(emulator: OpenAIEmulator, **kwargs: Any) -> OpenAI:
    return OpenAI(base_url=emulator.base_url, api_key="test", max_retries=kwargs.pop("max_retries", 0), **kwargs)


@pytest.fixture
def client(emu: OpenAIEmulator) -> OpenAI:
    return client_for(emu)


@pytest.fixture
def slow_client(slow_emu: OpenAIEmulator) -> OpenAI:
    return client_for(slow_emu)


def upload_training(client: OpenAI, content: bytes | None = None, purpose: str = "fine-tune") -> str:
    return client.files.create(file=("train.jsonl", content or training_jsonl()), purpose=purpose).id  # type: ignore[arg-type]
