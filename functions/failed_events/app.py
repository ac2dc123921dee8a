"""FailedEventsFunction: events the other functions gave up on (their dead-letter queue) -> failed runs."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.failed_deliveries import DeadLetter, record_failed_delivery
from shared.observability import logger, tracer

# Each message is parsed by Parser into a DeadLetter; one that does not parse fails alone (partial batch).
processor = BatchProcessor(event_type=EventType.SQS, model=DeadLetter)


def _record(record: DeadLetter) -> None:
    record_failed_delivery(record.objects, record.error_message)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=_record, processor=processor, context=context)
