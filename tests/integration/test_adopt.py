"""Before an OpenAI fine-tune shuts down: adopt it as a run (nothing trained), and hold its questions out of a
successor (`evaluation.questions_from`). The boundary: only models the operator lists are adoptable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.ask.app import lambda_handler as ask_handler
from functions.prepare.app import lambda_handler as prepare_handler
from local.lambda_runtime import in_process_lambdas
from local.migration_demo import notebook_training_file
from local.openai_emulator import OpenAIEmulator
from tests.helpers import Aws, SetEnv, finished_evaluations, load_event, sciq_row, write_jsonl

OLD_MODEL = "ft:gpt-4o-mini-2024-07-18:notebook-org::sciq0001"
ROWS = [sciq_row(i, question=f"Question {i}: which quantity is measured in unit {i}?") for i in range(40)]


@pytest.fixture
def aws_account(aws_account_executing: Aws) -> Aws:
    """Step Functions executes here: an adopted run's evaluation, and each the API starts, is an execution of the
    evaluation state machine (the helpers below wait for it)."""
    return aws_account_executing


def prepare(aws_account: Aws, context: Any, tmp_path: Path, key: str, **config: Any) -> dict[str, Any]:
    """The config under `key` (the 40 rows as its dataset), prepared by the real handler (an adopted run's
    evaluation finished too); returns its run."""
    source = aws_account.put_data(write_jsonl(tmp_path / "rows.jsonl", ROWS))
    aws_account.put_config(key, {"dataset": {"source": source}, **config})
    event = load_event("prepare-config-created.json")
    event["Records"][0]["s3"]["object"]["key"] = key
    prepare_handler(event, context)
    [run] = [run for run in aws_account.runs() if run.get("config_key") == key]
    finished_evaluations(run["run_id"])
    [run] = [run for run in aws_account.runs() if run.get("config_key") == key]
    return run


def adopt(aws_account: Aws, context: Any, tmp_path: Path, **config: Any) -> dict[str, Any]:
    return prepare(
        aws_account,
        context,
        tmp_path,
        "configs/old.json",
        adopt={"model": OLD_MODEL},
        validation_fraction=0.25,
        **config,
    )


@pytest.fixture
def adoptable(set_env: SetEnv, emulator: OpenAIEmulator) -> OpenAIEmulator:
    """The operator lists the old model (AdoptableModels) and OpenAI knows it, as the notebook left it."""
    set_env(ADOPTABLE_MODELS=f"ft:gpt-4o-mini-2024-07-18:other-org::x, {OLD_MODEL}")
    emulator.add_tuned_model(OLD_MODEL, notebook_training_file(ROWS))
    emulator.shutdown_dates["gpt-4o-mini-2024-07-18"] = "2027-01-14"  # OpenAI's announced date
    return emulator


def test_a_model_not_on_the_operators_list_fails_the_run_before_anything_is_called_or_read(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, emulator: OpenAIEmulator, set_env: SetEnv
) -> None:
    emulator.add_tuned_model(OLD_MODEL, notebook_training_file(ROWS))  # it exists, but nobody allowed it
    set_env(ADOPTABLE_MODELS="ft:gpt-4o-mini-2024-07-18:notebook-org::another")

    run = adopt(aws_account, lambda_context, tmp_path)

    assert run["status"] == "failed"
    assert run["error"]["code"] == "invalid_config"
    assert run["error"]["message"] == (
        f"adopt.model '{OLD_MODEL}' is not on this deployment's list of adoptable models: only models the operator "
        "allows may be adopted, in the stack parameter AdoptableModels, a comma-separated list of ft: model ids "
        "the operator sets at sam deploy (--parameter-overrides AdoptableModels=ft:...)"
    )
    assert emulator.requests == []  # nothing at all was asked of OpenAI
    assert aws_account.keys("datasets/") == [] and "counts" in run and run["counts"] == {}


def test_a_listed_model_openai_does_not_know_fails_after_one_lookup(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, emulator: OpenAIEmulator, set_env: SetEnv
) -> None:
    set_env(ADOPTABLE_MODELS=OLD_MODEL)  # listed, but OpenAI has no such model

    run = adopt(aws_account, lambda_context, tmp_path)

    assert (run["status"], run["error"]["code"]) == ("failed", "invalid_config")
    assert run["error"]["message"].startswith(f"adopt.model '{OLD_MODEL}' does not exist at OpenAI (GET /models")
    assert [(r.method, r.path) for r in emulator.requests] == [("GET", f"/models/{OLD_MODEL}")]
    assert aws_account.keys("datasets/") == []


def test_an_adopted_run_trains_nothing_and_records_the_models_answers(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, adoptable: OpenAIEmulator
) -> None:
    with in_process_lambdas():  # prepare starts EvaluateFunction asynchronously: it runs here
        run = adopt(aws_account, lambda_context, tmp_path)

    assert run["status"] == "succeeded", run.get("error")
    assert run["fine_tuned_model"] == OLD_MODEL
    assert run["base_model_shutdown_date"] == "2027-01-14"  # what GET /models/{model} says of it
    assert "job_id" not in run and "training_file_id" not in run and "estimate" not in run
    assert set(run["files"]) == {"questions"}
    assert aws_account.keys(f"datasets/{run['run_id']}/") == [f"datasets/{run['run_id']}/questions.jsonl"]
    paths = {(r.method, r.path.split("?")[0]) for r in adoptable.requests}
    assert paths == {("GET", f"/models/{OLD_MODEL}"), ("POST", "/chat/completions")}  # no file, no job
    asked = [r.body["model"] for r in adoptable.requests if r.path == "/chat/completions"]
    questions = run["files"]["questions"]["examples"]
    assert questions == 10 and asked.count(OLD_MODEL) == questions
    assert asked.count("gpt-4o-mini-2024-07-18") == 2 * questions  # base, and base with the passage
    evaluation = run["evaluation"]
    assert evaluation["status"] == "succeeded"
    tuned = next(arm for arm in evaluation["arms"] if arm["name"] == "tuned")
    assert (tuned["model"], tuned["questions"], tuned["accuracy"]) == (OLD_MODEL, 10, 1.0)  # it was trained on them
    report = [json.loads(line) for line in aws_account.read(f"reports/{run['run_id']}/evaluation.jsonl").splitlines()]
    assert len(report) == 10 and all(line["arms"]["tuned"]["model"] == OLD_MODEL for line in report)


def test_a_successor_never_trains_on_the_recorded_questions_and_is_asked_exactly_them(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, adoptable: OpenAIEmulator
) -> None:
    with in_process_lambdas():
        old = adopt(aws_account, lambda_context, tmp_path)
    old_questions = aws_account.read(old["files"]["questions"]["key"])

    # No validation split of its own: the recorded questions' rows are held out all the same.
    new = prepare(
        aws_account, lambda_context, tmp_path, "configs/new.json", evaluation={"questions_from": old["run_id"]}
    )

    assert new["status"] == "prepared", new.get("error")
    training = aws_account.read(new["files"]["train"]["key"])
    recorded = [json.loads(line)["question"] for line in old_questions.splitlines()]
    assert len(recorded) == 10
    for question in recorded:  # not one of them, in the bytes sent to training
        assert json.dumps(question, ensure_ascii=False).encode() not in training
    assert len(training.splitlines()) == len(ROWS) - 10
    assert aws_account.read(new["files"]["questions"]["key"]) == old_questions  # asked exactly those
    assert len(aws_account.read(new["files"]["validation"]["key"]).splitlines()) == 10
    assert new["counts"]["questions_from_rows_held_out"] == 10 and new["counts"]["evaluation_questions"] == 10


@pytest.mark.parametrize(
    ("old_status", "message"),
    [
        (None, "evaluation.questions_from names run 'old-0123456789ab', which this deployment does not have"),
        ("failed", "evaluation.questions_from names run 'old-0123456789ab', which is failed"),
        ("succeeded", "evaluation.questions_from names run 'old-0123456789ab', which has no held-out questions"),
    ],
)
def test_questions_from_a_run_that_cannot_give_them_is_invalid_config(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, old_status: str | None, message: str
) -> None:
    if old_status:
        aws_account.dynamodb.put_item(
            TableName=aws_account.runs_table,
            Item={
                "run_id": {"S": "old-0123456789ab"},
                "entity": {"S": "run"},
                "status": {"S": old_status},
                "created_at": {"S": "2026-12-01T00:00:00Z"},
                "updated_at": {"S": "2026-12-01T00:00:00Z"},
            },
        )

    run = prepare(
        aws_account, lambda_context, tmp_path, "configs/new.json", evaluation={"questions_from": "old-0123456789ab"}
    )

    assert (run["status"], run["error"]["code"]) == ("failed", "invalid_config")
    assert run["error"]["message"].startswith(message), run["error"]["message"]
    assert aws_account.keys("datasets/") == []


# After the shutdown ------------------------------------------------------------------------------------------

NEW_MODEL = "ft:gpt-4.1-mini-2025-04-14:emulator:successor:abcd1234"  # another base: it outlives the old one
COMPARED_FIGURES = (
    "model",
    "accuracy",
    "ci95",
    "questions",
    "correct",
    "errors",
    "prompt_tokens_mean",
    "completion_tokens_mean",
    "cost_per_1k_usd",
)


def api(name: str, run_id: str, context: Any, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """An API Gateway event from infra/events for another run id (and body), through AskFunction."""
    event = load_event(name)
    event["path"] = event["resource"].replace("{run_id}", run_id)
    event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{event['path']}"
    event["pathParameters"] = {"run_id": run_id}
    event["body"] = None if body is None else json.dumps(body)
    response = ask_handler(event, context)
    if event["httpMethod"] == "POST":
        finished_evaluations(run_id)  # the evaluation it started, if any
    return response["statusCode"], json.loads(response["body"])


def succeeded_with(aws_account: Aws, run_id: str, model: str) -> None:
    """The successor's job succeeded (as the poll records it): its model answers."""
    aws_account.dynamodb.update_item(
        TableName=aws_account.runs_table,
        Key={"run_id": {"S": run_id}},
        UpdateExpression="SET #status = :succeeded, fine_tuned_model = :model",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":succeeded": {"S": "succeeded"}, ":model": {"S": model}},
    )


