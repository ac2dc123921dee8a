"""The ask handler's own work around the model call: p50 and p99 over 1,000 in-process POST /ask requests.

AskFunction's real handler answers the REST proxy event file against moto, with the provider's `answer`
replaced by one that returns at once, so what is timed is everything else a request costs: routing and
validation, finding the run, the gateway (secret, client), the log line, the metric, the response.
Two cases: without a run id (the latest succeeded run) and with one (the run is read from DynamoDB: a
moto GetItem is part of the figure). Logs and metrics are written to /dev/null, not the terminal.
Usage: python -m benchmarks.ask_overhead [requests]
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "ragtune",
        "POWERTOOLS_METRICS_NAMESPACE": "Ragtune",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "DATA_BUCKET": "ragtune-bench",
        "RUNS_TABLE": "runs",
        "IDEMPOTENCY_TABLE": "idempotency",
        "OPENAI_API_KEY_SECRET": "ragtune/openai-api-key",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:unused",
        "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:unused",
    }
)

import boto3
from moto import mock_aws

from local.template import create_table

ROOT = Path(__file__).resolve().parent.parent
GOAL_P50_MS, GOAL_P99_MS = 3.0, 15.0
RUN_ID = "bench-0123456789ab"
MODEL = "ft:gpt-4o-mini-2024-07-18:org::bench"
WARM_UP_REQUESTS = 50


class _Context:
    function_name = "ragtune-ask"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ragtune-ask"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _record_succeeded_run() -> None:
    """Through the repository's own lifecycle writes, as the pipeline records a run."""
    from shared.aws.runs import RunsRepository

    runs = RunsRepository(os.environ["RUNS_TABLE"])
    config = {"dataset": {"source": "allenai/sciq"}, "template": {"system": "Answer.", "user": "{question}"}}
    runs.claim_for_preparation(RUN_ID, {"config_key": "configs/bench.json", "config_version": "v1", "config": config})
    runs.record_prepared(
        RUN_ID,
        {
            "counts": {"rows_read": 1, "rows_kept": 1, "rows_dropped": 0, "train_examples": 1},
            "files": {"train": {"key": f"datasets/{RUN_ID}/train.jsonl", "bytes": 1, "examples": 1}},
        },
    )
    runs.claim_start(RUN_ID, owner="bench")
    runs.record_start(RUN_ID, {"provider_state": {"training_file_id": "file-bench"}})
    runs.record_job(
        RUN_ID, "succeeded", {"job_id": "ftjob-bench", "fine_tuned_model": MODEL}, observed_at=time.time_ns()
    )


def _answer_at_once() -> None:
    """The model call is not what is measured: OpenAI's answer is a fixed one, given without a request."""
    from shared.providers.base import Answer
    from shared.providers.openai.gateway import OpenAIGateway

    fixed = Answer(text="Coriolis effect", refusal=None, model=MODEL, usage={"prompt_tokens": 1, "total_tokens": 2})
    OpenAIGateway.answer = lambda *_args, **_kwargs: fixed  # type: ignore[method-assign]


class _DynamoDBClock:
    """Milliseconds spent in the run reads (RunsRepository's calls to DynamoDB), to tell them apart."""

    def __init__(self) -> None:
        from shared.aws.runs import RunsRepository

        self.spent_ms = 0.0
        for name in ("get", "latest_succeeded"):
            read = getattr(RunsRepository, name)
            setattr(RunsRepository, name, self._clocked(read))

    def _clocked(self, read: Any) -> Any:
        def clocked(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return read(*args, **kwargs)
            finally:
                self.spent_ms += (time.perf_counter() - started) * 1000

        return clocked


def _timed(handler: Any, event: dict[str, Any], requests: int, clock: _DynamoDBClock) -> list[tuple[float, float]]:
    """(whole request, of which reading runs) in ms, for each request after the warm-up."""
    context = _Context()
    for _ in range(WARM_UP_REQUESTS):
        handler(event, context)
    took = []
    for _ in range(requests):
        clock.spent_ms = 0.0
        started = time.perf_counter()
        response = handler(event, context)
        took.append(((time.perf_counter() - started) * 1000, clock.spent_ms))
        assert response["statusCode"] == 200, response["body"]
    return took


def _centiles(values: list[float]) -> tuple[float, float]:
    centiles = statistics.quantiles(values, n=100)
    return centiles[49], centiles[98]


def main(requests: int) -> None:
    event = json.loads((ROOT / "infra" / "events" / "ask-question.json").read_text(encoding="utf-8"))
    named = {**event, "body": json.dumps({**json.loads(event["body"]), "run_id": RUN_ID})}
    with mock_aws():
        create_table(boto3.client("dynamodb"), "RunsTable", os.environ["RUNS_TABLE"])
        boto3.client("secretsmanager").create_secret(Name=os.environ["OPENAI_API_KEY_SECRET"], SecretString="sk-b")
        _record_succeeded_run()
        _answer_at_once()
        from functions.ask.app import lambda_handler
        from shared.observability import logger

        with Path(os.devnull).open("w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
            logger.registered_handler.setStream(sink)  # type: ignore[attr-defined]
            clock = _DynamoDBClock()
            started = time.perf_counter()
            lambda_handler(event, _Context())
            first_ms = (time.perf_counter() - started) * 1000
            figures = {"latest run": _timed(lambda_handler, event, requests, clock)}
            figures["named run"] = _timed(lambda_handler, named, requests, clock)
    print(f"ask overhead: {requests} in-process POST /ask, model answering at once, moto for AWS")
    print("  own = the request less its DynamoDB reads (moto's, far from DynamoDB's own latency)")
    print(
        f"  first request of the process: {first_ms:.0f} ms (imports the OpenAI SDK, makes its client, reads "
        "the secret: the share of an OpenAI run's cold start that the handler's import no longer pays)"
    )
    for case, took in figures.items():
        p50, p99 = _centiles([whole for whole, _ in took])
        own_p50, own_p99 = _centiles([whole - reading for whole, reading in took])
        verdict = "met" if own_p50 <= GOAL_P50_MS and own_p99 <= GOAL_P99_MS else "MISSED"
        print(
            f"  {case:<11} own p50_ms={own_p50:6.2f} (goal <= {GOAL_P50_MS:.0f})  "
            f"own p99_ms={own_p99:6.2f} (goal <= {GOAL_P99_MS:.0f})  {verdict};  "
            f"with DynamoDB reads p50_ms={p50:6.2f} p99_ms={p99:6.2f}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
