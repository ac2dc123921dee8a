"""How long each zip function's handler module takes to import in a fresh process: its cold start's own share.

Each module is imported in a new interpreter several times (the first run only compiles the .pyc, as a
Lambda package ships them... or writes them on first import) and the median is printed beside the goal,
then `-X importtime`'s biggest packages (self time summed per top-level package) say where the time goes.
The environment is the template's as Lambda gives it outside a Lambda sandbox (tracing therefore off);
`--traced` adds LAMBDA_TASK_ROOT so Powertools' Tracer is on, as in the deployed functions.
Usage: python -m benchmarks.cold_start [--runs N] [--traced]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_MS = 500.0
# The handler modules of the API and tracking-loop functions (the goal), and the evaluation's (information).
MODULES = {
    "functions.ask.app": True,
    "functions.start_job.app": True,
    "functions.poll_job.app": True,
    "functions.evaluate.app": False,
}
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "ragtune",
    "POWERTOOLS_METRICS_NAMESPACE": "Ragtune",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "DATA_BUCKET": "ragtune-bench",
    "RUNS_TABLE": "runs",
    "IDEMPOTENCY_TABLE": "idempotency",
    "OPENAI_API_KEY_SECRET": "unused",
    "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:unused",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:unused",
}
# Wall time is what a caller waits; CPU time is the same work less what other processes took from it.
TIMED_IMPORT = (
    "import time; wall, cpu = time.perf_counter(), time.process_time(); import {module}; "
    "print((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000)"
)


def _environment(traced: bool) -> dict[str, str]:
    """Only what the functions get: none of this shell's POWERTOOLS_* or AWS_* settings leak in."""
    kept = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG", "TMPDIR")}
    return kept | ENVIRONMENT | ({"LAMBDA_TASK_ROOT": str(ROOT)} if traced else {})


def import_ms(module: str, environment: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one import in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", TIMED_IMPORT.format(module=module)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    wall, cpu = result.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def top_packages(module: str, environment: dict[str, str], count: int = 6) -> list[tuple[str, float]]:
    """`-X importtime`'s self times summed per top-level package, biggest first (ms)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    self_us: Counter[str] = Counter()
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_time, _cumulative, name = line.removeprefix("import time:").split("|")
        self_us[name.strip().split(".")[0]] += int(self_time)
    return [(name, micros / 1000) for name, micros in self_us.most_common(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--traced", action="store_true", help="Powertools' Tracer on (LAMBDA_TASK_ROOT set)")
    options = parser.parse_args()
    environment = _environment(options.traced)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    tracing = "on (LAMBDA_TASK_ROOT set)" if options.traced else "off"
    print(f"cold start: handler import, median of {options.runs} fresh processes, .pyc warm, tracing {tracing}")
    print(f"  (load average {load} on {os.cpu_count()} cores: wall time grows with the load, CPU time much less)")
    for module, has_goal in MODULES.items():
        import_ms(module, environment)  # writes the .pyc files this checkout lacks
        walls, cpus = zip(*(import_ms(module, environment) for _ in range(options.runs)), strict=True)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        verdict = (f"goal <= {GOAL_MS:.0f} ms " + ("met" if wall <= GOAL_MS else "MISSED")) if has_goal else "info"
        offenders = ", ".join(f"{name} {ms:.0f}" for name, ms in top_packages(module, environment))
        print(f"  {module:<24} import_ms={wall:7.1f}  cpu_ms={cpu:7.1f}  ({verdict})")
        print(f"    -X importtime self ms by package: {offenders}")


if __name__ == "__main__":
    main()
