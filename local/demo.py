"""`make demo`: one run through the whole local stack, driven the way a user drives AWS.

Uploads the sample dataset and a config to S3, follows the run through the API, then
asks the notebook's test question. Raises DemoFailed with the reason if any step fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from local.stack import MotoStack
from shared.domain.config import is_hub_id
from shared.domain.run_status import FINISHED  # the run has stopped moving (tracking_failed included)

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SAMPLE_DATA = SAMPLE_DIR / "sciq-sample.jsonl"
DEMO_CONFIG = SAMPLE_DIR / "demo-config.json"
DEMO_CONFIGS = {
    "openai": DEMO_CONFIG,
    "bedrock": SAMPLE_DIR / "demo-config-bedrock.json",
    "open": SAMPLE_DIR / "demo-config-open.json",
}
DEMO_CONFIG_KEY = "configs/demo.json"
DEMO_OUTPUT = Path("demo-output")  # where the demo leaves the run's reports, relative to where it runs
NOTEBOOK_TEST_QUESTION = (
    "What phenomenon makes global winds blow northeast to southwest or the reverse in the northern "
    "hemisphere and northwest to southeast or the reverse in the southern hemisphere?"
)


class DemoFailed(Exception):
    """A step of the demo did not do what it should; the message says which and why."""


class DemoApi:
    def __init__(self, stack: MotoStack) -> None:
        self._url = stack.api_url
        self._session = requests.Session()
        self._session.headers["x-api-key"] = stack.api_key

    def response(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The API's answer as it is, an error status included."""
        return self._session.request(method, f"{self._url}{path}", timeout=60, **kwargs)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON; an error status fails the demo."""
        response = self.response(method, path, **kwargs)
        if response.status_code >= 400:
            raise DemoFailed(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()


def _prepared(run: dict[str, Any]) -> str:
    counts, tokens, estimate = run["counts"], run["tokens"], run["estimate"]
    dropped = f" ({counts['rows_dropped']} dropped: {counts['dropped_reasons']})" if counts["rows_dropped"] else ""
    return (
        f"prepared: {counts['rows_read']} rows read, {counts['rows_kept']} kept{dropped}, "
        f"{tokens['billing_tokens']:,} billed tokens per epoch; estimated {estimate['epochs']} epochs "
        f"= {estimate['trained_tokens']:,} trained tokens, {_cost(estimate)}"
    )


def _cost(estimate: dict[str, Any]) -> str:
    return "no price known" if estimate.get("cost_usd") is None else f"${estimate['cost_usd']}"


def _trained(run: dict[str, Any]) -> str:
    """Trained tokens are what the job bills (billed tokens per epoch times epochs), compared with the estimate."""
    trained, estimate = run.get("trained_tokens"), run.get("estimate") or {}
    per_epoch = (run.get("tokens") or {}).get("billing_tokens")
    if trained is None:
        return "no trained-token count reported"  # Bedrock reports none
    if not estimate or not per_epoch:
        return f"{trained} trained tokens"
    if trained == estimate["trained_tokens"]:
        return f"{trained:,} trained tokens ({estimate['epochs']} epochs × {per_epoch:,}), as estimated"
    epochs = f"{trained // per_epoch} epochs × {per_epoch:,}" if trained % per_epoch == 0 else "its own token count"
    return (
        f"{trained:,} trained tokens ({epochs}; estimated {estimate['trained_tokens']:,} = "
        f"{estimate['epochs']} epochs × {per_epoch:,}: the endpoint picks epochs and counts tokens itself)"
    )


def _provider(config: Path) -> str:
    """The config's provider, as the pipeline reads it (absent: openai); an unreadable config fails in the run."""
    try:
        provider = json.loads(config.read_text(encoding="utf-8")).get("provider", "openai")
    except (ValueError, AttributeError):
        return "openai"
    return str(provider)


def _describe(run: dict[str, Any]) -> str:
    status: str = run["status"]
    if status in {"preparing", "prepared", "starting"}:
        return status
    if status in {"validating_files", "queued"}:
        return f"job {run.get('job_id')} {status}"
    if status == "deploying":
        return f"deploying: the custom model of job {run.get('job_id')} (a deployment answers /ask)"
    if status == "importing":
        return f"importing: the weights {run.get('weights_uri')} into Bedrock (the imported model answers /ask)"
    if status == "running":
        metrics = run.get("metrics") or {}
        last_event = (run.get("events") or [{}])[-1].get("message", "")
        step = f"step {metrics['step']}/{metrics['total_steps']}" if {"step", "total_steps"} <= metrics.keys() else ""
        loss = f"train_loss={metrics['train_loss']:.3f}" if "train_loss" in metrics else ""
        detail = ", ".join(part for part in (last_event, step, loss) if part)
        return f"running: {detail}" if detail else "running"
    if status == "succeeded" and run.get("adopted"):
        shutdown = f", {run['model_shutdown']}" if run.get("model_shutdown") else ""
        return f"succeeded: adopted model {run.get('fine_tuned_model')} (nothing trained){shutdown}"
    if status == "succeeded":
        return f"succeeded: model {run.get('fine_tuned_model')}, {_trained(run)}"
    error = run.get("error") or {}
    return f"{status}: {error.get('message', '')}"


