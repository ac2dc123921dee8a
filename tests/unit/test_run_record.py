"""The run record and the status vocabulary: one of each, read back exactly as stored."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from local.openai_emulator import finetune
from shared.aws.runs import _from_dynamodb, _to_dynamodb
from shared.domain.api_models import RunDetail, RunSummary
from shared.domain.run_record import Run
from shared.domain.run_status import FINISHED, JOB_FINISHED, JOB_STATUSES, READYING_MODEL, USABLE, RunStatus
from shared.providers import PROVIDER_NAMES, spec
from shared.providers.openai.gateway import job_status

SPEC = Path(__file__).resolve().parents[1] / "emulator" / "openai-spec" / "openapi.yaml"
ITEM: dict[str, Any] = {
    "run_id": "sciq-0123456789ab",
    "entity": "run",
    "status": "succeeded",
    "created_at": "2026-01-01T00:00:00.000000+00:00",
    "updated_at": "2026-01-01T01:00:00.000000+00:00",
    "status_changed_at": "2026-01-01T01:00:00.000000+00:00",
    "notified_at": "2026-01-01T01:00:00.100000+00:00",
    "config_key": "configs/sciq.json",
    "config_version": "v1",
    "config_sha256": "ab" * 32,
    "config": {"dataset": {"source": "allenai/sciq"}, "template": {"system": "Answer."}, "seed": 42},
    "counts": {
        "rows_read": 40,
        "rows_kept": 31,
        "rows_dropped": 9,
        "dropped_reasons": {"empty support": 9},
        "train_examples": 31,
        "validation_examples": 0,
    },
    "files": {"train": {"key": "datasets/sciq-0123456789ab/train.jsonl", "bytes": 9000, "examples": 31}},
    "gate": {
        "train": {
            "examples": 31,
            "total_tokens": 2300,
            "billing_tokens": 2300,
            "max_example_tokens": 120,
            "examples_over_token_limit": 0,
            "duplicate_examples": 0,
            "format_errors": {},
        }
    },
    "estimate": {"epochs": 3, "trained_tokens": 6900, "cost_usd": 0.0207, "price_per_million_tokens": 3.0},
    "start_owner": "v1",
    "provider_state": {"training_file_id": "file-1"},
    "job_id": "ftjob-1",
    "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:tracker:sciq-0123456789ab-12345678-g0",
    "job_observed_at": 1767229200123456789,
    "fine_tuned_model": "ft:gpt-4o-mini-2024-07-18:org::abc",
    "trained_tokens": 6900,
    "estimated_finish": 1767229000,
    "finished_at": 1767229100,
    "metrics": {"step": 93, "train_loss": 0.25},
    "events": [{"id": "ftevent-1", "created_at": 1767225600, "level": "info", "message": "Job started."}],
    "event_count": 1,
    "last_event_id": "ftevent-1",
    "error": {"code": "job_failed", "message": "no", "openai_code": "invalid_file"},
}


def test_a_stored_item_reads_back_as_a_run_and_dumps_exactly_as_stored() -> None:
    read = _from_dynamodb(_to_dynamodb(ITEM))  # DynamoDB's Decimals, as ints and floats (3.0 reads as 3)
    run = Run.model_validate(read)

    assert run.status is RunStatus.SUCCEEDED
    assert run.files is not None and run.files.train is not None
    assert run.files.train.key == "datasets/sciq-0123456789ab/train.jsonl"
    assert run.error is not None and run.error.openai_code == "invalid_file"
    assert run.system_prompt == "Answer."
    assert run.provider == "openai"  # ready for another provider; not stored while OpenAI is the only one
    assert json.dumps(run.recorded(), sort_keys=True) == json.dumps(read, sort_keys=True)  # values and types


def test_a_fresh_run_holds_only_what_was_written_and_unknown_fields_and_statuses_are_kept() -> None:
    item = {
        "run_id": "r-1",
        "entity": "run",
        "status": "some_new_status",
        "created_at": "t",
        "updated_at": "t",
        "status_changed_at": "t",
        "written_by_a_newer_version": {"x": 1},
    }
    run = Run.model_validate(item)

    assert run.status == "some_new_status" and not isinstance(run.status, RunStatus)
    assert run.events == [] and run.event_count == 0 and run.job_id is None and run.system_prompt is None
    assert run.recorded() == item


def test_one_vocabulary_with_its_finished_and_usable_sets() -> None:
    assert {"succeeded", "failed", "cancelled"} == JOB_FINISHED
    assert JOB_FINISHED | {"tracking_failed"} == FINISHED  # a run stops moving; tracking_failed is not a job's
    assert {"validating_files", "queued", "running", "paused", "succeeded"} == USABLE
    assert JOB_STATUSES == USABLE | JOB_FINISHED
    # `deploying` and `importing` are a run's, not a job's: a trained model being made ready (not finished)
    assert {"deploying", "importing"} == READYING_MODEL
    assert set(RunStatus) == JOB_STATUSES | {"preparing", "prepared", "starting", "tracking_failed"} | READYING_MODEL
    assert not READYING_MODEL & FINISHED


def test_every_openai_job_status_maps_onto_the_common_vocabulary_and_the_emulator_speaks_openais() -> None:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    documented = set(spec["components"]["schemas"]["FineTuningJob"]["properties"]["status"]["enum"])
    openai_statuses = documented | {"paused"}  # the spec's pause example answers it; its enum omits it

    assert {job_status(status) for status in openai_statuses} == JOB_STATUSES
    assert all(isinstance(job_status(status), RunStatus) for status in openai_statuses)
    assert job_status("some_new_status") == "some_new_status"  # recorded as given, and tracked on
    assert set(finetune.TERMINAL) == JOB_FINISHED
    assert set(finetune.ACTIVE) | {"paused", *finetune.TERMINAL} == openai_statuses


def test_a_record_written_before_provider_state_reads_its_provider_fields_into_it() -> None:
    """Today's runs tables hold items with the provider's fields at the top: they read as before."""
    older = {key: value for key, value in ITEM.items() if key != "provider_state"} | {
        "training_file_id": "file-1",
        "validation_file_id": "file-2",
    }
    bedrock = {**older, "provider": "bedrock", "deployment_arn": "arn:dep", "bedrock_request_token": "t"}

    run = Run.model_validate(_from_dynamodb(_to_dynamodb(older)))
    deployed = Run.model_validate(bedrock)

    assert run.provider_state == {"training_file_id": "file-1", "validation_file_id": "file-2"}
    assert "training_file_id" not in run.recorded() and run.recorded()["provider_state"] == run.provider_state
    assert deployed.deployment_arn == "arn:dep" and deployed.deleted_deployment_arn is None
    assert deployed.state("bedrock_request_token") == "t"


def test_run_detail_extends_run_summary_and_adds_only_what_a_summary_leaves_out() -> None:
    assert issubclass(RunDetail, RunSummary)
    summary_fields = {name: field.annotation for name, field in RunSummary.model_fields.items()}
    assert {name: RunDetail.model_fields[name].annotation for name in summary_fields} == summary_fields
    # Derived, not stored: the gate's token counts, the evaluation's status, signed links to the reports.
    derived = {"tokens", "evaluation_status", "report_urls", "weights_manifest_url"}
    provider_fields = {name for provider in PROVIDER_NAMES for name in spec(provider).state_fields()}
    assert set(RunDetail.model_fields) - set(summary_fields) <= set(Run.model_fields) | derived | provider_fields


def test_every_number_a_run_records_is_one_dynamodb_can_hold() -> None:
    """boto3 refuses (Inexact, Underflow, Overflow) numbers DynamoDB cannot hold exactly: never one of ours."""
    from boto3.dynamodb.types import TypeSerializer

    stored = _to_dynamodb(
        {"loss": 1e-300, "big": 1e200, "nan": float("nan"), "inf": float("-inf"), "rate": 0.1, "n": [3, 2.5, True]}
    )

    assert stored == {
        "loss": 0,
        "big": None,
        "nan": None,
        "inf": None,
        "rate": Decimal("0.1"),
        "n": [3, Decimal("2.5"), True],
    }
    TypeSerializer().serialize(stored)  # what a write does first: it raised decimal.Underflow on 1e-300 before
    with pytest.raises(ValueError, match="has more than the 38 digits a DynamoDB number holds"):
        _to_dynamodb({"max_examples": 10**45})
