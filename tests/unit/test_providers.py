"""The provider seam: one interface, two gateways, and only they speak to their providers."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore import xform_name
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from botocore.stub import Stubber

from shared.domain.config import RunConfig
from shared.domain.run_record import Run
from shared.domain.run_status import JOB_STATUSES, RunStatus
from shared.providers.base import (
    FineTuningProvider,
    ForeignJobError,
    ProviderRefusedError,
    ProviderTransientError,
    run_provider,
)
from shared.providers.bedrock.gateway import (
    BedrockEmptyAnswerError,
    BedrockGateway,
    BedrockRefusedError,
    BedrockTransientError,
    JobSnapshot,
    bedrock_hyperparameters,
    job_status,
)
from shared.providers.openai.gateway import OpenAIRefusedError, OpenAITransientError

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "ragtune-data-123456789012-us-east-1"
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/amazon.nova-micro-v1:0:128k/abc123def456"
DEPLOYMENT_ARN = "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/xyz"
SEAM = {
    "openai": "shared/providers/openai/gateway.py",
    "bedrock": "shared/providers/bedrock/gateway.py",
    "open": "shared/providers/open/gateway.py",
}


def _python_files() -> list[Path]:
    return sorted(path for folder in ("shared", "functions") for path in (ROOT / folder).rglob("*.py"))


def _operations(service: str) -> set[str]:
    session = botocore.session.get_session()
    return {xform_name(name) for name in session.get_service_model(service).operation_names}


# Bedrock's calls (boto3's method names) that no service this project uses otherwise also has.
OTHER_SERVICES = ("s3", "dynamodb", "stepfunctions", "sns", "sqs", "secretsmanager", "lambda", "iam", "sts")
BEDROCK_CALLS = (_operations("bedrock") | _operations("bedrock-runtime")) - set().union(
    *map(_operations, OTHER_SERVICES)
)
# SageMaker's ~400 operations share names with everyday methods (`search`, `list_tags`): its training jobs'.
SAGEMAKER_CALLS = {name for name in _operations("sagemaker") if "training_job" in name}


def _speaks(tree: ast.AST) -> set[str]:
    """Which providers a module speaks to: imports `openai`; makes a `bedrock`/`bedrock-runtime` (or `sagemaker`)
    client or calls one of their operations."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "openai" for alias in node.names):
            found.add("openai")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "openai" and not node.level:
            found.add("openai")
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            first = node.args[0] if node.args else None
            if (
                name.endswith("client")
                and isinstance(first, ast.Constant)
                and first.value in ("bedrock", "bedrock-runtime")
            ):
                found.add("bedrock")
            if isinstance(node.func, ast.Attribute) and name in BEDROCK_CALLS:
                found.add("bedrock")
            if isinstance(node.func, ast.Attribute) and name in SAGEMAKER_CALLS:
                found.add("sagemaker")
    return found


