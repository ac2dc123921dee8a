"""Open runs (LoRA on SageMaker, the weights in the bucket, Bedrock Custom Model Import) started, tracked, imported,
asked, cancelled and deleted: moto, the SageMaker emulator and the Bedrock emulator, through the real handlers (and,
where the loop itself is the point, the real state machine). What every provider shares is in the contract suites."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests

from functions.poll_job.app import lambda_handler as poll_handler
from functions.start_job.app import lambda_handler as start_handler
from local.bedrock_emulator import BedrockEmulator
from local.sagemaker_emulator import SageMakerEmulator
from shared.aws.runs import RunsRepository
from shared.providers.base import ForeignJobError
from shared.providers.open import OPEN_DEFAULT_MODEL, SPEC
from shared.providers.open.gateway import TRAINING_SOURCE
from shared.settings import settings
from tests.helpers import (
    CONFIG_KEY,
    Aws,
    SetEnv,
    api_call,
    ask_question,
    finished_execution,
    history_states,
    load_event,
    prepare_run,
    sciq_row,
    training_event,
    write_jsonl,
)

QUESTION = "Question 17: what is measured in joules?"
ANSWER = "energy 17 Explanation: Energy 17 is measured in joules."
DATA_BUCKET = "ragtune-data-123456789012-us-east-1"
HYPERPARAMETERS = {"n_epochs": 2, "lora_r": 8, "lora_learning_rate": 0.0001}


def started(aws: Aws, context: Any, tmp_path: Path, **config: Any) -> dict[str, Any]:
    """A prepared open run (a quarter held out) whose training file has started its SageMaker job."""
    config = {"validation_fraction": 0.25, "fine_tune": {"hyperparameters": HYPERPARAMETERS}} | config
    run = prepare_run(aws, context, tmp_path, provider="open", **config)
    start_handler(training_event(run["run_id"]), context)
    [recorded] = aws.runs()
    return recorded


def poll(run: dict[str, Any], context: Any) -> dict[str, Any]:
    state = load_event("poll-job.json") | {"run_id": run["run_id"], "job_id": run["job_id"]}
    result: dict[str, Any] = poll_handler(state, context)
    return result


def operations(emulator: SageMakerEmulator | BedrockEmulator, name: str) -> list[Any]:
    return [request for request in emulator.requests if request.operation == name]


def test_the_training_job_runs_the_repositorys_script_on_the_runs_files_and_writes_under_its_prefix(
    aws_account: Aws, sagemaker: SageMakerEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    sagemaker.phase_seconds = 1000
    run = started(aws_account, lambda_context, tmp_path)

    [create] = operations(sagemaker, "CreateTrainingJob")
    request = create.body
    run_id, files = run["run_id"], run["files"]
    assert run["status"] == "running" and run["job_id"] == request["TrainingJobName"]
    assert request["TrainingJobName"].startswith(run_id[:40])
    assert request["RoleArn"].endswith(":role/ragtune-OpenTrainingRole")
    assert request["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
        "2.5.1-transformers4.49.0-gpu-py311-cu124-ubuntu22.04"
    )
    # The script's arguments, JSON-encoded as the SageMaker SDK writes them; defaults where the config said auto.
    assert {name: json.loads(value) for name, value in request["HyperParameters"].items()} == {
        "model_id": OPEN_DEFAULT_MODEL,
        "epochs": 2,
        "learning_rate": 0.0001,
        "lora_r": 8,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "max_seq_length": 1024,
        "seed": 42,
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": f"s3://{DATA_BUCKET}/models/{run_id}/code/sourcedir.tar.gz",
        "sagemaker_region": "us-east-1",
    }
    channels = {
        channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3Uri"] for channel in request["InputDataConfig"]
    }
    assert channels == {
        "train": f"s3://{DATA_BUCKET}/{files['train']['key']}",
        "validation": f"s3://{DATA_BUCKET}/{files['validation']['key']}",
    }
    assert request["OutputDataConfig"] == {
        "S3OutputPath": f"s3://{DATA_BUCKET}/models/{run_id}/",
        "CompressionType": "NONE",
    }
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{DATA_BUCKET}/models/{run_id}/metrics/"
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 21600}
    assert {tag["Key"]: tag["Value"] for tag in request["Tags"]} == {
        "ragtune_run_id": run_id,
        "ragtune_deployment": DATA_BUCKET,
    }
    # The code the job runs is the repository's script, byte for byte, and nothing else.
    packed = aws_account.read(f"models/{run_id}/code/sourcedir.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(packed))) as archive:
        members = {member.name: archive.extractfile(member).read() for member in archive.getmembers()}  # type: ignore[union-attr]
    assert members == {name: (TRAINING_SOURCE / name).read_bytes() for name in ("train.py", "requirements.txt")}
    # The estimate was written before the job was created, in GPU hours.
    estimate = run["estimate"]
    assert estimate["instance_type"] == "ml.g5.2xlarge" and estimate["epochs"] == 2
    assert estimate["gpu_hours"] >= 0.25 and estimate["cost_usd"] == round(estimate["gpu_hours"] * 1.515, 4)


def test_a_start_for_another_training_file_version_finds_the_runs_job_and_creates_no_other(
    aws_account: Aws, sagemaker: SageMakerEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    """A create whose answer was lost (even past the SDK's retries) made a job: the next attempt, whatever its
    training file version, looks the run's jobs up first and tracks that one."""
    sagemaker.phase_seconds = 1000
    run = started(aws_account, lambda_context, tmp_path)
    recorded = RunsRepository(settings().runs_table).get(run["run_id"])
    assert recorded is not None

    again = SPEC.gateway().start_job(recorded, "another-version", lambda fields: None)

    assert again.job_id == run["job_id"]
    assert len(sagemaker.jobs) == 1 and len(operations(sagemaker, "CreateTrainingJob")) == 1


def test_the_loop_follows_training_imports_the_weights_and_the_imported_model_answers(
    aws_account_executing: Aws,
    sagemaker: SageMakerEmulator,
    bedrock: BedrockEmulator,
    lambda_context: Any,
    tmp_path: Path,
) -> None:
    run = started(aws_account_executing, lambda_context, tmp_path)
    execution = finished_execution(run["run_id"])

    assert execution["status"] == "SUCCEEDED" and history_states(execution["executionArn"])[-1] == "JobSucceeded"
    [done] = aws_account_executing.runs()
    [imported] = bedrock.imported_models.values()
    [job] = bedrock.import_jobs.values()
    weights = f"s3://{DATA_BUCKET}/models/{run['run_id']}/{run['job_id']}/output/model/"
    assert done["status"] == "succeeded" and "error" not in done
    assert done["fine_tuned_model"] == done["provider_state"]["deployment_arn"] == imported.arn
    assert done["provider_state"]["weights_uri"] == imported.s3_uri == weights
    [create_import] = operations(bedrock, "CreateModelImportJob")
    assert create_import.body["roleArn"].endswith(":role/ragtune-OpenImportRole")
    assert create_import.body["modelDataSource"] == {"s3DataSource": {"s3Uri": weights}}
    assert {tag["key"]: tag["value"] for tag in create_import.body["importedModelTags"]} == {
        "ragtune_run_id": run["run_id"],
        "ragtune_deployment": DATA_BUCKET,
    }
    assert job.status == "Completed"
    # Progress as the job logged it, read back from its metric definitions
    assert {"step", "total_steps", "train_loss"} <= set(done["metrics"])
    assert done["metrics"]["step"] == done["metrics"]["total_steps"] > 0
    assert [event["message"] for event in done["events"]][:1] and done["event_count"] >= 1
    # The curve: every row of the script's metrics.csv, training and validation loss
    curve = aws_account_executing.read(done["reports"]["metrics_csv"]).decode().splitlines()
    written = aws_account_executing.read(f"models/{run['run_id']}/metrics/metrics.csv").decode().splitlines()
    assert len(curve) == len(written) > 2
    # The manifest lists the weights, which are the bucket's, and GET /runs/{id} links it
    manifest = json.loads(aws_account_executing.read(f"models/{run['run_id']}/manifest.json"))
    assert manifest["weights_uri"] == weights and manifest["base_model"] == OPEN_DEFAULT_MODEL
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {entry["name"] for entry in manifest["files"]}
    status, detail = api_call("GET", f"/runs/{run['run_id']}", lambda_context)
    assert status == 200 and detail["weights_uri"] == weights
    assert json.loads(requests.get(detail["weights_manifest_url"], timeout=10).content) == manifest

    first = json.loads(aws_account_executing.read(run["files"]["train"]["key"]).splitlines()[0])
    question, answer = (
        next(m["content"] for m in first["messages"] if m["role"] == role) for role in ("user", "assistant")
    )
    status, body = ask_question(lambda_context, question=question, run_id=run["run_id"])
    assert status == 200 and (body["answer"], body["model"]) == (answer, imported.arn)  # recalled from its training
    invoke = operations(bedrock, "InvokeModel")[-1]  # after the evaluation's, which the state machine started
    assert invoke.body["messages"][-1] == {"role": "user", "content": question}
    assert invoke.body["messages"][0]["role"] == "system" and invoke.body["max_tokens"] > 0
    assert set(invoke.body) == {"messages", "max_tokens", "temperature"}


def test_the_run_is_importing_until_bedrock_has_imported_it_and_a_cancel_then_has_nothing_to_stop(
    aws_account: Aws, sagemaker: SageMakerEmulator, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    sagemaker.phase_seconds = 1000
    run = started(aws_account, lambda_context, tmp_path)
    assert poll(run, lambda_context)["status"] == "running"

    sagemaker.phase_seconds = 0  # trained; the import it starts stays InProgress
    bedrock.phase_seconds = 1000
    assert poll(run, lambda_context)["status"] == "importing"
    assert poll(run, lambda_context)["status"] == "importing"
    assert len(operations(bedrock, "CreateModelImportJob")) == 1
    [importing] = aws_account.runs()
    assert "fine_tuned_model" not in importing and importing["provider_state"]["import_job_arn"]
    status, body = api_call("POST", f"/runs/{run['run_id']}/cancel", lambda_context)
    assert (status, body["code"], body["status"]) == (409, "not_cancellable", "importing")
    assert "being imported" in body["message"]
    status, body = ask_question(lambda_context, question=QUESTION, run_id=run["run_id"])
    assert (status, body["code"]) == (409, "no_model")

    bedrock.phase_seconds = 0
    assert poll(run, lambda_context)["status"] == "succeeded"


def test_cancel_stops_the_training_job_and_the_poll_sees_it_stopped(
    aws_account: Aws, sagemaker: SageMakerEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    sagemaker.phase_seconds = 1000
    run = started(aws_account, lambda_context, tmp_path)

    status, body = api_call("POST", f"/runs/{run['run_id']}/cancel", lambda_context)

    assert (status, body["status"]) == (202, "running")  # Stopping
    [stop] = operations(sagemaker, "StopTrainingJob")
    assert stop.body == {"TrainingJobName": run["job_id"]}
    sagemaker.phase_seconds = 0
    assert poll(run, lambda_context)["status"] == "cancelled"
    [cancelled] = aws_account.runs()
    assert cancelled["status"] == "cancelled" and "weights_uri" not in cancelled.get("provider_state", {})


def test_deleting_an_open_runs_model_deletes_the_imported_model_but_never_the_weights(
    aws_account: Aws, sagemaker: SageMakerEmulator, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started(aws_account, lambda_context, tmp_path)
    for _ in range(4):
        if poll(run, lambda_context)["status"] == "succeeded":
            break
    [done] = aws_account.runs()
    assert done["status"] == "succeeded"
    model, weights = done["fine_tuned_model"], done["provider_state"]["weights_uri"]
    prefix = weights.removeprefix(f"s3://{DATA_BUCKET}/")
    before = aws_account.s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix=prefix)["KeyCount"]

    status, body = api_call("DELETE", f"/runs/{run['run_id']}/model", lambda_context)

    assert status == 200
    assert (body["deleted"], body["deployment_arn"], body["already_gone"]) == ("imported_model", model, False)
    assert body["message"].startswith(f"Run {run['run_id']}'s imported model {model} was deleted")
    assert model not in bedrock.imported_models
    assert aws_account.s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix=prefix)["KeyCount"] == before > 0
    status, body = ask_question(lambda_context, question=QUESTION, run_id=run["run_id"])
    assert (status, body["code"]) == (409, "no_model")


def test_a_gated_base_model_without_the_stacks_hugging_face_token_fails_before_anything_is_created(
    aws_account: Aws, sagemaker: SageMakerEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started(aws_account, lambda_context, tmp_path, fine_tune={"model": "meta-llama/Llama-3.2-1B-Instruct"})

    assert run["status"] == "failed" and run["error"]["code"] == "open_not_configured"
    assert "gated" in run["error"]["message"] and "HuggingFaceTokenSecret" in run["error"]["message"]
    assert sagemaker.requests == []
    assert aws_account.s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix="models/")["KeyCount"] == 0


def test_a_gated_base_model_with_the_token_passes_the_secret_name_never_the_token(
    aws_account: Aws, sagemaker: SageMakerEmulator, set_env: SetEnv, lambda_context: Any, tmp_path: Path
) -> None:
    sagemaker.phase_seconds = 1000
    set_env(OPEN_HUGGING_FACE_TOKEN_SECRET="ragtune/hugging-face-token")

    started(aws_account, lambda_context, tmp_path, fine_tune={"model": "meta-llama/Llama-3.2-1B-Instruct"})

    [create] = operations(sagemaker, "CreateTrainingJob")
    assert json.loads(create.body["HyperParameters"]["hf_token_secret"]) == "ragtune/hugging-face-token"
    assert "Environment" not in create.body


def test_a_job_writing_outside_the_runs_prefix_is_never_tracked(
    aws_account: Aws, sagemaker: SageMakerEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    sagemaker.phase_seconds = 1000
    run = started(aws_account, lambda_context, tmp_path)

    with pytest.raises(ForeignJobError, match="does not write to run another-run's models"):
        SPEC.gateway().retrieve_job(run["job_id"], run_id="another-run")


def test_an_example_longer_than_max_seq_length_refuses_the_file_before_anything_is_created(
    aws_account: Aws, sagemaker: SageMakerEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    from functions.prepare.app import lambda_handler as prepare_handler

    data = write_jsonl(tmp_path / "rows.jsonl", [sciq_row(i, support="energy " * 200) for i in range(40)])
    config = {
        "provider": "open",
        "dataset": {"source": aws_account.put_data(data)},
        "template": {"user": "{support}\n\n{question}"},
        "fine_tune": {"hyperparameters": {"max_seq_length": 128}},
    }
    aws_account.put_config(CONFIG_KEY, config)

    [outcome] = prepare_handler(load_event("prepare-config-created.json"), lambda_context)["runs"]

    [run] = aws_account.runs()
    assert outcome["status"] == run["status"] == "failed" and run["error"]["code"] == "data_gate_failed"
    assert "40 examples exceed 128 tokens" in run["error"]["message"]
    assert sagemaker.requests == [] and "files" not in run


def test_a_refused_import_fails_the_run_and_keeps_the_weights_on_record(
    aws_account: Aws, sagemaker: SageMakerEmulator, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started(aws_account, lambda_context, tmp_path)
    bedrock.inject_fault("CreateModelImportJob", "validation", message="The imported model quota is reached")

    assert poll(run, lambda_context)["status"] == "failed"

    [failed] = aws_account.runs()
    weights = failed["provider_state"]["weights_uri"]
    assert failed["error"]["code"] == "import_failed" and weights in failed["error"]["message"]
    assert "The imported model quota is reached" in failed["error"]["message"]
    assert aws_account.read(failed["provider_state"]["weights_manifest_key"])  # the manifest too


def test_an_import_whose_first_read_fails_is_recorded_and_followed_by_the_next_poll(
    aws_account: Aws, sagemaker: SageMakerEmulator, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = started(aws_account, lambda_context, tmp_path)
    bedrock.inject_fault("GetModelImportJob", "throttling", times=100)

    assert poll(run, lambda_context)["status"] == "importing"
    [importing] = aws_account.runs()
    import_job = importing["provider_state"]["import_job_arn"]
    assert import_job in {job.arn for job in bedrock.import_jobs.values()}

    bedrock.faults.clear()
    assert poll(run, lambda_context)["status"] == "succeeded"
    assert len(operations(bedrock, "CreateModelImportJob")) == 1
