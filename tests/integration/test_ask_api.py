"""AskFunction called in-process with the REST proxy event files, against moto and the OpenAI emulator.

Runs are written through RunsRepository's own lifecycle writes, and tuned models are real
emulator jobs trained on a small SciQ-shaped file, so answers are the emulator's recall.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from datetime import UTC, date, datetime
from typing import Any

import boto3
import httpx2
import openai
import pytest
from openai import OpenAI

from functions.ask.app import lambda_handler
from functions.prepare.app import lambda_handler as prepare_handler
from local.openai_emulator import OpenAIEmulator
from local.openai_emulator.faults import FaultKind
from shared.aws.runs import RunsRepository
from shared.domain.api_models import RequestValidationBody
from shared.domain.run_record import CURSOR_PATTERN
from shared.pipeline import ask
from shared.providers.openai import gateway as openai_gateway
from shared.providers.openai.gateway import JobSnapshot
from tests.helpers import TEST_OPENAI_KEY, Aws, SetEnv, load_event, sciq_row, write_jsonl

# GET routes publish no metric; Powertools warns about that on every flush.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

NOTEBOOK_SYSTEM = "Given a science question, provide the correct answer with a detailed explanation."
CORIOLIS_QUESTION = (
    "What phenomenon makes global winds blow northeast to southwest or the reverse in the northern "
    "hemisphere and northwest to southeast or the reverse in the southern hemisphere?"
)
CORIOLIS_ANSWER = "Coriolis effect Explanation: Earth's rotation deflects moving air."
BASE_MODEL = "gpt-4o-mini-2024-07-18"
RUN_IN_EVENT_FILES = "sciq-sample-0123456789ab"
PREPARED_OUTCOME: dict[str, Any] = {
    "counts": {
        "rows_read": 14,
        "rows_kept": 12,
        "rows_dropped": 2,
        "dropped_reasons": {"empty support": 2},
        "train_examples": 12,
        "validation_examples": 0,
    },
    "files": {"train": {"key": "datasets/x/train.jsonl", "bytes": 4096, "examples": 12}},
    "gate": {
        "train": {
            "examples": 12,
            "total_tokens": 480,
            "billing_tokens": 470,
            "max_example_tokens": 52,
            "examples_over_token_limit": 0,
            "duplicate_examples": 0,
            "format_errors": {},
        }
    },
    "estimate": {"epochs": 8, "trained_tokens": 3760, "cost_usd": 0.0113, "price_per_million_tokens": 3.0},
}


# Events ------------------------------------------------------------------------------------------


def invoke(event: dict[str, Any], context: Any) -> tuple[int, dict[str, Any]]:
    response = lambda_handler(event, context)
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    return response["statusCode"], json.loads(response["body"])


def ask_event(body: dict[str, Any] | str) -> dict[str, Any]:
    event = load_event("ask-question.json")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def list_event(**query: str) -> dict[str, Any]:
    event = load_event("ask-list-runs.json")
    event["queryStringParameters"] = query or None
    event["multiValueQueryStringParameters"] = {name: [value] for name, value in query.items()} or None
    return event


def run_event(name: str, run_id: str) -> dict[str, Any]:
    """ask-get-run.json or ask-cancel-run.json, for another run id."""
    event = load_event(name)
    event["path"] = event["resource"].replace("{run_id}", run_id)
    event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{event['path']}"
    event["pathParameters"] = {"run_id": run_id}
    return event


# Emulated OpenAI and recorded runs -------------------------------------------------------------


def training_jsonl(system: str | None, extra: tuple[str, str] | None = None) -> bytes:
    pairs = [
        (row["question"], f"{row['correct_answer']} Explanation: {row['support']}")
        for row in (sciq_row(i) for i in range(11))
    ]
    pairs.append(extra or (CORIOLIS_QUESTION, CORIOLIS_ANSWER))
    prompt = [] if system is None else [{"role": "system", "content": system}]
    lines = [
        {"messages": [*prompt, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        for question, answer in pairs
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def start_emulator_job(
    emulator: OpenAIEmulator, system: str | None = NOTEBOOK_SYSTEM, extra: tuple[str, str] | None = None
) -> Any:
    client = OpenAI(base_url=emulator.base_url, api_key=TEST_OPENAI_KEY, max_retries=0)
    file = client.files.create(file=("train.jsonl", training_jsonl(system, extra)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file.id)
    return client.fine_tuning.jobs.retrieve(job.id)  # phase_seconds=0: succeeded on this first read


def record_run(run_id: str, status: str, system: str | None = NOTEBOOK_SYSTEM, **job: Any) -> None:
    """Walk the run through the repository's own writes up to `status`."""
    runs = RunsRepository(os.environ["RUNS_TABLE"])
    config: dict[str, Any] = {
        "dataset": {"source": "allenai/sciq"},
        "template": {"system": system, "user": "{question}", "assistant": "{correct_answer} Explanation: {support}"},
    }
    assert runs.claim_for_preparation(
        run_id, {"config_key": f"configs/{run_id}.json", "config_version": "v1", "config": config}
    )
    if status == "preparing":
        return
    runs.record_prepared(run_id, PREPARED_OUTCOME)
    if status == "prepared":
        return
    assert runs.claim_start(run_id, owner="test")
    assert runs.record_start(run_id, {"provider_state": {"training_file_id": "file-abc"}})
    assert runs.record_job(run_id, status, job, observed_at=time.time_ns())


def trained_run(
    emulator: OpenAIEmulator,
    run_id: str,
    system: str | None = NOTEBOOK_SYSTEM,
    extra: tuple[str, str] | None = None,
    **fields: Any,
) -> str:
    """A run that succeeded with a real emulator model, recorded as the poller records one."""
    job = start_emulator_job(emulator, system, extra)
    assert job.status == "succeeded"
    record_run(
        run_id,
        "succeeded",
        system,
        job_id=job.id,
        fine_tuned_model=job.fine_tuned_model,
        trained_tokens=job.trained_tokens,
        finished_at=int(time.time()),
        **fields,
    )
    return str(job.fine_tuned_model)


