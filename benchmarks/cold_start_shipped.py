"""Cold import as shipped: each zip function's handler imported from its built package by the runtime's Python
(3.12), in fresh processes that write no bytecode (as Lambda's read-only /var/task), beside `import boto3` from
the same folder. As deployed, tracing is on (the template's `Tracing: Active`: Lambda sets LAMBDA_TASK_ROOT and
Powertools' Tracer loads the X-Ray SDK); the same import with tracing off, and the package without its bytecode
(what the packages shipped before #23), are printed beside it.

`make build-<LogicalId>` builds each package with its dependencies into .aws-sam/bench/ (its wheels kept: a second
run reinstalls only our code; delete the folder to reinstall them). The goal: every handler within 2x of
`import boto3`, as deployed.
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
BOTO3_REFERENCE = "StartJobFunction"
TIMED_IMPORT = "import time; start = time.perf_counter(); import {module}; print((time.perf_counter() - start) * 1000)"


def build(logical_id: str) -> Path:
    """The function's package as `sam build` makes it: its wheels installed once, our code rebuilt every run (so
    the figures are always of the code as it stands)."""
    package = BUILDS / logical_id
    installed = package / ".dependencies-installed"
    dependencies = "skip" if installed.exists() else "install"
    if dependencies == "install":
        shutil.rmtree(package, ignore_errors=True)
    for ours in ("functions", "shared"):
        shutil.rmtree(package / ours, ignore_errors=True)
    subprocess.run(
        ["make", "--silent", f"build-{logical_id}", f"ARTIFACTS_DIR={package}", f"LAMBDA_DEPENDENCIES={dependencies}"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    installed.touch()
    return package


def without_bytecode(package: Path) -> Path:
    """A copy of the package with no .pyc: every import compiles its module, as before #23."""
    copy = package.with_name(f"{package.name}-no-bytecode")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


def import_ms(imports: list[tuple[Path, str, bool]], runs: int) -> list[float]:
    """Median milliseconds of each `import module` from its folder (traced: in a Lambda sandbox's environment,
    tracing on) in fresh runtime-Python processes writing nothing; the imports take turns in every round, so a busy
    spell of this shared machine hits them all alike."""
    environment = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "PYENV_VERSION")}
    environment |= ENVIRONMENT | {"PYTHONDONTWRITEBYTECODE": "1"}
    timings: list[list[float]] = [[] for _ in imports]
    for _ in range(runs):
        for index, (folder, module, traced) in enumerate(imports):
            sandbox = {"LAMBDA_TASK_ROOT": str(folder)} if traced else {}
            result = subprocess.run(
                # -S: no site-packages of this machine's Python (a .pth there preloads modules for some packages
                # and not others); the package on PYTHONPATH is the whole world, as /var/task is on Lambda.
                [RUNTIME_PYTHON, "-S", "-c", TIMED_IMPORT.format(module=module)],
                cwd=folder,
                env=environment | sandbox | {"PYTHONPATH": str(folder)},
                capture_output=True,
                text=True,
                check=True,
            )
            timings[index].append(float(result.stdout.strip().splitlines()[-1]))
    return [statistics.median(each) for each in timings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("functions", nargs="*", default=list(FUNCTIONS))
    arguments = parser.parse_args()
    os.environ.setdefault("PYENV_VERSION", "3.11.7:3.12.1:3.13.0")  # where pyenv provides python3.12
    print(
        f"cold import as shipped ({RUNTIME_PYTHON}, no bytecode written, median of {arguments.runs} processes; "
        "as deployed: tracing on):"
    )
    for logical_id in arguments.functions:
        module = FUNCTIONS[logical_id]
        package = build(logical_id)
        bare = without_bytecode(package)
        # A package that ships no boto3 (DashboardFunction: the standard library alone) is held to the same mark.
        reference = package if (package / "boto3").is_dir() else build(BOTO3_REFERENCE)
        boto3_ms, deployed, untraced, before, boto3_before = import_ms(
            [
                (reference, "boto3", False),
                (package, module, True),
                (package, module, False),
                (bare, module, False),
                (without_bytecode(reference), "boto3", False),
            ],
            arguments.runs,
        )
        ratio = deployed / boto3_ms
        print(
            f"  {logical_id:<21} as deployed {deployed:6.1f} ms = {ratio:4.2f}x boto3 ({boto3_ms:5.1f} ms) "
            f"(goal <= {GOAL_RATIO:.0f}x: {'met' if ratio <= GOAL_RATIO else 'MISSED'}); "
            f"tracing off {untraced:6.1f} ms = {untraced / boto3_ms:4.2f}x; "
            f"without bytecode {before:6.1f} ms = {before / boto3_before:4.2f}x boto3 ({boto3_before:5.1f} ms), "
            f"{before / untraced:4.2f}x slower"
        )


if __name__ == "__main__":
    main()
