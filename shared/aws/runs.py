"""The one module that speaks DynamoDB: the runs table, one item per run.

Items carry `entity` + `created_at` (index ByCreated: list runs newest first) and
`status` + `status_changed_at` (index ByStatus: the latest succeeded run). Every
status change is a conditional write, so replays and races cannot move a run backwards.
Reads return `shared.domain.run_record.Run`; writes are partial updates of the item.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from shared.aws import dynamodb_table
from shared.domain.run_record import CURSOR_PATTERN, Run
from shared.domain.run_status import JOB_FINISHED, RunStatus

ENTITY = "run"
TRACKING_FAILED_CODE = "tracking_failed"  # the error code of a run whose tracking gave up (and its status)
# Ordered, so the condition expressions a write sends are the same every time.
JOB_FINISHED_IN_ORDER = tuple(status for status in RunStatus if status in JOB_FINISHED)
BY_CREATED_INDEX, BY_STATUS_INDEX = "ByCreated", "ByStatus"


class InvalidCursorError(ValueError):
    """A pagination cursor that this table did not hand out."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


DYNAMODB_DIGITS = 38  # DynamoDB numbers: at most 38 significant digits, magnitudes from 1e-130 to 1e126
_SMALLEST_STORED = 1e-100  # below it a float is stored as 0: no quantity we keep is that small
_LARGEST_STORED = 1e125


