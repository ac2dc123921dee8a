"""/ask keeps the latest succeeded run for a few seconds; a named run is read from DynamoDB on every request.

DynamoDB's requests are counted on the runs table's own client (botocore's before-call event).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from shared import aws
from shared.pipeline import ask
from tests.helpers import Aws
from tests.integration.test_ask_api import (
    CORIOLIS_QUESTION,
    TUNED_MODEL,
    ask_event,
    chat_completion,
    invoke,
    openai_answering,
    record_run,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

OLDER_MODEL = "ft:gpt-4o-mini-2024-07-18:org::older"
NEWER_MODEL = "ft:gpt-4o-mini-2024-07-18:org::newer"


@pytest.fixture
def dynamodb_requests(aws_account: Aws) -> Iterator[list[str]]:
    """The operations the runs table's client sends, in order."""
    sent: list[str] = []
    events = aws.dynamodb_table(os.environ["RUNS_TABLE"]).meta.client.meta.events

    def count(model: Any, **_: Any) -> None:
        sent.append(model.name)

    events.register("before-call.dynamodb", count, unique_id="ask-cache-test")
    yield sent
    events.unregister("before-call.dynamodb", unique_id="ask-cache-test")


class Clock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The cache /ask uses, on a clock the test turns."""
    turned = Clock()
    cache = ask.LatestSucceededRun(ask.LATEST_SUCCEEDED_RUN_TTL_SECONDS, clock=turned)
    monkeypatch.setattr(ask, "latest_succeeded_run", cache)
    return turned


def _ask(lambda_context: Any, **body: Any) -> tuple[int, dict[str, Any]]:
    return invoke(ask_event({"question": CORIOLIS_QUESTION, **body}), lambda_context)


def test_within_the_ttl_the_latest_run_is_not_queried_again(
    dynamodb_requests: list[str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: Any,
) -> None:
    answered = chat_completion({"message": {"role": "assistant", "content": "Coriolis effect", "refusal": None}})
    sent = openai_answering(monkeypatch, answered)
    record_run("older-aaaaaaaaaaaa", "succeeded", job_id="ftjob-1", fine_tuned_model=OLDER_MODEL)
    dynamodb_requests.clear()

    first = _ask(lambda_context)
    record_run("newer-bbbbbbbbbbbb", "succeeded", job_id="ftjob-2", fine_tuned_model=NEWER_MODEL)
    dynamodb_requests.clear()
    clock.now += ask.LATEST_SUCCEEDED_RUN_TTL_SECONDS - 0.01
    within_ttl = _ask(lambda_context)
    queries_within_ttl = list(dynamodb_requests)
    clock.now += 0.01
    after_ttl = _ask(lambda_context)

    assert [(status, body["run_id"]) for status, body in (first, within_ttl, after_ttl)] == [
        (200, "older-aaaaaaaaaaaa"),
        (200, "older-aaaaaaaaaaaa"),
        (200, "newer-bbbbbbbbbbbb"),
    ]
    assert queries_within_ttl == []
    assert dynamodb_requests == ["Query"]
    assert [json.loads(request.content)["model"] for request in sent] == [OLDER_MODEL, OLDER_MODEL, NEWER_MODEL]


def test_a_named_run_is_read_on_every_request_whatever_the_cache_holds(
    dynamodb_requests: list[str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: Any,
) -> None:
    answered = chat_completion({"message": {"role": "assistant", "content": "Coriolis effect", "refusal": None}})
    sent = openai_answering(monkeypatch, answered)
    record_run("older-aaaaaaaaaaaa", "succeeded", job_id="ftjob-1", fine_tuned_model=OLDER_MODEL)
    record_run("newer-bbbbbbbbbbbb", "succeeded", job_id="ftjob-2", fine_tuned_model=TUNED_MODEL)
    assert _ask(lambda_context)[1]["run_id"] == "newer-bbbbbbbbbbbb"  # the cache now holds the newer run
    dynamodb_requests.clear()

    named = [_ask(lambda_context, run_id="older-aaaaaaaaaaaa") for _ in range(2)]

    assert [(status, body["run_id"]) for status, body in named] == [(200, "older-aaaaaaaaaaaa")] * 2
    assert dynamodb_requests == ["GetItem", "GetItem"]
    assert [json.loads(request.content)["model"] for request in sent][1:] == [OLDER_MODEL, OLDER_MODEL]


def test_no_succeeded_run_yet_is_not_kept_so_the_first_one_answers_at_once(
    dynamodb_requests: list[str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: Any,
) -> None:
    answered = chat_completion({"message": {"role": "assistant", "content": "Coriolis effect", "refusal": None}})
    openai_answering(monkeypatch, answered)

    before = _ask(lambda_context)
    record_run("first-aaaaaaaaaaaa", "succeeded", job_id="ftjob-1", fine_tuned_model=OLDER_MODEL)
    dynamodb_requests.clear()
    after = _ask(lambda_context)

    assert (before[0], before[1]["code"]) == (409, "no_model")
    assert (after[0], after[1]["run_id"]) == (200, "first-aaaaaaaaaaaa")
    assert dynamodb_requests == ["Query"]
