"""What several test modules use: the emulated account's handles, events, SciQ-shaped rows, runs.

Imported by tests/conftest.py after it has set the test environment, and by test modules; test
modules import from here, never from conftest or from each other.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

EVENTS_DIR = Path(__file__).resolve().parent.parent / "infra" / "events"
# A stand-in key: it must never appear in a log line (tests assert that).
TEST_OPENAI_KEY = "sk-ragtune-test-key"
CONFIG_KEY = "configs/sciq-sample.json"
# The set_env fixture: set_env(NAME="value", ...) sets variables for one test and re-reads the settings.
SetEnv = Callable[..., None]


@functools.cache
def _table(name: str) -> Any:
    """The tests' own view of a table, made once (as the setup clients: every test's mock answers it)."""
    return boto3.resource("dynamodb").Table(name)


@dataclass
class Aws:
    """Handles on the emulated account, named as the functions' environment names them."""

    s3: Any
    dynamodb: Any
    bucket: str
    runs_table: str

    def put_config(self, key: str, config: dict[str, Any] | bytes) -> str | None:
        body = config if isinstance(config, bytes) else json.dumps(config).encode()
        version: str | None = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body).get("VersionId")
        return version

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
        from shared.aws.runs import _from_dynamodb

        items: list[dict[str, Any]] = _from_dynamodb(_table(self.runs_table).scan()["Items"])
        return items


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
    sciq_row(
        0,
        question='What does "Coriolis" mean — in Zürich?',
        support="Named after Gaspard-Gustave de Coriolis; 日本語 too.",
    ),
    sciq_row(1, support="Line one\nline two\twith a tab and a backslash \\ ."),
    sciq_row(2, support=""),
    sciq_row(3, correct_answer="", support="no answer"),
]


def hub_folder_whose_card_names(folder: Path, data_file: Path) -> Path:
    """A dataset repository laid out as on the Hub (served from `folder`, as there is no network) whose card's
    data_files is `data_file`, an absolute path outside it, beside a CSV of its own."""
    folder.mkdir(parents=True)
    (folder / "rows.csv").write_text("question,support,correct_answer\nq,s,a\n", encoding="utf-8")
    card = f'---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: "{data_file}"\n---\n'
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def prepare_run(aws_account: Aws, context: Any, tmp_path: Path, **config: Any) -> dict[str, Any]:
    """A config of 40 SciQ rows under CONFIG_KEY, prepared by the real handler; returns its run."""
    from functions.prepare.app import lambda_handler as prepare_handler  # datasets: only where needed

    data = write_jsonl(tmp_path / "rows.jsonl", [sciq_row(i) for i in range(40)])
    aws_account.put_config(CONFIG_KEY, {"dataset": {"source": aws_account.put_data(data)}, **config})
    [outcome] = prepare_handler(load_event("prepare-config-created.json"), context)["runs"]
    assert outcome["status"] == "prepared"
    [run] = [item for item in aws_account.runs() if item["run_id"] == outcome["run_id"]]
    return run


def trained_to_the_end(aws_account: Aws, context: Any, tmp_path: Path, **config: Any) -> dict[str, Any]:
    """A run of 40 SciQ rows prepared, started and polled until its job finished, by the real handlers (the
    provider's emulator finishes jobs at once); the run as recorded."""
    from functions.poll_job.app import lambda_handler as poll_handler
    from functions.start_job.app import lambda_handler as start_handler

    run = prepare_run(aws_account, context, tmp_path, **config)
    start_handler(training_event(run["run_id"]), context)
    [started] = [item for item in aws_account.runs() if item["run_id"] == run["run_id"]]
    state = load_event("poll-job.json") | {"run_id": run["run_id"], "job_id": started["job_id"]}
    for _ in range(10):
        if poll_handler(state, context)["status"] in ("succeeded", "failed", "cancelled"):
            break
    [finished] = [item for item in aws_account.runs() if item["run_id"] == run["run_id"]]
    return finished


def ask_question(context: Any, **body: Any) -> tuple[int, dict[str, Any]]:
    """POST /ask through the real AskFunction handler: its status and JSON body."""
    from functions.ask.app import lambda_handler as ask_handler

    event = load_event("ask-question.json")
    event["body"] = json.dumps(body)
    response = ask_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def api_call(method: str, path: str, context: Any) -> tuple[int, dict[str, Any]]:
    """`method` `path` (a /runs/{run_id}... route, with a query string or not) through the real AskFunction handler:
    its status and JSON body."""
    from urllib.parse import parse_qs

    from functions.ask.app import lambda_handler as ask_handler

    path, _, query = path.partition("?")
    run_id = path.split("/")[2]
    parameters = parse_qs(query)
    event = load_event("ask-get-run.json") | {
        "httpMethod": method,
        "path": path,
        "resource": path.replace(run_id, "{run_id}", 1),
        "pathParameters": {"run_id": run_id},
        "queryStringParameters": {name: values[-1] for name, values in parameters.items()} or None,
        "multiValueQueryStringParameters": parameters or None,
    }
    response = ask_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def training_event(run_id: str) -> dict[str, Any]:
    """The S3 event of the run's train.jsonl arriving, which triggers StartJobFunction."""
    event = load_event("start-job-training-file-created.json")
    event["Records"][0]["s3"]["object"]["key"] = f"datasets/{run_id}/train.jsonl"
    return event


