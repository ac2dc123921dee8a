"""The one session of shared.aws: its clients are botocore's own, made without listing every service botocore ships.

botocore's loader lists its ~420 service folders to check that the one service asked for exists, once per
model type (0.25-0.3 s of a Lambda cold start, issue #11); `ServiceFolderLoader` looks at that service's folder.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.exceptions import ResourceNotExistsError
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError, UnknownServiceError
from botocore.loaders import Loader

from shared import aws

BOTO3_MODELS = str(Path(boto3.__file__).parent / "data")  # boto3's resource models, as a boto3 session adds them
MODEL_TYPES = ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2", "resources-1")


@pytest.fixture
def fresh_session() -> Iterator[None]:
    """A new session and new clients for this test, and again for the tests after it."""
    caches = (aws.session, aws.client, aws.dynamodb_table, aws.s3_link_signer)
    for cached in caches:
        cached.cache_clear()
    yield
    for cached in caches:
        cached.cache_clear()


@pytest.fixture
def listed_folders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every folder os.listdir lists from now on, in order."""
    listed: list[str] = []
    listdir = os.listdir

    def recording_listdir(path: Any = ".") -> list[str]:
        listed.append(os.fspath(path))
        return listdir(path)

    monkeypatch.setattr(os, "listdir", recording_listdir)
    return listed


