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
from pydantic import BaseModel

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
    # The AWS SDK's calls are traced; nothing else X-Ray could patch is loaded for it (sqlite3, SQLAlchemy's hooks).
    assert {name for name in loaded if name.startswith("aws_xray_sdk.ext.")} == {
        "aws_xray_sdk.ext.boto_utils",
        "aws_xray_sdk.ext.botocore",
        "aws_xray_sdk.ext.botocore.patch",
        "aws_xray_sdk.ext.util",
    }
    assert "sqlite3" not in loaded


# What a handler never needs at import (issue #23): the config schema in the API and the dead-letter handler
# (they read a run's record, not a config), Powertools' Parser models (every event source's pydantic models), and
# its data classes (every event source's, 15 ms) where no S3 event is read; and a provider's or the evaluation's
# settings, which the request that needs them reads (an Ask of an OpenAI run never reads Bedrock's); and boto3's
# S3 transfer manager, which boto3 loads with the first S3 client (the API makes one only for the requests that
# read or sign an object).
LOADED_WHERE_USED = {
    "shared.providers.openai.settings",
    "shared.providers.bedrock.settings",
    "shared.providers.open.settings",
    "shared.pipeline.evaluate_run",
    "boto3.s3.transfer",
}
NOT_LOADED = {
    "functions.ask.app": {"shared.domain.config", "aws_lambda_powertools.utilities.parser", *LOADED_WHERE_USED},
    "functions.failed_events.app": {"shared.domain.config", "aws_lambda_powertools.utilities.parser"},
    "functions.evaluate.app": {"aws_lambda_powertools.utilities.data_classes"},
    "functions.poll_job.app": {"aws_lambda_powertools.utilities.data_classes"},
}


@pytest.mark.parametrize("module", sorted(NOT_LOADED))
def test_a_handler_imports_no_schema_it_does_not_use(module: str) -> None:
    loaded, _ = _imported(module, POWERTOOLS_TRACE_DISABLED="true")

    assert NOT_LOADED[module] & loaded == set()


def test_the_models_of_the_shared_package_build_their_schema_on_first_use_not_at_import() -> None:
    """pydantic builds a model's validator when its class is created unless `defer_build`: a handler importing
    the shared package would pay for every model of it (about 100 ms as shipped), used or not. Every such model is a
    LazyModel, whose first build is safe in threads."""
    import importlib
    import pkgutil

    from pydantic import BaseModel

    import shared
    from shared.domain.lazy_model import LazyModel

    for module in pkgutil.walk_packages(shared.__path__, "shared."):
        if "training" not in module.name:
            importlib.import_module(module.name)
    # Read by every invocation of a function that imports them: nothing to gain by waiting.
    built_at_import = {
        "shared.settings.EnvironmentSettings",  # their base, with no field
        "shared.settings.Settings",
        "shared.providers.openai.settings.OpenAISettings",
        "shared.providers.bedrock.settings.BedrockSettings",
        "shared.providers.open.settings.OpenSettings",
        "shared.pipeline.evaluate_run.EvaluationSettings",
    }
    models = {
        f"{model.__module__}.{model.__qualname__}": model
        for model in _subclasses(BaseModel)
        if model.__module__.startswith("shared.")
    }
    assert len(models) > 40
    eager = {
        name
        for name, model in models.items()
        if not (issubclass(model, LazyModel) and model.model_config.get("defer_build"))
    }
    assert eager == built_at_import


def _subclasses(model: type[BaseModel]) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set(model.__subclasses__())
    return found.union(*(_subclasses(child) for child in found))
