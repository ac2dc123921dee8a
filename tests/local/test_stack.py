"""The local stack as users run it: `python -m local demo` and `python -m local serve` in a subprocess."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from local.bedrock_emulator import BedrockEmulator
from local.openai_emulator import OpenAIEmulator
from shared.aws.tracking import execution_name

from .serving import ROOT, start_serve, user_environment

SAMPLE = ROOT / "local" / "sample"


DEMO_OUTPUT = Path(tempfile.mkdtemp(prefix="ragtune-demo-output-"))  # where the demos leave their reports


def demo(*arguments: str, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m local demo` as a user runs it (their shell, or `environment`), within two minutes; one that
    hangs is stopped with SIGABRT, so the failure shows what every thread was doing (the user environment turns
    Python's faulthandler on)."""
    command = [sys.executable, "-m", "local", "demo", "--output", str(DEMO_OUTPUT), *arguments]
    with subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment or user_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            stdout, stderr = process.communicate(timeout=30)
            threads = f"its threads (faulthandler):\n{stderr}"
            raise AssertionError(f"the demo hung for 120 s; it printed:\n{stdout}\n{threads}") from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_demo_prints_the_tuned_answer_and_exits_zero() -> None:
    started = time.monotonic()
    result = demo()
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.strip().startswith("prepared: 32 rows read, 31 kept") for line in lines)
    assert any("succeeded: model ft:gpt-4o-mini-2024-07-18:emulator:sciq-demo:" in line for line in lines)
    assert lines[1].startswith("OpenAI: the in-process emulator at http://127.0.0.1:")
    # The estimate is what the emulator trains: same `auto` epochs rule (the cookbook's floor) and token counting.
    [prepared] = [line.strip() for line in lines if line.strip().startswith("prepared:")]
    [succeeded] = [line.strip() for line in lines if line.strip().startswith("succeeded:")]
    billed, epochs, trained = (
        int(n.replace(",", ""))
        for n in re.search(  # type: ignore[union-attr]
            r"([\d,]+) billed tokens per epoch; estimated (\d+) epochs = ([\d,]+) trained tokens", prepared
        ).groups()
    )
    assert (epochs, trained) == (4, billed * 4)  # 23 training examples (8 of 31 held out): 100 // 23 = 4 epochs
    assert succeeded.endswith(f"{trained:,} trained tokens ({epochs} epochs × {billed:,}), as estimated")
    [answer] = [line for line in lines if line.startswith("answer (the OpenAI emulator")]
    assert answer.split("): ", 1)[1].startswith("Coriolis effect Explanation: Without Coriolis Effect")
    # The evaluation table: each arm's accuracy, Wilson interval, prompt tokens and cost per 1,000 questions.
    table = lines.index("evaluation on 8 held-out questions (match: start):")
    assert lines[table + 1].split() == [
        "arm",
        "accuracy",
        "95%",
        "interval",
        "prompt",
        "tokens",
        "cost",
        "/",
        "1k",
        "questions",
        "note",
    ]
    # The note: when OpenAI shuts the models down (its announced date while it is ahead, as a user sees it).
    arms = [
        re.fullmatch(
            r"  (\w+) +(\d+\.\d%) +\[(\d+\.\d%), (\d+\.\d%)\] +(\d+\.\d) +\$(\d+\.\d{4})"
            r"  shuts down on (\S+) \(\d+ days?\)",
            line,
        )
        for line in lines[table + 2 : table + 5]
    ]
    assert {arm.group(7) for arm in arms if arm} <= {"2027-01-14", "2999-12-31"}
    assert [arm.group(1) for arm in arms if arm] == ["tuned", "base", "base_with_context"]
    # The reports outlive the demo's stack: copied to the output folder, the chart a real PNG.
    curve = Path(lines[table + 5].removeprefix("loss curve: ").split(" (")[0])
    assert curve.parent.parent == DEMO_OUTPUT and curve.name == "loss.png"
    assert curve.read_bytes().startswith(b"\x89PNG") and (curve.parent / "metrics.csv").exists()
    assert lines[table + 5].endswith("(and evaluation.jsonl, metrics.csv beside it)")
    assert elapsed < 60


