"""Fine-tuning jobs: validation, lifecycle, events, checkpoints, result file, list filters, refusal."""

from __future__ import annotations

import base64
import csv
import io
import json
from typing import Any

import openai
import pytest
from openai import OpenAI

from local.openai_emulator import OpenAIEmulator
from local.openai_emulator.finetune import auto_n_epochs

from .conftest import FakeClock, training_jsonl, upload_training


@pytest.mark.parametrize(
    ("n_examples", "epochs"), [(10, 10), (50, 3), (34, 3), (1, 25), (5000, 3), (10000, 2), (30000, 1)]
)
def test_auto_n_epochs(n_examples: int, epochs: int) -> None:
    assert auto_n_epochs(n_examples) == epochs


def test_job_succeeds_with_events_checkpoints_and_result_csv(client: OpenAI, emu: OpenAIEmulator) -> None:
    training = upload_training(client)
    validation = upload_training(client, training_jsonl(3))
    job = client.fine_tuning.jobs.create(
        model="gpt-4o-mini",
        training_file=training,
        validation_file=validation,
        suffix="cat",
        seed=7,
        metadata={"run_id": "r1"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    assert job.status == "validating_files" and job.hyperparameters.n_epochs == 2
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded" and job.finished_at and job.estimated_finish is None
    assert job.fine_tuned_model and job.fine_tuned_model.startswith("ft:gpt-4o-mini-2024-07-18:emulator:cat:")
    assert (job.seed, job.metadata, job.validation_file) == (7, {"run_id": "r1"}, validation)
    assert job.hyperparameters.batch_size == 1 and job.hyperparameters.learning_rate_multiplier == 1.8
    assert job.trained_tokens == sum(e.tokens for e in emu.fine_tuning.tuned_models[job.fine_tuned_model]) * 2

    messages = [e.message for e in reversed(client.fine_tuning.jobs.list_events(job.id, limit=100).data)]
    assert messages[:4] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {training}",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
    ]
    assert messages[4].startswith("Step 1/24: training loss=")
    assert messages[-2:] == [
        f"New fine-tuned model created: {job.fine_tuned_model}",
        "The job has successfully completed",
    ]

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [24, 12]  # newest first, one per epoch
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-24"
    assert set(checkpoints[0].metrics.model_dump()) >= {"train_loss", "valid_loss", "full_valid_mean_token_accuracy"}

    result = emu.files[job.result_files[0]]
    assert result.obj["purpose"] == "fine-tune-results"
    assert result.obj["filename"] == "step_metrics.csv"
    content = client.files.content(job.result_files[0]).content
    assert result.obj["bytes"] == len(content)
    rows = list(csv.DictReader(io.StringIO(base64.b64decode(content, validate=True).decode())))  # as OpenAI serves it
    assert list(rows[0]) == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    assert [int(r["step"]) for r in rows] == list(range(1, 25))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    step_24 = checkpoints[0].metrics
    assert (float(rows[-1]["train_loss"]), float(rows[-1]["valid_loss"])) == (step_24.train_loss, step_24.valid_loss)


def test_events_paginate_with_after(client: OpenAI) -> None:
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload_training(client))
    first = client.fine_tuning.jobs.list_events(job.id, limit=3)
    second = client.fine_tuning.jobs.list_events(job.id, limit=3, after=first.data[-1].id)
    assert first.has_more and len(second.data) == 3
    assert not {e.id for e in first.data} & {e.id for e in second.data}


def test_lifecycle_paces_with_phase_seconds_and_pause_resume(slow_client: OpenAI, clock: FakeClock) -> None:
    jobs = slow_client.fine_tuning.jobs
    job = jobs.create(model="gpt-4o-mini", training_file=upload_training(slow_client))
    clock.advance(10)
    assert jobs.retrieve(job.id).status == "queued"
    clock.advance(15)  # halfway through running
    running = jobs.retrieve(job.id)
    assert running.status == "running" and running.estimated_finish == int(clock.now) + 5
    assert running.hyperparameters.n_epochs == 8  # 100 // 12 examples (the cookbook floors)
    assert jobs.pause(job.id).model_dump()["status"] == "paused"  # not in the SDK's Literal
    clock.advance(100)
    assert jobs.retrieve(job.id).model_dump()["status"] == "paused"
    with pytest.raises(openai.BadRequestError):
        jobs.pause(job.id)
    assert jobs.resume(job.id).status == "running"
    clock.advance(4)
    assert jobs.retrieve(job.id).status == "running"
    clock.advance(1)
    assert jobs.retrieve(job.id).status == "succeeded"
    messages = [e.message for e in jobs.list_events(job.id, limit=100).data]
    assert "Fine-tuning job paused" in messages and "Fine-tuning job resumed" in messages


