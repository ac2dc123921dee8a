"""The config schema's building blocks, shared by `shared.domain.config` and the fields each provider's
package declares (its hyperparameters): one sentence per refusal, "auto" unions, unknown keys refused."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

from shared.domain.lazy_model import LazyModel

# The largest config read (a full one is about 2 KB); here, not in shared.domain.config, so a function that only
# reads a config's bytes (FailedEventsFunction) does not import the schema.
MAX_CONFIG_BYTES = 64 * 1024
# A problem stated as a sentence about its field: rendered "<field> <message>", not "<field>: <message>".
RULE_ERROR = "ragtune_rule"
Auto = Literal["auto"]


class Strict(LazyModel):
    """Unknown keys are a typo the user must hear about, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def rule(message: str) -> PydanticCustomError:
    return PydanticCustomError(RULE_ERROR, message.replace("{", "{{").replace("}", "}}"))


def auto_or(requirement: str) -> WrapValidator:
    """One sentence for a union's failure instead of one pydantic line per member; booleans are not numbers."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, bool):
            raise rule(f'must be "auto" or {requirement}')
        try:
            return handler(value)
        except ValidationError:
            raise rule(f'must be "auto" or {requirement}') from None

    return WrapValidator(validate)


def no_default(schema: dict[str, Any]) -> None:
    """The default depends on the provider: the description says which."""
    schema.pop("default", None)
