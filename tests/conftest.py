"""Shared fixtures: a moto AWS built from template.yaml, a Lambda context, SciQ-shaped data.

Shared helpers (not fixtures) live in tests/helpers.py.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import openai._base_client
import pytest
from botocore.retries.standard import ExponentialBackoff

from local.template import load_template, resource_properties

REGION, ACCOUNT, STACK_NAME = "us-east-1", "123456789012", "ragtune"
# What the template's Refs to these resources resolve to in the emulated account.
PHYSICAL_NAMES = {
    "RunsTable": "ragtune-runs",
    "IdempotencyTable": "ragtune-idempotency",
    "RunNotificationsTopic": f"arn:aws:sns:{REGION}:{ACCOUNT}:ragtune-run-notifications",
    "EvaluateFunction": "ragtune-evaluate",
    "EvaluationStateMachine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:ragtune-evaluation",
}


def _template_environment() -> dict[str, str]:
    """The functions' environment as template.yaml gives it (Globals, then each function's own), resolved."""
    template = load_template()
    values = {name: str(spec["Default"]) for name, spec in template["Parameters"].items() if "Default" in spec}
    values |= {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::StackName": STACK_NAME,
        **PHYSICAL_NAMES,
    }

    def resolve(value: Any) -> str:
        if isinstance(value, str | int | float):
            return str(value)
        if set(value) == {"Ref"}:
            return values[value["Ref"]]
        if set(value) == {"Fn::GetAtt"} and value["Fn::GetAtt"][1] == "Arn":  # a role the tests do not create
            return f"arn:aws:iam::{ACCOUNT}:role/{STACK_NAME}-{value['Fn::GetAtt'][0]}"
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            return re.sub(r"\$\{([^}]+)\}", lambda match: values[match[1]], value["Fn::Sub"])
        if set(value) == {"Fn::If"}:
            condition, when_true, when_false = value["Fn::If"]
            return resolve(when_true if holds(template["Conditions"][condition]) else when_false)
        raise ValueError(f"no test value for {value}")

    def holds(condition: dict[str, Any]) -> bool:
        if set(condition) == {"Fn::Not"}:
            return not holds(condition["Fn::Not"][0])
        if set(condition) == {"Fn::Equals"}:
            left, right = (resolve(item) for item in condition["Fn::Equals"])
            return left == right
        raise ValueError(f"no test value for {condition}")

    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            variables |= resource["Properties"].get("Environment", {}).get("Variables", {})
    return {name: resolve(value) for name, value in variables.items()}


_SCRATCH = Path(tempfile.mkdtemp(prefix="ragtune-tests-"))
_ENVIRONMENT = _template_environment()
# The emulator fixture or the local stack sets it; unset, the SDK's default is the template's.
_ENVIRONMENT.pop("OPENAI_BASE_URL")
os.environ.update(_ENVIRONMENT)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        # The template's /tmp paths, in this session's own folder; the Hub is out of reach.
        "HF_HOME": str(_SCRATCH / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TIKTOKEN_CACHE_DIR": str(_SCRATCH / "tiktoken"),
        "SCRATCH_DIR": str(_SCRATCH / "work"),
        # Set per function in the template; all handlers share this process: one value, short for tests.
        "OPENAI_MAX_RETRIES": "2",
        "OPENAI_TIMEOUT_SECONDS": "5",
        "POLL_INTERVAL_SECONDS": "0",
        "OPENAI_RETRY_BACKOFF_SECONDS": "0.01",
    }
)

# A worker's heap is large and long-lived (botocore's models, moto's backends, every module) and Python's default
# thresholds walked it again every few thousand allocations: 13% of a worker's CPU (tests/integration alone: GC
# 15.2 s -> 4.5 s, 116 s -> 105 s). Rarer collections of the young generations, and the old one rarer still.
gc.set_threshold(50_000, 20, 100)

from moto import mock_aws  # noqa: E402  (after the fake credentials are in place)

# moto starts every test with a fresh boto3 session, and each session would parse botocore's service
# models (megabytes of JSON) again: one loader for the whole run keeps what it parsed. The models are
# the installed botocore's either way; only the re-reading goes.
botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)

from local.bedrock_emulator import BedrockEmulator  # noqa: E402
from local.lambda_runtime import LambdaContext, in_process_lambdas  # noqa: E402
from local.moto_fidelity import (  # noqa: E402
    make_dynamodb_requests_atomic,
    map_step_functions_task_parameters,
    reuse_step_functions_parse_trees,
    serialise_dynamodb_values_directly,
)
from local.openai_emulator import OpenAIEmulator  # noqa: E402
from local.openai_emulator.models import FAR_SHUTDOWN_DATES  # noqa: E402
from local.sagemaker_emulator import SageMakerEmulator  # noqa: E402
from local.template import (  # noqa: E402
    create_bucket,
    create_table,
    function_handler,
    state_machine_definition,
)
from shared.pipeline import ask  # noqa: E402
from shared.providers.bedrock import gateway as bedrock_gateway  # noqa: E402
from shared.providers.open import gateway as open_gateway  # noqa: E402
from shared.providers.openai import gateway as openai_gateway  # noqa: E402
from shared.settings import forget_settings  # noqa: E402
from tests.helpers import TEST_OPENAI_KEY, TRICKY_ROWS, Aws, SetEnv, sciq_row, write_jsonl  # noqa: E402

make_dynamodb_requests_atomic()
map_step_functions_task_parameters()
serialise_dynamodb_values_directly()
reuse_step_functions_parse_trees()


# One boto3 session for the whole run (moto's default is a fresh one per mock): each session builds its
# own client classes, and every client a test or handler makes would pay for that again. The session holds
# the same fake credentials and region throughout; each test's resources are still made afresh.
KEEP_BOTO3_SESSION = {"core": {"reset_boto3_session": False}}


@functools.cache
def _setup_client(service: str) -> Any:
    """The clients that build every test's account, made once: a client costs milliseconds to make (eight of
    them were half of each account's setup), and one made after moto's import is answered by every mock."""
    return boto3.client(service, region_name=REGION)


def _create_functions_and_state_machine() -> None:
    """PollJobFunction and EvaluateFunction in moto's Lambda and the real state machine definitions wired to them."""
    role_arn = _setup_client("iam").create_role(
        RoleName="ragtune-test", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )["Role"]["Arn"]
    arns = {
        f"{logical_id}Arn": _setup_client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role_arn,
            Handler=function_handler(logical_id),
            Code={"ZipFile": b"in-process"},
            Timeout=60,
        )["FunctionArn"]
        for logical_id, name in (("PollJobFunction", "ragtune-poll-job"), ("EvaluateFunction", "ragtune-evaluate"))
    }
    sfn = _setup_client("stepfunctions")
    evaluation = sfn.create_state_machine(
        name=os.environ["EVALUATION_STATE_MACHINE_ARN"].rsplit(":", 1)[1],
        definition=state_machine_definition("EvaluationStateMachine", arns),
        roleArn=role_arn,
    )
    assert evaluation["stateMachineArn"] == os.environ["EVALUATION_STATE_MACHINE_ARN"]
    sfn.create_state_machine(
        name=os.environ["STATE_MACHINE_ARN"].rsplit(":", 1)[1],
        definition=state_machine_definition(
            "JobStateMachine", arns | {"EvaluationStateMachineArn": evaluation["stateMachineArn"]}
        ),
        roleArn=role_arn,
    )


