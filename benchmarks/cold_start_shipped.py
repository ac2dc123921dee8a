"""Cold import as shipped: each zip function's handler imported from its built package by the runtime's Python
(3.12), in fresh processes that write no bytecode (as Lambda's read-only /var/task), beside `import boto3` from
the same folder; and the same package without its bytecode (what the packages shipped before #23), side by side.

`make build-<LogicalId>` builds each package with its dependencies into .aws-sam/bench/ (kept: a second run reuses
it; delete the folder to rebuild). The goal: every handler within 2x of `import boto3`, as shipped.
Usage: python -m benchmarks.cold_start_shipped [--runs N] [LogicalId ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
from pathlib import Path

from benchmarks.cold_start import ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
BUILDS = ROOT / ".aws-sam" / "bench"
RUNTIME_PYTHON = "python3.12"
GOAL_RATIO = 2.0
FUNCTIONS = {
    "AskFunction": "functions.ask.app",
    "StartJobFunction": "functions.start_job.app",
    "PollJobFunction": "functions.poll_job.app",
    "FailedEventsFunction": "functions.failed_events.app",
    "EvaluateFunction": "functions.evaluate.app",
    "DashboardFunction": "functions.dashboard.app",
}
TIMED_IMPORT = "import time; start = time.perf_counter(); import {module}; print((time.perf_counter() - start) * 1000)"


def build(logical_id: str) -> Path:
    """The function's package as `sam build` makes it (with its wheels), built once."""
    package = BUILDS / logical_id
    if not (package / "functions").is_dir():
        shutil.rmtree(package, ignore_errors=True)
        subprocess.run(["make", "--silent", f"build-{logical_id}", f"ARTIFACTS_DIR={package}"], cwd=ROOT, check=True)
    return package


def without_bytecode(package: Path) -> Path:
    """A copy of the package with no .pyc: every import compiles its module, as before #23."""
    copy = package.with_name(f"{package.name}-no-bytecode")
    if not copy.is_dir():
        shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


def import_ms(folder: Path, module: str, runs: int) -> float:
    """Median milliseconds of `import module` from `folder` in fresh runtime-Python processes writing nothing."""
    environment = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "PYENV_VERSION")}
    environment |= ENVIRONMENT | {"PYTHONPATH": str(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    timings = []
    for _ in range(runs):
        result = subprocess.run(
            [RUNTIME_PYTHON, "-c", TIMED_IMPORT.format(module=module)],
            cwd=folder,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        timings.append(float(result.stdout.strip().splitlines()[-1]))
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("functions", nargs="*", default=list(FUNCTIONS))
    arguments = parser.parse_args()
    os.environ.setdefault("PYENV_VERSION", "3.11.7:3.12.1:3.13.0")  # where pyenv provides python3.12
    print(f"cold import as shipped ({RUNTIME_PYTHON}, no bytecode written, median of {arguments.runs} processes):")
    for logical_id in arguments.functions:
        module = FUNCTIONS[logical_id]
        package = build(logical_id)
        bare = without_bytecode(package)
        boto3_ms = import_ms(package, "boto3", arguments.runs)
        shipped = import_ms(package, module, arguments.runs)
        before = import_ms(bare, module, arguments.runs)
        boto3_before = import_ms(bare, "boto3", arguments.runs)
        ratio = shipped / boto3_ms
        print(
            f"  {logical_id:<21} shipped {shipped:7.1f} ms = {ratio:4.2f}x boto3 ({boto3_ms:6.1f} ms) "
            f"(goal <= {GOAL_RATIO:.0f}x: {'met' if ratio <= GOAL_RATIO else 'MISSED'}); "
            f"without bytecode {before:7.1f} ms = {before / boto3_before:4.2f}x boto3 ({boto3_before:6.1f} ms), "
            f"{before / shipped:4.2f}x slower"
        )


if __name__ == "__main__":
    main()