def test_only_the_gateways_import_openai_or_call_bedrock_or_sagemaker() -> None:
    speakers = {
        path.relative_to(ROOT).as_posix(): spoken
        for path in _python_files()
        if (spoken := _speaks(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert speakers == {
        SEAM["openai"]: {"openai"},
        SEAM["bedrock"]: {"bedrock"},
        SEAM["open"]: {"bedrock", "sagemaker"},
    }


def test_the_scan_would_catch_a_stray_caller() -> None:
    assert _speaks(ast.parse("import openai")) == {"openai"}
    assert _speaks(ast.parse("from openai import OpenAI")) == {"openai"}
    assert _speaks(ast.parse("boto3.client('bedrock-runtime')")) == {"bedrock"}
    assert _speaks(ast.parse("runtime.converse(modelId=m)")) == {"bedrock"}
    assert _speaks(ast.parse("x.create_model_customization_job(**r)")) == {"bedrock"}
    assert _speaks(ast.parse("x.create_training_job(**r)")) == {"sagemaker"}
    assert _speaks(ast.parse("provider = 'bedrock'; s3.put_object(Bucket=b)")) == set()
    assert _speaks(ast.parse("from shared.providers.openai.gateway import gateway")) == set()


def test_both_gateways_are_fine_tuning_providers() -> None:
    from shared.providers.openai.gateway import OpenAIGateway

    members = [name for name in dir(FineTuningProvider) if not name.startswith("_")]
    for gateway_class in (OpenAIGateway, BedrockGateway):
        for name in members:
            expected = getattr(FineTuningProvider, name)
            given = getattr(gateway_class, name, None)
            assert isinstance(given, property) if isinstance(expected, property) else callable(given), (
                gateway_class,
                name,
            )


def test_provider_errors_are_one_family_with_each_providers_name_and_code_field() -> None:
    assert issubclass(OpenAITransientError, ProviderTransientError)
    assert issubclass(BedrockTransientError, ProviderTransientError)
    assert issubclass(OpenAIRefusedError, ProviderRefusedError)
    assert issubclass(BedrockRefusedError, ProviderRefusedError)
    assert (OpenAIRefusedError.CODE_FIELD, BedrockRefusedError.CODE_FIELD) == ("openai_code", "bedrock_code")


def _run(**fields: Any) -> Run:
    return Run.model_validate({"run_id": "r-1", "status": "prepared", "created_at": "t", "updated_at": "t", **fields})


def test_a_run_names_its_provider_and_older_runs_are_openai() -> None:
    assert run_provider(_run()) == "openai"
    assert run_provider(_run(provider="bedrock")) == "bedrock"
    assert run_provider(_run(config={"provider": "bedrock"})) == "bedrock"
    assert run_provider(_run(provider="openai", config={"provider": "bedrock"})) == "openai"
    with pytest.raises(ValueError, match="provider 'vertex'"):
        run_provider(_run(provider="vertex"))


# Bedrock's gateway against botocore's own stubs ---------------------------------------------------


@pytest.fixture
def stubbed() -> Any:
    bedrock = boto3.client("bedrock", region_name="us-east-1")
    runtime = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(bedrock) as bedrock_stub, Stubber(runtime) as runtime_stub:
        gateway = BedrockGateway(
            bedrock, runtime, deployment=BUCKET, role_arn="arn:aws:iam::123456789012:role/ragtune-bedrock"
        )
        yield gateway, bedrock_stub, runtime_stub
        bedrock_stub.assert_no_pending_responses()
        runtime_stub.assert_no_pending_responses()


def _job(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "jobArn": JOB_ARN,
        "jobName": "r-1-0123abcd",
        "outputModelName": "r-1-0123abcd",
        "roleArn": "arn:aws:iam::123456789012:role/ragtune-bedrock",
        "baseModelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0:128k",
        "status": status,
        "creationTime": datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
        "trainingDataConfig": {"s3Uri": f"s3://{BUCKET}/datasets/r-1/train.jsonl"},
        "validationDataConfig": {"validators": []},
        "outputDataConfig": {"s3Uri": f"s3://{BUCKET}/outputs/r-1/"},
        "hyperParameters": {},
        **fields,
    }


@pytest.mark.parametrize(
    ("bedrock_status", "ours"),
    [
        ("InProgress", RunStatus.RUNNING),
        ("Stopping", RunStatus.RUNNING),
        ("Completed", RunStatus.SUCCEEDED),
        ("Failed", RunStatus.FAILED),
        ("Stopped", RunStatus.CANCELLED),
    ],
)
def test_each_bedrock_job_status_maps_onto_the_common_vocabulary(
    stubbed: Any, bedrock_status: str, ours: RunStatus
) -> None:
    gateway, bedrock, _ = stubbed
    bedrock.add_response("get_model_customization_job", _job(bedrock_status), {"jobIdentifier": JOB_ARN})
    job = gateway.retrieve_job(JOB_ARN, run_id="r-1")
    assert job.status == ours and ours in JOB_STATUSES
    assert job.terminal == (ours in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED))


def test_an_unknown_bedrock_status_is_kept_as_given_and_not_finished() -> None:
    assert job_status("Paused") == "Paused"


def test_a_failed_job_keeps_bedrocks_reason_and_says_who_failed_it(stubbed: Any) -> None:
    gateway, bedrock, _ = stubbed
    end = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    bedrock.add_response(
        "get_model_customization_job", _job("Failed", failureMessage="Reserved string User: found", endTime=end)
    )
    bedrock.add_response("get_model_customization_job", _job("Failed", endTime=end))
    fields = gateway.retrieve_job(JOB_ARN).run_fields()
    assert fields["error"] == {"code": "job_failed", "message": "Reserved string User: found"}
    assert fields["finished_at"] == int(end.timestamp())
    silent = gateway.retrieve_job(JOB_ARN).run_error()
    assert silent == {
        "code": "job_failed",
        "message": "Amazon Bedrock reported the fine-tuning job as failed without giving a reason.",
    }


def test_a_job_writing_to_another_run_or_deployment_is_never_tracked(stubbed: Any) -> None:
    gateway, bedrock, _ = stubbed
    bedrock.add_response("get_model_customization_job", _job("InProgress"))
    bedrock.add_response(
        "get_model_customization_job", _job("InProgress", outputDataConfig={"s3Uri": "s3://other/outputs/r-1/"})
    )
    with pytest.raises(ForeignJobError):
        gateway.retrieve_job(JOB_ARN, run_id="r-2")
    with pytest.raises(ForeignJobError):
        gateway.retrieve_job(JOB_ARN, run_id="r-1")


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", 429, BedrockTransientError),
        ("ServiceUnavailableException", 503, BedrockTransientError),
        ("InternalServerException", 500, BedrockTransientError),
        ("AccessDeniedException", 403, BedrockRefusedError),
        ("ValidationException", 400, BedrockRefusedError),
        ("ServiceQuotaExceededException", 400, BedrockRefusedError),
        ("ResourceNotFoundException", 404, BedrockRefusedError),
    ],
)
def test_bedrock_errors_are_transient_or_refused_with_bedrocks_message_and_code(
    stubbed: Any, code: str, status: int, kind: type[Exception]
) -> None:
    gateway, bedrock, _ = stubbed
    bedrock.add_client_error(
        "stop_model_customization_job",
        service_error_code=code,
        service_message="Bedrock says no",
        http_status_code=status,
    )
    with pytest.raises(kind) as raised:
        gateway.cancel_job(JOB_ARN)
    assert raised.value.code == code  # type: ignore[attr-defined]
    if kind is BedrockRefusedError:
        assert f"({code}): Bedrock says no" in str(raised.value)


