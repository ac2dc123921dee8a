"""The README's local-stack walkthrough, run as written against `python -m local serve`.

The bash block is read from README.md and run by bash with the printed values exported, so
the README cannot drift from what works. It uses the aws CLI when installed; otherwise a tiny
stand-in on PATH does the same `aws --endpoint-url URL s3 cp FILE s3://BUCKET/KEY` with boto3.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from .serving import ROOT, Serving, start_serve, user_environment

AWS_STAND_IN = f'''#!{sys.executable}
"""aws --endpoint-url URL s3 cp FILE s3://BUCKET/KEY-or-PREFIX/ (all the walkthrough needs)."""
import sys
from pathlib import Path

import boto3

arguments = sys.argv[1:]
assert arguments[:1] == ["--endpoint-url"] and arguments[2:4] == ["s3", "cp"], arguments
endpoint, source, target = arguments[1], arguments[4], arguments[5]
bucket, _, key = target.removeprefix("s3://").partition("/")
key = key + Path(source).name if key.endswith("/") or not key else key
boto3.client("s3", endpoint_url=endpoint).upload_file(source, bucket, key)
print(f"upload: {{source}} to s3://{{bucket}}/{{key}}")
'''


def _walkthrough() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## The local stack\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    [walkthrough] = [block for block in blocks if "s3 cp" in block and "/ask" in block]
    return str(walkthrough)


@pytest.fixture
def served() -> Iterator[Serving]:
    serving = start_serve()
    yield serving
    assert serving.stop() == 0


def _another_run_succeeded(exported: dict[str, str]) -> str:
    """A Bedrock run of the same sample under another key, finished before the walkthrough starts: the walkthrough
    must find and ask its own run, not the newest or the first listed."""
    s3 = boto3.client(
        "s3",
        endpoint_url=exported["RAGTUNE_S3_ENDPOINT"],
        aws_access_key_id=exported["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exported["AWS_SECRET_ACCESS_KEY"],
        region_name=exported["AWS_DEFAULT_REGION"],
    )
    bucket = exported["RAGTUNE_BUCKET"]
    s3.upload_file(str(ROOT / "local/sample/sciq-sample.jsonl"), bucket, "data/sciq-sample.jsonl")
    s3.upload_file(str(ROOT / "local/sample/demo-config-bedrock.json"), bucket, "configs/another.json")
    headers = {"x-api-key": exported["RAGTUNE_API_KEY"]}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = requests.get(f"{exported['RAGTUNE_API_URL']}/runs", headers=headers, timeout=10).json()["runs"]
        if runs and runs[0]["status"] == "succeeded":
            return str(runs[0]["run_id"])
        time.sleep(0.5)
    raise AssertionError(f"the other run did not succeed: {runs}")


def test_the_readme_walkthrough_runs_as_written(served: Serving, tmp_path: Path) -> None:
    other_run = _another_run_succeeded(served.exported)
    environment = {**user_environment(), **served.exported}
    if (
        shutil.which("aws") is None
        or subprocess.run(["aws", "--version"], capture_output=True, check=False).returncode != 0
    ):
        stand_in = tmp_path / "bin" / "aws"
        stand_in.parent.mkdir()
        stand_in.write_text(AWS_STAND_IN, encoding="utf-8")
        stand_in.chmod(0o755)
        environment["PATH"] = f"{stand_in.parent}:{environment['PATH']}"

    result = subprocess.run(
        ["bash", "-c", _walkthrough()],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    run_id = lines[-2].split(": ")[0]
    assert run_id.startswith("demo-config-") and run_id != other_run
    statuses = [line.removeprefix(f"{run_id}: ") for line in lines if line.startswith(f"{run_id}: ")]
    assert statuses[-1] == "succeeded" and lines[-2] == f"{run_id}: succeeded", result.stdout[-2000:]
    answer = json.loads(lines[-1])
    assert answer["run_id"] == run_id
    assert answer["answer"].startswith("crust Explanation: The crust is Earth's thin")


def _migration_walkthrough() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Before 2027-01-14: keep your OpenAI fine-tune's measure\n", 1)[1].split("\n## ", 1)[0]
    [walkthrough] = re.findall(r"```bash\n(.*?)```", section, re.S)
    return str(walkthrough)


def test_the_readme_migration_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """Adopt, a Bedrock successor on the same questions, the comparison: with `ragtune`, against serve --migration."""
    serving = start_serve("--migration")
    try:
        result = subprocess.run(
            ["bash", "-c", _migration_walkthrough()],
            cwd=ROOT,
            env={**user_environment(), **serving.exported, "TMPDIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        serving.stop()

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert serving.printed["adoptable_model"] == "ft:gpt-4o-mini-2024-07-18:notebook-org::sciq0001"
    lines = result.stdout.splitlines()
    [old_id] = {line.split()[2] for line in lines if line.startswith("watching run notebook-model-")}
    [new_id] = {line.split()[2] for line in lines if line.startswith("watching run successor-")}
    assert f"run {old_id} succeeded: model ft:gpt-4o-mini-2024-07-18:notebook-org::sciq0001" in lines
    # The successor's table ends with the old model's arm on the same 8 questions.
    compared = [line.split() for line in lines if line.strip().startswith(f"{old_id} ")]
    assert len(compared) == 1 and compared[0][1:4] == [
        "ft:gpt-4o-mini-2024-07-18:notebook-org::sciq0001",
        "100.0%",
        "67.6%–100.0%",
    ]
    assert (tmp_path / "successor.json").exists() and old_id in (tmp_path / "successor.json").read_text()
    assert new_id.startswith("successor-")
    # The emulator carries OpenAI's date while it is ahead, a far one after: either way, the old arm's note says it.
    assert re.search(rf"^{old_id}: model shuts down on (2027-01-14|2999-12-31) \(\d+ days?\)$", result.stdout, re.M)
