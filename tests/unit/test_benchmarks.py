"""The benchmark scripts keep working (their figures are printed by `make bench`, not asserted here)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_prepare_throughput_benchmark_runs_and_prints_its_figures() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.prepare_throughput", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert "rows_read=300 rows_kept=270 status=prepared" in result.stdout
    assert "rows_per_second=" in result.stdout and "peak_rss_mib=" in result.stdout