def wait_for_run(
    api: DemoApi, out: Callable[[str], None], timeout_seconds: float, config_key: str = DEMO_CONFIG_KEY
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_seconds
    run_id, last_line = None, ""
    while time.monotonic() < deadline:
        if run_id is None:
            runs = [r for r in api.call("GET", "/runs")["runs"] if r.get("config_key") == config_key]
            run_id = runs[0]["run_id"] if runs else None
        if run_id is not None:
            run: dict[str, Any] = api.call("GET", f"/runs/{run_id}")
            if not last_line and run.get("counts") and run.get("tokens") and run.get("estimate"):
                last_line = _prepared(run)
                out(f"  {last_line}")
            line = _describe(run)
            if line != last_line:
                out(f"  {line}")
                last_line = line
            if run["status"] in FINISHED:
                return run
        time.sleep(0.2)
    raise DemoFailed(f"the run did not finish within {timeout_seconds:.0f} s (last: {last_line or 'no run'})")


def wait_for_evaluation(api: DemoApi, run_id: str, timeout_seconds: float) -> dict[str, Any]:
    """The state machine evaluates a succeeded run after its last poll: wait for that to end."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        evaluation: dict[str, Any] = api.call("GET", f"/runs/{run_id}/evaluation")
        if evaluation["status"] in {"succeeded", "failed"}:
            return evaluation
        time.sleep(0.2)
    raise DemoFailed(f"the evaluation of run {run_id} did not finish within {timeout_seconds:.0f} s")


def _wait_for_curve(api: DemoApi, run_id: str, timeout_seconds: float) -> None:
    """The state machine draws the loss curve once the job has finished (before any evaluation)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if "loss_png" in api.call("GET", f"/runs/{run_id}")["report_urls"]:
            return
        time.sleep(0.2)
    raise DemoFailed(f"run {run_id} has no loss curve after {timeout_seconds:.0f} s")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def evaluation_table(evaluation: dict[str, Any]) -> list[str]:
    """The arms side by side: accuracy with its Wilson 95% interval, prompt tokens, cost per 1,000 questions,
    and a note: an arm built from recorded answers (its model gone), or when its model shuts down."""
    width = max([20, *(len(arm["name"]) for arm in evaluation["arms"])])
    lines = [
        f"evaluation on {evaluation['questions']} held-out questions (match: {evaluation.get('match')}):",
        f"  {'arm':<{width}} {'accuracy':>8}  {'95% interval':<17} {'prompt tokens':>13}  {'cost / 1k questions':>19}"
        "  note",
    ]
    for arm in evaluation["arms"]:
        if arm.get("error"):
            lines.append(f"  {arm['name']:<{width}} not evaluated: {arm['error']['message']}")
            continue
        low, high = arm["ci95"] or (None, None)
        interval = f"[{_percent(low)}, {_percent(high)}]"
        tokens = "-" if arm["prompt_tokens_mean"] is None else f"{arm['prompt_tokens_mean']:.1f}"
        cost = "-" if arm["cost_per_1k_usd"] is None else f"${arm['cost_per_1k_usd']:.4f}"
        row = f"  {arm['name']:<{width}} {_percent(arm['accuracy']):>8}  {interval:<17} {tokens:>13}  {cost:>19}"
        lines.append(f"{row}  {_arm_note(arm)}".rstrip())
    return lines


def _arm_note(arm: dict[str, Any]) -> str:
    recorded = arm.get("recorded")
    if recorded:
        when = str(recorded.get("recorded_at") or "at an unknown time")[:19].replace("T", " ")
        return f"recorded {when} UTC (model gone): answered {arm['questions']} of {recorded['questions']} questions"
    return str(arm.get("model_shutdown") or "")


def run_demo(
    stack: MotoStack,
    data: Path = SAMPLE_DATA,
    config: Path = DEMO_CONFIG,
    out: Callable[[str], None] = print,
    timeout_seconds: float = 300,
    question: str = NOTEBOOK_TEST_QUESTION,
    output: Path = DEMO_OUTPUT,
    config_key: str = DEMO_CONFIG_KEY,
) -> dict[str, Any]:
    """Returns the answer body from POST /ask; raises DemoFailed on any failed step.

    `data` lands at s3://<bucket>/data/<its name>, and the config's dataset.source is pointed there unless it names
    a Hub dataset (as `ragtune submit --data` does). The run's reports are copied to `output`/<run id>/: the local
    stack's S3 goes when the demo ends.
    """
    s3 = stack.client("s3")
    out(f"uploading the dataset to s3://{stack.bucket}/data/{data.name}")
    s3.upload_file(str(data), stack.bucket, f"data/{data.name}")
    out(f"dropping the run config into s3://{stack.bucket}/{config_key}")
    s3.put_object(Bucket=stack.bucket, Key=config_key, Body=_with_uploaded_source(config, stack.bucket, data))

    api = DemoApi(stack)
    run = wait_for_run(api, out, timeout_seconds, config_key)
    if run["status"] != "succeeded":
        raise DemoFailed(f"the run ended {run['status']}: {(run.get('error') or {}).get('message')}")

    out(f"asking: {question}")
    answer: dict[str, Any] = api.call("POST", "/ask", json={"question": question, "run_id": run["run_id"]})
    if _provider(config) in ("bedrock", "open"):
        emulated = stack.bedrock_emulator is not None
        source = "the Bedrock emulator (recalls training data)" if emulated else stack.bedrock_endpoint_url
    else:
        source = "the OpenAI emulator (recalls training data)" if stack.emulator else stack.openai_base_url
    out(f"answer ({source}): {answer['answer']}")
    out(f"model: {answer['model']}")
    out(
        f"run: {run['run_id']}, {run['counts']['train_examples']} training examples, "
        f"{run['tokens']['total_tokens']} tokens, estimated {_cost(run['estimate'])}, "
        f"job {run['job_id']}, usage {answer['usage']}"
    )
    if (run.get("files") or {}).get("questions"):
        evaluation = wait_for_evaluation(api, run["run_id"], timeout_seconds)
        if evaluation["status"] != "succeeded":
            raise DemoFailed(f"the evaluation failed: {(evaluation.get('error') or {}).get('message')}")
        for line in evaluation_table(evaluation):
            out(line)
    else:
        out("evaluation: none, the config holds no questions out (set validation_fraction above 0 for one)")
    _wait_for_curve(api, run["run_id"], timeout_seconds)
    saved = save_reports(stack, run["run_id"], output)
    curve = saved / "loss.png"
    out(f"loss curve: {curve} (and {', '.join(sorted(p.name for p in saved.iterdir() if p != curve))} beside it)")
    if run.get("weights_uri"):
        manifest = f"s3://{stack.bucket}/models/{run['run_id']}/manifest.json"
        out(f"weights (yours to keep): {run['weights_uri']} (manifest: {manifest})")
    return answer


def save_reports(stack: MotoStack, run_id: str, output: Path) -> Path:
    """reports/<run_id>/* of the local stack's bucket, copied to `output`/<run_id>/ (the folder is returned)."""
    s3 = stack.client("s3")
    folder = output / run_id
    folder.mkdir(parents=True, exist_ok=True)
    listing = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"reports/{run_id}/")
    for item in listing.get("Contents", []):
        s3.download_file(stack.bucket, item["Key"], str(folder / item["Key"].rsplit("/", 1)[1]))
    return folder


def _with_uploaded_source(config: Path, bucket: str, data: Path) -> bytes:
    """The config as given, its dataset.source pointed at the uploaded data unless it names a Hub dataset; a
    config that cannot be read is uploaded as it is, for the run to refuse with its reason."""
    raw = config.read_bytes()
    try:
        document = json.loads(raw)
        source = document["dataset"]["source"]
    except (ValueError, KeyError, TypeError):
        return raw
    if isinstance(source, str) and is_hub_id(source):
        return raw
    document["dataset"]["source"] = f"s3://{bucket}/data/{data.name}"
    return json.dumps(document, ensure_ascii=False).encode()


def run_every_demo(stack: MotoStack, output: Path = DEMO_OUTPUT, out: Callable[[str], None] = print) -> list[str]:
    """The demo's run of each provider, one after the other (`configs/demo-<provider>.json`), for a stack served
    to browse (the dashboard): their run ids."""
    run_ids = []
    for provider, config in DEMO_CONFIGS.items():
        out(f"demo run ({provider})")
        answer = run_demo(
            stack, config=config, out=lambda _: None, output=output, config_key=f"configs/demo-{provider}.json"
        )
        run_ids.append(str(answer["run_id"]))
    return run_ids
