"""EvaluateFunction: reports on a finished run, for the state machine and POST /runs/{id}/evaluation.

`training_curve` writes reports/<run_id>/metrics.csv and loss.png from the job's per-step metrics;
`evaluate` asks the held-out questions of the tuned model, the base model with and without the
passage, and any runs to compare with, and writes reports/<run_id>/evaluation.jsonl.
"""

from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.observability import logger, metrics, tracer
from shared.pipeline.evaluate_run import EvaluationRequest, evaluate_or_skip
from shared.pipeline.reports import publish_training_curve


class TrainingCurveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["training_curve"]
    run_id: str


class EvaluateAction(EvaluationRequest):
    action: Literal["evaluate"]


# What the state machine's DrawTrainingCurve and EvaluateRun tasks send, or the API's asynchronous invoke.
ReportRequest = Annotated[TrainingCurveRequest | EvaluateAction, Field(discriminator="action")]
REPORT_REQUEST: TypeAdapter[TrainingCurveRequest | EvaluateAction] = TypeAdapter(
    ReportRequest, config=ConfigDict(title="EvaluateFunction input")
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_parser(model=REPORT_REQUEST)
def lambda_handler(request: TrainingCurveRequest | EvaluateAction, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(run_id=request.run_id, action=request.action)
    if isinstance(request, TrainingCurveRequest):
        return publish_training_curve(request.run_id)
    return evaluate_or_skip(EvaluationRequest.model_validate(request.model_dump(exclude={"action"})))
