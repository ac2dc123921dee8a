"""One run handler by handler (prepare -> start -> poll -> ask), and a cancelled run ending the loop."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from functions.ask.app import lambda_handler as ask_handler
from functions.poll_job.app import lambda_handler as poll_handler
from functions.start_job.app import lambda_handler as start_handler
from local.openai_emulator import OpenAIEmulator
from tests.helpers import Aws, finished_execution, history_states, load_event, prepare_run, training_event


def ask_event(body: dict[str, Any]) -> dict[str, Any]:
    event = load_event("ask-question.json")
    event["body"] = json.dumps(body)
    return event


def test_a_whole_run_handler_by_handler_answers_a_training_question(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    emulator.phase_seconds = 1000
    run = prepare_run(aws_account, lambda_context, tmp_path)
    start_handler(training_event(run["run_id"]), lambda_context)
    [run] = aws_account.runs()
    state = load_event("poll-job.json") | {"run_id": run["run_id"], "job_id": run["job_id"]}
    state = poll_handler(state, lambda_context)
    emulator.phase_seconds = 0
    while state["status"] not in {"succeeded", "failed", "cancelled"}:
        state = poll_handler(state, lambda_context)

    response = ask_handler(ask_event({"question": "Question 17: what is measured in joules?"}), lambda_context)

    assert state["status"] == "succeeded"
    assert response["statusCode"] == 200
    [done] = aws_account.runs()
    body = json.loads(response["body"])
    assert body["answer"] == "energy 17 Explanation: Energy 17 is measured in joules."
    assert (body["model"], body["run_id"]) == (done["fine_tuned_model"], done["run_id"])
    assert done["base_model_shutdown_date"] == emulator.shutdown_dates["gpt-4o-mini-2024-07-18"]
    # What a full run costs in HTTP requests to OpenAI: upload, lookup, create, polls, the base model's
    # shutdown date (once, when the job has succeeded), ask
    requests = Counter(f"{r.method} {r.route}" for r in emulator.requests)
    assert requests == {
        "POST /files": 1,
        "GET /fine_tuning/jobs": 1,
        "POST /fine_tuning/jobs": 1,
        "GET /fine_tuning/jobs/{fine_tuning_job_id}": 2,
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/events": 2,
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/checkpoints": 2,
        "GET /models/{model}": 1,
        "POST /chat/completions": 1,
    }


def test_cancelling_a_run_through_the_api_ends_the_tracking_loop(
    aws_account_executing: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    emulator.phase_seconds = 1000
    run = prepare_run(aws_account_executing, lambda_context, tmp_path)
    start_handler(training_event(run["run_id"]), lambda_context)

    event = load_event("ask-cancel-run.json")
    event["pathParameters"] = {"run_id": run["run_id"]}
    event["path"] = f"/runs/{run['run_id']}/cancel"
    response = ask_handler(event, lambda_context)
    execution = finished_execution(run["run_id"])

    assert response["statusCode"] == 202
    assert execution["status"] == "FAILED" and execution["error"] == "JobCancelled"
    assert history_states(execution["executionArn"])[-1] == "JobCancelled"
    [cancelled] = aws_account_executing.runs()
    assert cancelled["status"] == "cancelled"
    assert "notified_at" in cancelled
