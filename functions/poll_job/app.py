"""PollJobFunction: one poll of the tracking loop, or recording why the loop gave up."""

from typing import Annotated, Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ConfigDict, Field, TypeAdapter

from shared.observability import logger, metrics, tracer
from shared.pipeline.poll_job import PollState, TrackingFailure, poll_once, record_tracking_failure

# What the state machine (infra/statemachine/job_tracker.asl.json) sends: the PollJob task's state, or
# what RecordTrackingFailure's Catch caught. Anything else is a ValidationError naming what is wrong.
StateMachineInput = Annotated[PollState | TrackingFailure, Field(discriminator="action")]
STATE_MACHINE_INPUT: TypeAdapter[PollState | TrackingFailure] = TypeAdapter(
    StateMachineInput, config=ConfigDict(title="PollJobFunction input")
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_parser(model=STATE_MACHINE_INPUT)
def lambda_handler(request: PollState | TrackingFailure, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(run_id=request.run_id)
    if isinstance(request, TrackingFailure):
        return record_tracking_failure(request)
    return poll_once(request).model_dump()
