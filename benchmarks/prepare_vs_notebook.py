"""Prepare against the original notebook's loop, side by side on the same SciQ-shaped rows (issue #11).

Every measured run is a fresh process (imports included), as a cold Lambda or a notebook
kernel would be: the notebook's `datasets` + pandas `iterrows` + jsonlines loop, then the
prepare handler against a moto server standing in for S3 and DynamoDB (so the child's
memory is the handler's alone). Both write the same training JSONL, which is asserted
byte for byte. Prints medians (wall time, and CPU time, which a busy machine disturbs less),
the ratio against the notebook, and each goal beside its figure:
prepare >= 10x the notebook on ROWS rows, a cold SMALL-row prepare <= 1.5 s, and peak RSS
at LARGE rows <= 1.3x the peak at ROWS rows, upload included. CPU time counts the prepare
function's token worker process too; its peak memory is printed beside the handler's.

A diagnostic run follows: the same handler with every token count replaced by zero and no token
worker. No production run works that way; its ratio is the most any faster tokenizer could buy.

Usage: python -m benchmarks.prepare_vs_notebook [--rows 100000] [--repeat 3] [--small-rows 1000]
       [--large-rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any
from unittest import mock

NOTEBOOK_SYSTEM = "Given a science question, provide the correct answer with a detailed explanation."
BUCKET = "ragtune-bench"
SPEED_GOAL = 10.0
SMALL_RUN_GOAL_SECONDS = 1.5
MEMORY_GOAL = 1.3


def write_rows(path: Path, count: int) -> None:
    """SciQ's columns, one row in ten with an empty support (dropped by the notebook's filter)."""
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            row = {
                "question": f"Which force, number {i}, makes winds curve in the northern hemisphere?",
                "distractor3": "gravity",
                "distractor1": "friction",
                "distractor2": "magnetism",
                "correct_answer": "Coriolis effect",
                "support": ""
                if i % 10 == 9
                else (
                    f"Because Earth rotates, moving air (sample {i}) is deflected to the right in the "
                    "northern hemisphere and to the left in the southern hemisphere. Ünïcödé text too."
                ),
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _peak_rss_mib() -> float:
    """This process's own peak: VmHWM. (ru_maxrss also counts the parent's size when it forked, which
    holds the moto server's objects here.)"""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_notebook(data: Path, output: Path) -> dict[str, Any]:
    """The notebook's cells as written: load, filter, DataFrame, iterrows, jsonlines."""
    import jsonlines
    import pandas as pd
    from datasets import load_dataset

    dataset_view = load_dataset("json", data_files=str(data), split="train")
    filtered_dataset = dataset_view.filter(lambda x: x["support"] != "" and x["correct_answer"] != "")
    df_view = pd.DataFrame(filtered_dataset)
    df_view = df_view.drop(columns=["distractor3", "distractor1", "distractor2"])
    items = []
    for _, row in df_view.iterrows():
        detailed_answer = row["correct_answer"] + " Explanation: " + row["support"]
        items.append(
            {
                "messages": [
                    {"role": "system", "content": NOTEBOOK_SYSTEM},
                    {"role": "user", "content": row["question"]},
                    {"role": "assistant", "content": detailed_answer},
                ]
            }
        )
    with jsonlines.open(output, "w") as writer:
        writer.write_all(items)
    return {"rows_kept": len(items)}


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def run_prepare(config_key: str) -> dict[str, Any]:
    """The handler, cold, on the S3 event of one config (the server already holds the data and the config)."""
    from functions.prepare.app import lambda_handler

    event = {"Records": [{"s3": {"bucket": {"name": BUCKET}, "object": {"key": config_key}}}]}
    [run] = lambda_handler(event, _Context())["runs"]
    return {"run": run}


class _ZeroTokens:
    """TokenCounter's interface with no worker and no encoding: every text counts 0 tokens."""

    def __init__(self) -> None:
        self._texts = 0

    def __enter__(self) -> _ZeroTokens:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def submit(self, texts: list[str]) -> None:
        self._texts += len(texts)

    def counts(self) -> array[int]:
        return array("q", bytes(8 * self._texts))


