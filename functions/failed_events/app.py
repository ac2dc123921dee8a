"""FailedEventsFunction: events the other functions gave up on (their dead-letter queue) -> failed runs, or
runs left to (and, if it stopped, restarted) tracking of their job."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.pipeline.failed_deliveries import settle_dead_letter

# Each message reaches the use case as Powertools' SQSRecord (its data class, not Parser's pydantic models, whose
# import alone doubled this function's cold start); the use case drops a body that is no S3 event, so only a
# failure worth retrying (DynamoDB, Step Functions) fails its record (partial batch).
processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=settle_dead_letter, processor=processor, context=context
    )