def ended(status: str) -> str:
    """A finished status as the API words it: "already succeeded", "already been cancelled"."""
    return "already been cancelled" if status == "cancelled" else f"already {status}"


def chat_requests(emulator: OpenAIEmulator) -> list[Any]:
    return [r for r in emulator.requests if r.path == "/chat/completions"]


def no_retries(set_env: SetEnv) -> None:
    """Faults are injected for good; skip the SDK's backoff to keep the suite fast."""
    set_env(OPENAI_MAX_RETRIES="0")


TUNED_MODEL = "ft:gpt-4o-mini-2024-07-18:org::abc123"
USAGE = {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40}


def chat_completion(*choices: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion object as the spec shapes it, with these choices."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1795766400,
        "model": TUNED_MODEL,
        "choices": [
            {"index": i, "finish_reason": "stop", "logprobs": None, **choice} for i, choice in enumerate(choices)
        ],
        "usage": USAGE,
    }


def openai_answering(monkeypatch: pytest.MonkeyPatch, completion: dict[str, Any]) -> list[httpx2.Request]:
    """Every OpenAI request goes to a transport that answers 200 with `completion`; returns the requests."""
    requests: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return httpx2.Response(200, json=completion)

    client = OpenAI(
        api_key=TEST_OPENAI_KEY,
        base_url="https://openai.invalid/v1",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=httpx2.MockTransport(answer)),
    )
    monkeypatch.setattr(openai_gateway, "_client", lambda *_: client)
    return requests


# POST /ask -------------------------------------------------------------------------------------


def test_answers_with_the_named_runs_model_and_its_training_prompt(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any
) -> None:
    # Given a succeeded run whose model was trained on the Coriolis example
    model = trained_run(emulator, "sciq-aaaaaaaaaaaa")

    # When the question of the original notebook is asked of that run
    status, body = invoke(ask_event({"question": CORIOLIS_QUESTION, "run_id": "sciq-aaaaaaaaaaaa"}), lambda_context)

    # Then the model recalls its training answer
    assert status == 200
    assert body["answer"] == CORIOLIS_ANSWER
    assert body["model"] == model and model.startswith("ft:gpt-4o-mini")
    assert body["run_id"] == "sciq-aaaaaaaaaaaa"
    assert body["refusal"] is None
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] > 0

    # And OpenAI was asked with the run's model, its training system prompt and temperature 0
    [request] = chat_requests(emulator)
    assert request.body["model"] == model
    assert request.body["messages"] == [
        {"role": "system", "content": NOTEBOOK_SYSTEM},
        {"role": "user", "content": CORIOLIS_QUESTION},
    ]
    assert request.body["temperature"] == 0
    assert request.body["max_completion_tokens"] == 512


def test_latest_succeeded_run_answers_when_no_run_is_named(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any
) -> None:
    trained_run(emulator, "older-aaaaaaaaaaaa", system="Old prompt.", extra=(CORIOLIS_QUESTION, "old answer"))
    newer = trained_run(emulator, "newer-bbbbbbbbbbbb", system="New prompt.", extra=(CORIOLIS_QUESTION, "new answer"))
    record_run("running-cccccccccccc", "running", job_id="ftjob-running")  # newest, but has no model

    status, body = invoke(
        ask_event({"question": CORIOLIS_QUESTION, "temperature": 0.7, "max_tokens": 64}), lambda_context
    )

    assert (status, body["answer"], body["model"], body["run_id"]) == (200, "new answer", newer, "newer-bbbbbbbbbbbb")
    [request] = chat_requests(emulator)
    assert request.body["messages"][0] == {"role": "system", "content": "New prompt."}
    assert (request.body["temperature"], request.body["max_completion_tokens"]) == (0.7, 64)


def test_run_without_a_system_prompt_sends_none(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any
) -> None:
    trained_run(emulator, "plain-aaaaaaaaaaaa", system=None)

    status, body = invoke(ask_event({"question": f"  {CORIOLIS_QUESTION}\n"}), lambda_context)

    assert (status, body["answer"]) == (200, CORIOLIS_ANSWER)
    assert chat_requests(emulator)[0].body["messages"] == [{"role": "user", "content": CORIOLIS_QUESTION}]


def test_blank_too_long_or_broken_question_is_a_400_and_never_reaches_openai(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, set_env: SetEnv
) -> None:
    trained_run(emulator, "sciq-aaaaaaaaaaaa")

    blank = invoke(ask_event({"question": "   \n\t"}), lambda_context)
    too_long = invoke(ask_event({"question": "x" * 2001}), lambda_context)
    half_a_character = invoke(ask_event('{"question": "what is \\ud800 here?"}'), lambda_context)  # a JSON escape
    set_env(MAX_QUESTION_CHARS="10")
    over_setting = invoke(ask_event({"question": "eleven char"}), lambda_context)

    assert blank == (400, {"message": "question must not be empty.", "code": "invalid_question"})
    assert too_long == (
        400,
        {"message": "question is 2001 characters long; the limit is 2000 characters.", "code": "invalid_question"},
    )
    assert over_setting == (
        400,
        {"message": "question is 11 characters long; the limit is 10 characters.", "code": "invalid_question"},
    )
    assert half_a_character == (
        400,
        {
            "message": "question is not valid Unicode text: \\ud800 is half of a surrogate pair with no other half.",
            "code": "invalid_question",
        },
    )
    assert chat_requests(emulator) == []