def compared_arm(aws_account: Aws, run_id: str, name: str) -> dict[str, Any]:
    [run] = [run for run in aws_account.runs() if run["run_id"] == run_id]
    assert run["evaluation"]["status"] == "succeeded", run["evaluation"]
    arm: dict[str, Any] = next(arm for arm in run["evaluation"]["arms"] if arm["name"] == name)
    return arm


def report_arm(aws_account: Aws, run_id: str, name: str) -> list[dict[str, Any]]:
    lines = aws_account.read(f"reports/{run_id}/evaluation.jsonl").splitlines()
    return [json.loads(line)["arms"].get(name) for line in lines]


def test_after_the_old_model_shuts_down_the_comparison_keeps_its_arm_from_the_recording(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, adoptable: OpenAIEmulator
) -> None:
    adoptable.add_tuned_model(NEW_MODEL, notebook_training_file(ROWS[:5]))
    with in_process_lambdas():
        old = adopt(aws_account, lambda_context, tmp_path)
        new = prepare(
            aws_account, lambda_context, tmp_path, "configs/new.json", evaluation={"questions_from": old["run_id"]}
        )
        succeeded_with(aws_account, new["run_id"], NEW_MODEL)
        status, _ = api("ask-compare-runs.json", new["run_id"], lambda_context, {"compare_with": [old["run_id"]]})
        assert status == 202
        before = compared_arm(aws_account, new["run_id"], old["run_id"])
        answers_before = report_arm(aws_account, new["run_id"], old["run_id"])

        adoptable.shut_down(OLD_MODEL)  # from now on OpenAI answers 404 model_not_found for it
        status, _ = api("ask-compare-runs.json", new["run_id"], lambda_context, {"compare_with": [old["run_id"]]})
        assert status == 202
        after = compared_arm(aws_account, new["run_id"], old["run_id"])

    assert "recorded" not in before and before["accuracy"] == 1.0 and before["questions"] == 10
    assert {name: after[name] for name in COMPARED_FIGURES} == {name: before[name] for name in COMPARED_FIGURES}
    assert after["recorded"] == {"recorded_at": before["evaluated_at"], "questions": 10}
    assert report_arm(aws_account, new["run_id"], old["run_id"]) == answers_before
    status, shown = api("ask-get-run.json", old["run_id"], lambda_context)
    assert status == 200 and shown["model_gone_at"] and shown["adopted"] is True
    gone_on = shown["model_gone_at"][:10]
    assert shown["model_shutdown"] == f"shut down on {gone_on} (the provider no longer serves it)"


