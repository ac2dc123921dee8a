"""`python -m local serve` started as a user starts it, for every test that drives the served stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
SERVE_LOGS = ROOT / "test-output" / "serve"


def user_environment() -> dict[str, str]:
    """A user's shell: no AWS settings of the test session, no OpenAI key (so: the emulator)."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "OPENAI_", "POWERTOOLS_", "HF_", "MOTO_"))
    }
    # PYTHONFAULTHANDLER: a stack stopped with SIGABRT writes every thread's stack to its output (Serving.stop).
    environment.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    return environment


@dataclass
class Serving:
    """The running `serve` process and what it printed before serving."""

    process: subprocess.Popen[str]
    lines: list[str]  # every line up to and including the export line
    printed: dict[str, str]  # the `name=value` lines: s3_endpoint, bucket, api_url, api_key, ...
    exported: dict[str, str]  # the export line's variables
    copying: threading.Thread  # copies the rest of its output to SERVE_LOGS/<pid>.log

    def kill(self) -> None:
        """Stop it without the clean SIGTERM path (tests of that path terminate `process` themselves)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def stop(self, seconds: float = 30) -> int:
        """SIGTERM, as a user's Ctrl-C or `kill`, and its exit code; a stack still running after `seconds` is
        stopped with SIGABRT, so its log (SERVE_LOGS) ends with what every thread was doing, and this fails."""
        self.process.terminate()
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            self.process.wait(timeout=30)
            self.copying.join(timeout=10)  # the pipe ends with the process: its last lines are in the log
            log = SERVE_LOGS / f"{self.process.pid}.log"
            ending = log.read_text(encoding="utf-8", errors="replace")[-6000:]
            raise AssertionError(f"serve ignored SIGTERM for {seconds} s; {log} ends:\n{ending}") from None


def start_serve(*arguments: str, **variables: str) -> Serving:
    """`python -m local serve [arguments]` in a user's shell plus `variables`, read up to its export line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "local", "serve", *arguments],
        cwd=ROOT,
        env={**user_environment(), **variables},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("export "):
        line = process.stdout.readline()
        if not line:
            process.kill()
            raise AssertionError("serve mode exited before printing its export line: " + "\n".join(lines))
        lines.append(line.strip())
    printed = dict(line.split("=", 1) for line in lines if "=" in line and " " not in line)
    exported = dict(assignment.split("=", 1) for assignment in lines[-1].removeprefix("export ").split(" "))
    SERVE_LOGS.mkdir(parents=True, exist_ok=True)
    log = SERVE_LOGS / f"{process.pid}.log"
    # Read on for the rest of its life into SERVE_LOGS (a 500's traceback stays there): a pipe nobody reads fills
    # (64 KB) and the stack's next log line would block.
    copying = threading.Thread(target=_copy_lines, args=(process.stdout, log), daemon=True)
    copying.start()
    return Serving(process, lines, printed, exported, copying)


def _copy_lines(stream: IO[str], log: Path) -> None:
    with log.open("w", encoding="utf-8") as copy:
        for line in stream:
            copy.write(line)
            copy.flush()