@pytest.mark.parametrize("name", ["ask-question.json", "ask-compare-runs.json"])
def test_a_body_that_is_not_utf8_is_a_422_naming_the_byte_and_reaches_nothing(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, name: str
) -> None:
    """API Gateway passes bytes that are not UTF-8 base64-encoded: the resolver's decoding raised (a 500)."""
    trained_run(emulator, "sciq-aaaaaaaaaaaa")
    event = load_event(name)
    event["body"] = base64.b64encode('{"question": "café", "compare_with": []}'.encode("latin-1")).decode()
    event["isBase64Encoded"] = True

    status, body = invoke(event, lambda_context)

    message = "it is not UTF-8 text (byte 0xe9 at offset 17); send JSON as UTF-8"
    assert (status, body) == (
        422,
        {
            "message": f"Invalid request: body: {message}",
            "code": "invalid_request",
            "detail": [{"loc": ["body"], "msg": message, "type": "body_not_utf8"}],
        },
    )
    RequestValidationBody.model_validate(body)  # the document's 422 shape
    assert chat_requests(emulator) == []
    run = RunsRepository(os.environ["RUNS_TABLE"]).get("sciq-aaaaaaaaaaaa")
    assert run is not None and run.evaluation is None  # nothing claimed


@pytest.mark.parametrize("content_type", ["multipart/form-data", "text/plain; charset=utf-8", "application/xml"])
def test_a_body_sent_as_anything_but_json_is_a_415(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, content_type: str
) -> None:
    """multipart/form-data without a boundary made the resolver's parser raise (a 500)."""
    trained_run(emulator, "sciq-aaaaaaaaaaaa")
    event = ask_event({"question": "What is measured in joules?"})
    event["headers"] = {**event["headers"], "Content-Type": content_type}
    event["multiValueHeaders"] = {**event.get("multiValueHeaders", {}), "Content-Type": [content_type]}

    status, body = invoke(event, lambda_context)

    assert (status, body) == (415, {"message": "Send the body as application/json.", "code": "unsupported_media_type"})
    assert chat_requests(emulator) == []


def test_a_refusal_is_a_200_with_the_models_refusal_and_no_answer(
    aws_account: Aws, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a succeeded run, and a model that declines: content null, refusal set (OpenAI's shape)
    record_run("sciq-aaaaaaaaaaaa", "succeeded", job_id="ftjob-1", fine_tuned_model=TUNED_MODEL)
    refusal = "I'm sorry, I can't help with that."
    sent = openai_answering(
        monkeypatch,
        chat_completion({"message": {"role": "assistant", "content": None, "refusal": refusal, "annotations": []}}),
    )

    # When a question is asked
    status, body = invoke(ask_event({"question": CORIOLIS_QUESTION}), lambda_context)

    # Then the caller hears the refusal, not an empty answer
    assert (status, body) == (
        200,
        {"answer": None, "refusal": refusal, "model": TUNED_MODEL, "run_id": "sciq-aaaaaaaaaaaa", "usage": USAGE},
    )
    assert [json.loads(request.content)["model"] for request in sent] == [TUNED_MODEL]
    assert aws_account.runs()[0]["status"] == "succeeded"


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ((), "OpenAI's chat completion held no choices, so there is no answer to give. Try again."),
        (
            ({"message": {"role": "assistant", "content": None, "refusal": None}},),
            "OpenAI's chat completion held neither an answer nor a refusal. Try again.",
        ),
    ],
)
def test_a_completion_without_an_answer_is_a_502_saying_so(
    aws_account: Aws,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    log_stream: Any,
    choices: tuple[dict[str, Any], ...],
    message: str,
) -> None:
    record_run("sciq-aaaaaaaaaaaa", "succeeded", job_id="ftjob-1", fine_tuned_model=TUNED_MODEL)
    sent = openai_answering(monkeypatch, chat_completion(*choices))

    status, body = invoke(ask_event({"question": CORIOLIS_QUESTION}), lambda_context)

    assert (status, body) == (502, {"message": message, "code": "openai_empty_response"})
    assert len(sent) == 1
    assert "Unexpected error" not in log_stream.getvalue()
    [run] = aws_account.runs()
    assert (run["status"], run["fine_tuned_model"]) == ("succeeded", TUNED_MODEL)


MALFORMED: list[tuple[dict[str, Any], list[Any], str]] = [
    (ask_event({"run_id": "x"}), ["body", "question"], "missing"),
    (ask_event({"question": "q", "temperature": 2.5}), ["body", "temperature"], "less_than_equal"),
    (ask_event({"question": "q", "max_tokens": 0}), ["body", "max_tokens"], "greater_than_equal"),
    (ask_event({"question": "q", "model": "gpt-4o"}), ["body", "model"], "extra_forbidden"),  # never from a caller
    (ask_event({"question": "q", "run_id": ""}), ["body", "run_id"], "string_too_short"),
    (ask_event("{not json"), ["body", 1], "json_invalid"),
    # What json.loads raises other than JSONDecodeError for: too many digits, too deep
    (ask_event('{"question": "q", "max_tokens": ' + "1" * 5000 + "}"), ["body", 0], "json_invalid"),
    (ask_event("[" * 100_000 + "]" * 100_000), ["body", 0], "json_invalid"),
    # An array was answered as its first element: every body the API takes is one object
    (ask_event('[{"question": "q"}, {"question": "r"}]'), ["body", 0], "json_invalid"),
    (ask_event('"q"'), ["body", 0], "json_invalid"),
    (list_event(limit="0"), ["query", "limit"], "greater_than_equal"),
    (list_event(limit="101"), ["query", "limit"], "less_than_equal"),
    (list_event(limit="ten"), ["query", "limit"], "int_parsing"),
]


def test_malformed_requests_are_a_422_naming_the_field(aws_account: Aws, lambda_context: Any) -> None:
    for event, field, kind in MALFORMED:
        status, body = invoke(event, lambda_context)

        assert status == 422, (field, body)
        assert RequestValidationBody.model_validate(body).code == "invalid_request"  # the documented 422 body
        assert [(error["loc"], error["type"]) for error in body["detail"]] == [(field, kind)]
        assert body["message"].startswith("Invalid request: " + ".".join(map(str, field)) + ": ")


