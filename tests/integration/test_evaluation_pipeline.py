"""Reports in the deployed pipeline: the state machine draws the curve and evaluates a succeeded run, and the
API shows the evaluation, links the reports and starts comparisons (EvaluateFunction invoked through Lambda)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from functions.ask.app import lambda_handler as ask_handler
from functions.evaluate.app import lambda_handler as evaluate_handler
from functions.start_job.app import lambda_handler as start_handler
from local.lambda_runtime import LambdaContext
from local.openai_emulator import OpenAIEmulator
from tests.helpers import (
    Aws,
    finished_evaluations,
    finished_execution,
    history_states,
    load_event,
    prepare_run,
    training_event,
)

ARMS = ["tuned", "base", "base_with_context"]


def api(name: str, run_id: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """An API Gateway event of infra/events/<name> for `run_id`, answered by AskFunction."""
    event = load_event(name)
    event["path"] = event["resource"].replace("{run_id}", run_id)
    event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{event['path']}"
    event["pathParameters"] = {"run_id": run_id}
    if body is not None:
        event["body"] = json.dumps(body)
    response = ask_handler(event, LambdaContext(function_name="ragtune-ask"))
    return response["statusCode"], json.loads(response["body"])


def tracked_run(aws: Aws, context: Any, tmp_path: Path, **config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run prepared, started and tracked to its end by the real state machine; (run item, execution)."""
    run = prepare_run(aws, context, tmp_path, **config)
    start_handler(training_event(run["run_id"]), context)
    execution = finished_execution(run["run_id"], timeout=120)
    finished_evaluations(run["run_id"], timeout=120)
    [done] = [item for item in aws.runs() if item["run_id"] == run["run_id"]]
    return done, execution


