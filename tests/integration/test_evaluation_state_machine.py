"""The evaluation state machine's real definition, executed by moto's Step Functions with EvaluateFunction's
handler in-process: the Map fans the questions out in chunks, the merge writes one report, a failure keeps
what finished. (The use case's own rules: tests/integration/test_evaluate_run.py.)"""

from __future__ import annotations

import json

import boto3
import pytest

from local.openai_emulator import OpenAIEmulator
from shared.aws.tracking import start_evaluation
from shared.pipeline import evaluate_run
from shared.pipeline.evaluate_run import ChunkRequest, EvaluationRequest, ask_chunk, plan_evaluation
from tests.helpers import Aws, SetEnv, fail_the_base_arm, finished_evaluations, history_states
from tests.integration.test_evaluate_run import (
    HELD_OUT,
    arm,
    chat_requests,
    openai_tuned_model,
    put_run,
    report_lines,
    run_item,
    user_text,
)

ARMS = ["tuned", "base", "base_with_context"]
PARTS_PREFIX = "reports/run-a/evaluation-parts/"


@pytest.fixture
def chunks_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 2 questions, so the 4 held-out questions are 2 chunks per arm (the shipped size is 100)."""
    monkeypatch.setattr(evaluate_run, "CHUNK_QUESTIONS", 2)


def map_iterations(execution_arn: str) -> int:
    events = boto3.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)
    return sum(1 for event in events["events"] if event["type"] == "MapIterationStarted")


def test_the_map_asks_each_chunk_once_and_the_merge_writes_one_report(
    aws_account_executing: Aws, emulator: OpenAIEmulator, chunks_of_two: None
) -> None:
    put_run(aws_account_executing, "run-a", openai_tuned_model(emulator))

    start_evaluation("run-a", [], token=None)
    [execution] = finished_evaluations("run-a")

    assert execution["status"] == "SUCCEEDED"
    assert history_states(execution["executionArn"])[:3] == ["Plan", "Planned", "AskChunks"]
    assert history_states(execution["executionArn"])[-1] == "Merge"
    assert map_iterations(execution["executionArn"]) == 6  # 3 arms x 2 chunks
    # Every question asked of every arm exactly once (the base_with_context arm with its passage first).
    asked = sorted(user_text(request) for request in chat_requests(emulator))
    questions = [row["question"] for row in HELD_OUT]
    with_passage = [f"{row['support']}\n\n{row['question']}" for row in HELD_OUT]
    assert asked == sorted(questions * 2 + with_passage)
    evaluation = run_item(aws_account_executing, "run-a")["evaluation"]
    assert evaluation["status"] == "succeeded" and "lease_until" not in evaluation
    assert [summary["name"] for summary in evaluation["arms"]] == ARMS
    assert [arm(evaluation["arms"], name)["questions"] for name in ARMS] == [4, 4, 4]
    assert evaluation["estimate"]["calls"] == 12
    lines = report_lines(aws_account_executing, "run-a")
    assert [line["index"] for line in lines] == [0, 1, 2, 3]
    assert [line["question"] for line in lines] == questions
    assert all(set(line["arms"]) == set(ARMS) for line in lines)
    assert evaluation["report_keys"] == ["reports/run-a/evaluation.jsonl"]
    # The chunks' parts are gone once merged.
    assert (
        aws_account_executing.s3.list_objects_v2(Bucket=aws_account_executing.bucket, Prefix=PARTS_PREFIX).get(
            "KeyCount"
        )
        == 0
    )


def test_a_failing_chunk_fails_the_evaluation_and_keeps_the_arms_that_finished(
    aws_account_executing: Aws,
    emulator: OpenAIEmulator,
    chunks_of_two: None,
    monkeypatch: pytest.MonkeyPatch,
    set_env: SetEnv,
) -> None:
    """A Map stops at its first failed iteration (those in flight stop too): one chunk at a time, the arm before
    the failing one has finished, the arm after it never starts."""
    set_env(EVALUATION_MAP_CONCURRENCY="1")
    put_run(aws_account_executing, "run-a", openai_tuned_model(emulator))
    fail_the_base_arm(monkeypatch)

    start_evaluation("run-a", [], token=None)
    [execution] = finished_evaluations("run-a")

    assert execution["status"] == "FAILED"
    assert history_states(execution["executionArn"])[-2:] == ["RecordFailure", "EvaluationFailed"]
    evaluation = run_item(aws_account_executing, "run-a")["evaluation"]
    assert evaluation["status"] == "failed" and evaluation["error"]["code"] == "evaluation_failed"
    assert "RuntimeError: the sandbox ran out of memory" in evaluation["error"]["message"]
    assert [summary["name"] for summary in evaluation["arms"]] == ["tuned"]
    assert all(set(line["arms"]) == {"tuned"} for line in report_lines(aws_account_executing, "run-a"))
    assert len(chat_requests(emulator)) == 4  # the tuned arm's; base_with_context was never asked


def test_an_api_request_starts_one_execution_however_often_it_is_started(
    aws_account_executing: Aws, emulator: OpenAIEmulator
) -> None:
    put_run(aws_account_executing, "run-a", openai_tuned_model(emulator))
    request = evaluate_run.request_evaluation("run-a", [])
    assert request.token is not None

    start_evaluation("run-a", [], request.token)
    start_evaluation("run-a", [], request.token)  # a retried start: the same name, the same execution
    executions = finished_evaluations("run-a")

    assert [execution["status"] for execution in executions] == ["SUCCEEDED"]
    assert len(chat_requests(emulator)) == 12


def test_a_chunk_delivered_twice_asks_nothing_more_and_pushes_the_lease_on(
    aws_account: Aws, emulator: OpenAIEmulator
) -> None:
    put_run(aws_account, "run-a", openai_tuned_model(emulator))
    plan = plan_evaluation(EvaluationRequest(run_id="run-a"))
    leased = run_item(aws_account, "run-a")["evaluation"]["lease_until"]
    chunk = ChunkRequest(run_id="run-a", token=plan["token"], compare_with=[], **plan["chunks"][0])

    first = ask_chunk(chunk)
    again = ask_chunk(chunk)

    assert plan["chunks"] == [{"arm": name, "start": 0, "count": 4} for name in ARMS]
    assert (first["asked"], again["asked"], again["skipped"]) == (4, 0, "already_asked")
    assert len(chat_requests(emulator)) == 4
    assert run_item(aws_account, "run-a")["evaluation"]["lease_until"] >= leased
    part = aws_account.s3.list_objects_v2(Bucket=aws_account.bucket, Prefix=PARTS_PREFIX)["Contents"]
    lines = [json.loads(line) for line in aws_account.read(part[0]["Key"]).decode().splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2, 3] and all(line["error"] is None for line in lines)


def test_a_chunk_whose_claim_moved_on_asks_nothing(aws_account: Aws, emulator: OpenAIEmulator) -> None:
    put_run(aws_account, "run-a", openai_tuned_model(emulator))
    plan = plan_evaluation(EvaluationRequest(run_id="run-a"))
    stale = ChunkRequest(run_id="run-a", token="an-older-claim", compare_with=[], **plan["chunks"][0])

    assert ask_chunk(stale)["skipped"] == "claim_lost"
    assert chat_requests(emulator) == []
