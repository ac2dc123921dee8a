"""FailedEventsFunction: events the other functions gave up on (their dead-letter queue) -> failed runs."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.failed_deliveries import record_failed_delivery
from shared.observability import logger, tracer

processor = BatchProcessor(event_type=EventType.SQS)


def _record(record: SQSRecord) -> None:
    error = record.message_attributes["ErrorMessage"]
    record_failed_delivery(record.body, error.string_value if error and error.string_value else "unknown error")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=_record, processor=processor, context=context)
