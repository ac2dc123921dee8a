"""PrepareFunction: S3 ObjectCreated on configs/*.json -> one prepared run per config."""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws.idempotency import IDEMPOTENCY_CONFIG
from shared.aws.storage import event_objects
from shared.observability import logger, metrics, tracer
from shared.pipeline.prepare import prepare_config_object


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    IDEMPOTENCY_CONFIG.register_lambda_context(context)
    return {"runs": [prepare_config_object(ref) for ref in event_objects(event)]}