def test_unknown_run_is_a_404_on_every_route(aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any) -> None:
    not_found = (404, {"message": f"No run with id {RUN_IN_EVENT_FILES!r}.", "code": "run_not_found"})

    assert invoke(ask_event({"question": "q?", "run_id": RUN_IN_EVENT_FILES}), lambda_context) == not_found
    assert invoke(load_event("ask-get-run.json"), lambda_context) == not_found
    assert invoke(load_event("ask-cancel-run.json"), lambda_context) == not_found
    assert emulator.requests == []


def test_no_model_yet_is_a_409_saying_the_runs_status(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any
) -> None:
    record_run("sciq-aaaaaaaaaaaa", "prepared")
    record_run("sciq-bbbbbbbbbbbb", "running", job_id="ftjob-1")

    named = invoke(ask_event({"question": "q?", "run_id": "sciq-aaaaaaaaaaaa"}), lambda_context)
    latest = invoke(ask_event({"question": "q?"}), lambda_context)

    assert named == (
        409,
        {"message": "Run sciq-aaaaaaaaaaaa is prepared; it has no fine-tuned model yet.", "code": "no_model"},
    )
    assert latest == (
        409,
        {
            "message": "No succeeded run has a fine-tuned model to ask: none has succeeded yet, or their models "
            "were deleted.",
            "code": "no_model",
        },
    )
    assert chat_requests(emulator) == []


def test_without_a_run_id_the_newest_succeeded_run_that_still_has_a_model_answers(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any
) -> None:
    older_model = trained_run(emulator, "sciq-aaaaaaaaaaaa")
    deployment = "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/gone"
    record_run(
        "sciq-bbbbbbbbbbbb", "succeeded", fine_tuned_model=deployment, provider_state={"deployment_arn": deployment}
    )
    assert RunsRepository(os.environ["RUNS_TABLE"]).record_model_deleted("sciq-bbbbbbbbbbbb", deployment)

    status, body = invoke(ask_event({"question": CORIOLIS_QUESTION}), lambda_context)

    assert (status, body["run_id"], body["model"]) == (200, "sciq-aaaaaaaaaaaa", older_model)


def test_openai_refusing_is_a_502_with_its_reason(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, set_env: SetEnv
) -> None:
    trained_run(emulator, "sciq-aaaaaaaaaaaa")
    record_run(
        "gone-bbbbbbbbbbbb",
        "succeeded",
        job_id="ftjob-1",
        fine_tuned_model="ft:gpt-4o-mini-2024-07-18:emulator::deleted1",
    )
    no_retries(set_env)
    emulator.inject_fault("/chat/completions", kind="status", status=400, times=1)

    refused = invoke(ask_event({"question": CORIOLIS_QUESTION, "run_id": "sciq-aaaaaaaaaaaa"}), lambda_context)
    model_gone = invoke(ask_event({"question": "q?", "run_id": "gone-bbbbbbbbbbbb"}), lambda_context)

    assert refused == (
        502,
        {"message": "OpenAI refused the chat completion: Emulated HTTP 400 error.", "code": "openai_refused"},
    )
    # A model the run recorded that OpenAI no longer knows is gone for good (see the 410 tests below).
    assert model_gone[0] == 410 and model_gone[1]["code"] == "model_gone"


def shutdown_date_read_from(emulator: OpenAIEmulator, when: str | None) -> str | None:
    """The emulator announces `when` for the base model; the gateway reads it as the poll does."""
    emulator.shutdown_dates[BASE_MODEL] = when
    read = openai_gateway.gateway().base_model_shutdown_date(BASE_MODEL)
    return read.isoformat() if read else None


def test_a_model_past_its_base_models_shutdown_date_is_a_410_and_openai_is_not_asked(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any
) -> None:
    # Given runs whose recorded shutdown date, as OpenAI announced it, has passed, or is today (UTC)
    model = trained_run(
        emulator, "sciq-aaaaaaaaaaaa", base_model_shutdown_date=shutdown_date_read_from(emulator, "2001-01-01")
    )
    today = datetime.now(UTC).date().isoformat()
    trained_run(emulator, "today-bbbbbbbbbbbb", base_model_shutdown_date=shutdown_date_read_from(emulator, today))

    # When they are asked
    status, body = invoke(ask_event({"question": CORIOLIS_QUESTION, "run_id": "sciq-aaaaaaaaaaaa"}), lambda_context)
    on_the_day = invoke(ask_event({"question": CORIOLIS_QUESTION, "run_id": "today-bbbbbbbbbbbb"}), lambda_context)

    # Then they are gone, say why and since when, and point to Bedrock; OpenAI is never called
    assert (status, body) == (
        410,
        {
            "message": f"Run sciq-aaaaaaaaaaaa's model {model} no longer answers: OpenAI shut down the base model "
            "gpt-4o-mini-2024-07-18 and every fine-tuned model built on it on 2001-01-01. To keep answering "
            'these questions, upload the same config with "provider": "bedrock": the same data trains a model '
            "on Amazon Bedrock.",
            "code": "model_shut_down",
        },
    )
    assert on_the_day[0] == 410 and f"on {today}." in on_the_day[1]["message"]
    assert chat_requests(emulator) == []
    # And the run shows the date
    assert (
        invoke(run_event("ask-get-run.json", "sciq-aaaaaaaaaaaa"), lambda_context)[1]["base_model_shutdown_date"]
        == "2001-01-01"
    )


def test_a_model_before_its_shutdown_date_still_answers(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any
) -> None:
    trained_run(emulator, "sciq-aaaaaaaaaaaa", base_model_shutdown_date=shutdown_date_read_from(emulator, "2999-12-31"))

    status, body = invoke(ask_event({"question": CORIOLIS_QUESTION, "run_id": "sciq-aaaaaaaaaaaa"}), lambda_context)

    assert (status, body["answer"]) == (200, CORIOLIS_ANSWER)
    assert (
        invoke(run_event("ask-get-run.json", "sciq-aaaaaaaaaaaa"), lambda_context)[1]["base_model_shutdown_date"]
        == "2999-12-31"
    )