def test_the_migration_demo_compares_the_old_model_before_and_after_its_shutdown_from_its_recording() -> None:
    """`make demo-migration`: adopt, a Bedrock successor on the same questions, the comparison twice."""
    result = demo("--migration")

    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    [adopted] = [line.strip() for line in lines if line.strip().startswith("succeeded: adopted model")]
    assert adopted.startswith("succeeded: adopted model ft:gpt-4o-mini-2024-07-18:notebook-org::sciq0001 (nothing")
    assert re.search(r"shuts down on (2027-01-14|2999-12-31) \(\d+ days?\)$", adopted), adopted
    old_id = re.search(r'"questions_from": "([a-z0-9-]+)"', result.stdout).group(1)  # type: ignore[union-attr]
    old_rows = [line for line in lines if line.startswith(f"  {old_id} ")]
    assert len(old_rows) == 2  # the comparison before the shutdown, and after it
    before, after = (re.split(r" {2,}", row.strip()) for row in old_rows)
    assert before[1:5] == after[1:5] == ["100.0%", "[67.6%, 100.0%]", "45.4", "$0.0621"]
    assert re.fullmatch(
        r"recorded 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC \(model gone\): answered 8 of 8 questions", after[5]
    )
    assert "POST /ask on the old run: 410 model_gone" in lines
    assert lines[-2].startswith("the old arm is the same after the shutdown")
    assert lines[-1].startswith("demo finished in ")


