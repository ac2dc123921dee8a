"""Before an OpenAI fine-tune shuts down: adopt it as a run, and hold its questions out of a successor.

An adopted run trains nothing. Its config names a tuned model (`adopt.model`) the operator put on the
stack's `AdoptableModels` list; prepare checks the list (no call at all for a model not on it), then
asks OpenAI for the model (`GET /models/{id}`: it must exist, and its `shutdown_date` is recorded)
before the dataset is read. The held-out questions are built as usual, the run succeeds with that
model, and its evaluation records the model's answers in `reports/<run_id>/evaluation.jsonl`, where
they outlive the model.

A successor names that run in `evaluation.questions_from`: its prepare holds out every row whose
question is one of those questions and asks exactly them, so the two are compared on the same
questions, the old model's arm from its recording once it is gone.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from shared.aws.runs import RunsRepository
from shared.aws.storage import ObjectRef, read_bytes
from shared.aws.tracking import EvaluationNotStartedError, start_evaluation
from shared.domain.config import RunConfig
from shared.domain.errors import ConfigError
from shared.domain.run_status import RunStatus
from shared.observability import logger
from shared.providers import spec
from shared.settings import settings

MAX_QUESTIONS_FILE_BYTES = 64 * 2**20  # 1,000 questions at most, with their passages
ADOPTABLE_MODELS_PARAMETER = (
    "the stack parameter AdoptableModels, a comma-separated list of ft: model ids the operator sets at "
    "sam deploy (--parameter-overrides AdoptableModels=ft:...)"
)


def check_adoptable(config: RunConfig) -> date | None:
    """The adopted model is allowed and exists: its shutdown date (None: the provider announces none). Raises
    `ConfigError` otherwise. One question to the provider, and none at all for a model not on the list."""
    assert config.adopt is not None
    model = config.adopt.model
    if model not in settings().adoptable_models:
        raise ConfigError(
            f"adopt.model {model!r} is not on this deployment's list of adoptable models: only models the operator "
            f"allows may be adopted, in {ADOPTABLE_MODELS_PARAMETER}"
        )
    return spec(config.provider).adopted_model_shutdown(model)


def recorded_questions(config: RunConfig, runs: RunsRepository) -> list[dict[str, Any]] | None:
    """The held-out questions of the run `evaluation.questions_from` names (None when it names none), as
    that run's questions file holds them. Only a succeeded run of this deployment with questions counts."""
    run_id = config.evaluation.questions_from
    if run_id is None:
        return None
    source = runs.get(run_id)
    where = f"evaluation.questions_from names run {run_id!r}"
    if source is None:
        raise ConfigError(f"{where}, which this deployment does not have: use a run id GET /runs lists")
    if source.status != RunStatus.SUCCEEDED:
        raise ConfigError(f"{where}, which is {source.status}: only a succeeded run's questions can be reused")
    if source.files is None or source.files.questions is None:
        raise ConfigError(
            f"{where}, which has no held-out questions (its validation_fraction was 0 or its evaluation was "
            "disabled): name a run that was evaluated"
        )
    body = read_bytes(ObjectRef(settings().data_bucket, source.files.questions.key), MAX_QUESTIONS_FILE_BYTES)
    questions = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
    if not questions:
        raise ConfigError(f"{where}, whose questions file is empty: name a run that was evaluated")
    return questions


def start_adopted_evaluation(runs: RunsRepository, run_id: str) -> None:
    """The evaluation records the adopted model's answers: started as the pipeline starts it after a job. If
    Step Functions does not take it, the run says so and how to ask again; the run itself stays succeeded."""
    try:
        start_evaluation(run_id, [], token=None)
    except EvaluationNotStartedError as error:
        logger.error("Adopted run's evaluation not started", extra={"reason": str(error)})
        message = f"The evaluation could not be started: {error}. Ask for it with POST /runs/{run_id}/evaluation."
        failed = {"status": "failed", "error": {"code": "evaluation_not_started", "message": message}}
        runs.claim_evaluation(run_id, failed, seen=None)
