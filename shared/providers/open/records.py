"""The open provider's training records: chat examples (`{"messages": [...]}`) as the training script reads them,
the gate's chat rules, and an estimate in GPU hours rather than tokens billed.

Tokens are counted with o200k_base as a proxy for the base model's own tokenizer (not bundled: it would mean
downloading the model's tokenizer in a Lambda); the estimate says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shared.domain.data_gate import MIN_EXAMPLES, GateReport, chat_line, inspect_jsonl
from shared.domain.tokens import ENCODING_NAME
from shared.providers.base import GateLimits
from shared.providers.open import OPEN_DEFAULT_EPOCHS, OPEN_DEFAULTS, OPEN_MODELS
from shared.providers.open.settings import OpenSettings
from shared.settings import read_settings

if TYPE_CHECKING:
    from shared.domain.config import FineTuneSpec

# Launching the instance, downloading the image and the base model, merging and uploading the weights: billed
# time that trains nothing, whatever the data's size (a stated assumption, like the throughput).
STARTUP_HOURS = 0.25
TOKEN_ESTIMATE_NOTE = (
    f"tokens are counted with {ENCODING_NAME} as a proxy for the base model's tokenizer; GPU hours assume the "
    "stated throughput"
)


class OpenRecords:
    """The `TrainingRecords` of the open provider: OpenAI's chat layout, which the script renders with the base
    model's own chat template."""

    one_missing_content_per_record = False

    def line(self, parts: list[tuple[str, str]]) -> str:
        return chat_line(parts)

    def inspect(self, lines: Iterable[bytes]) -> GateReport:
        return inspect_jsonl(lines)

    def token_limit(self, fine_tune: FineTuneSpec) -> int:
        """The run's `max_seq_length` (within the base model's context): the script would cut a longer example,
        and with it the answer it is trained on, after the GPU is paid for."""
        card = OPEN_MODELS.get(fine_tune.model)
        context = card.context_tokens if card else min(card.context_tokens for card in OPEN_MODELS.values())
        chosen = fine_tune.hyperparameters.model_dump().get("max_seq_length")
        return min(context, int(chosen) if isinstance(chosen, int) else int(OPEN_DEFAULTS["max_seq_length"]))

    def limits(self, *, offline: bool = False) -> GateLimits:
        return GateLimits(MIN_EXAMPLES)

    def estimate(self, train: GateReport, n_epochs: int | str, model: str, *, offline: bool = False) -> dict[str, Any]:
        """GPU hours on the stack's training instance from the tokens trained at its stated throughput, plus the
        start-up time, priced per hour; and what serving the imported model costs per Custom Model Unit-minute."""
        settings = read_settings(OpenSettings, offline=offline)
        epochs = n_epochs if isinstance(n_epochs, int) else OPEN_DEFAULT_EPOCHS
        trained_tokens = train.billing_tokens * epochs
        training_hours = trained_tokens / (settings.open_training_tokens_per_second * 3600)
        gpu_hours = math.ceil((training_hours + STARTUP_HOURS) * 100) / 100
        return {
            "epochs": epochs,
            "trained_tokens": trained_tokens,
            "instance_type": settings.open_training_instance_type,
            "tokens_per_second": settings.open_training_tokens_per_second,
            "gpu_hours": gpu_hours,
            "price_per_gpu_hour": settings.open_training_price_per_hour,
            "cost_usd": round(gpu_hours * settings.open_training_price_per_hour, 4),
            "serving_price_per_cmu_minute": settings.open_serving_price_per_cmu_minute,
            "serving": (
                "Bedrock bills each imported model copy per Custom Model Unit per minute, in 5-minute windows, "
                "while it serves; nothing while idle. The units per copy are known once imported."
            ),
            "tokens_estimated": True,
            "token_counting": TOKEN_ESTIMATE_NOTE,
        }


RECORDS = OpenRecords()
