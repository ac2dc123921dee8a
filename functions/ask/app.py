"""AskFunction: the REST API (API key required) to ask a run's fine-tuned model and manage runs.

Routes parse, call one use case in `shared.pipeline.ask` and return. Exception handlers give every
failure the same JSON shape {"message", "code"}: the caller's mistakes are 4xx, a provider's
failures 502/503 (one handler per family, the code naming the provider), anything else a generic 500
whose detail stays in the logs.
`python -m functions.ask.app` rewrites docs/openapi.json from these routes.
"""

from __future__ import annotations

import base64
import binascii
import json
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from shared.aws.runs import InvalidCursorError
from shared.aws.tracking import EvaluationNotStartedError
from shared.domain.api_models import (
    AskRequest,
    AskResponse,
    CancelResponse,
    CurveResponse,
    DeletedModelResponse,
    ErrorBody,
    EvaluationAnswersResponse,
    EvaluationRequest,
    EvaluationResponse,
    RequestValidationBody,
    RunConflictBody,
    RunDetail,
    RunId,
    RunPage,
)
from shared.domain.errors import UserInputError
from shared.domain.evaluation import EvaluatedRunMissingError, EvaluationLimitError, EvaluationRefusedError
from shared.domain.run_record import CURSOR_PATTERN
from shared.domain.run_status import RunStatus
from shared.observability import logger, metrics, tracer
from shared.pipeline import ask
from shared.providers.base import (
    ProviderEmptyAnswerError,
    ProviderNotConfiguredError,
    ProviderRefusedError,
    ProviderTransientError,
    provider_label,
)

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def _json_body(text: str) -> Any:
    """json.loads, where a body it cannot take (an integer of thousands of digits, nesting deep enough to
    exhaust the stack) is invalid JSON like any other: a 422, not a 500. Every body the API takes is an object,
    or null where the body is optional: anything else is refused here (the validator would answer an array's
    first element)."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        if isinstance(error, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(f"Body cannot be read as JSON ({type(error).__name__})", text, 0) from None
    if document is not None and not isinstance(document, dict):
        raise json.JSONDecodeError(f"The body must be a JSON object, not {type(document).__name__}", text, 0)
    return document


app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=_json_body)


def _responses(
    ok: HTTPStatus,
    model: type[BaseModel],
    description: str,
    *errors: HTTPStatus | tuple[HTTPStatus, type[BaseModel]],
    takes_body: bool = False,
) -> dict[int, Any]:
    """A route's documented answers: its success body, then its errors (ErrorBody unless a model is given with
    the status), the 422 every route can give, and what API Gateway answers itself before the function runs."""
    answers = {ok: (description, model)} | {
        status: (status.phrase, body)
        for status, body in (error if isinstance(error, tuple) else (error, ErrorBody) for error in errors)
    }
    answers[HTTPStatus.UNPROCESSABLE_ENTITY] = ("Malformed request", RequestValidationBody)
    gateway = GATEWAY_ANSWERS | (GATEWAY_BODY_TOO_LARGE | BODY_ANSWERS if takes_body else {})
    for status, text in gateway.items():
        own = answers.get(status)
        answers[status] = (f"{own[0]}; or {text}" if own else text, ErrorBody)
    return {
        status.value: {"description": text, "content": {"application/json": {"model": body}}}
        for status, (text, body) in sorted(answers.items())
    }


# API Gateway's own answers (template.yaml's GatewayResponses give them the API's {message, code} shape).
GATEWAY_ANSWERS = {
    HTTPStatus.FORBIDDEN: "API Gateway: no x-api-key header, or not a key of this API (`invalid_api_key`)",
    HTTPStatus.TOO_MANY_REQUESTS: "API Gateway: the usage plan's rate (`throttled`) or daily quota "
    "(`quota_exceeded`) was exceeded",
    HTTPStatus.BAD_GATEWAY: "API Gateway: the function failed (`gateway_error`)",
    HTTPStatus.GATEWAY_TIMEOUT: "API Gateway: no answer within its 29 s (`gateway_error`)",
}
GATEWAY_BODY_TOO_LARGE = {HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "API Gateway: a body over 10 MB (`request_too_large`)"}
BODY_ANSWERS = {
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "A body sent as anything but application/json (`unsupported_media_type`)"
}


def _error(status: HTTPStatus, code: str, message: str) -> Response[dict[str, str]]:
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=ErrorBody(message=message, code=code).model_dump(),
    )


@app.post(
    "/ask",
    summary="Answer a question with a fine-tuned model",
    description="Uses the named run's model, or that of the latest succeeded run that still has one, with that "
    "run's training system prompt. Blank questions and questions over MAX_QUESTION_CHARS (default 2000) are a 400. "
    "When the model declines to answer, the answer is null and `refusal` holds the model's message "
    "(still a 200). A 502 is OpenAI refusing the request (`openai_refused`) or answering without any "
    "answer or refusal (`openai_empty_response`). A 410 means the run's model is gone for good: "
    "`model_shut_down` from the day the run's `base_model_shutdown_date` says OpenAI shut its base model "
    "(and every fine-tune of it) down, without asking OpenAI; `model_gone` when OpenAI answers 404 "
    "`model_not_found` for the model the run recorded (shut down, deleted, or another organisation's key). "
    "A 409 `temperature_above_provider_limit` is a temperature the named run's provider does not take (Bedrock: "
    "at most 1). "
    'The message suggests training the same config on Amazon Bedrock (`"provider": "bedrock"`).',
    responses=_responses(
        HTTPStatus.OK,
        AskResponse,
        "The answer",
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.NOT_FOUND,
        HTTPStatus.CONFLICT,
        HTTPStatus.GONE,
        HTTPStatus.BAD_GATEWAY,
        HTTPStatus.SERVICE_UNAVAILABLE,
        takes_body=True,
    ),
)
def post_ask(request: Annotated[AskRequest, Body()]) -> AskResponse:
    return ask.answer_question(request)


@app.get(
    "/runs",
    summary="List runs, newest first",
    responses=_responses(HTTPStatus.OK, RunPage, "A page of runs", HTTPStatus.BAD_REQUEST),
)
def get_runs(
    limit: Annotated[int, Query(ge=1, le=100, description="Runs per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            max_length=200,
            description="next_cursor of the previous page (a position: the page starts after it).",
        ),
    ] = None,
    status: Annotated[
        RunStatus | None,
        Query(description="Only the runs in this status, the latest to reach it first."),
    ] = None,
) -> RunPage:
    return ask.list_runs(limit, cursor, status)


@app.get(
    "/runs/<run_id>",
    summary="Show one run",
    responses=_responses(HTTPStatus.OK, RunDetail, "The run", HTTPStatus.NOT_FOUND),
)
def get_run(run_id: Annotated[RunId, PathParam()]) -> RunDetail:
    return ask.get_run(run_id)


@app.post(
    "/runs/<run_id>/cancel",
    summary="Cancel a run's fine-tuning job",
    description="A 409 carries the run's status: `not_cancellable` when the run has finished or has no job "
    "yet or is `deploying` (a Bedrock run whose training is over); `job_already_finished` when the provider "
    "says the job finished before the run's record caught up (the run is then updated to the job's real "
    "status, model and error). A Bedrock job is `running` while Stopping; the poll records it `cancelled`.",
    responses=_responses(
        HTTPStatus.ACCEPTED,
        CancelResponse,
        "Cancel requested; the status is the job's as its provider reported it",
        HTTPStatus.NOT_FOUND,
        (HTTPStatus.CONFLICT, RunConflictBody),
        HTTPStatus.BAD_GATEWAY,
        HTTPStatus.SERVICE_UNAVAILABLE,
    ),
)
def post_cancel(run_id: Annotated[RunId, PathParam()]) -> Response[CancelResponse]:
    result = ask.cancel_run(run_id)
    return Response(status_code=HTTPStatus.ACCEPTED.value, content_type=content_types.APPLICATION_JSON, body=result)


@app.delete(
    "/runs/<run_id>/model",
    summary="Delete a run's model deployment",
    description="Deletes the on-demand custom model deployment that serves a finished Amazon Bedrock run's "
    "model (it stops answering and billing); the run then has no model. A 409 (`no_deployment`, with the "
    "run's status) for a run without one: an OpenAI run, a run still training or deploying, or one whose "
    "deployment was already deleted.",
    responses=_responses(
        HTTPStatus.OK,
        DeletedModelResponse,
        "What was deleted",
        HTTPStatus.NOT_FOUND,
        (HTTPStatus.CONFLICT, RunConflictBody),
        HTTPStatus.BAD_GATEWAY,
        HTTPStatus.SERVICE_UNAVAILABLE,
    ),
)
def delete_model(run_id: Annotated[RunId, PathParam()]) -> DeletedModelResponse:
    return ask.delete_model(run_id)


@app.get(
    "/runs/<run_id>/evaluation",
    summary="Show a run's evaluation on its held-out questions",
    description="Each arm answered every held-out question: `tuned` (the run's model, the question only), `base` "
    "(the base model, the question only), `base_with_context` (the base model with the row's passage before the "
    "question: the RAG the tuned model replaces), and one arm per compared run. All arms use the run's training "
    "system prompt, temperature 0. `pending` until the run has succeeded and the evaluation has started. "
    "A 409 (`no_validation_split`) for a run without held-out questions (validation_fraction 0, or "
    "evaluation.enabled false).",
    responses=_responses(
        HTTPStatus.OK, EvaluationResponse, "The evaluation", HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT
    ),
)
def get_evaluation(run_id: Annotated[RunId, PathParam()]) -> EvaluationResponse:
    return ask.get_evaluation(run_id)


@app.get(
    "/runs/<run_id>/evaluation/answers",
    summary="Every evaluated question with each arm's answer",
    description="The rows of `reports/<run_id>/evaluation.jsonl` (the dashboard's per-question view): [] until an "
    "evaluation has written it.",
    responses=_responses(HTTPStatus.OK, EvaluationAnswersResponse, "The answers", HTTPStatus.NOT_FOUND),
)
def get_evaluation_answers(
    run_id: Annotated[RunId, PathParam()],
    offset: Annotated[int, Query(ge=0, le=1000, description="next_offset of the previous page.")] = 0,
    limit: Annotated[int, Query(ge=1, le=200, description="Questions per page.")] = 100,
) -> EvaluationAnswersResponse:
    return ask.get_evaluation_answers(run_id, offset, limit)


@app.get(
    "/runs/<run_id>/curve",
    summary="A run's training curve as JSON",
    description="The rows of `reports/<run_id>/metrics.csv` (step, training and validation loss and accuracy) once "
    "the job has ended and its curve is published; `published` false and no rows before.",
    responses=_responses(HTTPStatus.OK, CurveResponse, "The curve", HTTPStatus.NOT_FOUND),
)
def get_curve(run_id: Annotated[RunId, PathParam()]) -> CurveResponse:
    return ask.get_curve(run_id)


@app.post(
    "/runs/<run_id>/evaluation",
    summary="Evaluate a run again, or compare other runs on its held-out questions",
    description="Starts the evaluation and answers at once (202, status `pending`); follow it with GET. With "
    "`compare_with`, only those runs' models are asked (one arm each, named by run id) and the arms already in "
    "the report stay. A model the provider refuses as gone (shut down or deleted) is not asked again: its arm is "
    "built from the answers recorded for it before, matched by question and labelled `recorded`. 404 "
    "(`run_not_found`, `compare_run_not_found`) for an unknown run; 409 for a run without "
    "held-out questions (`no_validation_split`), a run or compared run without a model (`run_not_succeeded`, "
    "`compare_run_not_usable`), a compared model known to be gone whose recorded answers hold none of this run's "
    "questions (`no_recorded_answers`), or an evaluation already running (`evaluation_running`); 429 "
    "(`evaluation_limit`, with Retry-After in seconds) once the run was evaluated EvaluationsPerRunPerDay times "
    "(default 3) in the last 24 hours; 503 "
    "(`evaluation_not_started`) when the evaluation function could not be started (nothing is left claimed: "
    "ask again).",
    responses=_responses(
        HTTPStatus.ACCEPTED,
        EvaluationResponse,
        "Evaluation started",
        HTTPStatus.NOT_FOUND,
        HTTPStatus.CONFLICT,
        HTTPStatus.TOO_MANY_REQUESTS,
        HTTPStatus.SERVICE_UNAVAILABLE,
        takes_body=True,
    ),
)
def post_evaluation(
    run_id: Annotated[RunId, PathParam()], request: Annotated[EvaluationRequest | None, Body()] = None
) -> Response[EvaluationResponse]:
    started = ask.start_evaluation(run_id, request.compare_with if request else [])
    return Response(status_code=HTTPStatus.ACCEPTED.value, content_type=content_types.APPLICATION_JSON, body=started)


@app.exception_handler(UserInputError)
def user_input_error(error: UserInputError) -> Response[dict[str, str]]:
    return _error(HTTPStatus.BAD_REQUEST, error.code, error.message)


@app.exception_handler(ask.RunNotFoundError)
def run_not_found(error: ask.RunNotFoundError) -> Response[dict[str, str]]:
    return _error(HTTPStatus.NOT_FOUND, error.code, error.message)


@app.exception_handler(EvaluatedRunMissingError)
def evaluated_run_missing(error: EvaluatedRunMissingError) -> Response[dict[str, str]]:
    return _error(HTTPStatus.NOT_FOUND, error.code, error.message)


@app.exception_handler(EvaluationRefusedError)
def evaluation_refused(error: EvaluationRefusedError) -> Response[dict[str, str]]:
    return _error(HTTPStatus.CONFLICT, error.code, error.message)


@app.exception_handler(EvaluationLimitError)
def evaluation_limit(error: EvaluationLimitError) -> Response[dict[str, str]]:
    response = _error(HTTPStatus.TOO_MANY_REQUESTS, error.code, error.message)
    response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response


@app.exception_handler(ask.ModelShutDownError)
def model_shut_down(error: ask.ModelShutDownError) -> Response[dict[str, str]]:
    logger.info("Asked a model that has been shut down", extra={"code": error.code})
    return _error(HTTPStatus.GONE, error.code, error.message)


@app.exception_handler(ask.RunStateError)
def run_state_conflict(error: ask.RunStateError) -> Response[dict[str, str]]:
    if error.status is None:
        return _error(HTTPStatus.CONFLICT, error.code, error.message)
    return Response(
        status_code=HTTPStatus.CONFLICT.value,
        content_type=content_types.APPLICATION_JSON,
        body=RunConflictBody(message=error.message, code=error.code, status=error.status).model_dump(),
    )


@app.exception_handler(EvaluationNotStartedError)
def evaluation_not_started(error: EvaluationNotStartedError) -> Response[dict[str, str]]:
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "evaluation_not_started",
        f"The evaluation could not be started: {error}. Ask for it again shortly.",
    )


@app.exception_handler(InvalidCursorError)
def invalid_cursor(error: InvalidCursorError) -> Response[dict[str, str]]:
    return _error(HTTPStatus.BAD_REQUEST, "invalid_cursor", f"{error}; pass next_cursor from a previous page.")


# Providers' failures, by family: one handler each, the codes naming the provider (`openai_unavailable`,
# `bedrock_refused`, `openai_key_unavailable`...).
@app.exception_handler(ProviderTransientError)
def provider_unavailable(error: ProviderTransientError) -> Response[dict[str, str]]:
    label = provider_label(error.PROVIDER)
    logger.warning(f"{label} unavailable", extra={"provider": error.PROVIDER, "error": str(error)})
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE,
        f"{error.PROVIDER}_unavailable",
        f"{label} is not answering right now ({error.CAUSES}); try again shortly.",
    )


@app.exception_handler(ProviderNotConfiguredError)
def provider_not_configured(error: ProviderNotConfiguredError) -> Response[dict[str, str]]:
    logger.error(error.LOG_MESSAGE, extra={"provider": error.PROVIDER, "reason": str(error)})
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, error.CODE, error.API_MESSAGE)


@app.exception_handler(ProviderEmptyAnswerError)
def provider_empty_response(error: ProviderEmptyAnswerError) -> Response[dict[str, str]]:
    logger.warning(
        f"{provider_label(error.PROVIDER)} answered without an answer",
        extra={"provider": error.PROVIDER, "error": str(error)},
    )
    return _error(HTTPStatus.BAD_GATEWAY, f"{error.PROVIDER}_empty_response", f"{error} Try again.")


@app.exception_handler(ProviderRefusedError)
def provider_refused(error: ProviderRefusedError) -> Response[dict[str, str]]:
    logger.warning(
        f"{provider_label(error.PROVIDER)} refused",
        extra={"provider": error.PROVIDER, "status_code": error.status_code, "code": error.code},
    )
    return _error(HTTPStatus.BAD_GATEWAY, f"{error.PROVIDER}_refused", error.message)


# Registering a handler for Exception takes precedence over the resolver's own answers for
# its exceptions (lookup follows the MRO), so those are given the house shape here.
@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response[dict[str, Any]]:
    """The document's HTTPValidationError shape (msg included: pydantic's, no input echoed), plus ours."""
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
    fields = "; ".join(".".join(str(part) for part in e["loc"]) + f": {e['msg']}" for e in detail)
    return Response(
        status_code=HTTPStatus.UNPROCESSABLE_ENTITY.value,
        content_type=content_types.APPLICATION_JSON,
        body={"message": f"Invalid request: {fields}", "code": "invalid_request", "detail": detail},
    )


@app.exception_handler(RequestUnsupportedContentType)
def unsupported_content_type(error: RequestUnsupportedContentType) -> Response[dict[str, str]]:
    return Response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE.value, content_types.APPLICATION_JSON, UNSUPPORTED_MEDIA_TYPE)


UNSUPPORTED_MEDIA_TYPE = {"message": "Send the body as application/json.", "code": "unsupported_media_type"}


@app.exception_handler(ServiceError)
def service_error(error: ServiceError) -> Response[dict[str, str]]:
    status = HTTPStatus(error.status_code)
    return _error(status, status.name.lower(), str(error.msg))


@app.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response[dict[str, str]]:
    logger.exception("Unexpected error")
    return _error(
        HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "Internal error; it has been logged with this request's id."
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # What the resolver cannot read is answered before it (its own parsing raised: 500s): a 4xx that says why.
    media_type = _body_media_type(event)
    if media_type is not None and media_type != content_types.APPLICATION_JSON:
        return _proxy_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, UNSUPPORTED_MEDIA_TYPE)
    unreadable = _unreadable_body(event)
    if unreadable is not None:
        detail = [{"loc": ["body"], "msg": unreadable, "type": "body_not_utf8"}]
        body = {"message": f"Invalid request: body: {unreadable}", "code": "invalid_request", "detail": detail}
        return _proxy_response(HTTPStatus.UNPROCESSABLE_ENTITY, body)
    return app.resolve(event, context)


def _proxy_response(status: HTTPStatus, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status.value,
        "multiValueHeaders": {"Content-Type": [content_types.APPLICATION_JSON]},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _body_media_type(event: dict[str, Any]) -> str | None:
    """The media type the body is sent as (None: no body, or no Content-Type: read as JSON)."""
    if not event.get("body"):
        return None
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type")
    return content_type.split(";")[0].strip().lower() if content_type else None


def _unreadable_body(event: dict[str, Any]) -> str | None:
    """Why the body cannot be read as text: API Gateway passes bytes that are not UTF-8 base64-encoded."""
    if not event.get("isBase64Encoded") or not isinstance(event.get("body"), str):
        return None
    try:
        base64.b64decode(event["body"], validate=True).decode("utf-8")
    except binascii.Error:
        return "it is not the base64 API Gateway sends"
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        return f"it is not UTF-8 text (byte 0x{byte:02x} at offset {error.start}); send JSON as UTF-8"
    return None


def openapi_document() -> str:
    """The API's OpenAPI document, API key (header x-api-key) required on every route.

    Powertools' OpenAPI models are imported here: building them takes 0.2 s, which no request needs."""
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server

    document = app.get_openapi_json_schema(
        title="ragtune API",
        servers=[Server(url="/v1", description="The stage: the stack's ApiUrl output ends with it")],
        version="1",
        description="Ask the models ragtune fine-tuned, and list, inspect and cancel runs.",
        security_schemes={"apiKey": APIKey.model_validate({"name": "x-api-key", "in": APIKeyIn.header})},
        security=[{"apiKey": []}],
    )
    return document + "\n"


if __name__ == "__main__":
    OPENAPI_PATH.write_text(openapi_document(), encoding="utf-8")
    print(f"wrote {OPENAPI_PATH}")
