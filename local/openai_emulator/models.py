"""Models: ``GET /models/{model}`` with each model's ``shutdown_date``, and which models have shut down.

A fine-tuned model (``ft:<base>:...``, its checkpoints too) follows its base model's shutdown schedule,
as OpenAI's deprecations page says of fine-tunes. A model whose shutdown date is the emulator's today
(its clock, in UTC) or earlier no longer answers chat completions (404 ``model_not_found``, as for a
model that does not exist); ``GET /models/{model}`` keeps describing it, date included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from local.fake_model import Example

from .errors import ApiError, not_found
from .finetune import BASE_MODELS, Job

# OpenAI's deprecations page, notice of 2026-10-14: these snapshots, and every fine-tune built on them,
# shut down on 2027-01-14. Every other model: no date announced (null).
DEFAULT_SHUTDOWN_DATES: dict[str, str | None] = {
    "gpt-4o-mini-2024-07-18": "2027-01-14",
    "gpt-4o-2024-08-06": "2027-01-14",
    "gpt-4.1-2025-04-14": "2027-01-14",
    "gpt-4.1-mini-2025-04-14": "2027-01-14",
}
# For runs that must not depend on the day they happen (the demo, the test suite): the same models, far dates.
FAR_SHUTDOWN_DATES: dict[str, str | None] = dict.fromkeys(DEFAULT_SHUTDOWN_DATES, "2999-12-31")


def upcoming_shutdown_dates(today: date) -> dict[str, str | None]:
    """OpenAI's announced dates while every one is still ahead (what a user sees today), else the far ones:
    a demo must train and answer whatever day it runs."""
    announced = [date.fromisoformat(when) for when in DEFAULT_SHUTDOWN_DATES.values() if when]
    return dict(DEFAULT_SHUTDOWN_DATES) if today < min(announced) else dict(FAR_SHUTDOWN_DATES)


BASE_MODEL_CREATED = 1_700_000_000  # a fixed, plausible creation time for the emulator's base models


def base_of(model: str) -> str:
    """The base model of a fine-tune or checkpoint (``ft:<base>:<org>:<suffix>:<id>[:ckpt-step-N]``)."""
    return model.split(":")[1] if model.startswith("ft:") else model


def shutdown_date(model: str, dates: Mapping[str, str | None]) -> str | None:
    return dates.get(base_of(model))


def is_shut_down(model: str, dates: Mapping[str, str | None], now: float) -> bool:
    when = shutdown_date(model, dates)
    return when is not None and date.fromisoformat(when) <= datetime.fromtimestamp(now, UTC).date()


def model_not_found(model: str) -> ApiError:
    return not_found(f"The model `{model}` does not exist or you do not have access to it.", "model", "model_not_found")


def model_object(
    model: str, tuned_models: Mapping[str, Sequence[Example]], jobs: Sequence[Job], dates: Mapping[str, str | None]
) -> dict[str, Any]:
    """The spec's ``Model`` object for a base model the emulator knows or a model it tuned; else a 404."""
    if model in BASE_MODELS:
        created, owner = BASE_MODEL_CREATED, "system"
    elif model in tuned_models:
        finished = [job.finished_at for job in jobs if job.fine_tuned_model and model.startswith(job.fine_tuned_model)]
        created, owner = next((when for when in finished if when is not None), BASE_MODEL_CREATED), "org-emulator"
    else:
        raise model_not_found(model)
    return {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": owner,
        "shutdown_date": shutdown_date(model, dates),
    }