def test_a_succeeded_run_is_drawn_and_evaluated_by_the_state_machine(
    aws_account_executing: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run, execution = tracked_run(aws_account_executing, lambda_context, tmp_path, validation_fraction=0.25)

    assert execution["status"] == "SUCCEEDED"
    states = history_states(execution["executionArn"])
    assert states[-4:] == ["DrawTrainingCurve", "JobOutcome", "EvaluateRun", "JobSucceeded"]
    # The curve: the job's own step metrics, one CSV row per reported step, and a PNG.
    prefix = f"reports/{run['run_id']}/"
    assert run["reports"] == {"metrics_csv": f"{prefix}metrics.csv", "loss_png": f"{prefix}loss.png"}
    rows = list(csv.DictReader(io.StringIO(aws_account_executing.read(f"{prefix}metrics.csv").decode())))
    job = emulator.jobs[run["job_id"]]
    assert len(rows) == len([e for e in job.events if e["type"] == "metrics"]) > 0
    assert aws_account_executing.read(f"{prefix}loss.png")[:8] == b"\x89PNG\r\n\x1a\n"
    # The evaluation: the 10 held-out questions, asked of each arm.
    evaluation = run["evaluation"]
    assert evaluation["status"] == "succeeded" and evaluation["questions"] == 10
    assert [arm["name"] for arm in evaluation["arms"]] == ARMS
    report = aws_account_executing.read(f"{prefix}evaluation.jsonl").decode().splitlines()
    assert len(report) == 10 and all(set(json.loads(line)["arms"]) == set(ARMS) for line in report)

    status, shown = api("ask-get-evaluation.json", run["run_id"])
    assert status == 200
    assert shown["status"] == "succeeded" and shown["questions"] == 10 and shown["match"] == "start"
    assert [(arm["name"], arm["model"]) for arm in shown["arms"]] == [
        ("tuned", run["fine_tuned_model"]),
        ("base", "gpt-4o-mini-2024-07-18"),
        ("base_with_context", "gpt-4o-mini-2024-07-18"),
    ]
    assert shown["report_keys"] == [f"{prefix}evaluation.jsonl"]

    status, detail = api("ask-get-run.json", run["run_id"])
    assert status == 200 and detail["evaluation_status"] == "succeeded"
    links = {name: urlparse(url) for name, url in detail["report_urls"].items()}
    assert {name: link.path.rsplit("/", 1)[1] for name, link in links.items()} == {
        "evaluation_jsonl": "evaluation.jsonl",
        "loss_png": "loss.png",
        "metrics_csv": "metrics.csv",
    }
    assert all("X-Amz-Signature=" in link.query and "X-Amz-Expires=900" in link.query for link in links.values())


def test_a_failed_job_gets_its_curve_and_no_evaluation(
    aws_account_executing: Aws, lambda_context: Any, tmp_path: Path, set_env: Any
) -> None:
    with OpenAIEmulator(phase_seconds=0, min_training_examples=1000) as strict:
        set_env(OPENAI_BASE_URL=strict.base_url)
        run, execution = tracked_run(aws_account_executing, lambda_context, tmp_path, validation_fraction=0.25)

    assert execution["status"] == "FAILED" and execution["error"] == "JobFailed"
    assert history_states(execution["executionArn"])[-3:] == ["DrawTrainingCurve", "JobOutcome", "JobFailed"]
    assert aws_account_executing.read(run["reports"]["metrics_csv"]).decode().splitlines() == [
        "step,train_loss,valid_loss,train_accuracy,valid_accuracy"
    ]
    assert "evaluation" not in run
    status, shown = api("ask-get-evaluation.json", run["run_id"])
    assert (status, shown["status"], shown["arms"]) == (200, "pending", [])


def test_a_run_without_held_out_questions_is_not_evaluated_and_says_so(
    aws_account_executing: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run, execution = tracked_run(aws_account_executing, lambda_context, tmp_path)

    assert execution["status"] == "SUCCEEDED"
    assert "EvaluateRun" in history_states(execution["executionArn"])
    assert "evaluation" not in run
    chat = [r for r in emulator.requests if r.route == "/chat/completions"]
    assert chat == []
    requests: list[tuple[str, dict[str, Any] | None]] = [
        ("ask-get-evaluation.json", None),
        ("ask-compare-runs.json", {}),
    ]
    for name, request_body in requests:
        status, body = api(name, run["run_id"], request_body)
        assert (status, body["code"]) == (409, "no_validation_split")
        assert "validation_fraction" in body["message"]


def test_unknown_runs_are_404_and_runs_without_a_model_409_before_anything_is_asked(
    aws_account_executing: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = prepare_run(aws_account_executing, lambda_context, tmp_path, validation_fraction=0.25)

    assert api("ask-get-evaluation.json", "no-such-run")[0] == 404
    status, body = api("ask-compare-runs.json", "no-such-run", {})
    assert (status, body["code"]) == (404, "run_not_found")
    status, body = api("ask-compare-runs.json", run["run_id"], {})
    assert (status, body["code"]) == (409, "run_not_succeeded")
    status, body = api("ask-compare-runs.json", run["run_id"], {"compare_with": ["x"] * 6})
    assert (status, body["code"]) == (422, "invalid_request")
    assert [r for r in emulator.requests if r.route == "/chat/completions"] == []


def test_posting_a_comparison_starts_the_evaluate_function_which_adds_an_arm(
    aws_account_executing: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    first, _ = tracked_run(aws_account_executing, lambda_context, tmp_path, validation_fraction=0.25)
    second, _ = tracked_run(aws_account_executing, lambda_context, tmp_path, validation_fraction=0.25, seed=7)
    before = aws_account_executing.read(f"reports/{first['run_id']}/evaluation.jsonl")

    status, missing = api("ask-compare-runs.json", first["run_id"], {"compare_with": ["no-such-run"]})
    assert (status, missing["code"]) == (404, "compare_run_not_found")
    status, started = api("ask-compare-runs.json", first["run_id"], {"compare_with": [second["run_id"]]})

    assert status == 202 and started["run_id"] == first["run_id"]
    # The tracker's evaluation, then the API's: each an execution of the evaluation state machine.
    executions = finished_evaluations(first["run_id"])
    assert [execution["status"] for execution in executions] == ["SUCCEEDED", "SUCCEEDED"]
    [claimed] = [item for item in aws_account_executing.runs() if item["run_id"] == first["run_id"]]
    assert json.loads(executions[-1]["input"]) == {
        "run_id": first["run_id"],
        "compare_with": [second["run_id"]],
        "token": claimed["evaluation"]["token"],  # the API's claim: only this request's evaluation proceeds
    }
    status, shown = api("ask-get-evaluation.json", first["run_id"])
    assert [arm["name"] for arm in shown["arms"]] == [*ARMS, second["run_id"]]
    assert shown["arms"][-1]["model"] == second["fine_tuned_model"]
    after = aws_account_executing.read(f"reports/{first['run_id']}/evaluation.jsonl").decode().splitlines()
    for old, new in zip(before.decode().splitlines(), after, strict=True):
        old_line, new_line = json.loads(old), json.loads(new)
        assert {name: new_line["arms"][name] for name in ARMS} == old_line["arms"]
        assert new_line["arms"][second["run_id"]]["model"] == second["fine_tuned_model"]


def test_the_function_skips_a_request_it_cannot_serve_without_failing(aws_account: Aws, lambda_context: Any) -> None:
    result = evaluate_handler(
        {"action": "plan_evaluation", "run_id": "no-such-run", "compare_with": [], "token": None}, lambda_context
    )
    curve = evaluate_handler({"action": "training_curve", "run_id": "no-such-run"}, lambda_context)

    assert (result["outcome"], result["skipped"]) == ("skipped", "run_not_found")
    assert curve["skipped"] == "no such run"
