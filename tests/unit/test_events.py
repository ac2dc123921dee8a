"""How the handlers read their events: S3 notifications (Powertools' S3Event), dead-lettered messages
(Parser's SQS record model through BatchProcessor) and the state machine's input (@event_parser)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import S3Event
from pydantic import ValidationError

from functions.failed_events.app import lambda_handler as failed_events_handler
from functions.poll_job.app import lambda_handler as poll_handler
from shared.aws.storage import ObjectRef, event_objects
from shared.providers.openai.settings import OpenAISettings
from tests.helpers import load_event


def moto_record(key: str, version_id: str | None = None) -> dict[str, Any]:
    """What moto's S3 notification holds: no userIdentity, requestParameters, responseElements or ownerIdentity."""
    s3_object = {"key": key, "size": 3, "eTag": "abc"} | ({"versionId": version_id} if version_id else {})
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T08:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "ConfigCreated",
            "bucket": {"name": "bucket", "arn": "arn:aws:s3:::bucket"},
            "object": s3_object,
        },
    }


def test_every_record_of_an_s3_event_names_its_object_with_the_key_decoded() -> None:
    event = S3Event(
        {
            "Records": [
                moto_record("configs/my+r%C3%A9sum%C3%A9+run+%282%29.json", "v7"),
                moto_record("configs/a%2Bb.json"),
            ]
        }
    )

    assert event_objects(event) == [
        ObjectRef("bucket", "configs/my résumé run (2).json", "v7"),
        ObjectRef("bucket", "configs/a+b.json", None),
    ]


def test_the_encoded_event_file_decodes_as_sam_local_invoke_would_send_it() -> None:
    [ref] = event_objects(S3Event(load_event("prepare-config-key-encoded.json")))

    assert ref == ObjectRef("ragtune-data-123456789012-us-east-1", "configs/my résumé run (2).json", None)


def dead_letter(body: str) -> dict[str, Any]:
    event = load_event("failed-event.json")
    event["Records"][0]["body"] = body
    return event


def test_a_dead_letter_whose_body_is_not_json_is_dropped_not_redelivered(lambda_context: Any) -> None:
    """FailedEventsQueue would hand a message its function fails back for ever: an unreadable one is dropped."""
    event = load_event("failed-event.json")
    event["Records"].append(dead_letter("not json")["Records"][0] | {"messageId": "poison"})
    event["Records"][0]["body"] = json.dumps({"Records": []})

    response = failed_events_handler(event, lambda_context)

    assert response == {"batchItemFailures": []}


def test_a_dead_letter_that_is_not_an_s3_event_names_no_run(lambda_context: Any) -> None:
    response = failed_events_handler(dead_letter(json.dumps({"detail-type": "something else"})), lambda_context)

    assert response == {"batchItemFailures": []}


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ({"action": "poll", "run_id": "r"}, "poll.job_id\n  Field required"),
        ({"run_id": "r", "job_id": "j"}, "Unable to extract tag using discriminator 'action'"),
        (
            {"action": "resume", "run_id": "r"},
            "does not match any of the expected tags: 'poll', 'record_tracking_failure'",
        ),
        ({"action": "record_tracking_failure", "run_id": "r"}, "record_tracking_failure.cause\n  Field required"),
    ],
)
def test_a_malformed_state_machine_input_is_a_validation_error_naming_what_is_wrong(
    event: dict[str, Any], says: str, lambda_context: Any
) -> None:
    with pytest.raises(ValidationError, match="for PollJobFunction input") as raised:
        poll_handler(event, lambda_context)

    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("environment", "base_url"),
    [
        ({}, None),
        ({"OPENAI_BASE_URL": ""}, None),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}, "http://127.0.0.1:1/v1"),
    ],
)
def test_the_openai_endpoint_is_a_setting_empty_meaning_the_sdks_default(
    environment: dict[str, str], base_url: str | None
) -> None:
    required = {"OPENAI_API_KEY_SECRET": "s"}

    assert OpenAISettings.model_validate(required | environment).openai_base_url == base_url
