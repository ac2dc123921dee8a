"""The cold start and ask overhead benchmarks keep working (`make bench` prints their figures; not asserted here)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*arguments: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_cold_start_prints_each_handlers_import_time_beside_the_goal() -> None:
    printed = _run("benchmarks.cold_start", "--runs", "1")

    for module in ("functions.ask.app", "functions.start_job.app", "functions.poll_job.app"):
        assert re.search(rf"{re.escape(module)} +import_ms= *[\d.]+ +cpu_ms= *[\d.]+ +\(goal <= 500 ms ", printed)
    assert "-X importtime self ms by package: " in printed


def test_ask_overhead_prints_p50_and_p99_beside_the_goals_for_both_cases() -> None:
    printed = _run("benchmarks.ask_overhead", "20")

    for case in ("latest run", "named run"):
        assert re.search(rf"{case} +own p50_ms= *[\d.]+ \(goal <= 3\) +own p99_ms= *[\d.]+ \(goal <= 15\)", printed)


def test_the_dashboards_first_paint_benchmark_prints_its_figure_beside_the_goal() -> None:
    printed = _run("benchmarks.dashboard_first_paint", "1")

    if "no chromium" not in printed:
        assert re.search(r"runs table on screen +median +[\d.]+ ms +\(goal <= 1000 ms\)", printed), printed
