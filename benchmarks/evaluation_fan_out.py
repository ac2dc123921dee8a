"""An evaluation fanned out (issue #23): its wall time against the evaluation Map's concurrency, on the local stack.

For each Map concurrency (the stack parameter EvaluationMapConcurrency, 1, 4 and 16 by default) a fresh local stack
(`local.stack.MotoStack`: moto, Step Functions executing the real evaluation state machine, every Lambda handler
in-process, the OpenAI emulator) is started in a fresh interpreter, so the parameter applies and nothing carries
over. Six succeeded runs are written straight into its runs table, each with a model fine-tuned at the emulator; the
first holds the held-out questions (SciQ rows from local/sample, numbered to 1,000). Every chat completion the
emulator answers first sleeps the latency given (200 ms). Then `POST /runs/{id}/evaluation` compares the first run
with the five others (5 arms, 5,000 calls: 50 chunks of 100 questions, each chunk 4 calls at a time), and
`GET /runs/{id}/evaluation` is polled until it has finished: the wall time runs from the POST to that.

Checked at each level: the evaluation succeeded, each of the 5 arms answered every question, and the emulator
received exactly questions x 5 chat completions. Anything off is printed and the exit status is 1.
Printed: a table of wall seconds, calls made, calls/s and the speed-up over the lowest concurrency.
Usage: python -m benchmarks.evaluation_fan_out [--questions 1000] [--latency-ms 200] [--concurrency 1 4 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import requests

from local.stack import REGION, MotoStack
from shared.pipeline.evaluate_run import CHUNK_QUESTIONS

SAMPLE = Path(__file__).resolve().parent.parent / "local" / "sample" / "sciq-sample.jsonl"
ARMS = 5  # the most compare_with takes
BASE_MODEL = "gpt-4o-mini-2024-07-18"
SYSTEM = "Given a science question, answer it and explain."
EVALUATED_RUN = "bench-evaluated"
COMPARED_RUNS = [f"bench-arm-{index}" for index in range(1, ARMS + 1)]
RESULT_PREFIX = "RESULT "
POLL_SECONDS = 0.25
TRAINING_ROWS = 12  # each compared run's model is tuned on these (the emulator wants 10 at least)


def sciq_rows(count: int) -> list[dict[str, str]]:
    """`count` SciQ rows: the sample's, cycled, each question numbered so that none repeats."""
    sample = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for index in range(count):
        row = dict(sample[index % len(sample)])
        row["question"] = f"Question {index + 1}: {row['question']}"
        rows.append(row)
    return rows


def questions_jsonl(rows: list[dict[str, str]]) -> bytes:
    """The held-out questions file as prepare writes it: index, question, reference, context."""
    lines = [
        {"index": index, "question": row["question"], "reference": row["correct_answer"], "context": row["support"]}
        for index, row in enumerate(rows)
    ]
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


def tuned_model(stack: MotoStack, suffix: str, rows: list[dict[str, str]]) -> str:
    """A model fine-tuned at the stack's emulator on `rows` (its jobs succeed at once: phase 0 s)."""
    from openai import OpenAI

    assert stack.emulator is not None
    client = OpenAI(base_url=stack.emulator.base_url, api_key="sk-local-bench", max_retries=0)
    lines = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": row["question"]},
                {"role": "assistant", "content": f"{row['correct_answer']} Explanation: {row['support']}"},
            ]
        }
        for row in rows
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    file = client.files.create(file=("train.jsonl", body), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file.id, suffix=suffix)
    model = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    if not model:
        raise RuntimeError(f"the emulator's fine-tuning job {job.id} has no model")
    return model


def put_run(stack: MotoStack, run_id: str, model: str, questions: bytes, count: int) -> None:
    """A succeeded run as the pipeline leaves it (its model, its held-out questions file), and that file."""
    key = f"datasets/{run_id}/questions.jsonl"
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=questions)
    item = {
        "run_id": run_id,
        "entity": "run",
        "status": "succeeded",
        "provider": "openai",
        "created_at": "2025-01-01T00:00:00+00:00",
        "updated_at": "2025-01-01T00:00:00+00:00",
        "config": {
            "provider": "openai",
            "template": {"system": SYSTEM, "user": "{question}", "assistant": "{correct_answer}"},
            "fine_tune": {"model": BASE_MODEL},
            "evaluation": {"match": "start", "context_column": "support"},
        },
        "files": {
            "train": {"key": f"datasets/{run_id}/train.jsonl", "bytes": 1, "examples": 12},
            "validation": {"key": f"datasets/{run_id}/validation.jsonl", "bytes": 1, "examples": count},
            "questions": {"key": key, "bytes": len(questions), "examples": count},
        },
        "fine_tuned_model": model,
    }
    dynamodb = boto3.resource("dynamodb", endpoint_url=stack.endpoint_url, region_name=REGION)
    dynamodb.Table(os.environ["RUNS_TABLE"]).put_item(Item=item)


def chat_completions(stack: MotoStack) -> int:
    assert stack.emulator is not None
    with stack.emulator.lock:
        return sum(1 for request in stack.emulator.requests if request.path.endswith("/chat/completions"))


def evaluate(stack: MotoStack, timeout_seconds: float) -> tuple[float, dict[str, Any]]:
    """POST the comparison, poll GET until it has finished: (seconds from the POST, the last GET's body)."""
    session = requests.Session()
    session.headers["x-api-key"] = stack.api_key
    url = f"{stack.api_url}/runs/{EVALUATED_RUN}/evaluation"
    started = time.perf_counter()
    posted = session.post(url, json={"compare_with": COMPARED_RUNS}, timeout=60)
    if posted.status_code != 202:
        raise RuntimeError(f"POST {url} answered {posted.status_code}: {posted.text}")
    while True:
        body: dict[str, Any] = session.get(url, timeout=60).json()
        seconds = time.perf_counter() - started
        if body.get("status") in ("succeeded", "failed") or seconds > timeout_seconds:
            return seconds, body
        time.sleep(POLL_SECONDS)