def test_the_own_data_demo_of_the_readme_runs_a_config_that_holds_no_questions_out() -> None:
    result = demo(
        *("--data", "examples/data/manual.jsonl", "--config", "examples/jsonl-other-columns.json"),
        *("--question", "How do I descale the machine?"),
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "evaluation: none, the config holds no questions out (set validation_fraction above 0 for one)" in lines
    [answer] = [line for line in lines if line.startswith("answer (")]
    assert "descale" in answer
    assert any(line.startswith(f"loss curve: {DEMO_OUTPUT}/demo-") for line in lines)


def test_the_bedrock_demo_answers_from_a_deployment_and_exits_zero() -> None:
    """`make demo PROVIDER=bedrock`: the same sample through the Bedrock emulator, asked through its deployment."""
    result = demo("--provider", "bedrock")

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[1].startswith("OpenAI: the in-process emulator at http://127.0.0.1:")
    assert lines[2].startswith("Bedrock: the in-process emulator at http://127.0.0.1:")
    assert any(line.strip().startswith("prepared: 32 rows read, 31 kept") for line in lines)
    assert any(line.strip().startswith("deploying: the custom model of job arn:aws:bedrock:") for line in lines)
    [answer] = [line for line in lines if line.startswith("answer (the Bedrock emulator")]
    assert answer.split("): ", 1)[1].startswith("Coriolis effect Explanation: Without Coriolis Effect")
    [model] = [line for line in lines if line.startswith("model: ")]
    assert re.fullmatch(r"model: arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/\S+", model)


def test_with_a_key_and_a_base_url_the_stack_calls_that_base_url() -> None:
    """OPENAI_BASE_URL is honoured beside OPENAI_API_KEY (it used to be overwritten with api.openai.com)."""
    with OpenAIEmulator(phase_seconds=0.2) as elsewhere:
        environment = {
            **user_environment(),
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_BASE_URL": elsewhere.base_url,
        }
        result = demo("--poll-interval", "1", environment=environment)
        requests_seen = {(r.method, r.route) for r in elsewhere.requests}

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"OpenAI: {elsewhere.base_url} (from OPENAI_BASE_URL), with OPENAI_API_KEY" in result.stdout.splitlines()
    assert {("POST", "/files"), ("POST", "/fine_tuning/jobs"), ("POST", "/chat/completions")} <= requests_seen
    [answer] = [line for line in result.stdout.splitlines() if line.startswith("answer (")]
    assert answer.startswith(f"answer ({elsewhere.base_url}): Coriolis effect Explanation:")


def test_demo_exits_non_zero_with_the_reason_when_the_run_fails(tmp_path: Path) -> None:
    config = tmp_path / "typo.json"
    config.write_text(
        json.dumps(
            {"dataset": {"source": "s3://ragtune-data-123456789012-us-east-1/data/x.jsonl"}, "validaton_fraction": 0.1}
        ),
        encoding="utf-8",
    )
    result = demo("--config", str(config))

    assert result.returncode == 1
    assert "demo failed: the run ended failed: config is invalid: validaton_fraction: unknown key" in result.stderr


@dataclass
class Served:
    s3_endpoint: str
    bucket: str
    api_url: str
    api_key: str
    bedrock_endpoint_url: str = ""

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"x-api-key": self.api_key, **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.api_url}{path}", headers=headers, timeout=30, **kwargs)

    def run_for(self, config_key: str, timeout: float = 60) -> dict[str, Any]:
        """Polls GET /runs like a user would, until the run for `config_key` has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = [r for r in self.api("GET", "/runs").json()["runs"] if r["config_key"] == config_key]
            if runs and runs[0]["status"] in {"succeeded", "failed", "cancelled", "tracking_failed"}:
                detail: dict[str, Any] = self.api("GET", f"/runs/{runs[0]['run_id']}").json()
                return detail
            time.sleep(0.2)
        raise AssertionError(f"no finished run for {config_key}")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Served, subprocess.Popen[str]]]:
    serving = start_serve()
    assert serving.printed["openai_base_url"].startswith("http://127.0.0.1:")  # the emulator's
    assert serving.printed["bedrock_endpoint_url"].startswith("http://127.0.0.1:")  # the Bedrock emulator's
    fields = ("s3_endpoint", "bucket", "api_url", "api_key", "bedrock_endpoint_url")
    yield Served(**{name: serving.printed[name] for name in fields}), serving.process
    serving.kill()


def test_serve_mode_runs_a_config_dropped_with_boto3_and_answers_over_http(
    served: tuple[Served, subprocess.Popen[str]],
) -> None:
    stack, _ = served
    s3 = stack.client("s3")
    s3.upload_file(str(SAMPLE / "sciq-sample.jsonl"), stack.bucket, "data/sciq-sample.jsonl")
    s3.upload_file(str(SAMPLE / "demo-config.json"), stack.bucket, "configs/served run.json")

    run = stack.run_for("configs/served run.json")
    answer = stack.api("POST", "/ask", json={"question": "What is the outermost layer of the Earth called?"})

    assert run["status"] == "succeeded", run
    assert answer.status_code == 200
    assert answer.json()["answer"].startswith("crust Explanation: The crust is Earth's thin")
    assert answer.json()["run_id"] == run["run_id"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="datasets/")["Contents"]]
    assert keys == [
        f"datasets/{run['run_id']}/{name}" for name in ("questions.jsonl", "train.jsonl", "validation.jsonl")
    ]


def _bedrock_config() -> Path:
    assert json.loads((SAMPLE / "demo-config-bedrock.json").read_text(encoding="utf-8"))["provider"] == "bedrock"
    return SAMPLE / "demo-config-bedrock.json"


def _wait_for(condition: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_mode_sends_a_bedrock_config_to_the_bedrock_emulator_and_an_openai_one_to_openai(
    served: tuple[Served, subprocess.Popen[str]],
) -> None:
    """One stack takes both providers at once: each config's job lands at its own emulator."""
    stack, _ = served
    s3 = stack.client("s3")
    s3.upload_file(str(SAMPLE / "sciq-sample.jsonl"), stack.bucket, "data/sciq-sample.jsonl")
    s3.upload_file(str(_bedrock_config()), stack.bucket, "configs/nova.json")
    s3.upload_file(str(SAMPLE / "demo-config.json"), stack.bucket, "configs/gpt.json")
    bedrock = boto3.client(
        "bedrock",
        endpoint_url=stack.bedrock_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="any",
        aws_secret_access_key="any",
    )

    openai_run = stack.run_for("configs/gpt.json")
    [summary] = _wait_for(
        lambda: bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"], "a Bedrock job"
    )
    job = bedrock.get_model_customization_job(jobIdentifier=summary["jobArn"])
    [nova_run] = [r for r in stack.api("GET", "/runs").json()["runs"] if r["config_key"] == "configs/nova.json"]

    assert openai_run["status"] == "succeeded" and openai_run["fine_tuned_model"].startswith("ft:gpt-4o-mini")
    run_id = nova_run["run_id"]
    assert "amazon.nova-micro-v1:0" in job["baseModelArn"]
    assert job["trainingDataConfig"]["s3Uri"] == f"s3://{stack.bucket}/datasets/{run_id}/train.jsonl"
    assert job["outputDataConfig"]["s3Uri"].rstrip("/") == f"s3://{stack.bucket}/outputs/{run_id}"
    assert job["roleArn"] == "arn:aws:iam::123456789012:role/ragtune-BedrockCustomizationRole"


