"""The registry is the one list of providers: the template, the CLI and the code follow it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.template import load_template
from ragtune_cli.main import DefaultProvider
from shared.domain.config import run_config_json_schema
from shared.providers import DEFAULT_PROVIDER, PROVIDER_NAMES, REGISTRY, spec
from shared.providers.base import ProviderSpec, provider_label

ROOT = Path(__file__).resolve().parents[2]
CODE = ("shared", "functions", "ragtune_cli")


def test_every_registered_provider_has_a_spec_named_after_it_and_a_gateway_factory() -> None:
    for name in PROVIDER_NAMES:
        found = spec(name)
        assert isinstance(found, ProviderSpec) and found.name == name
        assert found.default_model and found.hyperparameters and found.max_epochs > 0
        module, _, function = found.gateway_factory.partition(":")
        assert (ROOT / module.replace(".", "/")).with_suffix(".py").is_file() and function
    assert next(iter(REGISTRY)) == DEFAULT_PROVIDER
    assert provider_label("provider") == "The provider"
    with pytest.raises(KeyError, match="known: openai, bedrock, open"):
        spec("nova")


def test_the_template_the_cli_and_the_config_schema_offer_exactly_the_registered_providers() -> None:
    parameter = load_template()["Parameters"]["DefaultProvider"]
    assert parameter["AllowedValues"] == list(PROVIDER_NAMES)
    assert parameter["Default"] == DEFAULT_PROVIDER
    assert [choice.value for choice in DefaultProvider] == list(PROVIDER_NAMES)
    assert run_config_json_schema()["properties"]["provider"]["enum"] == list(PROVIDER_NAMES)


def _literal_lists_of_providers(path: Path) -> list[int]:
    """Lines of list, tuple, set or dict literals naming two or more providers: a second list of them."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict):
            continue
        elements = list(node.keys if isinstance(node, ast.Dict) else node.elts)
        names = {e.value for e in elements if isinstance(e, ast.Constant) and e.value in PROVIDER_NAMES}
        if len(names) >= 2:
            found.append(node.lineno)
    return found


def test_the_provider_names_are_listed_once_in_the_code() -> None:
    registry = ROOT / "shared" / "providers" / "__init__.py"
    lists = {
        str(path.relative_to(ROOT)): lines
        for folder in CODE
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != registry and (lines := _literal_lists_of_providers(path))
    }
    assert lists == {}
    assert _literal_lists_of_providers(registry)  # the check sees the one list there is


def _provider_name_literals(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in PROVIDER_NAMES]


def test_no_code_outside_a_providers_package_names_a_provider() -> None:
    """Branches on a provider's name live in its own package; everything else asks the registry's spec."""
    providers = ROOT / "shared" / "providers"
    named = {
        str(path.relative_to(ROOT)): lines
        for folder in CODE
        for path in sorted((ROOT / folder).rglob("*.py"))
        if not path.is_relative_to(providers) and (lines := _provider_name_literals(path))
    }
    assert named == {}


def test_the_tracking_loop_retries_every_providers_transient_errors() -> None:
    """Step Functions' Retry matches an error's class name: a provider whose transient errors are not listed would
    end a run `tracking_failed` at its first throttle."""
    import importlib
    import json

    from shared.providers.base import ProviderTransientError

    for name in PROVIDER_NAMES:
        importlib.import_module(spec(name).gateway_factory.partition(":")[0])
    transient = {error.__name__ for error in ProviderTransientError.__subclasses__()}
    assert len(transient) == len(PROVIDER_NAMES)
    retried = {
        (machine, name): set(retry["ErrorEquals"])
        for machine in ("job_tracker", "evaluation")
        for name, state in _states(json.loads((ROOT / "infra" / "statemachine" / f"{machine}.asl.json").read_text()))
        for retry in state.get("Retry", [])
        if "OpenAITransientError" in retry["ErrorEquals"]
    }
    # Polling and the training curve; the evaluation's plan, each chunk of its Map, and its merge.
    assert set(retried) == {
        ("job_tracker", "PollJob"),
        ("job_tracker", "DrawTrainingCurve"),
        ("evaluation", "Plan"),
        ("evaluation", "AskChunk"),
        ("evaluation", "Merge"),
    }
    assert all(transient <= errors for errors in retried.values())


def _states(machine: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, those of a Map's ItemProcessor included."""
    for name, state in machine["States"].items():
        yield name, state
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"])
