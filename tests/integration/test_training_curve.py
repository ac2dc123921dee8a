"""publish_training_curve against moto and the emulators: a finished run's step metrics, read from its
provider's own files, written under reports/<run_id>/ and recorded on the run."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from PIL import Image

from functions.poll_job.app import lambda_handler as poll_handler
from functions.start_job.app import lambda_handler as start_handler
from local.bedrock_emulator import BedrockEmulator
from local.openai_emulator import OpenAIEmulator
from shared.pipeline.reports import publish_training_curve
from tests.helpers import Aws, load_event, prepare_run, training_event

HEADER = "step,train_loss,valid_loss,train_accuracy,valid_accuracy\n"


def started(aws: Aws, context: Any, tmp_path: Path, **config: Any) -> dict[str, Any]:
    run = prepare_run(aws, context, tmp_path, **config)
    start_handler(training_event(run["run_id"]), context)
    [recorded] = aws.runs()
    return recorded


def polled(aws: Aws, run: dict[str, Any], context: Any) -> dict[str, Any]:
    poll_handler(load_event("poll-job.json") | {"run_id": run["run_id"], "job_id": run["job_id"]}, context)
    [recorded] = aws.runs()
    return recorded


def png_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return image.size


def published(aws: Aws, run_id: str) -> tuple[str, bytes]:
    """metrics.csv's text and loss.png's bytes, after checking both are stored with their content types."""
    csv_key, png_key = f"reports/{run_id}/metrics.csv", f"reports/{run_id}/loss.png"
    assert aws.keys(f"reports/{run_id}/") == sorted([csv_key, png_key])
    assert aws.s3.head_object(Bucket=aws.bucket, Key=csv_key)["ContentType"] == "text/csv"
    assert aws.s3.head_object(Bucket=aws.bucket, Key=png_key)["ContentType"] == "image/png"
    return aws.read(csv_key).decode(), aws.read(png_key)


def test_a_succeeded_openai_run_publishes_every_step_of_its_result_file_and_records_the_keys(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    run = polled(aws_account, started(aws_account, lambda_context, tmp_path), lambda_context)
    assert run["status"] == "succeeded"
    run_id = run["run_id"]
    # Another report recorded on the run before: its key must survive
    aws_account.dynamodb.update_item(
        TableName=aws_account.runs_table,
        Key={"run_id": {"S": run_id}},
        UpdateExpression="SET reports = :reports",
        ExpressionAttributeValues={
            ":reports": {"M": {"evaluation_jsonl": {"S": f"reports/{run_id}/evaluation.jsonl"}}}
        },
    )

    result = publish_training_curve(run_id)

    steps = [event["data"] for event in emulator.jobs[run["job_id"]].events if event["type"] == "metrics"]
    expected_csv = HEADER + "".join(
        f"{int(m['step'])},{m['train_loss']},{m['valid_loss']},{m['train_mean_token_accuracy']},"
        f"{m['valid_mean_token_accuracy']}\n"
        for m in steps
    )
    keys = {"metrics_csv": f"reports/{run_id}/metrics.csv", "loss_png": f"reports/{run_id}/loss.png"}
    assert len(steps) > 1
    assert result == {"run_id": run_id, "rows": len(steps), "keys": keys}
    text, png = published(aws_account, run_id)
    assert text == expected_csv
    width, height = png_size(png)
    assert width >= 800 and height >= 500
    [recorded] = aws_account.runs()
    assert recorded["reports"] == {**keys, "evaluation_jsonl": f"reports/{run_id}/evaluation.jsonl"}
    assert [request.path for request in emulator.requests if request.path.endswith("/content")] == [
        f"/files/{file_id}/content" for file_id in emulator.jobs[run["job_id"]].result_files
    ]

    # Publishing again writes the same keys with the same bytes
    assert publish_training_curve(run_id) == result
    assert published(aws_account, run_id) == (text, png)
    [again] = aws_account.runs()
    assert again["reports"] == recorded["reports"]


def test_a_run_whose_job_has_not_finished_is_skipped_and_nothing_is_written(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    emulator.phase_seconds = 1000  # the job stays in validating_files
    run = polled(aws_account, started(aws_account, lambda_context, tmp_path), lambda_context)

    result = publish_training_curve(run["run_id"])

    assert result == {"run_id": run["run_id"], "skipped": "its job has not finished (status validating_files)"}
    assert aws_account.keys("reports/") == []
    [recorded] = aws_account.runs()
    assert "reports" not in recorded
    assert publish_training_curve("no-such-run") == {"run_id": "no-such-run", "skipped": "no such run"}


def test_a_cancelled_openai_job_without_result_files_gets_a_header_only_csv_and_a_picture(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tmp_path: Path
) -> None:
    emulator.phase_seconds = 1000
    run = started(aws_account, lambda_context, tmp_path)
    OpenAI(base_url=emulator.base_url, api_key="test").fine_tuning.jobs.cancel(run["job_id"])
    assert polled(aws_account, run, lambda_context)["status"] == "cancelled"

    result = publish_training_curve(run["run_id"])

    assert result["rows"] == 0
    text, png = published(aws_account, run["run_id"])
    assert text == HEADER
    width, height = png_size(png)
    assert width >= 800 and height >= 500
    [recorded] = aws_account.runs()
    assert recorded["reports"] == result["keys"]


def bedrock_metrics(aws: Aws, run: dict[str, Any], name: str) -> dict[int, str]:
    """step -> loss cell of one of the CSVs the emulator's job wrote under the run's output prefix."""
    job_folder = f"outputs/{run['run_id']}/model-customization-job-{run['job_id'].rsplit('/', 1)[-1]}/"
    found = [key for key in aws.keys(job_folder) if key.endswith(name)]
    if not found:
        return {}
    rows = csv.DictReader(io.StringIO(aws.read(found[0]).decode()))
    return {int(row["step_number"]): row.get("training_loss") or row["validation_loss"] for row in rows}


@pytest.mark.parametrize("validation_fraction", [0.25, 0.0], ids=["with validation", "without validation"])
def test_a_bedrock_run_publishes_its_training_loss_with_the_validation_loss_merged_by_step(
    aws_account: Aws, bedrock: BedrockEmulator, lambda_context: Any, tmp_path: Path, validation_fraction: float
) -> None:
    run = started(
        aws_account,
        lambda_context,
        tmp_path,
        provider="bedrock",
        validation_fraction=validation_fraction,
        fine_tune={"hyperparameters": {"n_epochs": 2}},
    )
    run = polled(aws_account, run, lambda_context)
    assert run["status"] in ("deploying", "succeeded")

    result = publish_training_curve(run["run_id"])

    training = bedrock_metrics(aws_account, run, "step_wise_training_metrics.csv")
    validation = bedrock_metrics(aws_account, run, "validation_metrics.csv")
    assert len(training) > 1 and (len(validation) == 2) == (validation_fraction > 0)  # one per epoch
    expected = HEADER + "".join(
        f"{step},{training.get(step, '')},{validation.get(step, '')},,\n" for step in sorted({*training, *validation})
    )
    text, png = published(aws_account, run["run_id"])
    assert text == expected
    assert result["rows"] == len({*training, *validation})
    width, height = png_size(png)
    assert width >= 800 and height >= 500
    [recorded] = aws_account.runs()
    assert recorded["reports"] == result["keys"]