def run_prepare_without_counting(config_key: str) -> dict[str, Any]:
    """Diagnostic only: the handler with token counting free, to bound what a faster tokenizer could gain."""
    import shared.pipeline.prepare

    with mock.patch.object(shared.pipeline.prepare, "TokenCounter", _ZeroTokens):
        return run_prepare(config_key)


def _child_environment(scratch: Path, endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "POWERTOOLS_SERVICE_NAME": "ragtune",
        "POWERTOOLS_METRICS_NAMESPACE": "Ragtune",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(scratch / "hf"),
        "TIKTOKEN_CACHE_DIR": str(scratch / "tiktoken"),
        "SCRATCH_DIR": str(scratch / "work"),
        "DATA_BUCKET": BUCKET,
        "RUNS_TABLE": "runs",
        "IDEMPOTENCY_TABLE": "idempotency",
        "OPENAI_API_KEY_SECRET": "unused",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:unused",
        "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:unused",
    }


def _child(args: list[str], environment: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Wall time of a fresh interpreter running one child mode, and the figures it printed."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.prepare_vs_notebook", *args],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{result.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return seconds, figures


class _Stack:
    """A moto server in this process, with the template's bucket and tables; children reach it over HTTP."""

    def __init__(self, scratch: Path) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.environment = _child_environment(scratch, self.endpoint)
        self._configs = 0
        import boto3

        from local.template import create_bucket, create_table

        session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench")
        self.s3 = session.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        dynamodb = session.client("dynamodb", endpoint_url=self.endpoint, region_name="us-east-1")
        create_bucket(self.s3, "DataBucket", BUCKET)
        create_table(dynamodb, "RunsTable", "runs")
        create_table(dynamodb, "IdempotencyTable", "idempotency")

    def put_data(self, data: Path) -> str:
        self.s3.upload_file(str(data), BUCKET, f"data/{data.name}")
        return f"s3://{BUCKET}/data/{data.name}"

    def put_config(self, source: str) -> str:
        """A new key each time: a new run, never the replay of an earlier one."""
        self._configs += 1
        key = f"configs/bench-{self._configs}.json"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({"dataset": {"source": source}}).encode())
        return key

    def read(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return body

    def stop(self) -> None:
        self._server.stop()


def _prepare_runs(stack: _Stack, source: str, repeat: int, mode: str = "prepare") -> list[dict[str, Any]]:
    runs = []
    for _ in range(repeat):
        seconds, child = _child([mode, stack.put_config(source)], stack.environment)
        if child["run"]["status"] != "prepared":
            raise SystemExit(f"prepare did not succeed: {child['run']}")
        runs.append({**child, "seconds": seconds})
    return runs


def _median(runs: list[dict[str, Any]], figure: str) -> float:
    return float(statistics.median(run[figure] for run in runs))


def _verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def main(rows: int, repeat: int, small_rows: int, large_rows: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="ragtune-bench-"))
    data = scratch / f"rows-{rows}.jsonl"
    write_rows(data, rows)
    stack = _Stack(scratch)
    try:
        source = stack.put_data(data)
        notebook = []
        for attempt in range(repeat):
            output = scratch / f"notebook-{attempt}.jsonl"
            environment = {**stack.environment, "HF_HOME": str(scratch / f"hf-notebook-{attempt}")}  # a cold cache
            seconds, child = _child(["notebook", str(data), str(output)], environment)
            notebook.append({**child, "seconds": seconds})
        prepared = _prepare_runs(stack, source, repeat)
        train = stack.read(prepared[0]["run"]["train_key"])
        identical = train == output.read_bytes()
        if not identical:
            raise SystemExit("prepare's train.jsonl differs from the notebook's file")
        uncounted = _prepare_runs(stack, source, repeat, mode="prepare-without-counting")

        small = scratch / f"rows-{small_rows}.jsonl"
        write_rows(small, small_rows)
        small_runs = _prepare_runs(stack, stack.put_data(small), repeat)

        large = scratch / f"rows-{large_rows}.jsonl"
        write_rows(large, large_rows)
        [large_run] = _prepare_runs(stack, stack.put_data(large), 1)
    finally:
        stack.stop()

    notebook_seconds, prepare_seconds = _median(notebook, "seconds"), _median(prepared, "seconds")
    ratio = notebook_seconds / prepare_seconds
    cpu_ratio = _median(notebook, "cpu_seconds") / _median(prepared, "cpu_seconds")
    small_seconds = _median(small_runs, "seconds")
    base_rss = _median(prepared, "peak_rss_mib")
    memory_ratio = large_run["peak_rss_mib"] / base_rss
    base_worker, large_worker = _median(prepared, "worker_peak_rss_mib"), large_run["worker_peak_rss_mib"]
    print(f"rows={rows} rows_kept={notebook[0]['rows_kept']} repeat={repeat} (each run a fresh process, median)")
    print(f"train.jsonl byte-identical to the notebook's: {identical} ({len(train):,} bytes)")
    print(
        "notebook loop (datasets + pandas iterrows + jsonlines): "
        f"{notebook_seconds:.2f} s (CPU {_median(notebook, 'cpu_seconds'):.2f} s)"
    )
    print(
        f"prepare handler (S3 in, gate, S3 out): {prepare_seconds:.2f} s (CPU {_median(prepared, 'cpu_seconds'):.2f} s)"
        f" = {rows / prepare_seconds:,.0f} rows/s"
    )
    print(
        f"prepare vs notebook: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU "
        f"(goal >= {SPEED_GOAL:.0f}x: {_verdict(ratio >= SPEED_GOAL)})"
    )
    uncounted_seconds = _median(uncounted, "seconds")
    print(
        f"  diagnostic, not a product path: prepare with every token count replaced by 0 and no token worker: "
        f"{uncounted_seconds:.2f} s (CPU {_median(uncounted, 'cpu_seconds'):.2f} s) = "
        f"{notebook_seconds / uncounted_seconds:.1f}x wall: the most a faster exact tokenizer could reach"
    )
    print(
        f"cold prepare of {small_rows} rows, imports included: {small_seconds:.2f} s "
        f"(CPU {_median(small_runs, 'cpu_seconds'):.2f} s) "
        f"(goal <= {SMALL_RUN_GOAL_SECONDS} s: {_verdict(small_seconds <= SMALL_RUN_GOAL_SECONDS)})"
    )
    print(
        f"peak RSS: {base_rss:.0f} MiB at {rows} rows, {large_run['peak_rss_mib']:.0f} MiB at {large_rows} rows: "
        f"{memory_ratio:.2f}x (goal <= {MEMORY_GOAL}x: {_verdict(memory_ratio <= MEMORY_GOAL)})"
    )
    both = (large_run["peak_rss_mib"] + large_worker) / (base_rss + base_worker)
    print(
        f"  with the token worker's own peak added: {base_rss + base_worker:.0f} MiB at {rows} rows, "
        f"{large_run['peak_rss_mib'] + large_worker:.0f} MiB at {large_rows} rows: {both:.2f}x"
    )


_CHILD_MODES = {
    "notebook": lambda args: run_notebook(Path(args[0]), Path(args[1])),
    "prepare": lambda args: run_prepare(args[0]),
    "prepare-without-counting": lambda args: run_prepare_without_counting(args[0]),
}


def _child_main(mode: str, args: list[str]) -> None:
    figures = _CHILD_MODES[mode](args)
    # Every thread, interpreter start included, and the processes it ran (prepare's token worker).
    cpu_seconds = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    worker_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child's peak
    print(
        json.dumps(
            {
                **figures,
                "peak_rss_mib": _peak_rss_mib(),
                "worker_peak_rss_mib": worker_peak_mib,
                "cpu_seconds": cpu_seconds,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in _CHILD_MODES:
        _child_main(sys.argv[1], sys.argv[2:])
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--rows", type=int, default=100_000)
        parser.add_argument("--repeat", type=int, default=3)
        parser.add_argument("--small-rows", type=int, default=1_000)
        parser.add_argument("--large-rows", type=int, default=1_000_000)
        options = parser.parse_args()
        main(options.rows, options.repeat, options.small_rows, options.large_rows)
