"""EvaluateFunction: reports on a finished run, for the job tracker and the evaluation state machine.

`training_curve` writes reports/<run_id>/metrics.csv and loss.png from the job's per-step metrics. An
evaluation asks the held-out questions of the tuned model, the base model with and without the passage, and
any runs to compare with, in the evaluation state machine's three steps: `plan_evaluation` (claim, estimate,
the chunks), `ask_chunk` (one Map iteration) and `merge_evaluation` (the report and the summaries).
"""

from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ConfigDict, Field, TypeAdapter

from shared.domain.evaluation import EvaluationRefusedError
from shared.domain.lazy_model import LazyModel
from shared.observability import logger, metrics, tracer
from shared.pipeline.evaluate_run import (
    ChunkRequest,
    ClaimedEvaluation,
    EvaluationRequest,
    ask_chunk,
    merge_evaluation,
    plan_evaluation,
)
from shared.pipeline.reports import publish_training_curve


class TrainingCurveRequest(LazyModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["training_curve"]
    run_id: str


class PlanAction(EvaluationRequest):
    action: Literal["plan_evaluation"]


class ChunkAction(ChunkRequest):
    action: Literal["ask_chunk"]


class MergeAction(ClaimedEvaluation):
    action: Literal["merge_evaluation"]


# What the state machines' tasks send (DrawTrainingCurve; Plan, the Map's AskChunk, Merge and RecordFailure).
ReportRequest = Annotated[TrainingCurveRequest | PlanAction | ChunkAction | MergeAction, Field(discriminator="action")]
REPORT_REQUEST: TypeAdapter[TrainingCurveRequest | PlanAction | ChunkAction | MergeAction] = TypeAdapter(
    ReportRequest, config=ConfigDict(title="EvaluateFunction input")
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_parser(model=REPORT_REQUEST)
def lambda_handler(
    request: TrainingCurveRequest | PlanAction | ChunkAction | MergeAction, context: LambdaContext
) -> dict[str, Any]:
    logger.append_keys(run_id=request.run_id, action=request.action)
    fields = request.model_dump(exclude={"action"})
    if isinstance(request, TrainingCurveRequest):
        return publish_training_curve(request.run_id)
    if isinstance(request, ChunkAction):
        return ask_chunk(ChunkRequest.model_validate(fields))
    if isinstance(request, MergeAction):
        return merge_evaluation(ClaimedEvaluation.model_validate(fields))
    try:
        return plan_evaluation(EvaluationRequest.model_validate(fields))
    except EvaluationRefusedError as refused:  # e.g. a run without held-out questions, which the pipeline sends too
        logger.info("Nothing to evaluate", extra={"code": refused.code, "reason": refused.message})
        return {"run_id": request.run_id, "outcome": "skipped", "skipped": refused.code, "reason": refused.message}
