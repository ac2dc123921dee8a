"""Rows per second and peak memory of the prepare handler on N SciQ-shaped rows (default 100k).

Runs the real handler in-process against moto, exactly as the tests do, and prints figures.
Usage: python -m benchmarks.prepare_throughput [rows]
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

SCRATCH = Path(tempfile.mkdtemp(prefix="ragtune-bench-"))
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "ragtune",
        "POWERTOOLS_METRICS_NAMESPACE": "Ragtune",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(SCRATCH / "hf"),
        "TIKTOKEN_CACHE_DIR": str(SCRATCH / "tiktoken"),
        "SCRATCH_DIR": str(SCRATCH / "work"),
        "DATA_BUCKET": "ragtune-bench",
        "RUNS_TABLE": "runs",
        "IDEMPOTENCY_TABLE": "idempotency",
        "OPENAI_API_KEY_SECRET": "unused",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:unused",
        "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:unused",
    }
)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from local.template import create_bucket, create_table  # noqa: E402


def write_rows(path: Path, count: int) -> None:
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


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def main(rows: int) -> None:
    data = SCRATCH / "rows.jsonl"
    write_rows(data, rows)
    with mock_aws():
        create_bucket(boto3.client("s3"), "DataBucket", "ragtune-bench")
        create_table(boto3.client("dynamodb"), "RunsTable", "runs")
        create_table(boto3.client("dynamodb"), "IdempotencyTable", "idempotency")
        # The function reads only the Hub or its data bucket's data/: the rows go there first, as a user's would.
        boto3.client("s3").upload_file(str(data), "ragtune-bench", "data/rows.jsonl")
        boto3.client("s3").put_object(
            Bucket="ragtune-bench",
            Key="configs/bench.json",
            Body=json.dumps(
                {"dataset": {"source": "s3://ragtune-bench/data/rows.jsonl"}, "validation_fraction": 0.1}
            ).encode(),
        )
        from functions.prepare.app import lambda_handler

        event = {"Records": [{"s3": {"bucket": {"name": "ragtune-bench"}, "object": {"key": "configs/bench.json"}}}]}
        started = time.perf_counter()
        result = lambda_handler(event, _Context())
        seconds = time.perf_counter() - started
        [run] = result["runs"]
        item = boto3.resource("dynamodb").Table("runs").get_item(Key={"run_id": run["run_id"]})["Item"]
    counts = item["counts"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows_read={counts['rows_read']} rows_kept={counts['rows_kept']} status={run['status']}")
    print(f"train_examples={counts['train_examples']} validation_examples={counts['validation_examples']}")
    print(f"train_bytes={item['files']['train']['bytes']} tokens={item['gate']['train']['total_tokens']}")
    print(f"seconds={seconds:.2f} rows_per_second={rows / seconds:,.0f} peak_rss_mib={peak_mib:.0f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