def _create_topic(logical_id: str) -> None:
    """The topic with the attributes the template declares, under the ARN the functions' environment names."""
    attributes = {
        key: str(value)
        for key, value in resource_properties(logical_id).items()
        if key in ("KmsMasterKeyId", "DisplayName", "FifoTopic", "ContentBasedDeduplication")
    }
    created = _setup_client("sns").create_topic(
        Name=PHYSICAL_NAMES[logical_id].rsplit(":", 1)[1], Attributes=attributes
    )
    assert created["TopicArn"] == PHYSICAL_NAMES[logical_id]


@contextmanager
def _emulated_aws(config: dict[str, Any] | None = None) -> Iterator[Aws]:
    # The code's own AWS clients (shared.aws) are kept from test to test, as _setup_client's: each made after
    # moto's import is answered by every test's mock (making them again was ~6% of a worker's CPU).
    forget_settings()
    openai_gateway._secrets.cache_clear()
    ask.latest_succeeded_run.forget()
    with mock_aws(config=KEEP_BOTO3_SESSION | (config or {})):  # type: ignore[call-overload]
        s3 = _setup_client("s3")
        dynamodb = _setup_client("dynamodb")
        _setup_client("secretsmanager").create_secret(
            Name=os.environ["OPENAI_API_KEY_SECRET"], SecretString=TEST_OPENAI_KEY
        )
        _create_topic("RunNotificationsTopic")
        create_bucket(s3, "DataBucket", os.environ["DATA_BUCKET"])
        create_table(dynamodb, "RunsTable", os.environ["RUNS_TABLE"])
        create_table(dynamodb, "IdempotencyTable", os.environ["IDEMPOTENCY_TABLE"])
        _create_functions_and_state_machine()
        yield Aws(s3, dynamodb, os.environ["DATA_BUCKET"], os.environ["RUNS_TABLE"])


