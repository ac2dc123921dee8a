"""The two routes the dashboard reads besides the run itself: a run's curve and its evaluated answers, as JSON,
from the files the pipeline published (through the real AskFunction handler, against moto and the emulator)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from functions.evaluate.app import lambda_handler as evaluate_handler
from local.openai_emulator import OpenAIEmulator
from shared.pipeline.evaluate_run import EvaluationRequest
from tests.helpers import Aws, api_call, evaluate_in_order, trained_to_the_end


def test_a_runs_curve_is_its_published_metrics_csv_row_for_row(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = trained_to_the_end(aws_account, lambda_context, tmp_path)
    status, before = api_call("GET", f"/runs/{run['run_id']}/curve", lambda_context)
    assert (status, before) == (200, {"run_id": run["run_id"], "published": False, "rows": []})

    evaluate_handler({"action": "training_curve", "run_id": run["run_id"]}, lambda_context)
    status, curve = api_call("GET", f"/runs/{run['run_id']}/curve", lambda_context)

    [published] = aws_account.runs()
    rows = list(csv.DictReader(io.StringIO(aws_account.read(published["reports"]["metrics_csv"]).decode())))
    assert status == 200 and curve["published"] is True
    assert [point["step"] for point in curve["rows"]] == [int(row["step"]) for row in rows]
    assert [point["train_loss"] for point in curve["rows"]] == [float(row["train_loss"]) for row in rows]


def test_a_runs_evaluated_answers_are_its_evaluation_jsonl(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = trained_to_the_end(aws_account, lambda_context, tmp_path, validation_fraction=0.25)
    status, before = api_call("GET", f"/runs/{run['run_id']}/evaluation/answers", lambda_context)
    assert (status, before["answers"]) == (200, [])

    evaluate_in_order(EvaluationRequest(run_id=run["run_id"]))
    status, body = api_call("GET", f"/runs/{run['run_id']}/evaluation/answers", lambda_context)
    pages, offset = [], 0
    while offset is not None:  # pages of 3
        _, page = api_call("GET", f"/runs/{run['run_id']}/evaluation/answers?offset={offset}&limit=3", lambda_context)
        pages.append(page["answers"])
        offset = page["next_offset"]

    lines = aws_account.read(f"reports/{run['run_id']}/evaluation.jsonl").decode().splitlines()
    assert status == 200 and body["answers"] == [json.loads(line) for line in lines] and body["next_offset"] is None
    assert [answer for page in pages for answer in page] == body["answers"] and len(pages) == -(-len(lines) // 3)
    assert {"tuned", "base"} <= set(body["answers"][0]["arms"])


def test_both_routes_answer_404_for_an_unknown_run(aws_account: Aws, lambda_context: Any) -> None:
    for route in ("curve", "evaluation/answers"):
        status, body = api_call("GET", f"/runs/no-such-run/{route}", lambda_context)
        assert (status, body["code"]) == (404, "run_not_found"), route


def _list_runs(context: Any, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    from functions.ask.app import lambda_handler as ask_handler
    from tests.helpers import load_event

    event = load_event("ask-list-runs.json") | {
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {name: [value] for name, value in query.items()},
    }
    response = ask_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def test_runs_are_listed_by_status_across_pages_and_a_cursor_is_a_position_in_any_listing(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    from tests.helpers import prepare_run

    trained = trained_to_the_end(aws_account, lambda_context, tmp_path)
    for name in ("second", "third"):
        prepare_run(aws_account, lambda_context, tmp_path / name, seed=len(name))  # `prepared`, never started

    status, succeeded = _list_runs(lambda_context, {"status": "succeeded"})
    _, first = _list_runs(lambda_context, {"status": "prepared", "limit": "1"})
    _, second = _list_runs(lambda_context, {"status": "prepared", "limit": "1", "cursor": first["next_cursor"]})

    assert status == 200 and [run["run_id"] for run in succeeded["runs"]] == [trained["run_id"]]
    prepared = {run["run_id"] for run in first["runs"] + second["runs"]}
    assert len(prepared) == 2 and trained["run_id"] not in prepared
    assert {run["status"] for run in first["runs"] + second["runs"]} == {"prepared"}
    # A prepared run's position in the succeeded listing: the succeeded run reached its status before it.
    status, elsewhere = _list_runs(lambda_context, {"status": "succeeded", "cursor": first["next_cursor"]})
    assert (status, [run["run_id"] for run in elsewhere["runs"]]) == (200, [trained["run_id"]])
    status, _ = _list_runs(lambda_context, {"status": "sleeping"})
    assert status == 422