def _to_dynamodb(value: Any) -> Any:
    """DynamoDB wants Decimal, not float, and refuses numbers it cannot hold exactly (boto3 raises Inexact or
    Underflow and the write fails). Every value is made storable: floats keep their shortest repr (17
    digits at most), one too small to hold is 0; NaN, infinities and floats too large to hold are None; an
    integer longer than 38 digits is a ValueError naming it (the config's bounds keep users' numbers far below)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | Decimal):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= _LARGEST_STORED:
            return None
        return Decimal(0) if abs(value) < _SMALLEST_STORED else Decimal(repr(value))
    if isinstance(value, int):
        if len(str(abs(value))) > DYNAMODB_DIGITS:
            raise ValueError(f"{value} has more than the {DYNAMODB_DIGITS} digits a DynamoDB number holds")
        return value
    if isinstance(value, dict):
        return {key: _to_dynamodb(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamodb(item) for item in value]
    return value


def _from_dynamodb(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_dynamodb(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_dynamodb(item) for item in value]
    return value


def _run(item: dict[str, Any]) -> Run:
    return Run.model_validate(_from_dynamodb(item))


def _is_condition_failure(error: ClientError) -> bool:
    return bool(error.response["Error"]["Code"] == "ConditionalCheckFailedException")


PROVIDER_STATE = "provider_state"  # the map of what the run's provider keeps of its own (Run.provider_state)


class RunsRepository:
    def __init__(self, table_name: str) -> None:
        self._table = dynamodb_table(table_name)

    def get(self, run_id: str) -> Run | None:
        item = self._table.get_item(Key={"run_id": run_id}, ConsistentRead=True).get("Item")
        return _run(item) if item else None

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
            "status": RunStatus.PREPARING,
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
                    ":preparing": RunStatus.PREPARING,
                    ":prepared": RunStatus.PREPARED,
                    ":failed": RunStatus.FAILED,
                    ":version": source.get("config_version") or "",
                },
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def record_prepared(self, run_id: str, outcome: dict[str, Any]) -> bool:
        return self._set_status(run_id, RunStatus.PREPARED, outcome, allowed_from=(RunStatus.PREPARING,))

    def record_adopted(self, run_id: str, outcome: dict[str, Any]) -> bool:
        """An adopted run goes from `preparing` straight to `succeeded`: there is no job to wait for."""
        return self._set_status(run_id, RunStatus.SUCCEEDED, outcome, allowed_from=(RunStatus.PREPARING,))

    def record_model_gone(self, run_id: str) -> None:
        """The provider refused the run's model as gone: later evaluations use its recorded answers at once."""
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET model_gone_at = :now, updated_at = :now",
                ConditionExpression="attribute_exists(run_id) AND attribute_not_exists(model_gone_at)",
                ExpressionAttributeValues={":now": utc_now()},
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise

    def record_failure(
        self,
        run_id: str,
        code: str,
        message: str,
        *,
        error_fields: dict[str, str] | None = None,
        **details: Any,
    ) -> bool:
        """Any run that has not finished may fail; a finished one keeps its outcome.

        `error` is `{code, message}` with our code, plus `error_fields`: a provider's own code under its
        own name (`openai_code`, `bedrock_code`).
        """
        error = {"code": code, "message": message}
        error |= {name: value for name, value in (error_fields or {}).items() if value}
        return self._set_status(run_id, RunStatus.FAILED, {"error": error, **details}, allowed_from=None)

    def record_failure_before_job(self, run_id: str, code: str, message: str) -> bool:
        """`record_failure` only while the run records no job: once a job exists (and is billed), how the run
        ends is its tracking's to record."""
        error = {"code": code, "message": message}
        return self._set_status(
            run_id,
            RunStatus.FAILED,
            {"error": error},
            allowed_from=None,
            extra_condition=("attribute_not_exists(job_id)", {}),
        )

    def claim_start(self, run_id: str, owner: str) -> bool:
        """Take the run from `prepared` to `starting` for `owner` (a training file version).

        The same owner may take it again (a retry after a crash); another owner, e.g. the
        event of a second upload of the same data, may not, so two jobs cannot race.
        """
        return self._set_status(
            run_id,
            RunStatus.STARTING,
            {"start_owner": owner},
            allowed_from=(RunStatus.PREPARED, RunStatus.STARTING),
            extra_condition=(
                "#status = :prepared OR start_owner = :owner",
                {":prepared": RunStatus.PREPARED, ":owner": owner},
            ),
        )

    def record_start(self, run_id: str, fields: dict[str, Any]) -> bool:
        """Add what is known while starting (file ids, job id) to a `starting` run."""
        return self._set_status(run_id, RunStatus.STARTING, fields, allowed_from=(RunStatus.STARTING,))

    def record_job(self, run_id: str, status: str, fields: dict[str, Any], observed_at: int) -> bool:
        """Apply what the run's provider said about the run's job at `observed_at` (ns).

        Conditional: the run's job has not finished (`JOB_FINISHED`; a `tracking_failed` run may still
        be written) and nothing newer was recorded, so a stale or repeated poll changes nothing and
        a run never leaves a terminal status.
        """
        return self._set_status(
            run_id,
            status,
            {**fields, "job_observed_at": observed_at},
            allowed_from=None,
            extra_condition=(
                "attribute_not_exists(job_observed_at) OR job_observed_at < :observed",
                {":observed": observed_at},
            ),
        )

    def record_job_outside_tracking(self, run_id: str, status: str, fields: dict[str, Any], observed_at: int) -> bool:
        """`record_job` for a job seen by the API (a cancel), where the run may be `tracking_failed`.

        Once the job has finished without an error of its own, the tracking error no longer
        describes the run: it is removed, only if this observation is still the latest recorded.
        """
        recorded = self.record_job(run_id, status, fields, observed_at)
        if recorded and status in JOB_FINISHED and "error" not in fields:
            try:
                self._table.update_item(
                    Key={"run_id": run_id},
                    UpdateExpression="REMOVE #error",
                    ConditionExpression="job_observed_at = :observed AND #error.code = :tracking_failed",
                    ExpressionAttributeNames={"#error": "error"},
                    ExpressionAttributeValues={":observed": observed_at, ":tracking_failed": TRACKING_FAILED_CODE},
                )
            except ClientError as error:
                if not _is_condition_failure(error):
                    raise
        return recorded

    def record_model_deleted(self, run_id: str, deployment_arn: str) -> bool:
        """The run's deployment is deleted: it has no model any more (only if it still records that one, in
        `provider_state` or, in a record written before it existed, at the top)."""
        self._ensure_map(run_id, PROVIDER_STATE)
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression=(
                    "SET model_deleted_at = :now, #ps.deleted_deployment_arn = :arn, updated_at = :now "
                    "REMOVE #ps.deployment_arn, deployment_arn, fine_tuned_model"
                ),
                ConditionExpression="#ps.deployment_arn = :arn OR deployment_arn = :arn",
                ExpressionAttributeNames={"#ps": PROVIDER_STATE},
                ExpressionAttributeValues={":now": utc_now(), ":arn": deployment_arn},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def record_tracking_failure(self, run_id: str, message: str) -> bool:
        return self._set_status(
            run_id,
            RunStatus.TRACKING_FAILED,
            {"error": {"code": TRACKING_FAILED_CODE, "message": message}},
            allowed_from=None,
        )

    def claim_notification(self, run_id: str) -> str | None:
        """The claim's time, once per finished run (None to every later caller), so one notice goes out."""
        claimed_at = utc_now()
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET notified_at = :now REMOVE notification_error",
                ConditionExpression="attribute_exists(run_id) AND attribute_not_exists(notified_at)",
                ExpressionAttributeValues={":now": claimed_at},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        return claimed_at

    def release_notification(self, run_id: str, claimed_at: str, reason: str) -> None:
        """A notice that could not be sent: the claim is given back (a later look at the run may send it) and
        the reason recorded on the run."""
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="REMOVE notified_at SET notification_error = :reason",
                ConditionExpression="notified_at = :claimed_at",
                ExpressionAttributeValues={":reason": reason, ":claimed_at": claimed_at},
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise

    def list_newest_first(
        self, limit: int, cursor: str | None, status: str | None = None
    ) -> tuple[list[Run], str | None]:
        """Newest first; with `status`, the runs in that status, the latest to reach it first (the ByStatus index)."""
        query: dict[str, Any] = {
            "IndexName": BY_CREATED_INDEX,
            "KeyConditionExpression": "entity = :entity",
            "ExpressionAttributeValues": {":entity": ENTITY},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if status is not None:
            query |= {
                "IndexName": BY_STATUS_INDEX,
                "KeyConditionExpression": "#status = :status",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":status": status},
            }
        if cursor:
            query["ExclusiveStartKey"] = _decode_cursor(cursor, status)
        page = self._table.query(**query)
        last = page.get("LastEvaluatedKey")
        return [_run(item) for item in page["Items"]], _encode_cursor(last) if last else None

    def latest_succeeded(self) -> Run | None:
        """The newest succeeded run that still has a model (a Bedrock run's may have been deleted)."""
        return next(self._succeeded("attribute_exists(fine_tuned_model)", {}), None)

    def succeeded_run_with_model(self, model: str) -> Run | None:
        """A succeeded run of this deployment that trained `model` (newest first), or None: an adopted run's
        model was trained elsewhere and does not count."""
        found = self._succeeded("fine_tuned_model = :model", {":model": model})
        return next((run for run in found if run.adopted_model is None), None)

    def _succeeded(self, condition: str, values: dict[str, Any]) -> Iterator[Run]:
        """Succeeded runs meeting `condition`, newest first, a page of the ByStatus index at a time."""
        query: dict[str, Any] = {
            "IndexName": BY_STATUS_INDEX,
            "KeyConditionExpression": "#status = :succeeded",
            "FilterExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":succeeded": RunStatus.SUCCEEDED, **values},
            "ScanIndexForward": False,
            "Limit": 10,  # items read per page, before the filter: the newest are nearly always the ones
        }
        while True:
            page = self._table.query(**query)
            yield from map(_run, page["Items"])
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _set_status(
        self,
        run_id: str,
        status: str,
        fields: dict[str, Any],
        allowed_from: tuple[RunStatus, ...] | None,
        extra_condition: tuple[str, dict[str, Any]] | None = None,
    ) -> bool:
        """Write `status` and `fields` if the run is in `allowed_from` (None: any status but `JOB_FINISHED`).

        `status_changed_at` (the ByStatus sort key) is the time of the last status write; a
        terminal status is written once, so for finished runs it is when they finished.
        """
        now = utc_now()
        provider_state = dict(fields.get("provider_state") or {})
        if provider_state:
            self._ensure_map(run_id, PROVIDER_STATE)
        values = {name: value for name, value in fields.items() if name != PROVIDER_STATE}
        values |= {"status": status, "updated_at": now, "status_changed_at": now}
        names = {f"#f{i}": name for i, name in enumerate(values)} | {"#status": "status"}
        placeholders = {f":v{i}": value for i, value in enumerate(values.values())}
        sets = [f"#f{i} = :v{i}" for i in range(len(values))]
        if provider_state:  # its own keys only: what the provider recorded before stays
            names |= {"#ps": PROVIDER_STATE} | {f"#p{i}": name for i, name in enumerate(provider_state)}
            placeholders |= {f":p{i}": value for i, value in enumerate(provider_state.values())}
            sets += [f"#ps.#p{i} = :p{i}" for i in range(len(provider_state))]
        if allowed_from is None:
            states = {f":state{i}": state for i, state in enumerate(JOB_FINISHED_IN_ORDER)}
            condition = f"NOT #status IN ({', '.join(states)})"
        else:
            states = {f":state{i}": state for i, state in enumerate(allowed_from)}
            condition = f"#status IN ({', '.join(states)})"
        condition = f"attribute_exists(run_id) AND {condition}"
        extra_values: dict[str, Any] = {}
        if extra_condition:
            condition = f"{condition} AND ({extra_condition[0]})"
            extra_values = extra_condition[1]
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_to_dynamodb({**placeholders, **states, **extra_values}),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def _ensure_map(self, run_id: str, name: str) -> bool:
        """The run's map attribute `name`, created empty if missing: DynamoDB cannot create a map and set a key
        in it in one update. Repeats harmlessly; False when the run is not in the table."""
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET #map = if_not_exists(#map, :empty)",
                ConditionExpression="attribute_exists(run_id)",
                ExpressionAttributeNames={"#map": name},
                ExpressionAttributeValues={":empty": {}},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def record_reports(self, run_id: str, reports: dict[str, str]) -> None:
        """Add report keys to the run's `reports` map, keeping the others (whatever its status: a report
        describes a finished run). Two writes, because DynamoDB cannot create a map and set a key in it at
        once: the map if missing, then the keys; both repeat harmlessly."""
        if not reports:
            return
        names = {"#reports": "reports"} | {f"#k{i}": name for i, name in enumerate(reports)}
        values = {f":v{i}": value for i, value in enumerate(reports.values())}
        sets = ", ".join(f"#reports.#k{i} = :v{i}" for i in range(len(reports)))
        if not self._ensure_map(run_id, "reports"):
            raise LookupError(f"Run {run_id} is not in the runs table; its reports are not recorded.")
        self._table.update_item(
            Key={"run_id": run_id},
            UpdateExpression=f"SET {sets}, updated_at = :now",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**values, ":now": utc_now()},
        )

    def claim_evaluation(self, run_id: str, evaluation: dict[str, Any], seen: dict[str, Any] | None) -> bool:
        """Replace the run's whole `evaluation` with ours if it is still the one `seen` (None: it has none).

        A compare-and-swap on the claim fields (`token`, `status`, `lease_until`): whoever decided from a
        stale read loses, so two evaluations of one run never run at once.
        """
        names = {"#evaluation": "evaluation"}
        values: dict[str, Any] = {":evaluation": evaluation, ":now": utc_now()}
        if seen is None:
            condition = "attribute_exists(run_id) AND attribute_not_exists(#evaluation)"
        else:
            checks = []
            for i, field in enumerate(("token", "status", "lease_until")):
                names[f"#c{i}"] = field
                if field in seen:
                    checks.append(f"#evaluation.#c{i} = :c{i}")
                    values[f":c{i}"] = seen[field]
                else:
                    checks.append(f"attribute_not_exists(#evaluation.#c{i})")
            condition = " AND ".join(checks)
        return self._write_evaluation(run_id, condition, names, values)

    def record_evaluation(self, run_id: str, evaluation: dict[str, Any]) -> bool:
        """Replace the run's `evaluation` while its token (`evaluation["token"]`) still holds it running."""
        names = {"#evaluation": "evaluation", "#token": "token", "#status": "status"}
        values = {":evaluation": evaluation, ":now": utc_now(), ":token": evaluation["token"], ":running": "running"}
        condition = "#evaluation.#token = :token AND #evaluation.#status = :running"
        return self._write_evaluation(run_id, condition, names, values)

    def renew_evaluation_lease(self, run_id: str, token: str, lease_until: int) -> bool:
        """Push the lease of the evaluation `token` holds running forward (each chunk of its Map does): a
        long evaluation keeps its claim, one whose execution died loses it a lease after its last chunk."""
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET #evaluation.#lease = :lease",
                ConditionExpression="#evaluation.#token = :token AND #evaluation.#status = :running",
                ExpressionAttributeNames={
                    "#evaluation": "evaluation",
                    "#lease": "lease_until",
                    "#token": "token",
                    "#status": "status",
                },
                ExpressionAttributeValues={":lease": lease_until, ":token": token, ":running": "running"},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def fail_pending_evaluation(self, run_id: str, token: str, error: dict[str, str]) -> bool:
        """A claim whose evaluation could not be started ends `failed` with `error`, while `token` still holds
        it pending: the run may then be evaluated again at once instead of after the claim's lease."""
        names = {"#evaluation": "evaluation", "#token": "token", "#status": "status", "#error": "error"}
        values = {":now": utc_now(), ":token": token, ":pending": "pending", ":failed": "failed", ":error": error}
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET #evaluation.#status = :failed, #evaluation.#error = :error, updated_at = :now",
                ConditionExpression="#evaluation.#token = :token AND #evaluation.#status = :pending",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as failure:
            if _is_condition_failure(failure):
                return False
            raise
        return True

    def _write_evaluation(self, run_id: str, condition: str, names: dict[str, str], values: dict[str, Any]) -> bool:
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET #evaluation = :evaluation, updated_at = :now",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_to_dynamodb(values),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True


def _encode_cursor(key: dict[str, Any]) -> str:
    """`<time>~<run id>`: the page's last run, where the next page starts (the time in UTC, `Z`)."""
    plain = _from_dynamodb(key)
    time = str(plain.get("status_changed_at") or plain["created_at"])
    return f"{time.removesuffix('+00:00')}Z~{plain['run_id']}"


def _decode_cursor(cursor: str, status: str | None = None) -> dict[str, Any]:
    """The start key of the listing asked for (by creation, or by `status`) at the cursor's position: any
    cursor of the documented form is a position, the page starts after it."""
    if re.fullmatch(CURSOR_PATTERN, cursor) is None:
        raise InvalidCursorError("cursor is not one this API returned")
    time, _, run_id = cursor.partition("~")
    stored = time.removesuffix("Z") + "+00:00"
    if status is None:
        return {"run_id": run_id, "entity": ENTITY, "created_at": stored}
    return {"run_id": run_id, "status": status, "status_changed_at": stored}
