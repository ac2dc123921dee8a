"""What the API and tracking-loop handlers load when their sandbox starts (issue #11's cold start goal).

Each import runs in a fresh interpreter with only the functions' environment, and sys.modules says what
was loaded: the OpenAI SDK waits for the first OpenAI call, the X-Ray SDK for tracing to be on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ("functions.ask.app", "functions.start_job.app", "functions.poll_job.app")
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "ragtune",
    "POWERTOOLS_METRICS_NAMESPACE": "Ragtune",
}
REPORT = (
    "import json, sys; import {module}; from shared.observability import tracer; "
    "print(json.dumps({{'loaded': sorted(sys.modules), 'provider': type(tracer.provider).__module__}}))"
)


def _imported(module: str, **environment: str) -> tuple[set[str], str]:
    """The modules loaded by importing `module`, and the module of the Tracer's provider."""
    result = subprocess.run(
        [sys.executable, "-c", REPORT.format(module=module)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"} | ENVIRONMENT | environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout.splitlines()[-1])
    return set(report["loaded"]), str(report["provider"])


@pytest.mark.parametrize("module", HANDLERS)
def test_the_handlers_load_neither_the_openai_sdk_nor_xray_with_tracing_off(module: str) -> None:
    loaded, provider = _imported(module, POWERTOOLS_TRACE_DISABLED="true")

    assert {name for name in loaded if name.split(".")[0] == "openai"} == set()
    # Powertools still switches the SDK's global flag off (aws_xray_sdk.sdk_config, 1 ms): the recorder stays out.
    assert {name for name in loaded if name.startswith("aws_xray_sdk.")} == {"aws_xray_sdk.sdk_config"}
    assert provider == "shared.observability"


def test_in_a_lambda_sandbox_with_tracing_on_the_tracer_still_records_with_xray() -> None:
    loaded, provider = _imported("functions.poll_job.app", LAMBDA_TASK_ROOT=str(ROOT))

    assert provider.startswith("aws_xray_sdk.core")
    assert "aws_xray_sdk.core" in loaded