def test_openai_not_knowing_a_recorded_model_any_more_is_a_410_model_gone(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, set_env: SetEnv
) -> None:
    # Given a run recorded while OpenAI announced a far shutdown date, then OpenAI shuts the model down early
    model = trained_run(
        emulator, "sciq-aaaaaaaaaaaa", base_model_shutdown_date=shutdown_date_read_from(emulator, "2999-12-31")
    )
    emulator.shutdown_dates[BASE_MODEL] = "2001-01-01"
    no_retries(set_env)

    status, body = invoke(ask_event({"question": CORIOLIS_QUESTION, "run_id": "sciq-aaaaaaaaaaaa"}), lambda_context)

    assert (status, body) == (
        410,
        {
            "message": f"OpenAI no longer knows run sciq-aaaaaaaaaaaa's model {model} (it answered 404 "
            "model_not_found): the model has been shut down (its base model's recorded shutdown date: "
            "2999-12-31) or deleted, or this deployment's OpenAI key now belongs to another organisation. "
            'To keep answering these questions, upload the same config with "provider": "bedrock": the same '
            "data trains a model on Amazon Bedrock.",
            "code": "model_gone",
        },
    )
    assert [r.status for r in chat_requests(emulator)] == [404]

    # A 404 that is not model_not_found stays OpenAI refusing (502)
    emulator.shutdown_dates[BASE_MODEL] = None
    emulator.inject_fault("/chat/completions", kind="status", status=404, times=1)
    refused = invoke(ask_event({"question": CORIOLIS_QUESTION, "run_id": "sciq-aaaaaaaaaaaa"}), lambda_context)
    assert refused == (
        502,
        {"message": "OpenAI refused the chat completion: Emulated HTTP 404 error.", "code": "openai_refused"},
    )