@pytest.mark.parametrize("error", [ConnectTimeoutError(endpoint_url="x"), ReadTimeoutError(endpoint_url="x")])
def test_timeouts_are_transient(error: Exception) -> None:
    class Failing:
        def get_model_customization_job(self, **_: Any) -> None:
            raise error

    gateway = BedrockGateway(Failing(), None, deployment=BUCKET, role_arn=None)
    with pytest.raises(BedrockTransientError) as raised:
        gateway.retrieve_job(JOB_ARN)
    assert raised.value.code is None


def test_cancel_stops_the_job_and_reads_it_back(stubbed: Any) -> None:
    gateway, bedrock, _ = stubbed
    bedrock.add_response("stop_model_customization_job", {}, {"jobIdentifier": JOB_ARN})
    bedrock.add_response("get_model_customization_job", _job("Stopping"), {"jobIdentifier": JOB_ARN})
    assert gateway.cancel_job(JOB_ARN).status == RunStatus.RUNNING


def test_the_job_reports_its_training_loss_and_no_events(stubbed: Any) -> None:
    gateway, bedrock, _ = stubbed
    # Before the job completes, its metrics file is not read (it is written at the end)
    bedrock.add_response("get_model_customization_job", _job("InProgress", trainingMetrics={"trainingLoss": 0.25}))
    assert gateway.latest_metrics(JOB_ARN) == {"train_loss": 0.25}
    assert gateway.events_since(JOB_ARN, None) == []


def test_a_deployment_is_created_idempotently_and_read_back(stubbed: Any) -> None:
    gateway, bedrock, _ = stubbed
    model_arn = "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.nova-micro-v1:0:128k/m1"
    for _ in range(2):
        bedrock.add_response("create_custom_model_deployment", {"customModelDeploymentArn": DEPLOYMENT_ARN})
    bedrock.add_response(
        "get_custom_model_deployment",
        {
            "customModelDeploymentArn": DEPLOYMENT_ARN,
            "modelDeploymentName": "r-1-x",
            "modelArn": model_arn,
            "createdAt": datetime(2026, 11, 28, tzinfo=UTC),
            "status": "Failed",
            "failureMessage": "capacity",
        },
        {"customModelDeploymentIdentifier": DEPLOYMENT_ARN},
    )
    sent: list[dict[str, Any]] = []
    bedrock.client.meta.events.register(
        "provide-client-params.bedrock.CreateCustomModelDeployment", lambda params, **_: sent.append(dict(params))
    )
    assert gateway.create_deployment("r-1", model_arn) == gateway.create_deployment("r-1", model_arn) == DEPLOYMENT_ARN
    assert sent[0] == sent[1] and sent[0]["clientRequestToken"] and sent[0]["modelArn"] == model_arn
    assert gateway.deployment_status(DEPLOYMENT_ARN) == ("Failed", "capacity")