def problems(evaluation: dict[str, Any], questions: int, calls: int) -> list[str]:
    """What is off in a finished evaluation: its status, an arm short of questions, the calls the emulator saw."""
    found = []
    if evaluation.get("status") != "succeeded":
        found.append(f"status {evaluation.get('status')!r}, error {evaluation.get('error')}")
    arms = {arm["name"]: arm for arm in evaluation.get("arms", [])}
    if sorted(arms) != sorted(COMPARED_RUNS):
        found.append(f"arms {sorted(arms)}, expected {COMPARED_RUNS}")
    for name, arm in sorted(arms.items()):
        if arm.get("questions") != questions or arm.get("errors") or arm.get("error"):
            found.append(
                f"arm {name}: {arm.get('questions')} questions answered of {questions}, errors {arm.get('errors')}"
            )
    if calls != questions * ARMS:
        found.append(f"{calls} chat completions at the emulator, expected {questions * ARMS}")
    return found


def one_level(concurrency: int, questions: int, latency_ms: int) -> dict[str, Any]:
    """One Map concurrency on a fresh stack: the evaluation's wall time, calls and what was off."""
    stack = MotoStack(
        emulator_phase_seconds=0.0,
        log_level="ERROR",
        parameters={"EvaluationMapConcurrency": str(concurrency)},
    )
    stack.start()
    try:
        assert stack.emulator is not None, "main() refuses to run without the emulator"
        body = questions_jsonl(sciq_rows(questions))
        for index, run_id in enumerate([EVALUATED_RUN, *COMPARED_RUNS]):
            model = tuned_model(stack, f"arm{index}", sciq_rows(TRAINING_ROWS))
            put_run(stack, run_id, model, body, questions)
        before = chat_completions(stack)
        stack.emulator.inject_fault("/chat/completions", "slow", method="POST", delay=latency_ms / 1000, times=10**9)
        serial_seconds = questions * ARMS * latency_ms / 1000 / int(os.environ["EVALUATION_CONCURRENCY"])
        seconds, evaluation = evaluate(stack, timeout_seconds=120 + 3 * serial_seconds / concurrency)
        calls = chat_completions(stack) - before
        return {
            "concurrency": concurrency,
            "map_concurrency_set": int(os.environ["EVALUATION_MAP_CONCURRENCY"]),
            "chunk_concurrency": int(os.environ["EVALUATION_CONCURRENCY"]),
            "seconds": seconds,
            "calls": calls,
            "problems": problems(evaluation, questions, calls),
        }
    finally:
        stack.stop()


def run_level(concurrency: int, questions: int, latency_ms: int) -> dict[str, Any]:
    """`one_level` in a fresh interpreter: the handlers' cached settings and clients belong to one stack."""
    arguments = ["--questions", str(questions), "--latency-ms", str(latency_ms), "--level", str(concurrency)]
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.evaluation_fan_out", *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    results = [line for line in child.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if child.returncode != 0 or not results:
        output = (child.stdout + child.stderr)[-3000:]
        return {"concurrency": concurrency, "problems": [f"exited {child.returncode}:\n{output}"]}
    result: dict[str, Any] = json.loads(results[-1].removeprefix(RESULT_PREFIX))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--questions", type=int, default=1000, help="held-out questions (default 1000)")
    parser.add_argument("--latency-ms", type=int, default=200, help="the emulator's latency per call (default 200)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="Map concurrencies")
    parser.add_argument("--level", type=int, help=argparse.SUPPRESS)  # the child: one concurrency, one stack
    arguments = parser.parse_args()
    if arguments.level is not None:
        print(RESULT_PREFIX + json.dumps(one_level(arguments.level, arguments.questions, arguments.latency_ms)))
        return 0
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        print("PROBLEM: unset OPENAI_API_KEY and OPENAI_BASE_URL: the benchmark times the stack's OpenAI emulator")
        return 1
    levels = sorted(set(arguments.concurrency))
    print(
        f"evaluation, local stack: {arguments.questions} held-out questions x {ARMS} arms "
        f"({arguments.questions * ARMS} calls), emulator latency {arguments.latency_ms} ms a call"
    )
    print(f"{'map concurrency':>15}  {'wall s':>8}  {'calls':>6}  {'calls/s':>8}  speed-up vs {levels[0]}")
    baseline: float | None = None
    failed = False
    chunk_concurrency: set[int] = set()
    for concurrency in levels:
        result = run_level(concurrency, arguments.questions, arguments.latency_ms)
        if "seconds" in result:
            seconds, calls = result["seconds"], result["calls"]
            if concurrency == levels[0]:
                baseline = seconds
            speed_up = f"{baseline / seconds:>6.2f}x" if baseline else "   n/a"
            print(f"{concurrency:>15}  {seconds:>8.1f}  {calls:>6}  {calls / seconds:>8.1f}  {speed_up}")
        if result.get("map_concurrency_set", concurrency) != concurrency:
            result["problems"].append(f"the stack's EVALUATION_MAP_CONCURRENCY was {result['map_concurrency_set']}")
        for problem in result["problems"]:
            print(f"  PROBLEM at map concurrency {concurrency}: {problem}")
            failed = True
        chunk_concurrency.update([result["chunk_concurrency"]] if "chunk_concurrency" in result else [])
        sys.stdout.flush()
    if chunk_concurrency:
        asked = "/".join(map(str, sorted(chunk_concurrency)))
        print(f"(each Map iteration: a chunk of up to {CHUNK_QUESTIONS} questions of one arm, asked {asked} at a time)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
