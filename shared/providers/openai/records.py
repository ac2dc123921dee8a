"""OpenAI's training records: chat examples, the cookbook's checks, OpenAI's limits and prices by model."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shared.domain.data_gate import (
    MAX_TOKENS_PER_EXAMPLE,
    MIN_EXAMPLES,
    GateReport,
    chat_line,
    estimate_training,
    inspect_jsonl,
)
from shared.domain.prices import training_price
from shared.providers.base import GateLimits

if TYPE_CHECKING:
    from shared.domain.config import FineTuneSpec
    from shared.settings import Settings


class ChatRecords:
    """The `TrainingRecords` of OpenAI's fine-tuning."""

    one_missing_content_per_record = False

    def line(self, parts: list[tuple[str, str]]) -> str:
        return chat_line(parts)

    def inspect(self, lines: Iterable[bytes]) -> GateReport:
        return inspect_jsonl(lines)

    def token_limit(self, fine_tune: FineTuneSpec) -> int:
        return MAX_TOKENS_PER_EXAMPLE

    def limits(self, settings: Settings) -> GateLimits:
        return GateLimits(MIN_EXAMPLES)

    def estimate(self, train: GateReport, n_epochs: int | str, model: str, settings: Settings) -> dict[str, Any]:
        price = training_price(model, settings.training_prices_per_million_tokens)
        return estimate_training(train, n_epochs, price).as_record()


RECORDS = ChatRecords()