def test_unexpected_error_is_a_generic_500_detailed_only_in_logs(
    aws_account: Aws, lambda_context: Any, log_stream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> RunsRepository:
        raise RuntimeError("table exploded: internal detail")

    monkeypatch.setattr(ask, "_runs", broken)

    status, body = invoke(ask_event({"question": "q?"}), lambda_context)

    assert (status, body) == (
        500,
        {"message": "Internal error; it has been logged with this request's id.", "code": "internal_error"},
    )
    [log] = [json.loads(line) for line in log_stream.getvalue().splitlines() if "Unexpected error" in line]
    assert "table exploded: internal detail" in log["exception"]
    assert log["correlation_id"] == load_event("ask-question.json")["requestContext"]["requestId"]


def test_logs_never_hold_the_openai_key_the_api_key_or_the_question(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    log_stream: Any,
    set_env: SetEnv,
) -> None:
    trained_run(emulator, "sciq-aaaaaaaaaaaa")
    invoke(ask_event({"question": CORIOLIS_QUESTION}), lambda_context)
    no_retries(set_env)
    emulator.inject_fault("/chat/completions", kind="status", status=401, times=1)
    invoke(ask_event({"question": CORIOLIS_QUESTION}), lambda_context)

    logs = log_stream.getvalue()
    answered = [json.loads(line) for line in logs.splitlines() if "Question answered" in line]
    assert answered and answered[0]["run_id"] == "sciq-aaaaaaaaaaaa"
    assert "OpenAI refused" in logs
    assert TEST_OPENAI_KEY not in logs
    assert load_event("ask-question.json")["headers"]["x-api-key"] not in logs
    assert "northern hemisphere" not in logs


# GET /runs -------------------------------------------------------------------------------------


def test_runs_are_listed_newest_first_across_pages(aws_account: Aws, lambda_context: Any) -> None:
    for name in ("first", "second", "third"):
        record_run(f"{name}-000000000000", "prepared")

    status, page = invoke(list_event(limit="2"), lambda_context)
    assert status == 200
    assert [run["run_id"] for run in page["runs"]] == ["third-000000000000", "second-000000000000"]
    assert page["next_cursor"]
    assert set(page["runs"][0]) == {
        "run_id",
        "status",
        "provider",
        "created_at",
        "updated_at",
        "config_key",
        "fine_tuned_model",
        "adopted",  # false: the run trains its model
        "model_shutdown",  # null until an OpenAI run records its model's shutdown date
        "error",
        # What the dashboard's runs table shows beside them, null until known
        "base_model",
        "trained_tokens",
        "finished_at",
        "estimated_cost_usd",
    }
    assert (page["runs"][0]["adopted"], page["runs"][0]["model_shutdown"]) == (False, None)
    assert page["runs"][0]["status"] == "prepared"
    assert page["runs"][0]["provider"] == "openai"  # older items without one: OpenAI, the only provider then
    assert page["runs"][0]["config_key"] == "configs/third-000000000000.json"

    status, last = invoke(list_event(limit="2", cursor=page["next_cursor"]), lambda_context)
    assert status == 200
    assert ([run["run_id"] for run in last["runs"]], last["next_cursor"]) == (["first-000000000000"], None)

    status, everything = invoke(load_event("ask-list-runs.json"), lambda_context)  # limit=20
    assert status == 200 and everything["next_cursor"] is None
    assert [run["run_id"] for run in everything["runs"]] == [
        f"{name}-000000000000" for name in ("third", "second", "first")
    ]


def test_a_cursor_not_of_the_documented_form_is_a_422_naming_it(aws_account: Aws, lambda_context: Any) -> None:
    status, body = invoke(list_event(cursor="not-a-cursor"), lambda_context)

    assert status == 422 and body["code"] == "invalid_request"
    assert [error["loc"] for error in body["detail"]] == [["query", "cursor"]]


# GET /runs/{run_id} ------------------------------------------------------------------------------


def test_run_detail_shows_what_a_user_needs_and_nothing_internal(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any
) -> None:
    model = trained_run(
        emulator,
        RUN_IN_EVENT_FILES,
        metrics={"step": 96, "train_loss": 0.25},
        events=[{"id": "ftevent-1", "created_at": 1795766400, "level": "info", "message": "Job done"}],
        last_event_id="ftevent-1",
        event_count=1,
        base_model_shutdown_date="2027-01-14",
    )

    status, run = invoke(load_event("ask-get-run.json"), lambda_context)

    assert status == 200
    assert set(run) == {
        "run_id",
        "status",
        "provider",
        "created_at",
        "updated_at",
        "status_changed_at",
        "finished_at",
        "config_key",
        "base_model",  # the config's fine_tune.model, for the runs table
        "estimated_cost_usd",  # the estimate's cost, for the runs table
        "config_version",
        "config",
        "counts",
        "files",
        "gate",
        "tokens",
        "estimate",
        "training_file_id",
        "validation_file_id",
        "job_id",
        "fine_tuned_model",
        "trained_tokens",
        "estimated_finish",
        "base_model_shutdown_date",
        "dataset_object",  # the data file prepared from, pinned: null for a Hub dataset like this run's
        "model_shutdown",  # "shuts down on 2027-01-14 (N days)", from base_model_shutdown_date and today
        "model_gone_at",  # null until the provider refuses the model as gone
        "adopted",
        "deployment_arn",  # Bedrock runs' deployment fields: null on an OpenAI run
        "model_deleted_at",
        "deleted_deployment_arn",
        "weights_uri",  # open runs' weights and their manifest's link: null on an OpenAI run
        "weights_manifest_url",
        "metrics",
        "notification_error",  # null unless SNS refused the finished run's notice
        "events",
        "error",
        "evaluation_status",  # null until the run has held-out questions evaluated
        "report_urls",  # {} until the job's curve or the evaluation is written
    }
    assert (run["run_id"], run["status"], run["fine_tuned_model"]) == (RUN_IN_EVENT_FILES, "succeeded", model)
    assert (run["evaluation_status"], run["report_urls"]) == (None, {})
    assert run["base_model_shutdown_date"] == "2027-01-14"
    days = (date(2027, 1, 14) - datetime.now(UTC).date()).days
    expected = (
        f"shuts down on 2027-01-14 ({days} day{'s' if days != 1 else ''})" if days > 0 else "shut down on 2027-01-14"
    )
    assert (run["model_shutdown"], run["model_gone_at"], run["adopted"]) == (expected, None, False)
    assert run["job_id"].startswith("ftjob-") and run["trained_tokens"] > 0
    assert (run["config_key"], run["config_version"]) == (f"configs/{RUN_IN_EVENT_FILES}.json", "v1")
    assert (run["training_file_id"], run["validation_file_id"]) == ("file-abc", None)
    # A run without an evaluation has no question counts: null, as the document says of an absent count.
    question_counts = ("evaluation_questions", "evaluation_questions_skipped", "evaluation_questions_trained")
    assert run["counts"] == PREPARED_OUTCOME["counts"] | dict.fromkeys(
        (*question_counts, "questions_from_rows_held_out")
    )
    assert run["files"] == {**PREPARED_OUTCOME["files"], "validation": None, "questions": None}
    assert run["gate"] == {**PREPARED_OUTCOME["gate"], "validation": None}
    assert run["config"]["template"]["system"] == NOTEBOOK_SYSTEM
    assert run["tokens"] == {"total_tokens": 480, "billing_tokens": 470}
    assert run["estimate"] == PREPARED_OUTCOME["estimate"]
    assert run["metrics"] == {"step": 96, "train_loss": 0.25}
    assert run["events"] == [
        {"id": "ftevent-1", "created_at": "2026-11-27T08:00:00Z", "level": "info", "message": "Job done"}
    ]
    assert run["finished_at"].endswith("Z") and run["created_at"] <= run["updated_at"]
    assert run["error"] is None and run["estimated_finish"] is None
    assert run["deployment_arn"] is None and run["model_deleted_at"] is None
    assert run["notification_error"] is None


def test_early_run_detail_has_nulls_not_errors(aws_account: Aws, lambda_context: Any) -> None:
    record_run("early-000000000000", "preparing")

    status, run = invoke(run_event("ask-get-run.json", "early-000000000000"), lambda_context)

    assert status == 200
    assert run["status"] == "preparing"
    assert (run["counts"], run["tokens"], run["job_id"], run["events"]) == (None, None, None, [])
    assert (run["files"], run["gate"], run["training_file_id"]) == (None, None, None)
    assert run["base_model_shutdown_date"] is None


def test_run_detail_shows_the_config_files_and_gate_prepare_recorded(
    aws_account: Aws, lambda_context: Any, tmp_path: Any
) -> None:
    # Given a run PrepareFunction prepared from a config with a validation split and explicit settings
    rows = [sciq_row(i) for i in range(16)] + [sciq_row(16, support="")]
    data = write_jsonl(tmp_path / "sciq.jsonl", rows)
    aws_account.s3.upload_file(str(data), aws_account.bucket, "data/sciq.jsonl")
    version = aws_account.put_config(
        "configs/sciq-sample.json",
        {
            "dataset": {"source": f"s3://{aws_account.bucket}/data/sciq.jsonl"},
            "validation_fraction": 0.25,
            "max_examples": 40,
            "fine_tune": {"suffix": "sciq", "hyperparameters": {"n_epochs": 2}},
        },
    )
    prepare_handler(load_event("prepare-config-created.json"), lambda_context)
    [recorded] = aws_account.runs()
    assert recorded["status"] == "prepared"

    # When the run is shown
    status, run = invoke(run_event("ask-get-run.json", recorded["run_id"]), lambda_context)

    # Then its body holds the resolved config, both files and both gate reports, as recorded
    assert status == 200
    assert run["config"] == recorded["config"]
    assert run["config"]["validation_fraction"] == 0.25 and run["config"]["seed"] == 42  # a default, resolved
    assert run["config"]["fine_tune"]["hyperparameters"] == {
        "n_epochs": 2,
        "batch_size": "auto",
        "learning_rate_multiplier": "auto",
    }
    assert run["files"] == recorded["files"]
    assert run["files"]["validation"] == {
        "key": f"datasets/{run['run_id']}/validation.jsonl",
        "bytes": len(aws_account.read(run["files"]["validation"]["key"])),
        "examples": 4,
    }
    assert run["files"]["train"]["examples"] == 12
    assert run["gate"] == recorded["gate"]
    assert run["gate"]["validation"]["examples"] == 4 and run["gate"]["train"]["format_errors"] == {}
    assert run["tokens"] == {
        "total_tokens": recorded["gate"]["train"]["total_tokens"],
        "billing_tokens": recorded["gate"]["train"]["billing_tokens"],
    }
    assert (run["config_key"], run["config_version"]) == ("configs/sciq-sample.json", version)
    assert "config_sha256" in recorded and "config_sha256" not in run


# POST /runs/{run_id}/cancel ----------------------------------------------------------------------


@pytest.mark.parametrize("tracking_failed", [False, True])
def test_cancel_stops_a_running_job_and_records_it(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, tracking_failed: bool
) -> None:
    emulator.phase_seconds = 1000  # the job stays in progress
    job = start_emulator_job(emulator)
    record_run("sciq-aaaaaaaaaaaa", job.status, job_id=job.id)
    if tracking_failed:  # its error no longer describes a run that ended cancelled
        RunsRepository(os.environ["RUNS_TABLE"]).record_tracking_failure("sciq-aaaaaaaaaaaa", "gave up")

    status, body = invoke(run_event("ask-cancel-run.json", "sciq-aaaaaaaaaaaa"), lambda_context)

    assert (status, body) == (202, {"run_id": "sciq-aaaaaaaaaaaa", "status": "cancelled"})
    assert emulator.jobs[job.id].status == "cancelled"
    assert [r.path for r in emulator.requests if r.method == "POST"][-1] == f"/fine_tuning/jobs/{job.id}/cancel"
    [run] = aws_account.runs()
    assert (run["status"], run["job_id"]) == ("cancelled", job.id)
    assert abs(run["finished_at"] - time.time()) < 60
    assert "error" not in run


def test_cancel_a_finished_run_or_one_without_a_job_is_a_409(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any
) -> None:
    trained_run(emulator, "done-aaaaaaaaaaaa")
    record_run("early-bbbbbbbbbbbb", "prepared")
    requests_before = len(emulator.requests)

    finished = invoke(run_event("ask-cancel-run.json", "done-aaaaaaaaaaaa"), lambda_context)
    no_job = invoke(run_event("ask-cancel-run.json", "early-bbbbbbbbbbbb"), lambda_context)

    assert finished == (
        409,
        {
            "message": "Run done-aaaaaaaaaaaa has already succeeded; there is nothing to cancel.",
            "code": "not_cancellable",
            "status": "succeeded",
        },
    )
    assert no_job == (
        409,
        {
            "message": "Run early-bbbbbbbbbbbb is prepared and has no fine-tuning job yet; nothing to cancel.",
            "code": "not_cancellable",
            "status": "prepared",
        },
    )
    assert len(emulator.requests) == requests_before


def test_cancel_while_openai_is_down_is_a_503_and_changes_nothing(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, set_env: SetEnv
) -> None:
    emulator.phase_seconds = 1000
    job = start_emulator_job(emulator)
    record_run("sciq-aaaaaaaaaaaa", "running", job_id=job.id)
    no_retries(set_env)
    emulator.inject_fault(r"/fine_tuning/jobs/[^/]+/cancel", kind="status", status=503, times=10)

    status, body = invoke(run_event("ask-cancel-run.json", "sciq-aaaaaaaaaaaa"), lambda_context)

    assert (status, body["code"]) == (503, "openai_unavailable")
    assert aws_account.runs()[0]["status"] == "running"


def finished_emulator_job(emulator: OpenAIEmulator, outcome: str) -> Any:
    """A job that reached `outcome` at OpenAI (succeeded, failed on a too-small file, or cancelled there)."""
    client = OpenAI(base_url=emulator.base_url, api_key=TEST_OPENAI_KEY, max_retries=0)
    if outcome == "failed":
        too_few = b"".join(training_jsonl(NOTEBOOK_SYSTEM).splitlines(keepends=True)[:3])
        file = client.files.create(file=("train.jsonl", too_few), purpose="fine-tune")
        return client.fine_tuning.jobs.retrieve(
            client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file.id).id
        )
    if outcome == "cancelled":
        emulator.phase_seconds = 1000
        job = start_emulator_job(emulator)
        return client.fine_tuning.jobs.cancel(job.id)
    return start_emulator_job(emulator)


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled"])
@pytest.mark.parametrize("recorded_status", ["running", "tracking_failed"])
def test_cancelling_a_job_that_already_finished_is_a_409_and_records_its_real_state(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    set_env: SetEnv,
    outcome: str,
    recorded_status: str,
) -> None:
    # Given a job that finished at OpenAI while its run still records it as unfinished
    job = finished_emulator_job(emulator, outcome)
    assert job.status == outcome
    record_run("sciq-aaaaaaaaaaaa", "running", job_id=job.id)
    if recorded_status == "tracking_failed":  # the poller gave up: nothing else will catch up with the job
        RunsRepository(os.environ["RUNS_TABLE"]).record_tracking_failure("sciq-aaaaaaaaaaaa", "gave up")
    no_retries(set_env)

    # When the caller asks to cancel it
    status, body = invoke(run_event("ask-cancel-run.json", "sciq-aaaaaaaaaaaa"), lambda_context)

    # Then OpenAI refused, and the caller hears why, with the job's real status
    assert (status, body) == (
        409,
        {
            "message": f"Job {job.id} has {ended(outcome)} at OpenAI, so it cannot be cancelled; "
            f"run sciq-aaaaaaaaaaaa now records it as {outcome}.",
            "code": "job_already_finished",
            "status": outcome,
        },
    )
    assert [(r.method, r.path, r.status) for r in emulator.requests[-2:]] == [
        ("POST", f"/fine_tuning/jobs/{job.id}/cancel", 400),
        ("GET", f"/fine_tuning/jobs/{job.id}", 200),
    ]

    # And the run records the job as a poll records it: status, model, tokens, error, when it finished
    [run] = aws_account.runs()
    assert (run["status"], run["job_id"]) == (outcome, job.id)
    assert run.get("fine_tuned_model") == job.fine_tuned_model
    assert run.get("trained_tokens") == job.trained_tokens
    assert abs(run["finished_at"] - time.time()) < 60 and run["job_observed_at"] > 0
    assert run.get("error") == JobSnapshot.of(job).run_fields().get("error")  # a tracking error is gone
    if outcome == "failed":
        assert job.error.message in run["error"]["message"]
    shown = invoke(run_event("ask-get-run.json", "sciq-aaaaaaaaaaaa"), lambda_context)[1]
    assert (shown["status"], shown["fine_tuned_model"]) == (outcome, job.fine_tuned_model)
    assert shown["error"] == (None if "error" not in run else {"openai_code": None, **run["error"]})
    if outcome == "succeeded":  # and its model now answers
        assert invoke(ask_event({"question": CORIOLIS_QUESTION}), lambda_context)[1]["answer"] == CORIOLIS_ANSWER

    # And a second cancel is the plain conflict of a finished run, with no call to OpenAI
    requests_before = len(emulator.requests)
    again = invoke(run_event("ask-cancel-run.json", "sciq-aaaaaaaaaaaa"), lambda_context)
    assert again == (
        409,
        {
            "message": f"Run sciq-aaaaaaaaaaaa has {ended(outcome)}; there is nothing to cancel.",
            "code": "not_cancellable",
            "status": outcome,
        },
    )
    assert len(emulator.requests) == requests_before


