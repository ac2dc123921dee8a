"""`make audit` (checkov + bandit) runs in `make test`, beside the suite; every finding it lets through has a reason."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("functions", "shared", "local")


def _dry_run(target: str) -> str:
    result = subprocess.run(["make", "--dry-run", target], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout


def test_make_test_runs_the_checks_beside_the_tests_and_fails_if_either_fails() -> None:
    test = _dry_run("test")
    assert "nice -n 10 make --no-print-directory checks >" in test and "checks=$!" in test
    assert "-m pytest" in test and "wait $checks" in test
    assert "[ $suite -eq 0 ] && [ $checked -eq 0 ]" in test
    checks = _dry_run("checks").splitlines()
    checkov = next(line for line in checks if "/checkov " in line)
    bandit = next(line for line in checks if "/bandit " in line)
    assert "--file template.yaml" in checkov and "--skip-download" in checkov
    assert all(folder in bandit for folder in SCANNED) and "--severity-level medium" in bandit
    assert any("/mypy" in line for line in checks) and any("validate --lint" in line for line in checks)


@pytest.mark.parametrize(("suite", "checks"), [("true", "false"), ("false", "true")])
def test_make_test_fails_when_the_suite_or_the_checks_fail_and_prints_the_checks(suite: str, checks: str) -> None:
    """The recipe itself, with each side replaced by a command that passes or fails."""
    result = subprocess.run(
        ["make", "--no-print-directory", "test", f"TEST_PYTHON={suite}", f"SUBMAKE={checks}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "make test: lint, validate and audit (run beside the tests):" in result.stdout
    assert ("lint, validate or audit FAILED" in result.stdout) == (checks == "false")
    assert "training script's tests" not in result.stdout  # it stopped there


def test_make_install_installs_both_auditors_pinned() -> None:
    install = _dry_run("install")
    assert "requirements-audit.txt" in install and "checkov" in install
    assert re.search(r"^checkov==\S+$", (ROOT / "requirements-audit.txt").read_text(encoding="utf-8"), re.M)
    assert re.search(r"^bandit==\S+$", (ROOT / "requirements-dev.txt").read_text(encoding="utf-8"), re.M)


def test_every_bandit_exemption_names_its_check_and_a_reason() -> None:
    exemptions = [
        (path, line)
        for folder in SCANNED
        for path in (ROOT / folder).rglob("*.py")
        for line in path.read_text(encoding="utf-8").splitlines()
        if "nosec" in line
    ]
    for path, line in exemptions:
        # The reason follows a second `#`: bandit would read bare words after `nosec` as test names.
        assert re.search(r"# nosec B\d{3}(,B\d{3})*\s+#\s*\S+ \S+ \S+", line), f"{path}: {line.strip()}"


def test_nothing_reads_outside_the_checkout() -> None:
    """A fresh clone with nothing beside it must test green: no path may climb out of the repository."""
    climbing = re.compile(r"\.\./shared|parents\[\d\]\.parent\b|/work/shared|\.parent\.parent\.parent")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in (*SCANNED, "tests", "benchmarks", "infra", ".ci")
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and path.suffix in {".py", ".json", ""}
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="ignore").splitlines(), 1)
        if climbing.search(line) and path != Path(__file__).resolve()
    ]
    offenders += [
        name
        for name in ("Makefile", "pyproject.toml", "template.yaml")
        if climbing.search((ROOT / name).read_text(encoding="utf-8"))
    ]
    assert not offenders


def test_pre_commit_runs_the_ruff_that_make_lint_runs() -> None:
    pinned = re.search(r"^ruff==(\S+)$", (ROOT / "requirements-dev.txt").read_text(encoding="utf-8"), re.M)
    hook = re.search(r"ruff-pre-commit\n\s+rev: v(\S+)", (ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    assert pinned and hook and pinned[1] == hook[1]
    assert "ruff format --check" in (ROOT / "Makefile").read_text(encoding="utf-8")
