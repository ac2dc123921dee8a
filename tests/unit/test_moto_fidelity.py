"""The speed patches of local/moto_fidelity.py answer exactly what moto itself answers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb.models.dynamo_type import Item

from local.moto_fidelity import (
    _wire_attribute_value,
    make_dynamodb_requests_atomic,
    reuse_step_functions_parse_trees,
    serialise_dynamodb_values_directly,
)

ROLE = "arn:aws:iam::123456789012:role/test"
EVERY_KIND: dict[str, Any] = {
    "run_id": {"S": "run-1"},
    "count": {"N": "12.50"},
    "blob": {"B": b"\x00\xffbytes"},
    "flag": {"BOOL": False},
    "nothing": {"NULL": True},
    "names": {"SS": ["a", "b"]},
    "numbers": {"NS": ["1", "2.5"]},
    "blobs": {"BS": [b"\x01", b"\x02"]},
    "events": {
        "L": [
            {"M": {"at": {"N": "1"}, "message": {"S": "queued ü"}, "raw": {"B": b"\x03"}}},
            {"M": {"at": {"N": "2"}, "tags": {"L": [{"S": "x"}, {"NULL": True}, {"BOOL": True}]}}},
        ]
    },
    "gate": {"M": {"train": {"M": {"kept": {"N": "11"}, "dropped": {"M": {}}}}, "empty": {"L": []}}},
}


def _table_answers() -> dict[str, Any]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return {
        "get": client.get_item(TableName="runs", Key={"run_id": {"S": "run-1"}}, ConsistentRead=True),
        "scan": client.scan(TableName="runs"),
        "update": client.update_item(
            TableName="runs",
            Key={"run_id": {"S": "run-1"}},
            UpdateExpression="SET flag = :on",
            ExpressionAttributeValues={":on": {"BOOL": True}},
            ReturnValues="ALL_OLD",
        ),
    }


def _runs_table() -> Any:
    """A DynamoDB client of the current mock, with a `runs` table keyed by run_id."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(
        TableName="runs",
        KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


