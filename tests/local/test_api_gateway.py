"""The local API Gateway front: routes from the template, AWS's proxy event shape, AWS's own answers."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from local.api_gateway import LocalApiGateway, Route, gateway_responses_from_template, routes_from_template, stage_name
from local.lambda_runtime import LambdaContext
from local.template import load_template
from tests.helpers import Aws, load_event

KEY = "local-test-key-0123456789"
OK_RESPONSE = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"ok": true}'}


@dataclass
class RecordingInvoke:
    """Stands in for the function: records what it was sent, answers `response` (or raises it)."""

    response: Any = field(default_factory=lambda: dict(OK_RESPONSE))
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, function_logical_id: str, event: dict[str, Any]) -> Any:
        self.calls.append((function_logical_id, event))
        if isinstance(self.response, Exception):
            raise self.response
        return self.response

    @property
    def event(self) -> dict[str, Any]:
        assert len(self.calls) == 1
        return self.calls[0][1]


@pytest.fixture
def function() -> RecordingInvoke:
    return RecordingInvoke()


@pytest.fixture
def api(function: RecordingInvoke) -> Iterator[str]:
    responses = gateway_responses_from_template()
    with LocalApiGateway(routes_from_template(), function, {KEY}, stage=stage_name(), responses=responses) as gateway:
        yield gateway.url


def get(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(url, headers={"x-api-key": KEY}, timeout=5, **kwargs)


def assert_shaped_like(event: dict[str, Any], event_file: str) -> None:
    """Same keys as the AWS-shaped event file, at the top, in requestContext and in its identity."""
    expected = load_event(event_file)
    assert set(event) == set(expected)
    assert set(event["requestContext"]) == set(expected["requestContext"])
    assert set(event["requestContext"]["identity"]) == set(expected["requestContext"]["identity"])


# Routes from the template --------------------------------------------------------------------------


def test_routes_are_the_api_events_with_a_key_required_but_for_the_dashboards_page() -> None:
    declared = {
        (e["Properties"]["Path"], e["Properties"]["Method"].upper()): function
        for function in ("AskFunction", "DashboardFunction")
        for e in load_template()["Resources"][function]["Properties"]["Events"].values()
        if e["Type"] == "Api"
    }
    routes = routes_from_template()
    assert {(route.path, route.method): route.function_logical_id for route in routes} == declared
    assert {(route.path, route.method) for route in routes if not route.api_key_required} == {
        ("/", "GET"),
        ("/assets/{name}", "GET"),
    }
    assert stage_name() == "v1"


def test_a_function_serves_one_request_at_a_time_and_different_functions_run_side_by_side() -> None:
    """As one Lambda execution environment per function: a handler's module state serves one request at a time."""
    lock, running, most = threading.Lock(), Counter[str](), Counter[str]()
    dashboard_started = threading.Event()
    ask_saw_the_dashboard_running: list[bool] = []

    def invoke(function_logical_id: str, event: dict[str, Any]) -> Any:
        with lock:
            running[function_logical_id] += 1
            most[function_logical_id] = max(most[function_logical_id], running[function_logical_id])
        if function_logical_id == "DashboardFunction":
            dashboard_started.set()
        else:  # waits while holding its function's turn: the other function must not wait behind it
            ask_saw_the_dashboard_running.append(dashboard_started.wait(timeout=5))
        time.sleep(0.05)
        with lock:
            running[function_logical_id] -= 1
        return dict(OK_RESPONSE)

    with (
        LocalApiGateway(routes_from_template(), invoke, {KEY}, stage=stage_name()) as gateway,
        ThreadPoolExecutor(max_workers=10) as pool,
    ):
        replies = list(pool.map(get, [f"{gateway.url}/runs"] * 5 + [f"{gateway.url}/"] * 5))
    assert [reply.status_code for reply in replies] == [200] * 10
    assert most == {"AskFunction": 1, "DashboardFunction": 1}
    assert ask_saw_the_dashboard_running == [True] * 5


# The proxy event -----------------------------------------------------------------------------------


