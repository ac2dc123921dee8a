"""Shared fixtures: a moto AWS built from template.yaml, a Lambda context, SciQ-shaped data."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

_SCRATCH = Path(tempfile.mkdtemp(prefix="ragtune-tests-"))
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "ragtune",
        "POWERTOOLS_METRICS_NAMESPACE": "Ragtune",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "HF_HOME": str(_SCRATCH / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TIKTOKEN_CACHE_DIR": str(_SCRATCH / "tiktoken"),
        "SCRATCH_DIR": str(_SCRATCH / "work"),
        "DATA_BUCKET": "ragtune-data-123456789012-us-east-1",
        "RUNS_TABLE": "ragtune-runs",
        "IDEMPOTENCY_TABLE": "ragtune-idempotency",
        "TRAINING_PRICE_PER_MILLION_TOKENS": "3.00",
        "OPENAI_API_KEY_SECRET": "ragtune/openai-api-key",
        "OPENAI_MAX_RETRIES": "2",
        "OPENAI_TIMEOUT_SECONDS": "5",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:ragtune-job-tracker",
        "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:ragtune-run-notifications",
        "POLL_INTERVAL_SECONDS": "0",
    }
)

from moto import mock_aws  # noqa: E402  (after the fake credentials are in place)

from local.lambda_runtime import LambdaContext, in_process_lambdas  # noqa: E402
from local.moto_fidelity import make_dynamodb_writes_atomic  # noqa: E402
from local.openai_emulator import OpenAIEmulator  # noqa: E402
from local.template import (  # noqa: E402
    create_bucket,
    create_table,
    function_handler,
    state_machine_definition,
)
from shared import aws, openai_gateway  # noqa: E402
from shared.settings import settings  # noqa: E402

EVENTS_DIR = Path(__file__).resolve().parent.parent / "infra" / "events"
make_dynamodb_writes_atomic()
# A stand-in key: it must never appear in a log line (tests assert that).
TEST_OPENAI_KEY = "sk-ragtune-test-key"


@dataclass
class Aws:
    """Handles on the emulated account, named as the functions' environment names them."""

    s3: Any
    dynamodb: Any
    bucket: str
    runs_table: str

    def put_config(self, key: str, config: dict[str, Any] | bytes) -> str | None:
        body = config if isinstance(config, bytes) else json.dumps(config).encode()
        return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body).get("VersionId")

    def put_data(self, data: Path | bytes, name: str | None = None) -> str:
        """A dataset under `data/`, where a config's dataset.source may point; returns that s3:// URI."""
        if name is None:
            assert isinstance(data, Path), "name the object when uploading bytes"
            name = data.name
        body = data if isinstance(data, bytes) else data.read_bytes()
        self.s3.put_object(Bucket=self.bucket, Key=f"data/{name}", Body=body)
        return f"s3://{self.bucket}/data/{name}"

    def keys(self, prefix: str) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def read(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def versions(self, key: str) -> int:
        listing = self.s3.list_object_versions(Bucket=self.bucket, Prefix=key)
        return len([v for v in listing.get("Versions", []) if v["Key"] == key])

    def runs(self) -> list[dict[str, Any]]:
        from shared.runs import _from_dynamodb

        table = boto3.resource("dynamodb").Table(self.runs_table)
        items: list[dict[str, Any]] = _from_dynamodb(table.scan()["Items"])
        return items


def _create_poll_function_and_state_machine() -> None:
    """PollJobFunction in moto's Lambda and the real state machine definition wired to it."""
    role_arn = boto3.client("iam").create_role(
        RoleName="ragtune-test", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )["Role"]["Arn"]
    function_arn = boto3.client("lambda").create_function(
        FunctionName="ragtune-poll-job", Runtime="python3.12", Role=role_arn,
        Handler=function_handler("PollJobFunction"), Code={"ZipFile": b"in-process"}, Timeout=60,
    )["FunctionArn"]
    boto3.client("stepfunctions").create_state_machine(
        name=os.environ["STATE_MACHINE_ARN"].rsplit(":", 1)[1],
        definition=state_machine_definition("JobStateMachine", {"PollJobFunctionArn": function_arn}),
        roleArn=role_arn,
    )


@contextmanager
def _emulated_aws(config: dict[str, Any] | None = None) -> Iterator[Aws]:
    settings.cache_clear()
    aws.client.cache_clear()
    aws.dynamodb_table.cache_clear()
    openai_gateway._secrets.cache_clear()
    with mock_aws(config=config):  # type: ignore[arg-type]
        s3 = boto3.client("s3")
        dynamodb = boto3.client("dynamodb")
        boto3.client("secretsmanager").create_secret(
            Name=os.environ["OPENAI_API_KEY_SECRET"], SecretString=TEST_OPENAI_KEY
        )
        boto3.client("sns").create_topic(Name="ragtune-run-notifications")
        create_bucket(s3, "DataBucket", os.environ["DATA_BUCKET"])
        create_table(dynamodb, "RunsTable", os.environ["RUNS_TABLE"])
        create_table(dynamodb, "IdempotencyTable", os.environ["IDEMPOTENCY_TABLE"])
        _create_poll_function_and_state_machine()
        yield Aws(s3, dynamodb, os.environ["DATA_BUCKET"], os.environ["RUNS_TABLE"])


@pytest.fixture
def aws_account() -> Iterator[Aws]:
    """Executions are recorded by Step Functions but do not run."""
    with _emulated_aws() as account:
        yield account


@pytest.fixture
def aws_account_executing() -> Iterator[Aws]:
    """Step Functions really executes the definition; its Lambda tasks run our handlers in-process."""
    with _emulated_aws({"stepfunctions": {"execute_state_machine": True}}) as account, in_process_lambdas():
        yield account


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIEmulator]:
    """The OpenAI emulator on a loopback port, with the SDK pointed at it; jobs finish at once."""
    with OpenAIEmulator(phase_seconds=0.0) as running:
        monkeypatch.setenv("OPENAI_BASE_URL", running.base_url)
        yield running


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(function_name="ragtune-test", memory_limit_in_mb=2048, timeout_seconds=300)


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    return event


SCIQ_COLUMNS = ("question", "distractor3", "distractor1", "distractor2", "correct_answer", "support")


def sciq_row(index: int, **overrides: str) -> dict[str, str]:
    row = {
        "question": f"Question {index}: what is measured in joules?",
        "distractor3": "mass",
        "distractor1": "speed",
        "distractor2": "time",
        "correct_answer": f"energy {index}",
        "support": f"Energy {index} is measured in joules.",
    }
    row.update(overrides)
    return row


# Rows that exercise the writer: non-ASCII, quotes, newlines, an empty support (dropped).
TRICKY_ROWS = [
    sciq_row(0, question='What does "Coriolis" mean — in Zürich?',
             support="Named after Gaspard-Gustave de Coriolis; 日本語 too."),
    sciq_row(1, support="Line one\nline two\twith a tab and a backslash \\ ."),
    sciq_row(2, support=""),
    sciq_row(3, correct_answer="", support="no answer"),
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


@pytest.fixture
def sciq_file(tmp_path: Path) -> Path:
    """12 usable rows + the tricky ones: 14 read, 2 dropped, 14 - 2 = 12 kept."""
    rows = TRICKY_ROWS[:2] + [sciq_row(i) for i in range(4, 14)] + TRICKY_ROWS[2:]
    return write_jsonl(tmp_path / "sciq.jsonl", rows)


@pytest.fixture
def log_stream() -> Iterator[Any]:
    """The JSON lines the shared Powertools Logger writes during a test."""
    import io

    from shared.observability import logger

    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
