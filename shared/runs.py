"""The one module that speaks DynamoDB: the runs table, one item per run.

Items carry `entity` + `created_at` (index ByCreated: list runs newest first) and
`status` + `status_changed_at` (index ByStatus: the latest succeeded run). Every
status change is a conditional write, so replays and races cannot move a run backwards.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from shared.aws import dynamodb_table

ENTITY = "run"
PREPARING, PREPARED, FAILED = "preparing", "prepared", "failed"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _to_dynamodb(value: Any) -> Any:
    """DynamoDB wants Decimal, not float."""
    return json.loads(json.dumps(value), parse_float=Decimal)


def _from_dynamodb(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_dynamodb(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_dynamodb(item) for item in value]
    return value


def _is_condition_failure(error: ClientError) -> bool:
    return bool(error.response["Error"]["Code"] == "ConditionalCheckFailedException")


class RunsRepository:
    def __init__(self, table_name: str) -> None:
        self._table = dynamodb_table(table_name)

    def get(self, run_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key={"run_id": run_id}, ConsistentRead=True).get("Item")
        return _from_dynamodb(item) if item else None

    def claim_for_preparation(self, run_id: str, source: dict[str, Any]) -> bool:
        """Start (or resume) preparing a run; False when the run is already past that.

        A run is resumable while `preparing` or `prepared` (a crash before the training
        file landed), and a `failed` run is retried only by a new version of its config
        object, so a duplicate event never redoes a finished run.
        """
        now = utc_now()
        item = {
            "run_id": run_id,
            "entity": ENTITY,
            "status": PREPARING,
            "created_at": now,
            "updated_at": now,
            "status_changed_at": now,
            **source,
        }
        try:
            self._table.put_item(
                Item=_to_dynamodb(item),
                ConditionExpression=(
                    "attribute_not_exists(run_id) OR #status IN (:preparing, :prepared)"
                    " OR (#status = :failed AND config_version <> :version)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":preparing": PREPARING,
                    ":prepared": PREPARED,
                    ":failed": FAILED,
                    ":version": source.get("config_version") or "",
                },
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def record_prepared(self, run_id: str, outcome: dict[str, Any]) -> None:
        self._set_status(run_id, PREPARED, outcome, allowed_from=(PREPARING,))

    def record_failure(self, run_id: str, code: str, message: str, **details: Any) -> None:
        self._set_status(
            run_id,
            FAILED,
            {"error": {"code": code, "message": message}, **details},
            allowed_from=(PREPARING, PREPARED),
        )

    def _set_status(
        self, run_id: str, status: str, fields: dict[str, Any], allowed_from: tuple[str, ...]
    ) -> bool:
        """Write `status` and `fields` only if the run is in one of `allowed_from`."""
        now = utc_now()
        values = {**fields, "status": status, "updated_at": now, "status_changed_at": now}
        names = {f"#f{i}": name for i, name in enumerate(values)}
        placeholders = {f":v{i}": value for i, value in enumerate(values.values())}
        allowed = {f":from{i}": state for i, state in enumerate(allowed_from)}
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values))),
                ConditionExpression=(
                    f"attribute_exists(run_id) AND #f{list(values).index('status')} "
                    f"IN ({', '.join(allowed)})"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_to_dynamodb({**placeholders, **allowed}),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True