def test_cancel(slow_client: OpenAI) -> None:
    job = slow_client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload_training(slow_client))
    cancelled = slow_client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at
    with pytest.raises(openai.BadRequestError, match="cannot be cancelled"):
        slow_client.fine_tuning.jobs.cancel(job.id)


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"not json at all", "Line 1: the line is not valid JSON"),
        (training_jsonl(10) + b'\n{"prompt": "old format"}', "Line 11: expected a non-empty 'messages' list"),
        (
            training_jsonl(10) + b'\n{"messages": [{"role": "user", "content": "hi"}]}',
            "Line 11: the example has no assistant",
        ),
        (training_jsonl(3), "has 3 example(s), but must have at least 10"),
    ],
)
def test_malformed_training_file_fails_the_job(client: OpenAI, content: bytes, detail: str) -> None:
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload_training(client, content))
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.fine_tuned_model is None and job.error is not None
    assert (job.error.code, job.error.param) == ("invalid_training_file", "training_file")
    assert detail in job.error.message
    event = client.fine_tuning.jobs.list_events(job.id).data[0]
    assert event.level == "error" and detail in event.message


def test_list_filters_by_metadata_and_paginates(client: OpenAI, emu: OpenAIEmulator) -> None:
    training = upload_training(client)
    ids = [
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training, metadata=meta).id
        for meta in ({"run_id": "a"}, {"run_id": "b", "team": "x"}, None)
    ]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"run_id": "b"})] == [ids[1]]
    assert emu.requests[-1].query == {"metadata[run_id]": "b"}
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"run_id": "b", "team": "y"}).data] == []
    assert [j.id for j in client.fine_tuning.jobs.list(extra_query={"metadata": "null"}).data] == [ids[2]]
    listed = [j.id for j in client.fine_tuning.jobs.list(limit=1)]  # auto-paginates through `after`
    assert sorted(listed) == sorted(ids)


def _create_error(client: OpenAI, **overrides: Any) -> openai.APIStatusError:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "training_file": upload_training(client)} | overrides
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(openai.APIStatusError) as caught:
        client.post("/fine_tuning/jobs", body=body, cast_to=object)
    return caught.value


@pytest.mark.parametrize(
    ("overrides", "param", "code"),
    [
        ({"model": None}, "model", "missing_required_parameter"),
        ({"training_file": None}, "training_file", "missing_required_parameter"),
        ({"training_file": "file-nope"}, "training_file", "invalid_file_id"),
        ({"validation_file": "file-nope"}, "validation_file", "invalid_file_id"),
        ({"model": "gpt-unknown"}, "model", "model_not_available"),
        ({"suffix": "s" * 65}, "suffix", "string_above_max_length"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "object_above_max_properties"),
        ({"metadata": {"k" * 65: "v"}}, "metadata", "string_above_max_length"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k", "string_above_max_length"),
        ({"seed": -1}, "seed", "invalid_value"),
        ({"hyperparameters": {"n_epochs": 51}}, "hyperparameters.n_epochs", "invalid_value"),
        (
            {"hyperparameters": {"learning_rate_multiplier": 0}},
            "hyperparameters.learning_rate_multiplier",
            "invalid_value",
        ),
        ({"method": {"type": "dpo"}}, "method.type", "invalid_value"),
    ],
)
def test_create_rejects_what_the_spec_forbids(client: OpenAI, overrides: dict[str, Any], param: str, code: str) -> None:
    error = _create_error(client, **overrides)
    assert error.status_code == 400
    assert isinstance(error.body, dict) and set(error.body) == {"message", "type", "param", "code"}
    assert (error.type, error.param, error.code) == ("invalid_request_error", param, code)


def test_create_rejects_a_file_with_the_wrong_purpose(client: OpenAI) -> None:
    other = upload_training(client, purpose="assistants")
    error = _create_error(client, training_file=other)
    assert (error.status_code, error.code) == (400, "invalid_file_purpose")


def test_deprecated_top_level_hyperparameters(client: OpenAI) -> None:
    job = client.fine_tuning.jobs.create(
        model="gpt-4o-mini", training_file=upload_training(client), hyperparameters={"n_epochs": 4, "batch_size": 2}
    )
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size) == (4, 2)
    assert job.method and job.method.supervised and job.method.supervised.hyperparameters
    assert job.method.supervised.hyperparameters.n_epochs == 4


def test_fine_tuning_refused_without_access(client: OpenAI, emu: OpenAIEmulator) -> None:
    emu.fine_tuning_access = False
    training = upload_training(client)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training)
    assert caught.value.code == "fine_tuning_not_available" and caught.value.type == "invalid_request_error"
    assert "not available for this organization" in caught.value.message
    assert emu.jobs == {}


def test_unknown_job_is_404_and_reset_forgets_everything(client: OpenAI, emu: OpenAIEmulator) -> None:
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload_training(client))
    emu.reset()
    assert (emu.jobs, emu.files, emu.requests) == ({}, {}, [])


def test_requests_are_recorded_with_bodies(client: OpenAI, emu: OpenAIEmulator) -> None:
    training = upload_training(client)
    client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training, suffix="x")
    record = emu.requests[-1]
    assert (record.method, record.path, record.route, record.status) == (
        "POST",
        "/fine_tuning/jobs",
        "/fine_tuning/jobs",
        200,
    )
    assert record.body == {"model": "gpt-4o-mini", "training_file": training, "suffix": "x"}
    assert json.loads(json.dumps(record.response))["object"] == "fine_tuning.job"