def test_the_stack_honours_bedrock_endpoints_the_user_set(tmp_path: Path) -> None:
    """AWS_ENDPOINT_URL_BEDROCK(_RUNTIME) set: no emulator of the stack's own; the functions call that endpoint."""
    s3_endpoint: list[str] = []
    elsewhere = BedrockEmulator(
        phase_seconds=30,
        s3=lambda: boto3.client(
            "s3",
            endpoint_url=s3_endpoint[0],
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
        ),
    )
    with elsewhere:
        serving = start_serve(**elsewhere.environment())
        try:
            lines, printed = serving.lines, serving.printed
            assert printed["bedrock_endpoint_url"] == elsewhere.endpoint_url
            assert (
                f"Bedrock: {elsewhere.endpoint_url} (from AWS_ENDPOINT_URL_BEDROCK), "
                f"{elsewhere.endpoint_url} (from AWS_ENDPOINT_URL_BEDROCK_RUNTIME)"
            ) in lines
            s3_endpoint.append(printed["s3_endpoint"])
            stack = Served(printed["s3_endpoint"], printed["bucket"], printed["api_url"], printed["api_key"])
            s3 = stack.client("s3")
            s3.upload_file(str(SAMPLE / "sciq-sample.jsonl"), stack.bucket, "data/sciq-sample.jsonl")
            s3.upload_file(str(_bedrock_config()), stack.bucket, "configs/nova.json")

            [created] = _wait_for(
                lambda: [r for r in elsewhere.requests if r.operation == "CreateModelCustomizationJob"],
                "CreateModelCustomizationJob at the user's endpoint",
            )
            [run] = [r for r in stack.api("GET", "/runs").json()["runs"] if r["config_key"] == "configs/nova.json"]
        finally:
            serving.stop()

    run_id = run["run_id"]
    assert created.status == 201 and "jobArn" in created.response, created.response
    assert created.body["trainingDataConfig"]["s3Uri"] == f"s3://{stack.bucket}/datasets/{run_id}/train.jsonl"
    assert created.body["outputDataConfig"]["s3Uri"].rstrip("/") == f"s3://{stack.bucket}/outputs/{run_id}"
    assert created.body["baseModelIdentifier"] == "amazon.nova-micro-v1:0:128k"


def test_a_broken_config_dropped_in_serve_mode_is_a_failed_run_in_get_runs(
    served: tuple[Served, subprocess.Popen[str]],
) -> None:
    stack, _ = served
    stack.client("s3").put_object(
        Bucket=stack.bucket,
        Key="configs/broken.json",
        Body=json.dumps({"dataset": {"source": "nowhere.csv"}, "epochs": 3}),
    )

    run = stack.run_for("configs/broken.json")

    assert run["status"] == "failed"
    assert run["error"]["code"] == "invalid_config"
    assert "epochs: unknown key" in run["error"]["message"]


def test_the_three_invocation_paths_reach_the_real_handlers(
    served: tuple[Served, subprocess.Popen[str]],
) -> None:
    stack, _ = served
    # Direct Invoke: moto would need Docker; the payload is what our poll handler returns
    invoked = stack.client("lambda").invoke(
        FunctionName="ragtune-PollJobFunction",
        Payload=json.dumps({"action": "record_tracking_failure", "run_id": "no-such-run", "cause": "test"}),
    )
    payload = invoked["Payload"].read()
    assert json.loads(payload) == {"run_id": "no-such-run", "status": "tracking_failed"}

    # S3 notification: a config dropped becomes a run (checked above); Step Functions Task: the
    # tracking execution's poll task outputs are our handler's PollState
    s3 = stack.client("s3")
    s3.upload_file(str(SAMPLE / "sciq-sample.jsonl"), stack.bucket, "data/sciq-sample.jsonl")
    s3.upload_file(str(SAMPLE / "demo-config.json"), stack.bucket, "configs/paths.json")
    run = stack.run_for("configs/paths.json")
    sfn = stack.client("stepfunctions")
    machines = sfn.list_state_machines()["stateMachines"]
    assert sorted(machine["name"] for machine in machines) == ["ragtune-evaluation", "ragtune-job-tracker"]
    [machine] = [machine for machine in machines if machine["name"].endswith("-job-tracker")]
    executions = sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
    [execution] = [e for e in executions if e["name"] == execution_name(run["run_id"], run["job_id"], 0)]
    history = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
    outputs = [
        json.loads(e["lambdaFunctionSucceededEventDetails"]["output"])
        for e in history
        if e["type"] == "LambdaFunctionSucceeded"
    ]
    # The poll tasks' outputs (the reports' tasks that follow may or may not have run yet)
    polls = [output for output in outputs if output.get("action") == "poll"]
    assert polls and polls[-1]["status"] == "succeeded" and polls[-1]["run_id"] == run["run_id"]


def test_the_api_key_is_enforced_and_unknown_routes_answer_as_api_gateway(
    served: tuple[Served, subprocess.Popen[str]],
) -> None:
    stack, _ = served
    assert stack.api("GET", "/runs", headers={"x-api-key": ""}).status_code == 403
    no_key = requests.get(f"{stack.api_url}/runs", timeout=10)
    assert (no_key.status_code, no_key.json()) == (403, {"message": "Forbidden", "code": "invalid_api_key"})
    unknown = stack.api("DELETE", "/runs")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")


def test_sigterm_stops_serve_mode_cleanly(served: tuple[Served, subprocess.Popen[str]]) -> None:
    _, process = served
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