def test_converse_answers_in_the_common_shape(stubbed: Any) -> None:
    gateway, _, runtime = stubbed
    runtime.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "Coriolis effect"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15},
            "metrics": {"latencyMs": 5},
        },
        {
            "modelId": DEPLOYMENT_ARN,
            "system": [{"text": "Be brief."}],
            "messages": [{"role": "user", "content": [{"text": "What?"}]}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.0},
        },
    )
    answer = gateway.answer(DEPLOYMENT_ARN, "Be brief.", "What?", 0.0, 50)
    assert (answer.text, answer.refusal, answer.model) == ("Coriolis effect", None, DEPLOYMENT_ARN)
    assert answer.usage == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def test_converse_without_text_and_converse_throttled(stubbed: Any) -> None:
    gateway, _, runtime = stubbed
    runtime.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": []}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1, "outputTokens": 0, "totalTokens": 1},
            "metrics": {"latencyMs": 5},
        },
    )
    runtime.add_client_error("converse", service_error_code="ThrottlingException", http_status_code=429)
    with pytest.raises(BedrockEmptyAnswerError):
        gateway.answer(DEPLOYMENT_ARN, None, "What?", 0.0, 50)
    with pytest.raises(BedrockTransientError):
        gateway.answer(DEPLOYMENT_ARN, None, "What?", 0.0, 50)


def test_names_fit_bedrocks_rules_and_tokens_are_deterministic() -> None:
    gateway = BedrockGateway(None, None, deployment=BUCKET, role_arn=None)
    run_id = "a" * 40 + "-0123456789ab"
    token = gateway.request_token(run_id, "v1", "etag")
    assert token == gateway.request_token(run_id, "v1", "etag") != gateway.request_token(run_id, "v2", "etag")
    assert token != BedrockGateway(None, None, deployment="other", role_arn=None).request_token(run_id, "v1", "etag")
    name = gateway.custom_model_name(run_id, "my__suffix-that-is-long-enough-to-overflow", token)
    assert len(name) <= 63 and "__" not in name and name.endswith(token[:8])
    assert len(gateway.job_name(run_id, token)) <= 63
    # A long run id gives way to the suffix, which the config promises in the name
    long_run = "x" * 40 + "-0409261fc37d"
    assert gateway.custom_model_name(long_run, "prod_v2", token) == f"{long_run[:46]}-prod_v2-{token[:8]}"
    assert gateway.custom_model_name("sciq-0123456789ab", "sciq", token) == f"sciq-0123456789ab-sciq-{token[:8]}"
    assert gateway.custom_model_name("sciq-0123456789ab", None, token) == f"sciq-0123456789ab-{token[:8]}"
    assert len(gateway.custom_model_name(long_run, "s" * 64, token)) == 63


def test_hyperparameters_go_to_bedrock_as_strings_and_auto_is_left_out() -> None:
    config = RunConfig.model_validate({"dataset": {"source": "allenai/sciq"}, "provider": "bedrock"})
    assert bedrock_hyperparameters(config) == {}
    config = RunConfig.model_validate(
        {
            "dataset": {"source": "allenai/sciq"},
            "provider": "bedrock",
            "fine_tune": {"hyperparameters": {"n_epochs": 3}},
        }
    )
    hyperparameters = bedrock_hyperparameters(config)
    assert hyperparameters["epochCount"] == "3"
    assert all(isinstance(value, str) for value in hyperparameters.values())


def test_a_snapshot_of_a_new_job_has_no_model_yet() -> None:
    job = JobSnapshot.of(_job("InProgress"))
    assert job.fine_tuned_model is None and job.run_fields()["job_id"] == JOB_ARN
