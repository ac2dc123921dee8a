"""POST /runs/{id}/evaluation is bounded: each evaluation pays for every question of every arm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.ask.app import lambda_handler as ask_handler
from local.lambda_runtime import in_process_lambdas
from local.migration_demo import notebook_training_file
from local.openai_emulator import OpenAIEmulator
from tests.helpers import Aws, SetEnv, finished_evaluations, load_event
from tests.integration.test_adopt import OLD_MODEL, ROWS, adopt


@pytest.fixture
def known_model(set_env: SetEnv, emulator: OpenAIEmulator) -> OpenAIEmulator:
    """An adoptable fine-tune OpenAI knows: a succeeded run with questions, made in one prepare."""
    set_env(ADOPTABLE_MODELS=OLD_MODEL)
    emulator.add_tuned_model(OLD_MODEL, notebook_training_file(ROWS))
    return emulator


def post_evaluation(run_id: str, context: Any) -> dict[str, Any]:
    event = load_event("ask-compare-runs.json")
    event["path"] = f"/runs/{run_id}/evaluation"
    event["pathParameters"] = {"run_id": run_id}
    event["body"] = "{}"
    response: dict[str, Any] = ask_handler(event, context)
    finished_evaluations(run_id)
    return response


def test_a_run_is_evaluated_at_most_the_days_limit_then_429_with_retry_after_and_nothing_asked(
    aws_account_executing: Aws, lambda_context: Any, tmp_path: Path, known_model: OpenAIEmulator, set_env: SetEnv
) -> None:
    set_env(EVALUATIONS_PER_RUN_PER_DAY="2")
    with in_process_lambdas():
        run = adopt(aws_account_executing, lambda_context, tmp_path)  # its own evaluation: the pipeline's, not counted
        answers = [post_evaluation(run["run_id"], lambda_context) for _ in range(2)]
        asked = len(known_model.requests)
        refused = post_evaluation(run["run_id"], lambda_context)

    assert [answer["statusCode"] for answer in answers] == [202, 202]
    assert refused["statusCode"] == 429
    body = json.loads(refused["body"])
    assert body["code"] == "evaluation_limit"
    retry_after = int(refused["multiValueHeaders"]["Retry-After"][0])
    assert 86_000 < retry_after <= 86_401
    # The sentence gives the header's wait (24 h 0 min when the first request was under a second ago, as on a fast
    # machine; 23 h 59 min after that).
    assert body["message"] == (
        f"Run {run['run_id']} was evaluated 2 times in the last 24 hours, the most this deployment allows (the stack "
        f"parameter EvaluationsPerRunPerDay); ask again in {retry_after // 3600} h {retry_after % 3600 // 60} min."
    )
    assert len(known_model.requests) == asked  # the refused request asked nothing
