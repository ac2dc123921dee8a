"""What a finished run's reports promise whoever trained it: every provider passes the same behavioural tests
through its own emulator, on a run the real pipeline prepared (with held-out questions), started and polled.
Each provider's own ways are in test_training_curve.py, test_evaluate_run.py and test_bedrock_run.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from functions.evaluate.app import lambda_handler as evaluate_handler
from shared.pipeline.evaluate_run import EvaluationRequest
from shared.providers import PROVIDER_NAMES, spec
from tests.helpers import Aws, SetEnv, evaluate_in_order, trained_to_the_end


@pytest.fixture(params=PROVIDER_NAMES)
def succeeded(
    request: pytest.FixtureRequest, aws_account: Aws, set_env: SetEnv, lambda_context: Any, tmp_path: Path
) -> dict[str, Any]:
    """A run of 40 SciQ rows, a quarter held out as questions, trained by its provider's emulator."""
    request.getfixturevalue({"openai": "emulator", "bedrock": "bedrock", "open": "sagemaker"}[request.param])
    finished = trained_to_the_end(
        aws_account, lambda_context, tmp_path, provider=request.param, validation_fraction=0.25
    )
    assert finished["status"] == "succeeded" and finished["provider"] == request.param
    return finished


def test_the_training_curve_is_published_from_the_providers_own_metrics(
    succeeded: dict[str, Any], aws_account: Aws, lambda_context: Any
) -> None:
    result = evaluate_handler({"action": "training_curve", "run_id": succeeded["run_id"]}, lambda_context)

    [run] = aws_account.runs()
    assert run["reports"] == result["keys"] and result["rows"] > 1
    rows = list(csv.DictReader(io.StringIO(aws_account.read(run["reports"]["metrics_csv"]).decode())))
    assert len(rows) == result["rows"] and all(float(row["train_loss"]) >= 0 for row in rows)
    assert [int(row["step"]) for row in rows] == sorted(int(row["step"]) for row in rows)
    assert aws_account.read(run["reports"]["loss_png"]).startswith(b"\x89PNG")


def test_the_evaluation_asks_every_held_out_question_of_the_tuned_and_the_base_model(
    succeeded: dict[str, Any], aws_account: Aws, lambda_context: Any
) -> None:
    evaluate_in_order(EvaluationRequest(run_id=succeeded["run_id"]))

    [run] = aws_account.runs()
    evaluation = run["evaluation"]
    questions = succeeded["counts"]["evaluation_questions"]
    assert evaluation["status"] == "succeeded" and evaluation["questions"] == questions > 0
    arms = {summary["name"]: summary for summary in evaluation["arms"]}
    assert {"tuned", "base"} <= set(arms)
    assert arms["tuned"]["model"] == succeeded["fine_tuned_model"]
    left_out = spec(succeeded["provider"]).base_not_served
    answering = {name: summary for name, summary in arms.items() if name == "tuned" or not left_out}
    assert all(summary["errors"] == 0 for summary in answering.values())  # every question answered by each
    [report_key] = evaluation["report_keys"]
    lines = [json.loads(line) for line in aws_account.read(report_key).splitlines()]
    assert len(lines) == questions and all(set(answering) <= set(line["arms"]) for line in lines)
    if left_out:  # a provider whose base models do not answer: its base arms say why, and nothing was asked
        base_arms = [summary for name, summary in arms.items() if name != "tuned"]
        assert base_arms and all(arm["error"] == {"code": "base_not_served", "message": left_out} for arm in base_arms)
        assert all(set(line["arms"]) == {"tuned"} for line in lines)