def test_cancel_refused_for_a_job_still_going_is_a_502_and_changes_nothing(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any, set_env: SetEnv
) -> None:
    emulator.phase_seconds = 1000
    job = start_emulator_job(emulator)
    record_run("sciq-aaaaaaaaaaaa", "running", job_id=job.id)
    no_retries(set_env)
    emulator.inject_fault(r"/fine_tuning/jobs/[^/]+/cancel", kind="status", status=400, times=1)

    status, body = invoke(run_event("ask-cancel-run.json", "sciq-aaaaaaaaaaaa"), lambda_context)

    assert (status, body) == (
        502,
        {"message": "OpenAI refused cancelling the job: Emulated HTTP 400 error.", "code": "openai_refused"},
    )
    assert emulator.jobs[job.id].status not in ("succeeded", "failed", "cancelled")
    [run] = aws_account.runs()
    assert run["status"] == "running" and "finished_at" not in run


def test_an_unreadable_api_key_secret_is_a_503_that_blames_the_deployment(
    aws_account: Aws, emulator: OpenAIEmulator, lambda_context: Any
) -> None:
    trained_run(emulator, "sciq-aaaaaaaaaaaa")
    boto3.client("secretsmanager").delete_secret(SecretId="ragtune/openai-api-key", ForceDeleteWithoutRecovery=True)

    status, body = invoke(ask_event({"question": CORIOLIS_QUESTION}), lambda_context)

    assert (status, body["code"]) == (503, "openai_key_unavailable")
    assert chat_requests(emulator) == []


