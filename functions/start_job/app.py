"""StartJobFunction: S3 ObjectCreated on datasets/<run_id>/train.jsonl -> a job at the run's provider + tracking."""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws.idempotency import IDEMPOTENCY_CONFIG
from shared.aws.storage import event_objects
from shared.observability import logger, metrics, tracer
from shared.pipeline.start_job import start_training


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    IDEMPOTENCY_CONFIG.register_lambda_context(context)
    return {"runs": [start_training(ref) for ref in event_objects(event)]}