def _answers_with(serialise: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(BaseJSONSerializer, "_serialize_type_structure", serialise)
    with mock_aws():
        client = _runs_table()
        client.put_item(TableName="runs", Item=EVERY_KIND)
        answers = _table_answers()
    for answer in answers.values():
        answer.pop("ResponseMetadata")
    return answers


def test_dynamodb_answers_the_same_items_with_the_direct_serialisation_as_with_motos_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serialise_dynamodb_values_directly()
    direct = BaseJSONSerializer._serialize_type_structure
    assert getattr(direct, "__direct_attribute_values__", False)

    assert _answers_with(direct, monkeypatch) == _answers_with(direct.__wrapped__, monkeypatch)  # type: ignore[attr-defined]
    assert _answers_with(direct, monkeypatch)["get"]["Item"] == EVERY_KIND


def test_plain_values_take_the_direct_path_and_anything_holding_a_binary_takes_motos() -> None:
    """Without this, the comparison above would also pass if no value ever took the direct path."""
    plain = {"gate": EVERY_KIND["gate"], "tags": EVERY_KIND["events"]["L"][1]["M"]["tags"]}
    assert {name: _wire_attribute_value(value) for name, value in plain.items()} == plain
    assert _wire_attribute_value(EVERY_KIND["count"]) == {"N": "12.50"}
    for holding_a_binary in ("blob", "blobs", "events"):
        assert _wire_attribute_value(EVERY_KIND[holding_a_binary]) is None
    assert _wire_attribute_value({"S": "a", "N": "1"}) is None  # not one kind: moto decides


def test_a_write_waits_until_another_requests_answer_is_built_from_the_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race a cancel beside a poll met: moto answered an update from the item while another thread's update
    was adding to it. Here the first answer pauses (up to 0.5 s) for the second write, which must not come."""
    make_dynamodb_requests_atomic()
    answering, second_written = threading.Event(), threading.Event()
    to_json = Item.to_json

    def pausing_to_json(self: Item) -> dict[str, Any]:
        if threading.current_thread().name == "first" and not answering.is_set():
            answering.set()
            second_written.wait(timeout=0.5)
        return to_json(self)

    monkeypatch.setattr(Item, "to_json", pausing_to_json)
    answers: dict[str, Any] = {}
    with mock_aws():
        client = _runs_table()
        client.put_item(TableName="runs", Item={"run_id": {"S": "run-1"}})

        def update(name: str) -> None:
            answers[name] = client.update_item(
                TableName="runs",
                Key={"run_id": {"S": "run-1"}},
                UpdateExpression="SET #name = :on",
                ExpressionAttributeNames={"#name": name},
                ExpressionAttributeValues={":on": {"BOOL": True}},
                ReturnValues="ALL_NEW",
            )["Attributes"]
            if name == "second":
                second_written.set()

        first = threading.Thread(target=update, args=("first",), name="first")
        first.start()
        assert answering.wait(timeout=10)
        update("second")
        first.join(timeout=10)

    assert answers["first"] == {"run_id": {"S": "run-1"}, "first": {"BOOL": True}}
    assert answers["second"] == {"run_id": {"S": "run-1"}, "first": {"BOOL": True}, "second": {"BOOL": True}}


def _execute(sfn: Any, machine_arn: str, payload: dict[str, Any]) -> dict[str, Any]:
    execution_arn = sfn.start_execution(
        stateMachineArn=machine_arn, name=f"value-{payload['value']}", input=json.dumps(payload)
    )["executionArn"]
    deadline = time.monotonic() + 10
    while (described := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    finished: dict[str, Any] = described
    return finished


def test_one_definition_parsed_once_still_runs_each_execution_on_its_own_input_and_a_broken_one_is_refused() -> None:
    reuse_step_functions_parse_trees()
    definition = json.dumps(
        {
            "StartAt": "Double",
            "States": {
                "Double": {"Type": "Pass", "Parameters": {"twice.$": "States.Array($.value, $.value)"}, "Next": "Done"},
                "Done": {"Type": "Succeed"},
            },
        }
    )
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        first, second = (
            sfn.create_state_machine(name=name, definition=definition, roleArn=ROLE)["stateMachineArn"]
            for name in ("first", "second")
        )
        outputs = [
            json.loads(_execute(sfn, arn, {"value": value})["output"])
            for arn, value in ((first, "a"), (second, "b"), (first, "c"))
        ]
        for _ in range(2):
            with pytest.raises(ClientError, match=r"Error=ValueError .* in definition"):
                sfn.create_state_machine(name="broken", definition='{"StartAt": "Nowhere"}', roleArn=ROLE)

    assert outputs == [{"twice": ["a", "a"]}, {"twice": ["b", "b"]}, {"twice": ["c", "c"]}]


DEFERRED_BATCH = """
import sys
from local.moto_fidelity import map_step_functions_task_parameters, reuse_step_functions_parse_trees
map_step_functions_task_parameters()
reuse_step_functions_parse_trees()
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_batch
print("ec2 after the parser:", "moto.ec2" in sys.modules)
import boto3, moto.batch
from moto import mock_aws
from moto.batch import batch_backends
from moto.batch.utils import JobStatus
print("same enum:", state_task_service_batch.JobStatus is JobStatus, type(batch_backends).__name__)
with mock_aws():
    batch = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    print("batch answers:", batch.describe_compute_environments()["computeEnvironments"])
print("ec2 after a Batch request:", "moto.ec2" in sys.modules)
"""


def test_step_functions_parser_loads_without_ec2_and_batch_still_works_when_asked() -> None:
    """In a fresh interpreter: this one has long applied the deferral."""
    printed = subprocess.run(
        [sys.executable, "-c", DEFERRED_BATCH], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert printed == [
        "ec2 after the parser: False",
        "same enum: True BackendDict",
        "batch answers: []",
        "ec2 after a Batch request: True",
    ]