def executions() -> list[dict[str, Any]]:
    """Every execution of the tracking state machine, described."""
    sfn = boto3.client("stepfunctions")
    arn = os.environ["STATE_MACHINE_ARN"]
    return [
        sfn.describe_execution(executionArn=e["executionArn"])
        for e in sfn.list_executions(stateMachineArn=arn)["executions"]
    ]


def finished_execution(run_id: str, timeout: float = 60, generation: int = 0) -> dict[str, Any]:
    """The run's tracking execution once it has stopped running, and the evaluation it started (its own execution,
    not waited for by the tracker) once that has stopped too: the pipeline's work is then all done."""
    from shared.aws.runs import RunsRepository
    from shared.aws.tracking import execution_arn
    from shared.settings import settings

    sfn = boto3.client("stepfunctions")
    run = RunsRepository(settings().runs_table).get(run_id)
    assert run is not None
    arn = execution_arn(run_id, str(run.job_id), generation)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if execution["status"] != "RUNNING":
            finished_evaluations(run_id, timeout=max(1.0, deadline - time.monotonic()))
            return execution
        time.sleep(0.05)
    raise AssertionError(f"execution {arn} still running after {timeout} s")


def finished_evaluations(run_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The run's evaluation executions (the tracker starts one for a succeeded run, the API one per request),
    once none of them is running; oldest first."""
    sfn = boto3.client("stepfunctions")
    machine = os.environ["EVALUATION_STATE_MACHINE_ARN"]
    deadline = time.monotonic() + timeout
    while True:
        listed = sfn.list_executions(stateMachineArn=machine)["executions"]
        described = [sfn.describe_execution(executionArn=execution["executionArn"]) for execution in listed]
        ours = [execution for execution in described if json.loads(execution["input"]).get("run_id") == run_id]
        if all(execution["status"] != "RUNNING" for execution in ours):
            return sorted(ours, key=lambda execution: execution["startDate"])
        if time.monotonic() > deadline:
            raise AssertionError(f"an evaluation of run {run_id} still running after {timeout} s")
        time.sleep(0.05)


def history_states(execution_arn: str) -> list[str]:
    """The states an execution entered, in order."""
    events = boto3.client("stepfunctions").get_execution_history(executionArn=execution_arn)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def fail_the_base_arm(monkeypatch: Any) -> None:
    """The evaluation's `base` arm dies as a sandbox running out of memory would; every other arm answers."""
    from shared.pipeline import evaluate_run

    ask_all = evaluate_run._ask_all

    def failing_on_base(arm: Any, *args: Any) -> Any:
        if arm.name == "base":
            raise RuntimeError("the sandbox ran out of memory")
        return ask_all(arm, *args)

    monkeypatch.setattr(evaluate_run, "_ask_all", failing_on_base)


def evaluate_in_order(request: Any) -> dict[str, Any]:
    """The evaluation state machine's steps run one after another in this process, as its definition orders them:
    Plan; every chunk of the Map; Merge, or on a failure RecordFailure (the merge with the failure) and the error
    raised. For the use case's own tests; tests/integration/test_evaluation_state_machine.py runs the definition."""
    from shared.aws.runs import RunsRepository
    from shared.pipeline.evaluate_run import (
        ChunkRequest,
        ClaimedEvaluation,
        ask_chunk,
        merge_evaluation,
        plan_evaluation,
    )
    from shared.settings import settings

    plan = plan_evaluation(request)
    if plan["outcome"] != "evaluate":
        run = RunsRepository(settings().runs_table).get(request.run_id)
        return dict((run.evaluation if run else None) or {})
    claim = {"run_id": plan["run_id"], "token": plan["token"], "compare_with": plan["compare_with"]}
    claimed = ClaimedEvaluation(**claim, chunks=plan["chunks"])
    try:
        for chunk in plan["chunks"]:
            ask_chunk(ChunkRequest(**claim, **chunk))
        return merge_evaluation(claimed)
    except Exception as error:
        failure = {
            "Error": type(error).__name__,
            "Cause": json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}),
        }
        merge_evaluation(claimed.model_copy(update={"failure": failure}))
        raise
