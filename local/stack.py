"""The deployed topology in one process, offline: template.yaml read, moto serving it.

Everything comes from the translated template: the bucket and its notifications, the
tables, topic and queue, the functions with their handlers and environment, the state
machine with its substitutions, and the API's routes and key requirement. moto's server
holds the AWS side (an S3-compatible endpoint the aws CLI can use); every Lambda
invocation runs our real handler in this process; OpenAI is the in-process emulator
unless OPENAI_API_KEY or OPENAI_BASE_URL is set (see `MotoStack.openai_endpoint`); Amazon Bedrock is
the in-process Bedrock emulator, reading and writing moto's S3, unless AWS_ENDPOINT_URL_BEDROCK or
AWS_ENDPOINT_URL_BEDROCK_RUNTIME is set (see `MotoStack.bedrock_endpoint`); SageMaker's training jobs are the
in-process SageMaker emulator, reading and writing moto's S3 too, unless AWS_ENDPOINT_URL_SAGEMAKER is set.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer

from local.api_gateway import LocalApiGateway, gateway_responses_from_template, routes_from_template, stage_name
from local.bedrock_emulator import BedrockEmulator
from local.lambda_runtime import in_process_lambdas
from local.moto_fidelity import (
    make_dynamodb_requests_atomic,
    map_step_functions_task_parameters,
    reuse_step_functions_parse_trees,
    serialise_dynamodb_values_directly,
)
from local.openai_emulator import OpenAIEmulator
from local.openai_emulator.models import upcoming_shutdown_dates
from local.sagemaker_emulator import SageMakerEmulator
from local.template import (
    create_bucket,
    create_table,
    function_handler,
    state_machine_definition,
    translated_template,
)
from shared.observability import logger
from shared.providers.bedrock.gateway import bedrock_client
from shared.providers.open.gateway import aws_client as open_weights_client

REGION, ACCOUNT = "us-east-1", "123456789012"
BEDROCK_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_BEDROCK", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
SAGEMAKER_ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL_SAGEMAKER"
STACK_NAME = "ragtune"
LAMBDA_TMP = "/tmp"  # nosec B108  # only matched, to move it: each stack gets a private folder instead
PSEUDO_PARAMETERS = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK_NAME,
    "AWS::URLSuffix": "amazonaws.com",
}


@dataclass
class _Resource:
    """What a CloudFormation Ref / GetAtt of one resource resolves to here."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


