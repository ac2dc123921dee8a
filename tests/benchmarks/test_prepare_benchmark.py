"""The benchmark scripts keep working (their figures are printed by `make bench`, not asserted here)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_prepare_vs_notebook_benchmark_checks_identical_output_and_prints_each_goal() -> None:
    """Small sizes: every child runs (notebook, prepare at three sizes) and the files are compared byte for byte."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.prepare_vs_notebook",
            *("--rows", "400", "--repeat", "1", "--small-rows", "100", "--large-rows", "800"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "rows=400 rows_kept=360 repeat=1 (each run a fresh process, median)"
    assert lines[1].startswith("train.jsonl byte-identical to the notebook's: True (")
    assert re.fullmatch(r"prepare vs notebook: [\d.]+x wall, [\d.]+x CPU \(goal >= 10x: (met|NOT MET)\)", lines[4])
    assert re.fullmatch(
        r"  diagnostic, not a product path: prepare with every token count replaced by 0 and no token worker: "
        r"[\d.]+ s \(CPU [\d.]+ s\) = [\d.]+x wall: the most a faster exact tokenizer could reach",
        lines[5],
    ), lines[5]
    assert re.fullmatch(
        r"cold prepare of 100 rows, imports included: [\d.]+ s \(CPU [\d.]+ s\) \(goal <= 1.5 s: (met|NOT MET)\)",
        lines[6],
    ), lines[6]
    assert re.fullmatch(
        r"peak RSS: \d+ MiB at 400 rows, \d+ MiB at 800 rows: [\d.]+x \(goal <= 1.3x: (met|NOT MET)\)", lines[7]
    ), lines[7]
