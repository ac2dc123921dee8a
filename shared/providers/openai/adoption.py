"""Adopting an OpenAI fine-tune (`adopt.model`): OpenAI must know the model; its shutdown date is recorded."""

from __future__ import annotations

from datetime import date
from http import HTTPStatus

from shared.domain.errors import ConfigError, UserInputError
from shared.providers.openai.gateway import OpenAIRefusedError, gateway


class AdoptionRefusedError(UserInputError):
    """OpenAI would not describe the adopted model for a reason other than its absence (a key without access)."""

    code = "openai_refused"


def adopted_model_shutdown(model: str) -> date | None:
    """`GET /models/{model}`: its shutdown date (None: OpenAI announces none); a model OpenAI does not know is
    a `ConfigError`."""
    try:
        return gateway().model_shutdown_date(model)
    except OpenAIRefusedError as refused:
        if refused.status_code in (HTTPStatus.NOT_FOUND, HTTPStatus.GONE):
            raise ConfigError(
                f"adopt.model {model!r} does not exist at OpenAI (GET /models answered {refused.status_code} "
                f"{refused.code or ''}): check the id, and that the deployment's OpenAI key belongs to the "
                "model's organisation; a model already shut down can no longer be adopted"
            ) from refused
        raise AdoptionRefusedError(f"OpenAI refused to describe adopt.model {model!r}: {refused.message}") from refused