# Fixtures that start a served stack (a process of ~5 CPU-s) for their module's tests.
MODULE_STACKS = ("local_stack", "served", "served_with_runs")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`served`: the tests that start the local stack (its HTTP servers and threads) as users run it.

    They run first, then the other tests that wait on processes or servers (the CLI's, the benchmarks'), then the
    in-process ones: the long waits start while every worker is still busy, and the short tests fill the gaps they
    leave and end the run together, rather than one worker finishing a served journey alone at the end.
    The tests of one module's stack run on one worker (an xdist group), which starts that stack once: spread over
    the workers, each started its own.
    """
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.nodeid.startswith(("tests/local/", "tests/browser/")) or "local_stack" in fixtures:
            item.add_marker(pytest.mark.served)
        stack = next((name for name in MODULE_STACKS if name in fixtures), None)
        if stack and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(f"{item.nodeid.split('::')[0]}:{stack}"))
    items.sort(key=_start_order)  # stable: collection order within each kind


def _start_order(item: pytest.Item) -> int:
    if item.get_closest_marker("served"):
        return 0
    return 1 if item.nodeid.startswith(("tests/cli/", "tests/benchmarks/")) else 2


@pytest.fixture(autouse=True, scope="session")
def _short_retry_waits() -> Iterator[None]:
    """Retries stay real (the same count, the same headers honoured) but wait milliseconds, not seconds.

    The SDKs' backoff and the emulator's default Retry-After are how long a retry sleeps, not what it
    does; at their shipped values the fault tests would spend minutes asleep.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(openai._base_client, "INITIAL_RETRY_DELAY", 0.005)
        patch.setattr(openai._base_client, "MAX_RETRY_DELAY", 0.02)
        patch.setattr(
            ExponentialBackoff,
            "_DEFAULT_BACKOFF_CONFIG",
            {"throttling_base_scale": 0.01, "non_throttling_base_scale": 0.005},
        )
        patch.setattr(OpenAIEmulator, "default_retry_after", 0.01)
        yield


@pytest.fixture
def aws_account() -> Iterator[Aws]:
    """Executions are recorded by Step Functions but do not run."""
    with _emulated_aws() as account:
        yield account


@pytest.fixture
def aws_account_executing() -> Iterator[Aws]:
    """Step Functions really executes the definition; its Lambda tasks run our handlers in-process."""
    with _emulated_aws({"stepfunctions": {"execute_state_machine": True}}) as account, in_process_lambdas():
        yield account


@pytest.fixture
def set_env() -> Iterator[SetEnv]:
    """`set_env(NAME="value", ...)`: environment variables for this test, with the settings read again.

    Both are undone after the test: the variables restored, then the settings cache cleared.
    """
    with pytest.MonkeyPatch.context() as patch:

        def set_variables(**variables: str) -> None:
            for name, value in variables.items():
                patch.setenv(name, value)
            forget_settings()

        yield set_variables
    forget_settings()


@pytest.fixture
def emulator(set_env: SetEnv) -> Iterator[OpenAIEmulator]:
    """The OpenAI emulator on a loopback port, with the SDK pointed at it; jobs finish at once.

    Its base models shut down far in the future, not on OpenAI's real dates (2027-01-14 for
    gpt-4o-mini-2024-07-18), so the suite passes whatever day it runs; shutdown tests set their own.
    """
    with OpenAIEmulator(phase_seconds=0.0, shutdown_dates=FAR_SHUTDOWN_DATES) as running:
        set_env(OPENAI_BASE_URL=running.base_url)
        yield running


@pytest.fixture
def bedrock(set_env: SetEnv) -> Iterator[BedrockEmulator]:
    """The Bedrock emulator (reading and writing moto's S3), boto3 pointed at it; phases end at once."""
    with BedrockEmulator(phase_seconds=0.0) as emulator:
        set_env(**emulator.environment())
        bedrock_gateway.bedrock_client.cache_clear()
        yield emulator
    bedrock_gateway.bedrock_client.cache_clear()


@pytest.fixture
def sagemaker(set_env: SetEnv, bedrock: BedrockEmulator) -> Iterator[SageMakerEmulator]:
    """The SageMaker emulator beside the Bedrock one (an open run trains on the first, is imported and answers on
    the second), both reading and writing moto's S3; phases end at once."""
    with SageMakerEmulator(phase_seconds=0.0) as emulator:
        set_env(**emulator.environment())
        open_gateway.aws_client.cache_clear()
        yield emulator
    open_gateway.aws_client.cache_clear()


@pytest.fixture
def notifications(aws_account: Aws) -> Any:
    """An SQS queue subscribed to the run notifications topic; returns a reader of its messages."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    queue_url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic_arn = sns.list_topics()["Topics"][0]["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    def read() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]

    return read


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(function_name="ragtune-test", memory_limit_in_mb=2048, timeout_seconds=300)


@pytest.fixture
def sciq_file(tmp_path: Path) -> Path:
    """12 usable rows + the tricky ones: 14 read, 2 dropped, 14 - 2 = 12 kept."""
    rows = TRICKY_ROWS[:2] + [sciq_row(i) for i in range(4, 14)] + TRICKY_ROWS[2:]
    return write_jsonl(tmp_path / "sciq.jsonl", rows)


@pytest.fixture
def log_stream() -> Iterator[Any]:
    """The JSON lines the shared Powertools Logger writes during a test."""
    import io

    from shared.observability import logger

    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
