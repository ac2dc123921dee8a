"""Each role's settings: read from the environment once, only by the code that uses them; offline, the template's."""

from __future__ import annotations

from collections.abc import Iterator

import pydantic
import pytest

from shared.providers.bedrock.records import RECORDS as BEDROCK_RECORDS
from shared.providers.bedrock.settings import BedrockSettings, bedrock_settings
from shared.settings import forget_settings, from_environment, settings

STACK = {
    "DATA_BUCKET": "bucket",
    "RUNS_TABLE": "runs",
    "IDEMPOTENCY_TABLE": "idempotency",
    "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:track",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:runs",
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name, value in STACK.items():
        monkeypatch.setenv(name, value)
    forget_settings()
    yield monkeypatch
    forget_settings()


def test_a_roles_settings_are_read_once_until_forgotten(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BEDROCK_MIN_RECORDS", "12")
    first = bedrock_settings()
    environment.setenv("BEDROCK_MIN_RECORDS", "13")

    assert bedrock_settings() is first
    assert from_environment(BedrockSettings).bedrock_min_records == 12
    forget_settings()
    assert bedrock_settings().bedrock_min_records == 13


def test_the_deployments_limits_come_from_its_environment_and_an_offline_estimate_takes_the_templates(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("BEDROCK_MIN_RECORDS", "99")
    environment.setenv("BEDROCK_TRAINING_PRICE_PER_1K_TOKENS", "0.5")
    report = BEDROCK_RECORDS.inspect([b'{"schemaVersion": "bedrock-conversation-2024"}'])

    assert BEDROCK_RECORDS.limits().min_examples == 99
    assert BEDROCK_RECORDS.limits(offline=True).min_examples == 8
    assert BEDROCK_RECORDS.estimate(report, 2, "amazon.nova-micro-v1:0")["price_per_1k_tokens"] == 0.5
    assert BEDROCK_RECORDS.estimate(report, 2, "amazon.nova-micro-v1:0", offline=True)["price_per_1k_tokens"] == 0.001


def test_a_bad_provider_setting_fails_only_where_that_provider_is_used_and_names_the_variable(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("BEDROCK_MIN_RECORDS", "many")

    assert settings().data_bucket == "bucket"  # the stack's own settings, which every function reads, still load
    with pytest.raises(pydantic.ValidationError, match="BEDROCK_MIN_RECORDS"):
        bedrock_settings()
