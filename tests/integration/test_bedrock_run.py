"""Bedrock runs tracked, deployed, asked and cancelled: moto and the Bedrock emulator, through the real
handlers (and, where the loop itself is the point, the real state machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.ask.app import lambda_handler as ask_handler
from functions.poll_job.app import lambda_handler as poll_handler
from functions.start_job.app import lambda_handler as start_handler
from local.bedrock_emulator import BedrockEmulator
from tests.helpers import Aws, ask_question, finished_execution, history_states, load_event, prepare_run, training_event

QUESTION = "Question 17: what is measured in joules?"
ANSWER = "energy 17 Explanation: Energy 17 is measured in joules."


def started(aws: Aws, context: Any, tmp_path: Path) -> dict[str, Any]:
    """A prepared bedrock run whose training file has started its job; the run as recorded."""
    run = prepare_run(aws, context, tmp_path, provider="bedrock")
    start_handler(training_event(run["run_id"]), context)
    [recorded] = aws.runs()
    assert recorded["provider"] == "bedrock" and recorded["job_id"].startswith("arn:aws:bedrock:")
    return recorded


def poll(run: dict[str, Any], context: Any) -> dict[str, Any]:
    state = load_event("poll-job.json") | {"run_id": run["run_id"], "job_id": run["job_id"]}
    result: dict[str, Any] = poll_handler(state, context)
    return result


def cancel(run_id: str, context: Any) -> tuple[int, dict[str, Any]]:
    event = load_event("ask-cancel-run.json")
    event["pathParameters"] = {"run_id": run_id}
    event["path"] = f"/runs/{run_id}/cancel"
    response = ask_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def job_of(emulator: BedrockEmulator, run: dict[str, Any]) -> Any:
    [job] = [job for job in emulator.jobs.values() if job.arn == run["job_id"]]
    return job


def operations(emulator: BedrockEmulator, name: str) -> list[Any]:
    return [request for request in emulator.requests if request.operation == name]


def test_a_bedrock_run_goes_from_config_drop_to_succeeded_through_the_state_machine(
    aws_account_executing: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started(aws_account_executing, lambda_context, tmp_path)
    execution = finished_execution(run["run_id"])

    assert execution["status"] == "SUCCEEDED"
    assert history_states(execution["executionArn"])[-1] == "JobSucceeded"
    [done] = aws_account_executing.runs()
    [deployment] = bedrock.deployments.values()
    assert done["status"] == "succeeded"
    assert done["fine_tuned_model"] == done["provider_state"]["deployment_arn"] == deployment.arn
    assert deployment.model_arn == job_of(bedrock, run).output_model_arn
    # Metrics: the job's loss and the last row of the step-wise CSV it wrote under outputs/<run_id>/
    metrics = done["metrics"]
    assert {"train_loss", "train_perplexity", "step", "epoch", "steps_reported"} <= set(metrics)
    assert metrics["steps_reported"] >= 1 and metrics["train_perplexity"] > 1
    assert "notified_at" in done and "error" not in done
    assert len(operations(bedrock, "CreateCustomModelDeployment")) == 1

    status, body = ask_question(lambda_context, question=QUESTION, run_id=run["run_id"])
    assert status == 200
    assert body["answer"] == ANSWER
    assert (body["model"], body["run_id"]) == (deployment.arn, run["run_id"])
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] > 0
    [converse] = operations(bedrock, "Converse")
    system = json.loads(done["config"]) if isinstance(done["config"], str) else done["config"]
    assert converse.body["system"] == [{"text": system["template"]["system"]}]
    assert converse.body["messages"] == [{"role": "user", "content": [{"text": QUESTION}]}]
    assert converse.body["inferenceConfig"]["maxTokens"] > 0


def test_each_bedrock_status_maps_through_the_poll_completed_is_deploying_until_active(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    bedrock.phase_seconds = 1000
    run = started(aws_account, lambda_context, tmp_path)

    assert poll(run, lambda_context)["status"] == "running"  # InProgress
    [running] = aws_account.runs()
    assert running["status"] == "running" and "deployment_arn" not in running["provider_state"]

    bedrock.phase_seconds = 0  # Completed; the deployment it creates stays Creating
    job = job_of(bedrock, run)
    assert job.status == "Completed"
    bedrock.phase_seconds = 1000
    assert poll(run, lambda_context)["status"] == "deploying"
    [deploying] = aws_account.runs()
    assert deploying["status"] == "deploying" and "fine_tuned_model" not in deploying
    assert deploying["provider_state"]["deployment_arn"] in bedrock.deployments
    assert poll(run, lambda_context)["status"] == "deploying"  # still Creating: the same deployment
    assert len(bedrock.deployments) == 1

    # Asking a deploying run: no model yet
    status, body = ask_question(lambda_context, question=QUESTION, run_id=run["run_id"])
    assert (status, body["code"]) == (409, "no_model")
    status, body = cancel(run["run_id"], lambda_context)  # training is over: nothing to cancel
    assert (status, body["code"], body["status"]) == (409, "not_cancellable", "deploying")

    bedrock.phase_seconds = 0
    assert poll(run, lambda_context)["status"] == "succeeded"
    [done] = aws_account.runs()
    assert done["status"] == "succeeded" and done["fine_tuned_model"] == deploying["provider_state"]["deployment_arn"]
    assert len(operations(bedrock, "CreateCustomModelDeployment")) == 1


def test_a_failed_job_fails_the_run_with_bedrocks_reason(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    bedrock.fail_jobs("Out of capacity for this base model")
    run = started(aws_account, lambda_context, tmp_path)

    state = poll(run, lambda_context)

    assert (state["status"], state["error_message"]) == ("failed", "Out of capacity for this base model")
    [failed] = aws_account.runs()
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "job_failed", "message": "Out of capacity for this base model"}
    assert bedrock.deployments == {}


def test_a_failed_deployment_fails_the_run_with_bedrocks_reason(
    aws_account_executing: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    bedrock.fail_deployments("No on-demand capacity for this model")
    run = started(aws_account_executing, lambda_context, tmp_path)
    execution = finished_execution(run["run_id"])

    [failed] = aws_account_executing.runs()
    assert execution["status"] == "FAILED" and execution["error"] == "JobFailed"
    assert failed["status"] == "failed" and "fine_tuned_model" not in failed
    assert failed["error"]["code"] == "deployment_failed"
    assert "No on-demand capacity for this model" in failed["error"]["message"]
    assert failed["provider_state"]["deployment_arn"] in failed["error"]["message"]
    assert execution["cause"] == failed["error"]["message"]


def test_cancel_stops_the_bedrock_job_and_the_poll_sees_it_stopped(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    bedrock.phase_seconds = 1000
    run = started(aws_account, lambda_context, tmp_path)

    status, body = cancel(run["run_id"], lambda_context)

    assert (status, body) == (202, {"run_id": run["run_id"], "status": "running"})  # Stopping
    [stop] = operations(bedrock, "StopModelCustomizationJob")
    assert stop.error_code is None
    assert poll(run, lambda_context)["status"] == "running"  # still Stopping
    bedrock.phase_seconds = 0
    assert poll(run, lambda_context)["status"] == "cancelled"  # Stopped
    [cancelled] = aws_account.runs()
    assert cancelled["status"] == "cancelled" and "notified_at" in cancelled
    assert bedrock.deployments == {}


def test_cancelling_twice_while_the_job_stops_answers_both_times(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    """Bedrock refuses to stop a job that is Stopping; a retried or repeated cancel is no error."""
    bedrock.phase_seconds = 1000
    run = started(aws_account, lambda_context, tmp_path)

    first = cancel(run["run_id"], lambda_context)
    second = cancel(run["run_id"], lambda_context)

    assert first == second == (202, {"run_id": run["run_id"], "status": "running"})
    assert [stop.error_code for stop in operations(bedrock, "StopModelCustomizationJob")] == [
        None,
        "ConflictException",
    ]
    assert job_of(bedrock, run).status == "Stopping"


def test_cancel_of_a_job_that_completed_records_it_deploying_and_creates_nothing(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started(aws_account, lambda_context, tmp_path)  # the job completes at once; no poll has seen it

    status, body = cancel(run["run_id"], lambda_context)

    assert (status, body["code"], body["status"]) == (409, "job_already_finished", "deploying")
    assert "at Amazon Bedrock" in body["message"]
    [deploying] = aws_account.runs()
    assert deploying["status"] == "deploying" and bedrock.deployments == {}
    assert poll(run, lambda_context)["status"] == "succeeded"  # the poll deploys it


@pytest.fixture
def asked_run(aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path) -> dict[str, Any]:
    run = started(aws_account, lambda_context, tmp_path)
    assert poll(run, lambda_context)["status"] == "succeeded"
    return run


def test_a_model_timeout_is_a_503_to_try_again_not_a_refusal(
    asked_run: dict[str, Any], bedrock: BedrockEmulator, lambda_context: Any
) -> None:
    bedrock.inject_fault("Converse", "model_timeout", times=1)

    status, body = ask_question(lambda_context, question=QUESTION, run_id=asked_run["run_id"])
    again = ask_question(lambda_context, question=QUESTION, run_id=asked_run["run_id"])

    assert (status, body["code"]) == (503, "bedrock_unavailable")
    assert (again[0], again[1]["answer"]) == (200, ANSWER)


def test_a_temperature_above_what_converse_takes_is_a_409_and_asks_nothing(
    asked_run: dict[str, Any], bedrock: BedrockEmulator, lambda_context: Any
) -> None:
    status, body = ask_question(lambda_context, question=QUESTION, run_id=asked_run["run_id"], temperature=1.5)

    assert (status, body["code"]) == (409, "temperature_above_provider_limit")  # the document allows 1.5: the run not
    assert body["message"] == (
        f"temperature 1.5 is above 1, the most the models of run {asked_run['run_id']} (bedrock) take."
    )
    assert operations(bedrock, "Converse") == []


@pytest.mark.parametrize("kind", ["validation", "access_denied"])
def test_converse_refused_is_a_502_with_bedrocks_message(
    asked_run: dict[str, Any], bedrock: BedrockEmulator, lambda_context: Any, kind: Any
) -> None:
    bedrock.inject_fault("Converse", kind, message="Bedrock said no to this")

    status, body = ask_question(lambda_context, question=QUESTION, run_id=asked_run["run_id"])

    assert (status, body["code"]) == (502, "bedrock_refused")
    assert "Bedrock said no to this" in body["message"]


def delete_model(run_id: str, context: Any) -> tuple[int, dict[str, Any]]:
    event = load_event("ask-cancel-run.json")
    event["httpMethod"] = "DELETE"
    event["resource"] = "/runs/{run_id}/model"
    event["pathParameters"] = {"run_id": run_id}
    event["path"] = f"/runs/{run_id}/model"
    response = ask_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def test_deleting_a_bedrock_runs_model_deletes_its_deployment_and_says_so(
    asked_run: dict[str, Any], aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any
) -> None:
    run_id = asked_run["run_id"]
    [before] = aws_account.runs()
    deployment = before["provider_state"]["deployment_arn"]

    status, body = delete_model(run_id, lambda_context)

    assert status == 200
    assert (body["run_id"], body["deleted"], body["deployment_arn"], body["already_gone"]) == (
        run_id,
        "custom_model_deployment",
        deployment,
        False,
    )
    assert deployment in body["message"]
    [deleted] = operations(bedrock, "DeleteCustomModelDeployment")
    assert deleted.error_code is None and deployment not in bedrock.deployments
    [after] = aws_account.runs()
    assert "fine_tuned_model" not in after and "deployment_arn" not in after["provider_state"]
    assert after["provider_state"]["deleted_deployment_arn"] == deployment and after["status"] == "succeeded"
    # The run has no model now, and nothing more to delete
    status, body = ask_question(lambda_context, question=QUESTION, run_id=run_id)
    assert (status, body["code"]) == (409, "no_model")
    assert body["message"] == (
        f"Run {run_id}'s model was deleted ({after['model_deleted_at']}, DELETE /runs/{run_id}/model); ask another run."
    )
    status, body = delete_model(run_id, lambda_context)
    assert (status, body["code"], body["status"]) == (409, "no_deployment", "succeeded")
    assert deployment in body["message"]


def test_deleting_the_model_of_a_run_without_a_deployment_or_of_no_run(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    bedrock.phase_seconds = 1000
    run = started(aws_account, lambda_context, tmp_path)

    status, body = delete_model(run["run_id"], lambda_context)
    assert (status, body["code"], body["status"]) == (409, "no_deployment", "running")
    status, body = delete_model("nope-0123456789ab", lambda_context)
    assert (status, body["code"]) == (404, "run_not_found")
    assert operations(bedrock, "DeleteCustomModelDeployment") == []