class _DynamoDBEndpoint(BaseHTTPRequestHandler):
    """Answers ListTables and DescribeTable, recording each request's target and body."""

    received: list[tuple[str, dict[str, Any]]]

    def do_POST(self) -> None:
        target = self.headers["X-Amz-Target"].rsplit(".", 1)[1]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((target, body))
        answers = {
            "ListTables": {"TableNames": ["from-the-endpoint"]},
            "DescribeTable": {"Table": {"TableName": body.get("TableName"), "TableStatus": "ACTIVE"}},
        }
        reply = json.dumps(answers[target]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads `received`."""


@pytest.fixture
def dynamodb_endpoint() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A DynamoDB stand-in on a loopback port: its URL and the requests it received."""
    received: list[tuple[str, dict[str, Any]]] = []
    handler = type("RecordingDynamoDB", (_DynamoDBEndpoint,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join()


def test_our_clients_are_made_without_listing_other_services_folders(
    fresh_session: None, listed_folders: list[str]
) -> None:
    aws.client("s3")
    aws.client("dynamodb")
    aws.dynamodb_table("ragtune-runs")
    aws.s3_link_signer()

    search_paths = set(aws.session()._session.get_component("data_loader").search_paths)
    assert {Path(folder).name for folder in listed_folders if folder not in search_paths} == {"s3", "dynamodb"}

    # The same recorder sees botocore's own loader list every service folder for one model.
    listed_folders.clear()
    Loader().load_service_model("s3", "service-2")
    assert len({folder for folder in listed_folders if Path(folder).name not in ("s3", "data", "models")}) > 300


def test_an_unknown_service_is_refused_with_botocores_error_and_its_list_of_services(fresh_session: None) -> None:
    with pytest.raises(UnknownServiceError) as refused:
        aws.client("no-such-service")

    assert refused.value.kwargs["service_name"] == "no-such-service"
    assert "dynamodb" in refused.value.kwargs["known_service_names"].split(", ")


def test_a_service_without_a_resource_model_is_refused_as_boto3_refuses_it(fresh_session: None) -> None:
    with pytest.raises(ResourceNotExistsError) as refused:
        aws.session().resource("lambda")

    message = str(refused.value)
    assert message.startswith("The 'lambda' resource does not exist.")
    assert "   - dynamodb\n" in message
    assert "Consider using a boto3.client('lambda')" in message


@pytest.mark.parametrize("type_name", MODEL_TYPES)
def test_a_service_has_a_model_exactly_when_botocores_full_listing_names_it(type_name: str) -> None:
    loader = aws.ServiceFolderLoader()
    loader.search_paths.append(BOTO3_MODELS)
    folders = {entry.name for path in map(Path, loader.search_paths) if path.is_dir() for entry in path.iterdir()}
    # Names that a path test would find but the listing does not: another case, a path through a service folder.
    candidates = folders | {"S3", "DynamoDB", "s3/../dynamodb", "s3/.", "no-such-service"}

    found = {name for name in candidates if loader.has_model(name, type_name)}

    assert found == set(loader.list_available_services(type_name))


@pytest.mark.parametrize(
    ("service", "type_name", "api_version"),
    [
        ("s3", "service-2", None),
        ("s3", "endpoint-rule-set-1", None),
        ("dynamodb", "service-2", "2012-08-10"),
        ("dynamodb", "resources-1", None),
        ("dynamodb", "waiters-2", None),
    ],
)
def test_the_models_loaded_are_botocores_own(service: str, type_name: str, api_version: str | None) -> None:
    stock = Loader()
    stock.search_paths.append(BOTO3_MODELS)
    ours = aws.ServiceFolderLoader(extra_search_paths=list(stock.search_paths), include_default_search_paths=False)

    assert ours.load_service_model(service, type_name, api_version) == stock.load_service_model(
        service, type_name, api_version
    )


def test_a_client_is_made_once_per_process_from_the_one_session(fresh_session: None) -> None:
    s3 = aws.client("s3")

    assert aws.client("s3") is s3
    assert aws.dynamodb_table("ragtune-runs") is aws.dynamodb_table("ragtune-runs")
    assert aws.session() is aws.session()


def test_the_clients_send_their_requests_to_aws_endpoint_url(
    fresh_session: None,
    monkeypatch: pytest.MonkeyPatch,
    dynamodb_endpoint: tuple[str, list[tuple[str, dict[str, Any]]]],
) -> None:
    url, received = dynamodb_endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)

    assert aws.client("dynamodb").list_tables()["TableNames"] == ["from-the-endpoint"]
    assert received == [("ListTables", {})]


def test_the_table_and_the_link_signer_follow_their_services_own_endpoint_url(
    fresh_session: None,
    monkeypatch: pytest.MonkeyPatch,
    dynamodb_endpoint: tuple[str, list[tuple[str, dict[str, Any]]]],
) -> None:
    url, received = dynamodb_endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:4566")

    assert aws.dynamodb_table("ragtune-runs").table_status == "ACTIVE"
    assert received == [("DescribeTable", {"TableName": "ragtune-runs"})]
    link = aws.s3_link_signer().generate_presigned_url("get_object", Params={"Bucket": "data", "Key": "a.jsonl"})
    assert link.startswith("http://127.0.0.1:4566/data/a.jsonl?")
    assert "X-Amz-Signature=" in link  # Signature Version 4


class _Transient(Exception):
    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


class _Refused(Exception):
    def __init__(self, message: str, status: int | None, code: str | None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _client_error(code: str | None, status: int, message: str = "Rate exceeded") -> ClientError:
    error = {"Code": code, "Message": message} if code else {}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, "CreateJob")


@pytest.mark.parametrize(
    ("raised", "code", "says"),
    [
        (_client_error("Throttling", 400), "Throttling", "(Throttling)"),  # SageMaker's word for it
        (_client_error("ThrottlingException", 400), "ThrottlingException", "(ThrottlingException)"),  # Bedrock's
        (_client_error(None, 503), None, "(HTTP 503)"),  # no code at all: the status decides
        (_client_error(None, 429), None, "(HTTP 429)"),
        (EndpointConnectionError(endpoint_url="https://bedrock"), None, "(EndpointConnectionError)"),
        (ReadTimeoutError(endpoint_url="https://bedrock"), None, "(ReadTimeoutError)"),
    ],
)
def test_what_may_pass_is_the_providers_transient_error(raised: Exception, code: str | None, says: str) -> None:
    with pytest.raises(_Transient) as caught, _sorted_errors("creating the job"):
        raise raised
    assert str(caught.value) == f"Amazon Bedrock: creating the job failed transiently {says}"
    assert caught.value.code == code and caught.value.__cause__ is raised


def test_a_refusal_keeps_the_services_words_status_and_code_and_adds_what_to_do() -> None:
    with pytest.raises(_Refused) as caught, _sorted_errors("creating the job"):
        raise _client_error("ValidationException", 400, "The model is not customizable.")
    assert str(caught.value) == (
        "Amazon Bedrock refused creating the job (ValidationException): The model is not customizable. "
        "Check the config."
    )
    assert (caught.value.status, caught.value.code) == (400, "ValidationException")
    with pytest.raises(_Refused) as unadvised, _sorted_errors("deleting the model"):
        raise _client_error("AccessDeniedException", 403, "Not authorized.")
    assert str(unadvised.value) == "Amazon Bedrock refused deleting the model (AccessDeniedException): Not authorized."


def test_a_provider_speaking_to_several_services_names_the_one() -> None:
    with pytest.raises(_Refused) as refused, _sorted_errors("stopping the job", provider="AWS", service="SageMaker"):
        raise _client_error("ValidationException", 400, "No such job.")
    assert str(refused.value) == (
        "AWS refused stopping the job (ValidationException): SageMaker says: No such job. Check the config."
    )
    with (
        pytest.raises(_Transient) as transient,
        _sorted_errors("stopping the job", provider="AWS", service="SageMaker"),
    ):
        raise _client_error(None, 500)
    assert str(transient.value) == "AWS SageMaker: stopping the job failed transiently (HTTP 500)"


def _sorted_errors(action: str, provider: str = "Amazon Bedrock", service: str | None = None) -> Any:
    return aws.classified_errors(
        provider,
        action,
        transient=_Transient,
        refused=_Refused,
        advice={"ValidationException": "Check the config."},
        service=service,
    )
