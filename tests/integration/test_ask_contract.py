"""What POST /ask promises whoever serves the run's model: every provider passes the same behavioural tests
through its own emulator, on a run trained by the real pipeline. Each provider's own ways are in
test_ask_api.py (OpenAI) and test_bedrock_run.py (Bedrock)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.bedrock_emulator import BedrockEmulator
from local.openai_emulator import OpenAIEmulator
from shared.providers import PROVIDER_NAMES, spec
from shared.providers.bedrock.gateway import BEDROCK_ATTEMPTS
from shared.providers.open.gateway import CLIENT_CONFIG as OPEN_CLIENT_CONFIG
from tests.helpers import Aws, SetEnv, ask_question, trained_to_the_end

QUESTION = "Question 17: what is measured in joules?"
ANSWER = "energy 17 Explanation: Energy 17 is measured in joules."


@dataclass
class Wing:
    """One provider as this suite drives it: the model calls it received, and the levers that make them fail."""

    name: str
    calls: Callable[[], int]
    fail_once: Callable[[], object]  # the next call fails in a way worth retrying
    stay_unavailable: Callable[[], object]
    attempts: int  # calls one question makes before giving up
    refuse: Callable[[], object]
    refusal_words: str


def _openai(request: pytest.FixtureRequest, set_env: SetEnv) -> Wing:
    emulator: OpenAIEmulator = request.getfixturevalue("emulator")
    set_env(OPENAI_MAX_RETRIES="2")

    def calls() -> int:
        return len([r for r in emulator.requests if r.path == "/chat/completions"])

    return Wing(
        "openai",
        calls,
        lambda: emulator.inject_fault("/chat/completions", status=503),
        lambda: emulator.inject_fault("/chat/completions", status=503, times=100),
        3,  # the SDK's first try and its 2 retries
        lambda: emulator.inject_fault("/chat/completions", status=400),
        "Emulated HTTP 400 error.",
    )


def _bedrock(request: pytest.FixtureRequest, set_env: SetEnv) -> Wing:
    emulator: BedrockEmulator = request.getfixturevalue("bedrock")

    def calls() -> int:
        return len([r for r in emulator.requests if r.operation == "Converse"])

    return Wing(
        "bedrock",
        calls,
        lambda: emulator.inject_fault("Converse", "throttling"),
        lambda: emulator.inject_fault("Converse", "throttling", times=100),
        BEDROCK_ATTEMPTS,
        lambda: emulator.inject_fault("Converse", "validation", message="Bedrock said no to this"),
        "Bedrock said no to this",
    )


def _open(request: pytest.FixtureRequest, set_env: SetEnv) -> Wing:
    request.getfixturevalue("sagemaker")  # trains the run; the Bedrock emulator imports and serves it
    emulator: BedrockEmulator = request.getfixturevalue("bedrock")

    def calls() -> int:
        return len([r for r in emulator.requests if r.operation == "InvokeModel"])

    return Wing(
        "open",
        calls,
        lambda: emulator.inject_fault("InvokeModel", "throttling"),
        lambda: emulator.inject_fault("InvokeModel", "throttling", times=100),
        OPEN_CLIENT_CONFIG.retries["total_max_attempts"],
        lambda: emulator.inject_fault("InvokeModel", "validation", message="Bedrock said no to this"),
        "Bedrock said no to this",
    )


WINGS = {"openai": _openai, "bedrock": _bedrock, "open": _open}


@pytest.fixture(params=PROVIDER_NAMES)
def wing(request: pytest.FixtureRequest, aws_account: Aws, set_env: SetEnv) -> Wing:
    return WINGS[request.param](request, set_env)


@pytest.fixture
def trained(wing: Wing, aws_account: Aws, lambda_context: Any, tmp_path: Path) -> dict[str, Any]:
    """A run of 40 SciQ rows trained by the real pipeline, succeeded."""
    succeeded = trained_to_the_end(aws_account, lambda_context, tmp_path, provider=wing.name)
    assert succeeded["status"] == "succeeded" and succeeded["fine_tuned_model"]
    return succeeded


def test_every_registered_provider_is_in_this_suite() -> None:
    assert set(WINGS) == set(PROVIDER_NAMES)


def test_the_runs_tuned_model_answers_from_what_it_was_trained_on(
    wing: Wing, trained: dict[str, Any], lambda_context: Any
) -> None:
    status, body = ask_question(lambda_context, question=QUESTION, run_id=trained["run_id"])

    assert status == 200
    assert (body["answer"], body["refusal"], body["run_id"]) == (ANSWER, None, trained["run_id"])
    assert body["model"] and body["usage"]["total_tokens"] > 0
    assert wing.calls() == 1


def test_one_failure_worth_retrying_is_retried_and_answers(
    wing: Wing, trained: dict[str, Any], lambda_context: Any
) -> None:
    wing.fail_once()

    status, body = ask_question(lambda_context, question=QUESTION, run_id=trained["run_id"])

    assert (status, body["answer"]) == (200, ANSWER)
    assert wing.calls() == 2


def test_a_provider_unavailable_past_the_retries_is_a_503_naming_it(
    wing: Wing, trained: dict[str, Any], lambda_context: Any
) -> None:
    wing.stay_unavailable()

    status, body = ask_question(lambda_context, question=QUESTION, run_id=trained["run_id"])

    assert (status, body["code"]) == (503, f"{wing.name}_unavailable")
    assert body["message"].startswith(f"{spec(wing.name).label} is not answering right now (")
    assert body["message"].endswith("; try again shortly.")
    assert wing.calls() == wing.attempts


def test_a_refusal_is_a_502_with_the_providers_words_and_is_not_retried(
    wing: Wing, trained: dict[str, Any], lambda_context: Any
) -> None:
    wing.refuse()

    status, body = ask_question(lambda_context, question=QUESTION, run_id=trained["run_id"])

    assert (status, body["code"]) == (502, f"{wing.name}_refused")
    assert wing.refusal_words in body["message"]
    assert wing.calls() == 1