def test_any_cursor_of_the_documented_form_is_a_position_the_page_starts_after(
    aws_account: Aws, lambda_context: Any
) -> None:
    """What the document allows is accepted: a cursor is a creation time and a run id, not a token to forge."""
    for name in ("first", "second", "third"):
        record_run(f"{name}-000000000000", "prepared")
    _, everything = invoke(load_event("ask-list-runs.json"), lambda_context)
    second = everything["runs"][1]

    at_second = f"{second['created_at']}~{second['run_id']}"  # the listing's own fields make a cursor
    status, after_second = invoke(list_event(cursor=at_second), lambda_context)
    status_future, from_the_future = invoke(list_event(cursor="9999-12-31T23:59:59Z~z"), lambda_context)

    assert re.fullmatch(CURSOR_PATTERN, at_second)
    assert (status, [run["run_id"] for run in after_second["runs"]]) == (200, ["first-000000000000"])
    assert (status_future, len(from_the_future["runs"])) == (200, 3)


@pytest.mark.parametrize(("kind", "status"), [("status", 429), ("status", 500), ("drop", 0), ("slow", 0)])
def test_every_openai_fault_on_ask_is_a_503_after_bounded_retries(
    aws_account: Aws,
    emulator: OpenAIEmulator,
    lambda_context: Any,
    set_env: SetEnv,
    kind: FaultKind,
    status: int,
) -> None:
    trained_run(emulator, "sciq-aaaaaaaaaaaa")
    set_env(OPENAI_MAX_RETRIES="1", OPENAI_TIMEOUT_SECONDS="0.3")
    emulator.inject_fault("/chat/completions", kind=kind, status=status or 500, delay=1.0, retry_after=0.01, times=10)

    code, body = invoke(ask_event({"question": CORIOLIS_QUESTION}), lambda_context)

    assert (code, body["code"]) == (503, "openai_unavailable")
    assert len(chat_requests(emulator)) == 2  # one retry, then the caller hears about it
