"""docs/openapi.json and the API agree, as an outside tester finds them: Schemathesis reads the document and
attacks the served local stack (after every provider's demo run, so the routes have runs to show) with what the
document allows and what it forbids. Every check and every phase (stateful included), a fixed seed, a bounded
number of examples (tests/local/schemathesis.toml); a failure fails the build with Schemathesis's report."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local.serving import ROOT, Serving, start_serve, user_environment

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = ROOT / "tests" / "local" / "schemathesis.toml"
EXAMPLES_PER_OPERATION = 20


@pytest.fixture(scope="module")
def served_with_runs() -> Iterator[Serving]:
    serving = start_serve("--demo-runs")
    yield serving
    assert serving.stop() == 0


def test_schemathesis_finds_no_failure_in_any_operation(served_with_runs: Serving, tmp_path: Path) -> None:
    exported = served_with_runs.exported
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(CONFIG),
            "run",
            str(ROOT / "docs" / "openapi.json"),
            "--url",
            exported["RAGTUNE_API_URL"],
            "--header",
            f"x-api-key: {exported['RAGTUNE_API_KEY']}",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--no-color",
        ],
        cwd=tmp_path,  # anything it writes stays out of the checkout
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )

    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-8000:]
    summary = report[report.index("SUMMARY") :]
    assert "Selected: 9/9" in summary and "Tested: 9" in summary, summary
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, summary
    assert "Seed: 42" in summary