def test_list_runs_event_is_shaped_as_api_gateway_sends_it(api: str, function: RecordingInvoke) -> None:
    assert get(f"{api}/runs?limit=2").status_code == 200
    function_id, event = function.calls[0]
    assert function_id == "AskFunction"
    assert_shaped_like(event, "ask-list-runs.json")
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/runs", "/runs", "GET")
    assert event["queryStringParameters"] == {"limit": "2"}
    assert event["multiValueQueryStringParameters"] == {"limit": ["2"]}
    assert event["pathParameters"] is None
    assert event["stageVariables"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    assert event["headers"]["x-api-key"] == KEY
    assert event["multiValueHeaders"]["x-api-key"] == [KEY]
    context = event["requestContext"]
    assert (context["stage"], context["path"], context["resourcePath"], context["httpMethod"]) == (
        "v1",
        "/v1/runs",
        "/runs",
        "GET",
    )
    assert context["protocol"] == "HTTP/1.1"
    assert context["identity"]["apiKey"] == KEY
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert isinstance(context["requestTimeEpoch"], int)
    assert context["requestTime"].endswith(" +0000")


def test_ask_event_carries_the_json_body_as_text(api: str, function: RecordingInvoke) -> None:
    body = {"question": "What is measured in joules — in Zürich?"}
    response = requests.post(f"{api}/ask", json=body, headers={"x-api-key": KEY}, timeout=5)
    assert response.status_code == 200
    event = function.event
    assert_shaped_like(event, "ask-question.json")
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/ask", "/ask", "POST")
    assert json.loads(event["body"]) == body
    assert event["isBase64Encoded"] is False
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None


def test_run_event_has_path_parameters_and_repeated_query_values(api: str, function: RecordingInvoke) -> None:
    response = get(f"{api}/runs/sciq-sample-0123456789ab?a=1&a=2")
    assert response.status_code == 200
    event = function.event
    assert_shaped_like(event, "ask-get-run.json")
    assert event["resource"] == "/runs/{run_id}"
    assert event["path"] == "/runs/sciq-sample-0123456789ab"
    assert event["pathParameters"] == {"run_id": "sciq-sample-0123456789ab"}
    assert event["requestContext"]["path"] == "/v1/runs/sciq-sample-0123456789ab"
    assert event["queryStringParameters"] == {"a": "2"}  # the last value, as AWS does
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert response.headers["x-amzn-RequestId"] == event["requestContext"]["requestId"]


def test_a_body_that_is_not_utf8_is_sent_base64_encoded(api: str, function: RecordingInvoke) -> None:
    raw = b"\xff\xfe\x00binary"
    requests.post(f"{api}/ask", data=raw, headers={"x-api-key": KEY}, timeout=5)
    assert function.event["isBase64Encoded"] is True
    assert base64.b64decode(function.event["body"]) == raw


def test_a_literal_segment_wins_over_a_parameter() -> None:
    routes = [Route("/runs/{run_id}", "GET", "ById", False), Route("/runs/latest", "GET", "Latest", False)]
    function = RecordingInvoke()
    with LocalApiGateway(routes, function, set()) as gateway:
        requests.get(f"{gateway.url}/runs/latest", timeout=5)
        requests.get(f"{gateway.url}/runs/other", timeout=5)
    assert [(name, event["pathParameters"]) for name, event in function.calls] == [
        ("Latest", None),
        ("ById", {"run_id": "other"}),
    ]
    assert function.calls[0][1]["requestContext"]["identity"]["apiKey"] is None


# The function's answer -----------------------------------------------------------------------------


def test_status_headers_and_body_pass_through_unchanged(api: str, function: RecordingInvoke) -> None:
    function.response = {
        "statusCode": 418,
        "headers": {"Content-Type": "text/plain; charset=utf-8", "X-Single": "one"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": "I'm a teapot ☕",
        "isBase64Encoded": False,
    }
    response = get(f"{api}/runs")
    assert response.status_code == 418
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["X-Single"] == "one"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert response.content == "I'm a teapot ☕".encode()
    assert response.headers["x-amzn-RequestId"] == function.event["requestContext"]["requestId"]


def test_a_base64_body_is_decoded(api: str, function: RecordingInvoke) -> None:
    payload = bytes(range(256))
    function.response = {
        "statusCode": 200,
        "headers": {"Content-Type": "application/octet-stream"},
        "body": base64.b64encode(payload).decode(),
        "isBase64Encoded": True,
    }
    response = get(f"{api}/runs")
    assert response.status_code == 200
    assert response.content == payload


@pytest.mark.parametrize(
    "failure", [RuntimeError("boom"), {"errorMessage": "boom", "errorType": "KeyError"}, None, {"statusCode": "200"}]
)
def test_a_function_error_is_a_502(api: str, function: RecordingInvoke, failure: Any) -> None:
    function.response = failure
    response = get(f"{api}/runs")
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert len(function.calls) == 1


# What API Gateway answers itself ------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"x-api-key": ""}])
def test_no_valid_api_key_is_forbidden_and_the_function_not_invoked(
    api: str, function: RecordingInvoke, headers: dict[str, str]
) -> None:
    response = requests.get(f"{api}/runs", headers=headers, timeout=5)
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden", "code": "invalid_api_key"}  # the template's response
    assert "x-amzn-RequestId" in response.headers
    assert function.calls == []


def test_a_body_over_api_gateways_10_mb_is_its_413_in_the_apis_shape_and_the_function_not_invoked(
    api: str, function: RecordingInvoke
) -> None:
    headers = {"x-api-key": KEY, "content-type": "application/json"}
    body = b'{"question": "' + b"x" * (10 * 1024 * 1024) + b'"}'

    response = requests.post(f"{api}/ask", data=body, headers=headers, timeout=30)

    assert response.status_code == 413
    assert response.json() == {"message": "Request Too Long", "code": "request_too_large"}
    assert function.calls == []


def test_the_key_header_name_is_case_insensitive(api: str, function: RecordingInvoke) -> None:
    assert requests.get(f"{api}/runs", headers={"X-API-Key": KEY}, timeout=5).status_code == 200
    assert function.event["requestContext"]["identity"]["apiKey"] == KEY


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/runs/a/b/c"),
        ("DELETE", "/runs"),
        ("GET", "/ask"),
        ("POST", "/runs/x"),
        ("TRACE", "/ask"),  # the standard library's server answered these two with its own 501 page
        ("PATCH", "/runs"),
        ("QUERY", "/runs/x"),  # any method at all
    ],
)
def test_an_unknown_route_or_method_is_a_404_in_the_apis_error_shape(
    api: str, function: RecordingInvoke, method: str, path: str
) -> None:
    """API Gateway's MISSING_AUTHENTICATION_TOKEN, as the template's gateway response turns it."""
    response = requests.request(method, f"{api}{path}", headers={"x-api-key": KEY}, timeout=5)
    assert response.status_code == 404
    assert response.json() == {
        "message": "No route answers this method and path; see docs/openapi.json.",
        "code": "not_found",
    }
    assert function.calls == []