def test_a_gone_models_recording_without_the_runs_questions_is_a_409_that_asks_nothing(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, adoptable: OpenAIEmulator
) -> None:
    adoptable.add_tuned_model(NEW_MODEL, notebook_training_file(ROWS[:5]))
    with in_process_lambdas():
        old = adopt(aws_account, lambda_context, tmp_path)
    # A run with questions of its own (another seed's split), none of them the old run's.
    other = prepare(aws_account, lambda_context, tmp_path, "configs/other.json", validation_fraction=0.1, seed=7)
    succeeded_with(aws_account, other["run_id"], NEW_MODEL)
    adoptable.shut_down(OLD_MODEL)
    aws_account.dynamodb.update_item(  # a comparison has already found it gone
        TableName=aws_account.runs_table,
        Key={"run_id": {"S": old["run_id"]}},
        UpdateExpression="SET model_gone_at = :now",
        ExpressionAttributeValues={":now": {"S": "2026-12-07T00:00:00Z"}},
    )
    asked_before = len(adoptable.requests)

    status, body = api("ask-compare-runs.json", other["run_id"], lambda_context, {"compare_with": [old["run_id"]]})

    assert (status, body["code"]) == (409, "no_recorded_answers")
    assert body["message"] == (
        f"Run {old['run_id']}'s model no longer answers, and its recorded answers hold none of run "
        f"{other['run_id']}'s 4 questions: train or prepare run {other['run_id']} again with "
        f"evaluation.questions_from set to {old['run_id']}, so that it is asked the questions {old['run_id']} answered."
    )
    assert len(adoptable.requests) == asked_before
    assert "evaluation" not in next(run for run in aws_account.runs() if run["run_id"] == other["run_id"])