class TemplateResolver:
    """Resolves Ref, Fn::Sub and Fn::GetAtt against parameters and the resources created so far."""

    def __init__(self, parameters: dict[str, str], conditions: dict[str, Any] | None = None) -> None:
        self.parameters = {**PSEUDO_PARAMETERS, **parameters}
        self.resources: dict[str, _Resource] = {}
        self.conditions = conditions or {}

    def holds(self, condition: Any) -> bool:
        """A template condition (Fn::Equals, Fn::Not, or a named Condition) with the parameters given."""
        if isinstance(condition, str):
            return self.holds(self.conditions[condition])
        if set(condition) == {"Fn::Equals"}:
            left, right = (self.resolve(item) for item in condition["Fn::Equals"])
            return bool(left == right)
        if set(condition) == {"Fn::Not"}:
            return not self.holds(condition["Fn::Not"][0])
        if set(condition) == {"Condition"}:
            return self.holds(condition["Condition"])
        raise ValueError(f"condition {condition!r} is not one the local stack evaluates")

    def _lookup(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        logical_id, _, attribute = name.partition(".")
        resource = self.resources[logical_id]
        return resource.attributes[attribute] if attribute else resource.ref

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self._lookup(value["Ref"])
        if set(value) == {"Fn::GetAtt"}:
            logical_id, attribute = value["Fn::GetAtt"]
            return self._lookup(f"{logical_id}.{attribute}")
        if set(value) == {"Fn::If"}:
            condition, when_true, when_false = value["Fn::If"]
            return self.resolve(when_true if self.holds(condition) else when_false)
        if set(value) == {"Fn::Join"}:
            delimiter, items = value["Fn::Join"]
            return delimiter.join(str(self.resolve(item)) for item in items)
        if set(value) == {"Fn::Sub"}:
            template, variables = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
            local = {name: str(self.resolve(item)) for name, item in variables.items()}
            return re.sub(r"\$\{([^}]+)\}", lambda m: local.get(m[1]) or self._lookup(m[1]), template)
        return {key: self.resolve(item) for key, item in value.items()}


def _parameter_defaults() -> dict[str, str]:
    parameters = translated_template().get("Parameters", {})
    return {name: str(spec["Default"]) for name, spec in parameters.items() if "Default" in spec}


class MotoStack:
    """The local stack: start, use, stop. `endpoint_url`, `bucket`, `api_url` and `api_key` are what users need."""

    def __init__(
        self,
        poll_interval_seconds: int = 1,
        emulator_phase_seconds: float = 1.0,
        log_level: str | None = None,
        parameters: dict[str, str] | None = None,
    ) -> None:
        """`parameters`: template parameters set as `sam deploy --parameter-overrides` would (e.g. AdoptableModels)."""
        self.real_openai_key = os.environ.get("OPENAI_API_KEY") or None
        self.user_base_url = os.environ.get("OPENAI_BASE_URL") or None
        self._poll_interval = poll_interval_seconds
        self._log_level = log_level
        self._parameters = dict(parameters or {})
        use_emulator = not (self.real_openai_key or self.user_base_url)
        # OpenAI's shutdown dates while they are ahead, far ones after: the demo must train and answer whatever
        # day it runs (a shut-down model's 410 is tested on its own, in tests/integration/test_ask_api.py).
        self._emulator = (
            OpenAIEmulator(
                phase_seconds=emulator_phase_seconds, shutdown_dates=upcoming_shutdown_dates(datetime.now(UTC).date())
            )
            if use_emulator
            else None
        )
        # Bedrock: the emulator unless the user named an endpoint; it reads training data from (and writes
        # metrics to) this stack's moto S3, through a client made once moto is up.
        self.user_bedrock_endpoints = {
            name: os.environ[name] for name in BEDROCK_ENDPOINT_VARIABLES if os.environ.get(name)
        }
        self._bedrock = (
            None
            if self.user_bedrock_endpoints
            else BedrockEmulator(phase_seconds=emulator_phase_seconds, s3=lambda: self.client("s3"))
        )
        # SageMaker (the open provider's training jobs): the emulator unless the user named an endpoint, on moto's S3.
        self.user_sagemaker_endpoint = os.environ.get(SAGEMAKER_ENDPOINT_VARIABLE) or None
        self._sagemaker = (
            None
            if self.user_sagemaker_endpoint
            else SageMakerEmulator(phase_seconds=emulator_phase_seconds, s3=lambda: self.client("s3"))
        )
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._lambdas = in_process_lambdas()
        self.api_key = f"local-{secrets.token_hex(16)}"
        self.ignored: list[str] = []
        self.endpoint_url = ""
        self.bucket = ""
        self._api: LocalApiGateway | None = None
        self._resolver = TemplateResolver({})
        self._function_names: dict[str, str] = {}
        self._applied_environment: dict[str, str] = {}
        self._saved_environment: dict[str, str] = {}
        self._sandbox_tmp = ""
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    # Lifecycle ------------------------------------------------------------------------------
    def start(self) -> MotoStack:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        self._saved_log_level = logger.log_level
        if self._log_level:  # the handlers share this process's one logger, made before LogLevel reaches them
            logger.setLevel(self._log_level)
        self._saved_environment = dict(os.environ)
        self._sandbox_tmp = tempfile.mkdtemp(prefix="ragtune-local-")
        make_dynamodb_requests_atomic()
        map_step_functions_task_parameters()
        serialise_dynamodb_values_directly()
        reuse_step_functions_parse_trees()
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self._clients.clear()  # made for an earlier start's endpoint
        requests.post(
            f"{self.endpoint_url}/moto-api/config", timeout=10, json={"stepfunctions": {"execute_state_machine": True}}
        )
        self._configure_process_environment(port)
        self._lambdas.__enter__()
        if self._emulator:
            self._emulator.start()
        if self._bedrock:
            self._bedrock.start()
            os.environ.update(self._bedrock.environment())
        if self._sagemaker:
            self._sagemaker.start()
            os.environ.update(self._sagemaker.environment())
        bedrock_client.cache_clear()  # a client made before would keep another endpoint
        open_weights_client.cache_clear()
        self._resolver = TemplateResolver(self._parameter_values(), translated_template().get("Conditions", {}))
        self._create_resources()
        self._api = LocalApiGateway(
            routes_from_template(),
            self._invoke_function,
            {self.api_key},
            stage_name(),
            responses=gateway_responses_from_template(),
        )
        self._api.start()
        return self

    def stop(self) -> None:
        if self._api:
            self._api.stop()
        if self._emulator:
            self._emulator.stop()
        if self._bedrock:
            self._bedrock.stop()
        if self._sagemaker:
            self._sagemaker.stop()
        self._lambdas.__exit__(None, None, None)
        self._moto.stop()
        os.environ.clear()
        os.environ.update(self._saved_environment)
        logger.setLevel(self._saved_log_level)
        shutil.rmtree(self._sandbox_tmp, ignore_errors=True)

    def set_emulator_phase_seconds(self, seconds: float) -> None:
        """How long each phase of an emulated job lasts from now on, at every emulator this stack runs."""
        for emulator in (self._emulator, self._bedrock, self._sagemaker):
            if emulator is not None:
                emulator.phase_seconds = seconds

    def __enter__(self) -> MotoStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        assert self._api is not None, "start() first"
        return self._api.url

    @property
    def emulator(self) -> OpenAIEmulator | None:
        return self._emulator

    @property
    def default_provider(self) -> str:
        """The template's DefaultProvider, as the functions' DEFAULT_PROVIDER resolves it."""
        return _parameter_defaults()["DefaultProvider"]

    @property
    def openai_base_url(self) -> str:
        """The endpoint every handler calls: the emulator's, else OPENAI_BASE_URL, else the template's default."""
        if self._emulator:
            return self._emulator.base_url
        return self.user_base_url or _parameter_defaults()["OpenAIBaseUrl"]

    @property
    def openai_endpoint(self) -> str:
        """One line saying which OpenAI endpoint the stack uses, and why."""
        if self._emulator:
            return f"OpenAI: the in-process emulator at {self.openai_base_url} (no OPENAI_API_KEY or OPENAI_BASE_URL)"
        source = "OPENAI_BASE_URL" if self.user_base_url else "the template's OpenAIBaseUrl default"
        key = "OPENAI_API_KEY" if self.real_openai_key else "no key (OPENAI_API_KEY unset)"
        return f"OpenAI: {self.openai_base_url} (from {source}), with {key}"

    @property
    def bedrock_emulator(self) -> BedrockEmulator | None:
        return self._bedrock

    @property
    def bedrock_endpoint_url(self) -> str:
        """The Bedrock endpoint handlers call: the emulator's, else the user's (the runtime's if only that is set)."""
        if self._bedrock:
            return self._bedrock.endpoint_url
        return next(iter(self.user_bedrock_endpoints.values()))

    @property
    def bedrock_endpoint(self) -> str:
        """One line saying which Amazon Bedrock endpoint the stack uses, and why."""
        if self._bedrock:
            return (
                f"Bedrock: the in-process emulator at {self.bedrock_endpoint_url} "
                "(no AWS_ENDPOINT_URL_BEDROCK or AWS_ENDPOINT_URL_BEDROCK_RUNTIME)"
            )
        named = ", ".join(f"{value} (from {name})" for name, value in self.user_bedrock_endpoints.items())
        return f"Bedrock: {named}"

    @property
    def sagemaker_endpoint(self) -> str:
        """One line saying which SageMaker endpoint the stack uses, and why."""
        if self._sagemaker:
            url = self.sagemaker_endpoint_url
            return f"SageMaker: the in-process emulator at {url} (no {SAGEMAKER_ENDPOINT_VARIABLE})"
        return f"SageMaker: {self.sagemaker_endpoint_url} (from {SAGEMAKER_ENDPOINT_VARIABLE})"

    @property
    def sagemaker_emulator(self) -> SageMakerEmulator | None:
        return self._sagemaker

    @property
    def sagemaker_endpoint_url(self) -> str:
        """The SageMaker endpoint handlers call: the emulator's, else AWS_ENDPOINT_URL_SAGEMAKER."""
        if self._sagemaker:
            return self._sagemaker.endpoint_url
        assert self.user_sagemaker_endpoint is not None
        return self.user_sagemaker_endpoint

    def client(self, service: str) -> Any:
        """One client per service for the stack's life (boto3's clients are thread-safe): making one costs ~25 ms
        of CPU, and the emulators ask for S3's on every object they read or write."""
        with self._clients_lock:
            made = self._clients.get(service)
            if made is None:
                made = self._clients[service] = boto3.client(
                    service, endpoint_url=self.endpoint_url, region_name=REGION
                )
            return made

    # Setup ----------------------------------------------------------------------------------
    def _configure_process_environment(self, moto_port: int) -> None:
        """Handlers here talk to moto's server; Step Functions calls Lambda through MOTO_PORT."""
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "MOTO_PORT": str(moto_port),
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_DISABLED": "true",
            }
        )
        os.environ.pop("AWS_PROFILE", None)

    def _parameter_values(self) -> dict[str, str]:
        values = _parameter_defaults()
        values["PollIntervalSeconds"] = str(self._poll_interval)
        values["OpenAIBaseUrl"] = self.openai_base_url  # the user's OPENAI_BASE_URL wins over the default
        if self._log_level:
            values["LogLevel"] = self._log_level
        return values | self._parameters

    def _create_resources(self) -> None:
        # What each created resource type becomes, in the order they are created; other types are ignored.
        creators: dict[str, Callable[[str, str, dict[str, Any]], _Resource]] = {
            "AWS::S3::Bucket": self._bucket,
            "AWS::DynamoDB::Table": self._table,
            "AWS::SNS::Topic": self._topic,
            "AWS::SQS::Queue": self._queue,
            "AWS::Lambda::Function": self._function,
            "AWS::StepFunctions::StateMachine": self._state_machine,
            "AWS::ApiGateway::RestApi": self._served_by_the_api_front,
            "AWS::ApiGateway::ApiKey": self._served_by_the_api_front,
        }
        resources = translated_template()["Resources"]
        self.ignored = sorted(f"{lid} ({r['Type']})" for lid, r in resources.items() if r["Type"] not in creators)
        self.client("iam").create_role(RoleName="ragtune-local", AssumeRolePolicyDocument="{}")
        for logical_id, resource in resources.items():  # not created (IAM is not enforced), but its ARN is named
            if resource["Type"] == "AWS::IAM::Role":
                role = f"{STACK_NAME}-{logical_id}"
                self._resolver.resources[logical_id] = _Resource(role, {"Arn": f"arn:aws:iam::{ACCOUNT}:role/{role}"})
        self._secret()
        # In that order, except that a resource naming one not yet created waits for it (functions name the
        # evaluation state machine, which names EvaluateFunction), as CloudFormation orders by reference.
        pending = [(lid, r) for kind in creators for lid, r in resources.items() if r["Type"] == kind]
        while pending:
            waiting = []
            for logical_id, resource in pending:
                try:
                    created = creators[resource["Type"]](
                        logical_id, f"{STACK_NAME}-{logical_id}", resource.get("Properties", {})
                    )
                except KeyError as missing:
                    if missing.args[0] not in resources or missing.args[0] in self._resolver.resources:
                        raise
                    waiting.append((logical_id, resource))
                    continue
                self._resolver.resources[logical_id] = created
            if len(waiting) == len(pending):
                raise ValueError(f"resources that name each other: {[logical_id for logical_id, _ in waiting]}")
            pending = waiting
        for logical_id, resource in resources.items():
            if resource["Type"] == "AWS::S3::Bucket":
                self._bucket_notifications(logical_id, resource["Properties"])

    def _secret(self) -> None:
        name = self._resolver.parameters["OpenAIApiKeySecretName"]
        key = self.real_openai_key or "sk-local-no-key"
        self.client("secretsmanager").create_secret(Name=name, SecretString=key)

    def _bucket(self, logical_id: str, name: str, properties: dict[str, Any]) -> _Resource:
        self.bucket = self._resolver.resolve(properties["BucketName"])
        create_bucket(self.client("s3"), logical_id, self.bucket)
        return _Resource(self.bucket, {"Arn": f"arn:aws:s3:::{self.bucket}"})

    def _table(self, logical_id: str, name: str, properties: dict[str, Any]) -> _Resource:
        create_table(self.client("dynamodb"), logical_id, name)
        return _Resource(name, {"Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"})

    def _topic(self, logical_id: str, name: str, properties: dict[str, Any]) -> _Resource:
        return _Resource(self.client("sns").create_topic(Name=name)["TopicArn"], {"TopicName": name})

    def _queue(self, logical_id: str, name: str, properties: dict[str, Any]) -> _Resource:
        url = self.client("sqs").create_queue(QueueName=name)["QueueUrl"]
        return _Resource(url, {"Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"})

    def _state_machine(self, logical_id: str, name: str, properties: dict[str, Any]) -> _Resource:
        state_machine = self._resolver.resolve(properties["StateMachineName"])
        substitutions = self._resolver.resolve(properties.get("DefinitionSubstitutions", {}))
        created = self.client("stepfunctions").create_state_machine(
            name=state_machine,
            roleArn=self._role_arn(),
            type="STANDARD",
            definition=state_machine_definition(logical_id, {key: str(value) for key, value in substitutions.items()}),
        )
        return _Resource(created["stateMachineArn"], {"Name": state_machine})

    def _served_by_the_api_front(self, logical_id: str, name: str, properties: dict[str, Any]) -> _Resource:
        return _Resource(name)  # the API and its key: LocalApiGateway serves them

    def _role_arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/ragtune-local"

    def _function(self, logical_id: str, name: str, properties: dict[str, Any]) -> _Resource:
        """A moto function whose code is never run: the in-process hook runs its handler instead."""
        environment = self._resolver.resolve(properties.get("Environment", {}).get("Variables", {}))
        # Each Lambda sandbox has its own /tmp; two local stacks on one machine must not share scratch files.
        environment = {
            key: self._sandbox_tmp + value[len(LAMBDA_TMP) :] if value.startswith(LAMBDA_TMP + "/") else value
            for key, value in environment.items()
        }
        created = self.client("lambda").create_function(
            FunctionName=name,
            Runtime=properties.get("Runtime", "python3.12"),
            Role=self._role_arn(),
            Handler=function_handler(logical_id),
            Code={"ZipFile": b"runs in-process"},
            Timeout=int(properties.get("Timeout", 3)),
            MemorySize=int(properties.get("MemorySize", 128)),
            Environment={"Variables": environment},
        )
        self._apply_environment(logical_id, environment)
        self._function_names[logical_id] = name
        return _Resource(name, {"Arn": created["FunctionArn"]})

    def _apply_environment(self, logical_id: str, environment: dict[str, str]) -> None:
        """All handlers share this process: the first function's value of a variable wins; others are noted."""
        for key, value in environment.items():
            applied = self._applied_environment.setdefault(key, value)
            if applied == value:
                os.environ[key] = value
            else:
                self.ignored.append(f"{logical_id} environment {key}={value} (using {applied})")

    def _bucket_notifications(self, logical_id: str, properties: dict[str, Any]) -> None:
        configurations = self._resolver.resolve(properties.get("NotificationConfiguration", {}))
        self.client("s3").put_bucket_notification_configuration(
            Bucket=self.bucket,
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [
                    {
                        "LambdaFunctionArn": item["Function"],
                        "Events": [item["Event"]],
                        "Filter": {"Key": {"FilterRules": item["Filter"]["S3Key"]["Rules"]}},
                    }
                    for item in configurations.get("LambdaConfigurations", [])
                ]
            },
        )

    def _invoke_function(self, logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """API requests reach functions through moto's Invoke, like every other trigger."""
        response = self.client("lambda").invoke(
            FunctionName=self._function_names[logical_id], Payload=json.dumps(event).encode()
        )
        payload: dict[str, Any] = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            raise RuntimeError(f"{logical_id} failed: {payload.get('errorType')}: {payload.get('errorMessage')}")
        return payload
