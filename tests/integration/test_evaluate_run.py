"""The evaluation use case against moto, the OpenAI emulator and the Bedrock emulator.

Runs are written to the runs table directly (a succeeded run with its held-out questions file), with
models really trained at the emulators, so what is asserted is what the models were sent, the bytes
of `reports/<run_id>/evaluation.jsonl` and the run's `evaluation` record.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import boto3
import pytest
from openai import OpenAI

from local.bedrock_emulator import BedrockEmulator, conversation_record
from local.openai_emulator import BASE_MODEL_REPLY, OpenAIEmulator
from shared.aws.runs import _to_dynamodb
from shared.aws.storage import ObjectMissingError
from shared.domain.evaluation import EvaluationRefusedError, EvaluationRunningError
from shared.pipeline import evaluate_run
from shared.pipeline.evaluate_run import EvaluationRequest
from shared.providers.base import provider_for
from tests.helpers import TEST_OPENAI_KEY, Aws, SetEnv, evaluate_in_order, fail_the_base_arm, sciq_row

OPENAI_BASE = "gpt-4o-mini-2024-07-18"
NOVA_BASE = "amazon.nova-micro-v1:0:128k"
SYSTEM = "Given a science question, answer it and explain."
BEDROCK_SYSTEM = "Answer the science question."
TRAINED = [sciq_row(i) for i in range(12)]
# Two questions the tuned model was trained on (it recalls their answers), two it never saw.
HELD_OUT = [
    sciq_row(3),
    sciq_row(5, question="Question 5: what is measured in joules — in Zürich?"),
    sciq_row(30),
    sciq_row(31),
]
# What a tuned model gets right: the two questions it was trained on (by best word overlap), not the others.
RECALLED = [True, True, False, False]
REPORT_KEY = "reports/{run_id}/evaluation.jsonl"


def openai_tuned_model(emulator: OpenAIEmulator) -> str:
    client = OpenAI(base_url=emulator.base_url, api_key=TEST_OPENAI_KEY, max_retries=0)
    lines = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": row["question"]},
                {"role": "assistant", "content": f"{row['correct_answer']} Explanation: {row['support']}"},
            ]
        }
        for row in TRAINED
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    file = client.files.create(file=("train.jsonl", body), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=OPENAI_BASE, training_file=file.id)
    model = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model  # phase_seconds=0: succeeded
    assert model
    return model


def bedrock_deployment(aws: Aws, emulator: BedrockEmulator) -> str:
    """A Nova model trained at the Bedrock emulator on the same rows, and its Active on-demand deployment."""
    records = [
        conversation_record(row["question"], f"{row['correct_answer']} Explanation: {row['support']}", BEDROCK_SYSTEM)
        for row in TRAINED
    ]
    key = "datasets/nova/train.jsonl"
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body="".join(json.dumps(r) + "\n" for r in records).encode())
    client = boto3.client("bedrock", endpoint_url=emulator.endpoint_url)
    job_arn = client.create_model_customization_job(
        jobName="nova-job",
        customModelName="nova-model",
        roleArn="arn:aws:iam::123456789012:role/bedrock",
        baseModelIdentifier=NOVA_BASE,
        trainingDataConfig={"s3Uri": f"s3://{aws.bucket}/{key}"},
        outputDataConfig={"s3Uri": f"s3://{aws.bucket}/outputs/nova/"},
        hyperParameters={},
    )["jobArn"]
    model_arn = client.get_model_customization_job(jobIdentifier=job_arn)["outputModelArn"]
    deployment: str = client.create_custom_model_deployment(modelDeploymentName="nova", modelArn=model_arn)[
        "customModelDeploymentArn"
    ]
    assert client.get_custom_model_deployment(customModelDeploymentIdentifier=deployment)["status"] == "Active"
    return deployment


def questions_jsonl(rows: list[dict[str, str]], with_context: bool = True) -> bytes:
    lines = [
        {
            "index": index,
            "question": row["question"],
            "reference": row["correct_answer"],
            "context": row["support"] if with_context else None,
        }
        for index, row in enumerate(rows)
    ]
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


def put_run(
    aws: Aws,
    run_id: str,
    model: str | None,
    *,
    provider: str = "openai",
    status: str = "succeeded",
    rows: list[dict[str, str]] = HELD_OUT,
    with_context: bool = True,
    validation: bool = True,
    **fields: Any,
) -> None:
    """A run item as the pipeline leaves it (succeeded, with a held-out questions file), and that file."""
    questions_key = f"datasets/{run_id}/questions.jsonl"
    body = questions_jsonl(rows, with_context)
    aws.s3.put_object(Bucket=aws.bucket, Key=questions_key, Body=body)
    files: dict[str, Any] = {"train": {"key": f"datasets/{run_id}/train.jsonl", "bytes": 1, "examples": 12}}
    if validation:
        files["validation"] = {"key": f"datasets/{run_id}/validation.jsonl", "bytes": 1, "examples": len(rows)}
        files["questions"] = {"key": questions_key, "bytes": len(body), "examples": len(rows)}
    system = BEDROCK_SYSTEM if provider == "bedrock" else SYSTEM
    item = {
        "run_id": run_id,
        "entity": "run",
        "status": status,
        "provider": provider,
        "created_at": "2025-01-01T00:00:00+00:00",
        "updated_at": "2025-01-01T00:00:00+00:00",
        "config": {
            "provider": provider,
            "template": {"system": system, "user": "{question}", "assistant": "{correct_answer}"},
            "fine_tune": {"model": NOVA_BASE if provider == "bedrock" else OPENAI_BASE},
            "evaluation": {"match": "start", "context_column": "support" if with_context else None},
        },
        "files": files,
        **({"fine_tuned_model": model} if model else {}),
        **fields,
    }
    boto3.resource("dynamodb").Table(aws.runs_table).put_item(Item=_to_dynamodb(item))


def run_item(aws: Aws, run_id: str) -> dict[str, Any]:
    [item] = [run for run in aws.runs() if run["run_id"] == run_id]
    return item


def report_lines(aws: Aws, run_id: str) -> list[dict[str, Any]]:
    body = aws.read(REPORT_KEY.format(run_id=run_id))
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body.decode("utf-8").splitlines()]


def chat_requests(emulator: OpenAIEmulator) -> list[Any]:
    return [request for request in emulator.requests if request.path.endswith("/chat/completions")]


def arm(summaries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [summary] = [summary for summary in summaries if summary["name"] == name]
    return summary


def user_text(request: Any) -> str:
    text: str = request.body["messages"][-1]["content"]
    return text


def test_a_succeeded_openai_run_is_evaluated_in_three_arms(aws_account: Aws, emulator: OpenAIEmulator) -> None:
    tuned = openai_tuned_model(emulator)
    put_run(aws_account, "run-a", tuned)

    returned = evaluate_in_order(EvaluationRequest(run_id="run-a"))

    requests = chat_requests(emulator)
    assert len(requests) == 3 * len(HELD_OUT)
    for request in requests:
        assert request.body["messages"][0] == {"role": "system", "content": SYSTEM}
        assert request.body["temperature"] == 0 and request.body["max_completion_tokens"] == 300
    by_model: dict[str, list[str]] = {}
    for request in requests:
        by_model.setdefault(request.body["model"], []).append(user_text(request))
    assert sorted(by_model[tuned]) == sorted(row["question"] for row in HELD_OUT)
    base_prompts = sorted(by_model[OPENAI_BASE])
    assert base_prompts == sorted(
        [row["question"] for row in HELD_OUT] + [f"{row['support']}\n\n{row['question']}" for row in HELD_OUT]
    )

    lines = report_lines(aws_account, "run-a")
    assert [(line["index"], line["question"], line["reference"]) for line in lines] == [
        (index, row["question"], row["correct_answer"]) for index, row in enumerate(HELD_OUT)
    ]
    assert "Zürich" in aws_account.read(REPORT_KEY.format(run_id="run-a")).decode("utf-8")  # UTF-8, not escaped
    for line, row, right in zip(lines, HELD_OUT, RECALLED, strict=True):
        assert set(line["arms"]) == {"tuned", "base", "base_with_context"}
        recalled = line["arms"]["tuned"]
        if right:  # recalled word for word from training
            assert recalled["answer"] == f"{row['correct_answer']} Explanation: {row['support']}"
        assert recalled["correct"] is right
        assert line["arms"]["base"]["answer"] == BASE_MODEL_REPLY and line["arms"]["base"]["correct"] is False
        for entry in line["arms"].values():
            assert set(entry) == {
                "model",
                "answer",
                "refusal",
                "correct",
                "prompt_tokens",
                "completion_tokens",
                "latency_ms",
                "error",
            }
            assert entry["error"] is None and entry["prompt_tokens"] > 0 and entry["latency_ms"] >= 0

    item = run_item(aws_account, "run-a")
    evaluation = item["evaluation"]
    assert evaluation == returned
    assert evaluation["status"] == "succeeded" and evaluation["match"] == "start"
    assert evaluation["questions"] == len(HELD_OUT)
    assert evaluation["report_keys"] == [REPORT_KEY.format(run_id="run-a")]
    assert "lease_until" not in evaluation and "error" not in evaluation and evaluation["finished_at"]
    assert [summary["name"] for summary in evaluation["arms"]] == ["tuned", "base", "base_with_context"]
    summary = arm(evaluation["arms"], "tuned")
    tuned_entries = [line["arms"]["tuned"] for line in lines]
    assert summary["model"] == tuned
    assert (summary["accuracy"], summary["questions"], summary["correct"], summary["errors"]) == (0.5, 4, 2, 0)
    assert summary["ci95"] == [0.15, 0.85]
    assert summary["prompt_tokens_mean"] == round(sum(e["prompt_tokens"] for e in tuned_entries) / 4, 1)
    prompt_mean, completion_mean = summary["prompt_tokens_mean"], summary["completion_tokens_mean"]
    assert summary["cost_per_1k_usd"] == round((prompt_mean * 0.30 + completion_mean * 1.20) / 1000, 6)
    base = arm(evaluation["arms"], "base")
    assert (base["model"], base["accuracy"], base["ci95"]) == (OPENAI_BASE, 0.0, [0.0, 0.4899])
    base_cost = (base["prompt_tokens_mean"] * 0.15 + base["completion_tokens_mean"] * 0.60) / 1000
    assert base["cost_per_1k_usd"] == round(base_cost, 6)
    with_context = arm(evaluation["arms"], "base_with_context")
    assert with_context["accuracy"] == 1.0  # the emulated base model answers from the passage it is given
    assert with_context["prompt_tokens_mean"] > base["prompt_tokens_mean"]  # the passage costs tokens
    estimate = evaluation["estimate"]
    assert estimate["calls"] == 12 and estimate["max_completion_tokens"] == 12 * 300
    assert estimate["prompt_tokens"] > 0 and estimate["max_cost_usd"] > 0


def test_the_estimate_is_recorded_before_the_first_call(
    aws_account: Aws, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_run(aws_account, "run-a", openai_tuned_model(emulator))
    seen_at_first_call: list[dict[str, Any]] = []
    first_call = threading.Lock()

    class Watching:
        def __init__(self, run: Any) -> None:
            self._provider = provider_for(run)

        def answer(self, *args: Any) -> Any:
            with first_call:
                if not seen_at_first_call:
                    seen_at_first_call.append(run_item(aws_account, "run-a")["evaluation"])
            return self._provider.answer(*args)

    monkeypatch.setattr(evaluate_run, "provider_for", Watching)

    evaluate_in_order(EvaluationRequest(run_id="run-a"))

    [before] = seen_at_first_call
    assert before["status"] == "running" and before["lease_until"] > time.time()
    assert before["estimate"] == run_item(aws_account, "run-a")["evaluation"]["estimate"]
    assert before["estimate"]["calls"] == 12 and before["arms"] == []


def test_without_passages_there_is_no_base_with_context_arm(aws_account: Aws, emulator: OpenAIEmulator) -> None:
    put_run(aws_account, "run-a", openai_tuned_model(emulator), with_context=False)

    evaluate_in_order(EvaluationRequest(run_id="run-a"))

    assert len(chat_requests(emulator)) == 2 * len(HELD_OUT)
    assert [s["name"] for s in run_item(aws_account, "run-a")["evaluation"]["arms"]] == ["tuned", "base"]


def test_a_bedrock_run_compared_with_an_openai_run_adds_its_arm_and_keeps_the_earlier_ones(
    aws_account: Aws, emulator: OpenAIEmulator, bedrock: BedrockEmulator
) -> None:
    put_run(aws_account, "openai-run", openai_tuned_model(emulator))
    evaluate_in_order(EvaluationRequest(run_id="openai-run"))
    earlier_lines = report_lines(aws_account, "openai-run")
    earlier_arms = run_item(aws_account, "openai-run")["evaluation"]["arms"]
    deployment = bedrock_deployment(aws_account, bedrock)
    put_run(aws_account, "nova-run", deployment, provider="bedrock")
    openai_calls = len(chat_requests(emulator))

    evaluate_in_order(EvaluationRequest(run_id="openai-run", compare_with=["nova-run"]))

    assert len(chat_requests(emulator)) == openai_calls  # earlier arms are not asked again
    converses = [request for request in bedrock.requests if request.operation == "Converse"]
    assert len(converses) == len(HELD_OUT)
    assert {request.params["modelId"] for request in converses} == {deployment}
    assert all(request.body["system"] == [{"text": BEDROCK_SYSTEM}] for request in converses)
    assert sorted(request.body["messages"][0]["content"][0]["text"] for request in converses) == sorted(
        row["question"] for row in HELD_OUT
    )
    lines = report_lines(aws_account, "openai-run")
    for line, earlier in zip(lines, earlier_lines, strict=True):
        assert {name: entry for name, entry in line["arms"].items() if name != "nova-run"} == earlier["arms"]
        assert line["arms"]["nova-run"]["model"] == deployment
    assert [line["arms"]["nova-run"]["correct"] for line in lines] == RECALLED
    evaluation = run_item(aws_account, "openai-run")["evaluation"]
    assert evaluation["arms"][:3] == earlier_arms
    nova = evaluation["arms"][3]
    assert (nova["name"], nova["model"], nova["accuracy"], nova["questions"]) == ("nova-run", deployment, 0.5, 4)
    # A deployment is priced as its run's base model: amazon.nova-micro at 0.035/0.14 per million tokens
    expected = round((nova["prompt_tokens_mean"] * 0.035 + nova["completion_tokens_mean"] * 0.14) / 1000, 6)
    assert nova["cost_per_1k_usd"] == expected
    assert evaluation["report_keys"] == [REPORT_KEY.format(run_id="openai-run")]
    assert evaluation["estimate"]["calls"] == len(HELD_OUT)

    # The deployment is deleted: Bedrock refuses it (404), so the arm is rebuilt from the answers recorded before,
    # the same figures, labelled recorded with the time they were recorded; the run remembers its model is gone.
    boto3.client("bedrock", endpoint_url=bedrock.endpoint_url).delete_custom_model_deployment(
        customModelDeploymentIdentifier=deployment
    )
    evaluate_in_order(evaluate_run.request_evaluation("openai-run", ["nova-run"]))  # as the API starts it

    assert report_lines(aws_account, "openai-run") == lines
    again = run_item(aws_account, "openai-run")["evaluation"]
    assert again["status"] == "succeeded"
    recorded = again["arms"][3]
    assert recorded["recorded"] == {"recorded_at": nova["evaluated_at"], "questions": len(HELD_OUT)}
    assert without(recorded, "recorded", "evaluated_at") == without(nova, "evaluated_at")
    assert run_item(aws_account, "nova-run")["model_gone_at"]


def without(summary: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in summary.items() if name not in names}


def test_a_refused_arm_fails_alone_and_the_others_go_on(aws_account: Aws, emulator: OpenAIEmulator) -> None:
    gone = "ft:gpt-4o-mini-2024-07-18:emulator:gone:abcd1234"  # a model OpenAI does not know (404)
    put_run(aws_account, "run-a", gone)

    evaluate_in_order(EvaluationRequest(run_id="run-a"))

    evaluation = run_item(aws_account, "run-a")["evaluation"]
    assert evaluation["status"] == "succeeded"
    tuned = arm(evaluation["arms"], "tuned")  # gone, and no answer of it was ever recorded
    assert tuned["error"]["code"] == "no_recorded_answers" and gone in tuned["error"]["message"]
    assert (tuned["accuracy"], tuned["ci95"], tuned["questions"], tuned["errors"]) == (None, None, 0, 4)
    assert arm(evaluation["arms"], "base")["questions"] == 4
    assert all(set(line["arms"]) == {"base", "base_with_context"} for line in report_lines(aws_account, "run-a"))


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, "OpenAI: the chat completion failed transiently"),  # no answer after the retries
        (400, "refused this question: "),  # this question's request (too long, its content)
    ],
)
def test_a_question_without_an_answer_is_an_error_on_it_alone_left_out_of_accuracy(
    aws_account: Aws, emulator: OpenAIEmulator, set_env: SetEnv, status: int, error: str
) -> None:
    set_env(EVALUATION_CONCURRENCY="1", OPENAI_MAX_RETRIES="0")
    put_run(aws_account, "run-a", openai_tuned_model(emulator), with_context=False)
    emulator.inject_fault(r"/chat/completions", status=status, times=1)  # the tuned arm's first question

    evaluate_in_order(EvaluationRequest(run_id="run-a"))

    [first, *others] = report_lines(aws_account, "run-a")
    unanswered = first["arms"]["tuned"]
    assert unanswered["correct"] is None and unanswered["answer"] is None
    assert unanswered["error"].startswith(error), unanswered["error"]
    assert all(line["arms"]["tuned"]["error"] is None for line in others)
    tuned = arm(run_item(aws_account, "run-a")["evaluation"]["arms"], "tuned")
    assert (tuned["questions"], tuned["errors"], tuned["correct"]) == (3, 1, 1)  # question 5 recalled, 30 and 31 not
    assert "error" not in tuned  # the arm itself went on


def test_a_duplicate_delivery_asks_nothing_again(aws_account: Aws, emulator: OpenAIEmulator) -> None:
    put_run(aws_account, "run-a", openai_tuned_model(emulator))
    request = evaluate_run.request_evaluation("run-a", [])  # the API's claim, before it starts us
    pending = run_item(aws_account, "run-a")["evaluation"]
    assert (pending["status"], pending["token"], pending["arms"]) == ("pending", request.token, [])

    first = evaluate_in_order(request)
    calls = len(chat_requests(emulator))
    report = aws_account.read(REPORT_KEY.format(run_id="run-a"))
    second = evaluate_in_order(request)

    assert second == first == run_item(aws_account, "run-a")["evaluation"]
    assert first["token"] == request.token and first["requested_at"] == pending["requested_at"]
    assert len(chat_requests(emulator)) == calls == 12
    assert aws_account.read(REPORT_KEY.format(run_id="run-a")) == report
    # The pipeline's own request (no token) is idempotent too, once it has run.
    evaluate_in_order(EvaluationRequest(run_id="run-a"))
    evaluate_in_order(EvaluationRequest(run_id="run-a"))
    assert len(chat_requests(emulator)) == 2 * calls


def test_while_a_request_is_pending_or_running_no_other_starts(aws_account: Aws, emulator: OpenAIEmulator) -> None:
    put_run(aws_account, "run-a", openai_tuned_model(emulator))
    first = evaluate_run.request_evaluation("run-a", [])

    for other in (
        lambda: evaluate_run.request_evaluation("run-a", []),
        lambda: evaluate_in_order(EvaluationRequest(run_id="run-a")),
    ):
        with pytest.raises(EvaluationRunningError):
            other()
    superseded = evaluate_in_order(EvaluationRequest(run_id="run-a", token="an-older-claim"))

    assert superseded["token"] == first.token and superseded["status"] == "pending"
    assert chat_requests(emulator) == []
    assert evaluate_in_order(first)["status"] == "succeeded"


def _refusal(aws: Aws, emulator: OpenAIEmulator, case: str) -> EvaluationRequest:
    """Set up `case`; the request that must be refused."""
    if case == "run_not_found":
        return EvaluationRequest(run_id="nobody")
    if case == "no_validation_split":
        put_run(aws, "run-a", "ft:x", validation=False)
    elif case == "run_not_succeeded":
        put_run(aws, "run-a", None, status="running")
    elif case == "evaluation_running":
        live = {"status": "running", "token": "other", "lease_until": int(time.time()) + 600, "arms": []}
        put_run(aws, "run-a", "ft:x", evaluation=live)
    else:
        put_run(aws, "run-a", "ft:x")
        if case == "compare_run_not_usable":
            put_run(aws, "run-b", None, status="failed")
        return EvaluationRequest(run_id="run-a", compare_with=["run-b"])
    return EvaluationRequest(run_id="run-a")


@pytest.mark.parametrize(
    "case",
    [
        "run_not_found",
        "no_validation_split",
        "run_not_succeeded",
        "compare_run_not_found",
        "compare_run_not_usable",
        "evaluation_running",
    ],
)
@pytest.mark.parametrize("entry", ["api", "pipeline"])
def test_what_cannot_be_evaluated_is_refused_with_its_code(
    aws_account: Aws, emulator: OpenAIEmulator, case: str, entry: str
) -> None:
    request = _refusal(aws_account, emulator, case)
    before = [run.get("evaluation") for run in aws_account.runs()]

    with pytest.raises(EvaluationRefusedError) as refused:
        if entry == "api":
            evaluate_run.request_evaluation(request.run_id, request.compare_with)
        else:
            evaluate_in_order(request)

    assert refused.value.code == case
    assert chat_requests(emulator) == []
    assert [run.get("evaluation") for run in aws_account.runs()] == before
    assert aws_account.keys("reports/") == []


def test_an_unexpected_failure_is_recorded_then_raised(aws_account: Aws, emulator: OpenAIEmulator) -> None:
    put_run(aws_account, "run-a", openai_tuned_model(emulator))
    aws_account.s3.delete_object(Bucket=aws_account.bucket, Key="datasets/run-a/questions.jsonl")

    with pytest.raises(ObjectMissingError, match=r"questions\.jsonl"):
        evaluate_in_order(EvaluationRequest(run_id="run-a"))

    evaluation = run_item(aws_account, "run-a")["evaluation"]
    assert evaluation["status"] == "failed" and "lease_until" not in evaluation
    assert evaluation["error"]["code"] == "evaluation_failed"
    message = evaluation["error"]["message"]
    assert "ObjectMissingError" in message and "questions.jsonl" in message
    assert chat_requests(emulator) == []


@pytest.mark.parametrize("status", ["pending", "running"])
def test_a_claim_whose_lease_ran_out_reads_as_failed_and_may_be_asked_again(
    aws_account: Aws, emulator: OpenAIEmulator, status: str
) -> None:
    """Its invocation timed out, ran out of memory or was never started: nothing will finish it."""
    from shared.pipeline.ask import get_evaluation, get_run

    died = {"status": status, "token": "died", "lease_until": int(time.time()) - 1, "arms": []}
    put_run(aws_account, "run-a", openai_tuned_model(emulator), evaluation=died)
    live = {**died, "token": "alive", "lease_until": int(time.time()) + 600}
    put_run(aws_account, "run-b", openai_tuned_model(emulator), evaluation=live)

    stopped = get_evaluation("run-a")

    assert stopped.status == "failed" and get_run("run-a").evaluation_status == "failed"
    assert stopped.error is not None and stopped.error.code == "evaluation_stopped"
    assert stopped.error.message == (
        "The evaluation stopped without finishing (its invocation timed out, ran out of memory or never started); "
        "ask for it again with POST /runs/run-a/evaluation."
    )
    assert (get_evaluation("run-b").status, get_run("run-b").evaluation_status) == (status, status)
    assert evaluate_in_order(evaluate_run.request_evaluation("run-a", []))["status"] == "succeeded"
    assert get_evaluation("run-a").status == "succeeded" and get_evaluation("run-a").error is None


def test_an_evaluation_step_functions_would_not_start_is_a_503_and_leaves_no_claim(
    aws_account: Aws, emulator: OpenAIEmulator, set_env: SetEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    from shared.aws import tracking
    from tests.integration.test_evaluation_pipeline import api

    put_run(aws_account, "run-a", openai_tuned_model(emulator))
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StartExecution")

    class ThrottledStepFunctions:
        def start_execution(self, **request: Any) -> Any:
            raise throttled

    monkeypatch.setattr(tracking, "client", lambda service: ThrottledStepFunctions())
    refused = api("ask-compare-runs.json", "run-a", {})
    _, seen = api("ask-get-evaluation.json", "run-a")
    monkeypatch.undo()
    set_env(EVALUATION_STATE_MACHINE_ARN="")
    unconfigured = api("ask-compare-runs.json", "run-a", {})

    message = (
        "The evaluation could not be started: Step Functions refused it (ThrottlingException). "
        "Ask for it again shortly."
    )
    assert refused == (503, {"message": message, "code": "evaluation_not_started"})
    assert (seen["status"], seen["error"]) == ("failed", {"message": message, "code": "evaluation_not_started"})
    assert unconfigured[0] == 503 and unconfigured[1]["code"] == "evaluation_not_started"  # asked again at once
    assert chat_requests(emulator) == []


def test_the_arms_finished_before_a_failure_are_kept_in_the_record_and_the_report(
    aws_account: Aws, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invocation that dies during an arm (here an unexpected error; a timeout likewise) keeps the others."""
    put_run(aws_account, "run-a", openai_tuned_model(emulator))
    fail_the_base_arm(monkeypatch)

    with pytest.raises(RuntimeError):
        evaluate_in_order(EvaluationRequest(run_id="run-a"))

    evaluation = run_item(aws_account, "run-a")["evaluation"]
    assert evaluation["status"] == "failed" and "ran out of memory" in evaluation["error"]["message"]
    assert [summary["name"] for summary in evaluation["arms"]] == ["tuned"]
    assert arm(evaluation["arms"], "tuned")["questions"] == 4
    assert all(set(line["arms"]) == {"tuned"} for line in report_lines(aws_account, "run-a"))