def test_head_of_an_undeclared_method_is_the_404s_headers_without_its_body(api: str, function: RecordingInvoke) -> None:
    response = requests.head(f"{api}/runs", headers={"x-api-key": KEY}, timeout=5)

    assert (response.status_code, response.content) == (404, b"")
    assert int(response.headers["Content-Length"]) > 0 and function.calls == []


def test_without_gateway_responses_the_answers_are_api_gateways_own(function: RecordingInvoke) -> None:
    with LocalApiGateway(routes_from_template(), function, {KEY}, stage=stage_name()) as gateway:
        unknown = requests.get(f"{gateway.url}/nope", headers={"x-api-key": KEY}, timeout=5)
        no_key = requests.get(f"{gateway.url}/runs", timeout=5)
    assert (unknown.status_code, unknown.json()) == (403, {"message": "Missing Authentication Token"})
    assert (no_key.status_code, no_key.json()) == (403, {"message": "Forbidden"})


@pytest.mark.parametrize("path", ["/runs", "/v2/runs", "/"])
def test_a_request_outside_the_stage_is_forbidden(api: str, function: RecordingInvoke, path: str) -> None:
    root = api.removesuffix("/v1")
    response = requests.get(f"{root}{path}", headers={"x-api-key": KEY}, timeout=5)
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}
    assert function.calls == []


# The real handler ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_the_real_ask_handler_lists_no_runs(aws_account: Aws) -> None:
    from functions.ask.app import lambda_handler

    def invoke(function_logical_id: str, event: dict[str, Any]) -> Any:
        assert function_logical_id == "AskFunction"
        return lambda_handler(event, LambdaContext())

    with LocalApiGateway(routes_from_template(), invoke, {KEY}, stage=stage_name()) as gateway:
        response = get(f"{gateway.url}/runs")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"runs": [], "next_cursor": None}


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_the_real_ask_handler_shows_a_runs_config_files_and_gate_over_http(aws_account: Aws) -> None:
    from functions.ask.app import lambda_handler
    from shared.aws.runs import RunsRepository

    runs = RunsRepository(os.environ["RUNS_TABLE"])
    config = {"dataset": {"source": "allenai/sciq", "split": "train"}, "seed": 7}
    files = {"train": {"key": "datasets/sciq-0123456789ab/train.jsonl", "bytes": 2048, "examples": 10}}
    gate = {
        "train": {
            "examples": 10,
            "total_tokens": 400,
            "billing_tokens": 400,
            "max_example_tokens": 41,
            "examples_over_token_limit": 0,
            "duplicate_examples": 1,
            "format_errors": {},
        }
    }
    assert runs.claim_for_preparation(
        "sciq-0123456789ab", {"config_key": "configs/sciq.json", "config_version": "v1", "config_sha256": "ab"}
    )
    assert runs.record_prepared("sciq-0123456789ab", {"config": config, "files": files, "gate": gate})

    def invoke(function_logical_id: str, event: dict[str, Any]) -> Any:
        return lambda_handler(event, LambdaContext())

    with LocalApiGateway(routes_from_template(), invoke, {KEY}, stage=stage_name()) as gateway:
        response = get(f"{gateway.url}/runs/sciq-0123456789ab")
    assert response.status_code == 200
    run = response.json()
    assert (run["status"], run["config"], run["config_version"]) == ("prepared", config, "v1")
    assert run["files"] == {**files, "validation": None, "questions": None}
    assert run["gate"] == {**gate, "validation": None}
    assert "config_sha256" not in run
