"""StartJobFunction: S3 ObjectCreated on datasets/<run_id>/train.jsonl -> OpenAI job + tracking."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.idempotency import IDEMPOTENCY_CONFIG
from shared.observability import logger, metrics, tracer
from shared.start_job import start_training
from shared.storage import ObjectRef


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    IDEMPOTENCY_CONFIG.register_lambda_context(context)
    return {"runs": [start_training(ObjectRef.from_event_record(r)) for r in event["Records"]]}
