"""PollJobFunction: one poll of the tracking loop, or recording why the loop gave up."""

from typing import Annotated, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field, TypeAdapter

from shared.observability import logger, metrics, tracer
from shared.poll_job import PollState, TrackingFailure, poll_once, record_tracking_failure

StateMachineInput = Annotated[PollState | TrackingFailure, Field(discriminator="action")]
STATE_MACHINE_INPUT: TypeAdapter[PollState | TrackingFailure] = TypeAdapter(StateMachineInput)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = STATE_MACHINE_INPUT.validate_python(event)
    logger.append_keys(run_id=request.run_id)
    if isinstance(request, TrackingFailure):
        return record_tracking_failure(request)
    return poll_once(request).model_dump()
