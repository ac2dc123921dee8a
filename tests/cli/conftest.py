"""The `ragtune` command against `python -m local serve`: its code run in the test's process, in a user's environment
alone, and the installed script in a subprocess where the script itself (its entry point, its terminal) is the subject.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from typer.testing import CliRunner

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
    """The command as `ragtune` runs it, in this process: typer's runner, with `env` as the whole environment (and
    whatever the command writes to it undone after), the checkout as the working folder, a default boto3 session of
    its own (one made by an earlier command or test would keep the credentials it found then), Python's default
    warning filters with warnings on its stderr, and `timeout` seconds. No terminal anywhere, stdin included.

    A subprocess costs ~0.3 CPU-s, mostly imports, and the CLI's tests ran ~110 of them: a tenth of the suite's CPU.
    An exception escaping the command fails the test (a user would have seen a traceback). The consoles are made at
    the CLI's import, under pytest's capture: a pipe, as in a subprocess (not with `-s` on a terminal).
    """
    from ragtune_cli.main import app

    saved_environment, working_folder = dict(os.environ), Path.cwd()
    session, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, None
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    try:
        with warnings.catch_warnings(), _time_limit(timeout, arguments):
            warnings.resetwarnings()
            for ignored in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", ignored)
            warnings.showwarning = _warning_to_stderr
            result = CliRunner().invoke(app, list(arguments), catch_exceptions=False)
    finally:
        os.chdir(working_folder)
        boto3.DEFAULT_SESSION = session
        os.environ.clear()
        os.environ.update(saved_environment)
    return Result(result.exit_code, result.stdout, result.stderr)


def _warning_to_stderr(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """Where Python prints a warning (the command's stderr); under pytest it would go to pytest's summary."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class CommandTimedOut(BaseException):
    """Not an Exception: the command's own `except Exception` (its "Unexpected error" sentence) lets it through."""


@contextmanager
def _time_limit(seconds: float, arguments: tuple[str, ...]) -> Iterator[None]:
    """A command still running after `seconds` is interrupted, as the subprocess's timeout did: it fails the test."""

    def expire(_signal: int, _frame: Any) -> None:
        raise CommandTimedOut(f"ragtune {' '.join(arguments)} still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def installed_ragtune(*arguments: str, env: dict[str, str], timeout: float = 60) -> Result:
    """The installed script in a subprocess; no terminal anywhere, stdin included: a command that would ask must not
    wait for an answer."""
    completed = subprocess.run(
        [str(RAGTUNE), *arguments],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def ragtune_in_a_terminal(*arguments: str, env: dict[str, str], columns: int) -> Result:
    """The command with its stdout and stderr on a terminal `columns` wide: what a user sees, styles left out."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(RAGTUNE), *arguments],
        cwd=ROOT,
        env={**env, "COLUMNS": str(columns), "TERM": "xterm", "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the command has exited and closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode()).replace("\r\n", "\n")
    return Result(process.wait(timeout=60), text, "")


def user_shell(**variables: str) -> dict[str, str]:
    """A user's shell with no AWS settings of the test session (and none from files), plus `variables`."""
    return {**user_environment(), **NO_AWS_FILES, **variables}


@dataclass
class LocalStack:
    """What `python -m local serve` printed on its export line, and ways to look behind the CLI's back."""

    exported: dict[str, str]

    @property
    def env(self) -> dict[str, str]:
        """The shell after pasting the export line (which carries the placeholder credentials the local stack takes)."""
        return user_shell(**self.exported)

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
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    yield LocalStack(exported)
    serving.kill()  # a clean SIGTERM stop is tests/local's subject; this saves its seconds
