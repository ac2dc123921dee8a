"""The `ragtune` command as users run it: the installed script in a subprocess, against `python -m local serve`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tests.local.serving import ROOT, start_serve, user_environment

# `make install` puts the script beside the venv's python (`pip install --no-deps -e .`).
RAGTUNE = Path(sys.executable).parent / "ragtune"
EXAMPLES = ROOT / "examples"
# Where boto3 would otherwise find credentials of the machine's own (a user's files, EC2 metadata).
NO_AWS_FILES = {
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def ragtune(*arguments: str, env: dict[str, str], timeout: float = 60) -> Result:
    completed = subprocess.run(
        [str(RAGTUNE), *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def user_shell(**variables: str) -> dict[str, str]:
    """A user's shell with no AWS settings of the test session (and none from files), plus `variables`."""
    return {**user_environment(), **NO_AWS_FILES, **variables}


@dataclass
class LocalStack:
    """What `python -m local serve` printed on its export line, and ways to look behind the CLI's back."""

    exported: dict[str, str]

    @property
    def env(self) -> dict[str, str]:
        """The shell after pasting the export line (with the placeholder credentials the local stack takes)."""
        return user_shell(
            **self.exported, AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", AWS_DEFAULT_REGION="us-east-1"
        )

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.exported["RAGTUNE_S3_ENDPOINT"],
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def api(self, path: str) -> Any:
        response = requests.get(
            self.exported["RAGTUNE_API_URL"] + path,
            headers={"x-api-key": self.exported["RAGTUNE_API_KEY"]},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def local_stack() -> Iterator[LocalStack]:
    serving = start_serve()
    exported, printed = serving.exported, serving.printed
    assert exported == {
        "RAGTUNE_API_URL": printed["api_url"],
        "RAGTUNE_API_KEY": printed["api_key"],
        "RAGTUNE_BUCKET": printed["bucket"],
        "RAGTUNE_S3_ENDPOINT": printed["s3_endpoint"],
        "RAGTUNE_DEFAULT_PROVIDER": "openai",  # the template's DefaultProvider
    }
    yield LocalStack(exported)
    serving.kill()  # a clean SIGTERM stop is tests/local's subject; this saves its seconds
