"""template.yaml as data: the single source of truth for every local resource we create.

Tests and the local stack build their tables and bucket from these definitions, so
what runs on a laptop cannot drift from what `sam deploy` creates.
"""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # libyaml when built
    """Reads CloudFormation short-form tags (!Ref, !Sub, !GetAtt ...) as their long form."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected !{tag_suffix}", node.start_mark)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@lru_cache(maxsize=1)
def load_template() -> dict[str, Any]:
    with TEMPLATE_PATH.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506  # nosec B506  # a SafeLoader subclass
    return document


def resource_properties(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = load_template()["Resources"][logical_id]["Properties"]
    return properties


def create_table(dynamodb: Any, logical_id: str, table_name: str) -> None:
    """Create a DynamoDB table with the keys, indexes and TTL the template declares."""
    properties = resource_properties(logical_id)
    arguments = {
        key: properties[key]
        for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
        if key in properties
    }
    dynamodb.create_table(TableName=table_name, **arguments)
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)


def create_bucket(s3: Any, logical_id: str, bucket_name: str) -> None:
    """Create the bucket with the versioning and encryption the template declares."""
    properties = resource_properties(logical_id)
    s3.create_bucket(Bucket=bucket_name)
    if "VersioningConfiguration" in properties:
        s3.put_bucket_versioning(Bucket=bucket_name, VersioningConfiguration=properties["VersioningConfiguration"])
    if "BucketEncryption" in properties:
        s3.put_bucket_encryption(
            Bucket=bucket_name,
            ServerSideEncryptionConfiguration={
                "Rules": [  # CloudFormation's name for the rule's field differs from the API's
                    {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                    for rule in properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                ]
            },
        )
    if "PublicAccessBlockConfiguration" in properties:
        s3.put_public_access_block(
            Bucket=bucket_name,
            PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"],
        )


def state_machine_definition(logical_id: str, substitutions: dict[str, str]) -> str:
    """The definition file with its DefinitionSubstitutions filled from `substitutions`."""
    properties = resource_properties(logical_id)
    definition: str = (REPO_ROOT / properties["DefinitionUri"]).read_text(encoding="utf-8")
    declared = set(properties.get("DefinitionSubstitutions", {}))
    missing = declared - set(substitutions)
    if missing:
        raise ValueError(f"no value for substitution(s) {sorted(missing)} of {logical_id}")
    for name in declared:
        definition = definition.replace("${" + name + "}", substitutions[name])
    return definition


def function_handler(logical_id: str) -> str:
    """A zip function's Handler, or an image function's ImageConfig.Command."""
    properties = resource_properties(logical_id)
    if properties.get("PackageType") == "Image":
        return str(properties["ImageConfig"]["Command"][0])
    return str(properties["Handler"])


class _NoManagedPolicies:
    """The translator looks managed policy names up in IAM; offline there are none to find."""

    def load(self) -> dict[str, str]:
        return {}


TRANSLATION_CACHE = REPO_ROOT / ".aws-sam" / "translated-template"


@lru_cache(maxsize=1)
def translated_template() -> dict[str, Any]:
    """template.yaml expanded to plain CloudFormation by aws-sam-translator, offline.

    Local paths become the placeholders `sam package` would write, and the state machine's
    definition is inlined, so the translator accepts the template as it stands.

    Every local stack and test session needs it, and translating costs about 1.3 s (the translator's
    import included), so the result is kept in .aws-sam/ under a hash of everything it depends on: the
    template, the definitions it inlines, this module's code, the translator's version and the region.
    """
    import hashlib
    import json

    import samtranslator

    document = load_template()
    definition_files = sorted(
        REPO_ROOT / resource["Properties"]["DefinitionUri"]
        for resource in document["Resources"].values()
        if resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in resource["Properties"]
    )
    # The translator takes the partition (aws, aws-cn, ...) from the session's region.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    digest = hashlib.sha256(f"{samtranslator.__version__} {region}".encode())
    for source in (TEMPLATE_PATH, Path(__file__), *definition_files):
        digest.update(source.read_bytes())
    cached = TRANSLATION_CACHE / f"{digest.hexdigest()}.json"
    try:
        kept: dict[str, Any] = json.loads(cached.read_text(encoding="utf-8"))
        return kept
    except (OSError, ValueError):  # not there yet, or cut short: translate again
        translated = _translate(document)
    with contextlib.suppress(OSError):  # a checkout we cannot write to translates every time
        TRANSLATION_CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(translated), encoding="utf-8")
        partial.replace(cached)  # atomic: a parallel reader sees the whole file or none
        for stale in TRANSLATION_CACHE.glob("*.json"):
            if stale != cached:
                stale.unlink(missing_ok=True)
    return translated


def _translate(template: dict[str, Any]) -> dict[str, Any]:
    import copy
    import json

    from samtranslator.translator.transform import transform

    document = copy.deepcopy(template)
    for resource in document["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            if properties.get("PackageType") == "Image":
                properties["ImageUri"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/local:latest"
            else:
                properties["CodeUri"] = "s3://local-placeholder/code.zip"
        if resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in properties:
            definition_file = REPO_ROOT / properties.pop("DefinitionUri")
            properties["Definition"] = json.loads(definition_file.read_text(encoding="utf-8"))
    translated: dict[str, Any] = transform(document, {"AWS::Region": "us-east-1"}, _NoManagedPolicies())
    return translated