def test_a_re_evaluation_after_the_shutdown_rebuilds_every_gone_arm_from_its_recording(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, adoptable: OpenAIEmulator
) -> None:
    with in_process_lambdas():
        old = adopt(aws_account, lambda_context, tmp_path)
        before = {
            arm["name"]: arm
            for arm in next(r for r in aws_account.runs() if r["run_id"] == old["run_id"])["evaluation"]["arms"]
        }
        adoptable.shut_down(OLD_MODEL)  # its base goes with it: every arm of the adopted run is gone
        status, _ = api("ask-compare-runs.json", old["run_id"], lambda_context, {})
        assert status == 202

    after = {arm["name"]: arm for arm in compared_run(aws_account, old["run_id"])["evaluation"]["arms"]}
    assert set(after) == {"tuned", "base", "base_with_context"}
    for name, arm in after.items():
        assert arm["recorded"] == {"recorded_at": before[name]["evaluated_at"], "questions": 10}, name
        assert {k: arm[k] for k in COMPARED_FIGURES} == {k: before[name][k] for k in COMPARED_FIGURES}, name


def test_a_model_whose_shutdown_date_has_passed_is_not_asked_and_a_second_delivery_adopts_nothing_twice(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, adoptable: OpenAIEmulator
) -> None:
    adoptable.add_tuned_model(NEW_MODEL, notebook_training_file(ROWS[:5]))
    with in_process_lambdas():
        old = adopt(aws_account, lambda_context, tmp_path)
        again = adopt(aws_account, lambda_context, tmp_path)  # the same config, uploaded and delivered again
        assert again["run_id"] == old["run_id"]
        new = prepare(
            aws_account, lambda_context, tmp_path, "configs/new.json", evaluation={"questions_from": old["run_id"]}
        )
        succeeded_with(aws_account, new["run_id"], NEW_MODEL)
        aws_account.dynamodb.update_item(  # the run's recorded date has come: OpenAI has shut the model down
            TableName=aws_account.runs_table,
            Key={"run_id": {"S": old["run_id"]}},
            UpdateExpression="SET base_model_shutdown_date = :yesterday",
            ExpressionAttributeValues={":yesterday": {"S": "2026-01-01"}},
        )
        asked_before = [r.body["model"] for r in adoptable.requests if r.path == "/chat/completions"]
        status, _ = api("ask-compare-runs.json", new["run_id"], lambda_context, {"compare_with": [old["run_id"]]})
        assert status == 202

    asked = [r.body["model"] for r in adoptable.requests if r.path == "/chat/completions"]
    assert asked_before.count(OLD_MODEL) == 10  # the adopted run's one evaluation, not two
    assert asked[len(asked_before) :] == []  # its recording answered; nothing was asked
    arm = compared_arm(aws_account, new["run_id"], old["run_id"])
    assert arm["recorded"]["questions"] == 10 and arm["accuracy"] == 1.0


def compared_run(aws_account: Aws, run_id: str) -> dict[str, Any]:
    return next(run for run in aws_account.runs() if run["run_id"] == run_id)


def test_get_run_returns_every_count_of_the_held_out_questions(
    aws_account: Aws, lambda_context: Any, tmp_path: Path, adoptable: OpenAIEmulator
) -> None:
    """11 held-out rows and 9 questions need their reason: the counts that explain the difference are shown."""
    with in_process_lambdas():
        old = adopt(aws_account, lambda_context, tmp_path)
    new = prepare(
        aws_account, lambda_context, tmp_path, "configs/new.json", evaluation={"questions_from": old["run_id"]}
    )

    status, shown = api("ask-get-run.json", new["run_id"], lambda_context)

    assert status == 200
    assert shown["counts"] == new["counts"]  # as recorded, nothing dropped
    assert {name: shown["counts"][name] for name in new["counts"] if name.startswith(("evaluation", "questions"))} == {
        "evaluation_questions": 10,
        "evaluation_questions_skipped": 0,
        "evaluation_questions_trained": 0,
        "questions_from_rows_held_out": 10,
    }
