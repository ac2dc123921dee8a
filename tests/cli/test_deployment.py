"""Where the command finds a deployment, and the provider a config naming none gets there."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from ragtune_cli import deployment
from ragtune_cli.errors import CliError

_STACK_TEMPLATE = {
    "Parameters": {"DefaultProvider": {"Type": "String", "Default": "openai"}, "KeyId": {"Type": "String"}},
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {
        "DataBucketName": {"Value": "ragtune-data-bucket"},
        "ApiUrl": {"Value": "https://api.example.com/v1/"},
        "ApiKeyId": {"Value": {"Ref": "KeyId"}},
    },
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def _stack(default_provider: str | None) -> str:
    """A stack with the outputs a ragtune stack has; DefaultProvider given, or left at its default."""
    key = boto3.client("apigateway").create_api_key(name="ragtune", enabled=True, value="k" * 30)
    parameters = [{"ParameterKey": "KeyId", "ParameterValue": key["id"]}]
    if default_provider:
        parameters.append({"ParameterKey": "DefaultProvider", "ParameterValue": default_provider})
    name = f"ragtune-{default_provider or 'default'}"
    boto3.client("cloudformation").create_stack(
        StackName=name, TemplateBody=json.dumps(_STACK_TEMPLATE), Parameters=parameters
    )
    return name


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(("given", "expected"), [("bedrock", "bedrock"), ("openai", "openai"), (None, "openai")])
def test_a_stack_gives_its_default_provider(given: str | None, expected: str) -> None:
    found = deployment.from_stack(_stack(given), None)

    assert (found.default_provider, found.bucket, found.api_url) == (
        expected,
        "ragtune-data-bucket",
        "https://api.example.com/v1",
    )
    assert found.api_key == "k" * 30


@pytest.mark.usefixtures("aws")
def test_a_stack_uses_awss_s3_even_in_a_shell_set_up_for_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """--stack wins over the environment: the local stack's RAGTUNE_S3_ENDPOINT must not redirect its uploads."""
    monkeypatch.setenv("RAGTUNE_S3_ENDPOINT", "http://127.0.0.1:38999")

    assert deployment.from_stack(_stack("openai"), None).s3_endpoint is None


_VARIABLES = {"RAGTUNE_API_URL": "http://127.0.0.1:1/v1", "RAGTUNE_API_KEY": "key", "RAGTUNE_BUCKET": "bucket"}


@pytest.mark.parametrize(("value", "expected"), [("bedrock", "bedrock"), ("", "openai"), (None, "openai")])
def test_the_environment_gives_the_default_provider(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str
) -> None:
    for name, variable in _VARIABLES.items():
        monkeypatch.setenv(name, variable)
    if value is None:
        monkeypatch.delenv("RAGTUNE_DEFAULT_PROVIDER", raising=False)
    else:
        monkeypatch.setenv("RAGTUNE_DEFAULT_PROVIDER", value)

    assert deployment.from_environment().default_provider == expected


def test_an_unknown_default_provider_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, variable in _VARIABLES.items():
        monkeypatch.setenv(name, variable)
    monkeypatch.setenv("RAGTUNE_DEFAULT_PROVIDER", "nova")

    with pytest.raises(CliError) as refused:
        deployment.from_environment()
    assert refused.value.message == (
        "RAGTUNE_DEFAULT_PROVIDER is 'nova': set it to the stack's DefaultProvider, openai, bedrock or open, "
        "or leave it unset for openai."
    )


def test_the_command_loads_boto3_and_the_config_schema_only_for_what_needs_them() -> None:
    """show, runs, eval, ... only call the ragtune API: they do not wait for boto3's import (0.13 s of every call),
    nor for the config schema's models and pydantic (0.09 s), which only submit and validate use."""
    probe = "import sys, ragtune_cli.main; print(*(name in sys.modules for name in sys.argv[1:]))"
    heavy = ["boto3", "botocore.session", "shared.domain.config", "pydantic"]
    loaded = subprocess.run(
        [sys.executable, "-c", probe, *heavy], capture_output=True, text=True, check=True, timeout=60
    )

    assert loaded.stdout.split() == ["False"] * len(heavy)
