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
from shared.providers.openai.settings import OpenAISettings
from shared.settings import read_settings

if TYPE_CHECKING:
    from shared.domain.config import FineTuneSpec


class ChatRecords:
    """The `TrainingRecords` of OpenAI's fine-tuning."""

    one_missing_content_per_record = False

    def line(self, parts: list[tuple[str, str]]) -> str:
        return chat_line(parts)

    def inspect(self, lines: Iterable[bytes]) -> GateReport:
        return inspect_jsonl(lines)

    def token_limit(self, fine_tune: FineTuneSpec) -> int:
        return MAX_TOKENS_PER_EXAMPLE

    def limits(self, *, offline: bool = False) -> GateLimits:
        return GateLimits(MIN_EXAMPLES)

    def estimate(self, train: GateReport, n_epochs: int | str, model: str, *, offline: bool = False) -> dict[str, Any]:
        prices = read_settings(OpenAISettings, offline=offline).training_prices_per_million_tokens
        price = training_price(model, prices)
        return estimate_training(train, n_epochs, price).as_record()


RECORDS = ChatRecords()
