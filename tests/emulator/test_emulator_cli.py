"""The CLI serves until SIGTERM and takes faults, the refusal flag and shutdown dates from the command line."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from openai import OpenAI

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_cli_serves_with_faults_and_stops_on_sigterm() -> None:
    command = [
        sys.executable, "-m", "local.openai_emulator", "--port", "0", "--phase-seconds", "0",
        "--no-fine-tuning-access", "--fault", "POST:/chat/completions:status:503:1",
        "--shutdown-date", "gpt-4o-mini-2024-07-18=2001-01-01", "--shutdown-date", "gpt-4o-2024-08-06=null",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("openai_base_url=http://127.0.0.1:")
        client = OpenAI(base_url=line.split("=", 1)[1], api_key="test", max_retries=0)
        messages = [{"role": "user", "content": "hi"}]
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        assert client.chat.completions.create(model="gpt-4o-mini", messages=messages).choices  # type: ignore[arg-type]
        with pytest.raises(openai.PermissionDeniedError):
            client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-x")
        assert client.models.retrieve("gpt-4o-mini-2024-07-18").shutdown_date == "2001-01-01"
        assert client.models.retrieve("gpt-4o-2024-08-06").shutdown_date is None
        assert client.models.retrieve("gpt-4.1-2025-04-14").shutdown_date == "2027-01-14"  # the defaults stay
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
