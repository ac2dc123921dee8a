"""Nova's training records (`bedrock-conversation-2024`): their layout, the gate's rules for them, the
limits the deployment sets and the cost estimate. Nova's tokenizer is not public, so tokens are counted
with o200k_base as a proxy and the estimate says so."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.domain.data_gate import (
    MAX_TOKENS_PER_EXAMPLE,
    GateReport,
    GateTally,
    blank,
    example_tokens,
    line_digest,
)
from shared.domain.tokens import ENCODING_NAME
from shared.providers.base import GateLimits
from shared.providers.bedrock import BEDROCK_SCHEMA_VERSION, NOVA_RESERVED, nova_context_tokens
from shared.providers.bedrock.settings import BedrockSettings
from shared.settings import read_settings

if TYPE_CHECKING:
    from shared.domain.config import FineTuneSpec

BEDROCK_DEFAULT_EPOCHS = 2  # Nova's epochCount when not given
_BEDROCK_RECORD_KEYS = frozenset({"schemaVersion", "system", "messages"})


def _text_errors(blocks: Any, errors: list[str]) -> list[str] | None:
    """The texts of a `[{"text": ...}]` list, appending what is wrong with it to `errors`."""
    if not isinstance(blocks, list) or not blocks:
        errors.append("missing_content")
        return None
    texts = []
    for block in blocks:
        if not isinstance(block, dict) or set(block) != {"text"} or not isinstance(block["text"], str):
            errors.append("content_not_text")
            return None
        if blank(block["text"]):
            errors.append("missing_content")
        if NOVA_RESERVED.search(block["text"]):
            errors.append("reserved_string")
        texts.append(block["text"])
    return texts


def _bedrock_record_errors(record: Any) -> tuple[list[str], list[dict[str, str]]]:
    """Nova's rules for one record, and its turns as chat messages (for counting tokens)."""
    if not isinstance(record, dict):
        return ["data_type"], []
    errors: list[str] = []
    if record.get("schemaVersion") != BEDROCK_SCHEMA_VERSION:
        errors.append("wrong_schema_version")
    if set(record) - _BEDROCK_RECORD_KEYS:
        errors.append("record_unrecognized_key")
    chat: list[dict[str, str]] = []
    if "system" in record:
        texts = _text_errors(record["system"], errors)
        chat.extend({"role": "system", "content": text} for text in texts or [])
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*errors, "missing_messages_list"], chat
    roles: list[Any] = []
    for message in messages:
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            errors.append(
                "message_missing_key"
                if not isinstance(message, dict) or "role" not in message or "content" not in message
                else "message_unrecognized_key"
            )
            roles.append(message.get("role") if isinstance(message, dict) else None)
            continue
        if message["role"] not in ("user", "assistant"):
            errors.append("unrecognized_role")
        roles.append(message["role"])
        texts = _text_errors(message["content"], errors)
        chat.extend({"role": str(message["role"]), "content": text} for text in texts or [])
    if roles[0] != "user":
        errors.append("first_message_not_user")
    if roles[-1] != "assistant":
        errors.append("last_message_not_assistant")
    if any(a == b for a, b in itertools.pairwise(roles)):
        errors.append("roles_not_alternating")
    return list(dict.fromkeys(errors)), chat


def check_bedrock_record(record: Any) -> tuple[list[str], int]:
    """One Nova record's format errors, and its o200k_base tokens when it has none."""
    errors, chat = _bedrock_record_errors(record)
    return errors, 0 if errors else example_tokens(chat)


def inspect_bedrock_jsonl(lines: Iterable[bytes]) -> GateReport:
    """`inspect_jsonl` for Nova's `bedrock-conversation-2024` records; tokens are o200k_base estimates."""
    tally = GateTally(token_limit=None)
    for line in lines:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            errors, tokens = ["invalid_json"], 0
        else:
            errors, tokens = check_bedrock_record(record)
        tally.add(line_digest(line), errors, tokens)
    return tally.report()


TOKEN_ESTIMATE_NOTE = (
    f"Nova's tokenizer is not public: token counts are estimates ({ENCODING_NAME} as a proxy), and so is the cost"
)


@dataclass(frozen=True)
class BedrockTrainingEstimate:
    epochs: int
    trained_tokens: int
    cost_usd: float
    price_per_1k_tokens: float

    def as_record(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "trained_tokens": self.trained_tokens,
            "cost_usd": round(self.cost_usd, 4),
            "price_per_1k_tokens": self.price_per_1k_tokens,
            "tokens_estimated": True,
            "token_counting": TOKEN_ESTIMATE_NOTE,
        }


def estimate_bedrock_training(
    train: GateReport, n_epochs: int | str, price_per_1k_tokens: float
) -> BedrockTrainingEstimate:
    """Training tokens times the epochs (Bedrock's default, 2, for "auto"), priced per 1,000 tokens."""
    epochs = n_epochs if isinstance(n_epochs, int) else BEDROCK_DEFAULT_EPOCHS
    trained_tokens = train.billing_tokens * epochs
    return BedrockTrainingEstimate(
        epochs=epochs,
        trained_tokens=trained_tokens,
        cost_usd=trained_tokens * price_per_1k_tokens / 1_000,
        price_per_1k_tokens=price_per_1k_tokens,
    )


class NovaRecords:
    """The `TrainingRecords` of Bedrock's Nova fine-tuning."""

    one_missing_content_per_record = True

    def line(self, parts: list[tuple[str, str]]) -> str:
        system = "".join(f'"system": [{{"text": {text}}}], ' for role, text in parts if role == "system")
        messages = ", ".join(
            f'{{"role": "{role}", "content": [{{"text": {text}}}]}}' for role, text in parts if role != "system"
        )
        return f'{{"schemaVersion": "{BEDROCK_SCHEMA_VERSION}", {system}"messages": [{messages}]}}'

    def inspect(self, lines: Iterable[bytes]) -> GateReport:
        return inspect_bedrock_jsonl(lines)

    def token_limit(self, fine_tune: FineTuneSpec) -> int:
        """The chosen Nova variant's context (`:128k`) is one record's limit."""
        return nova_context_tokens(fine_tune.model) or MAX_TOKENS_PER_EXAMPLE

    def limits(self, *, offline: bool = False) -> GateLimits:
        """Nova's record and size limits are settings: the published numbers are unconfirmed."""
        settings = read_settings(BedrockSettings, offline=offline)
        return GateLimits(
            settings.bedrock_min_records,
            settings.bedrock_max_records,
            settings.bedrock_max_training_bytes,
            settings.bedrock_max_validation_bytes,
        )

    def estimate(self, train: GateReport, n_epochs: int | str, model: str, *, offline: bool = False) -> dict[str, Any]:
        price = read_settings(BedrockSettings, offline=offline).bedrock_training_price_per_1k_tokens
        return estimate_bedrock_training(train, n_epochs, price).as_record()


RECORDS = NovaRecords()
