"""``bedrock-conversation-2024`` training data: the checks a Nova fine-tuning job makes, and recall.

A file that breaks a rule fails the whole job (Bedrock does not skip bad records); the message names
the line. Record limits are the commonly quoted 8 to 20,000 for Nova text fine-tuning: *unconfirmed*,
so they are constructor settings of the emulator. Answers reuse the fake model's recall (`local.fake_model`): the
assistant text of the record whose last user text has the highest word overlap with the question.
"""

from __future__ import annotations

import json
from typing import Any

from local.fake_model import Example, estimate_tokens, recall_answer

SCHEMA_VERSION = "bedrock-conversation-2024"
RESERVED_STRINGS = ("User:", "Bot:", "Assistant:", "System:", "<image>", "<video>", "[EOS]")
MIN_RECORDS, MAX_RECORDS = 8, 20_000  # unconfirmed (see bedrock-facts.md)

__all__ = [
    "Example",
    "TrainingDataError",
    "conversation_record",
    "estimate_tokens",
    "parse_conversations",
    "recall_answer",
]


class TrainingDataError(ValueError):
    """The data cannot be used; the message is the job's failureMessage."""


def _texts(blocks: Any, where: str, what: str) -> list[str]:
    if not isinstance(blocks, list) or not blocks:
        raise TrainingDataError(f"{where}: '{what}' must be a non-empty list of content blocks.")
    texts = []
    for block in blocks:
        text = block.get("text") if isinstance(block, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise TrainingDataError(f"{where}: every block of '{what}' needs a non-empty 'text'.")
        reserved = next((s for s in RESERVED_STRINGS if s in text), None)
        if reserved is not None:
            raise TrainingDataError(f"{where}: the text contains the reserved string '{reserved}'.")
        texts.append(text)
    return texts


def _parse_record(line: str, number: int) -> Example:
    where = f"Invalid record on line {number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        raise TrainingDataError(f"{where}: not valid JSON.") from None
    if not isinstance(record, dict):
        raise TrainingDataError(f"{where}: expected a JSON object.")
    if record.get("schemaVersion") != SCHEMA_VERSION:
        raise TrainingDataError(f"{where}: 'schemaVersion' must be '{SCHEMA_VERSION}'.")
    system = " ".join(_texts(record["system"], where, "system")) if "system" in record else ""
    messages = record.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        raise TrainingDataError(f"{where}: 'messages' must hold at least a user and an assistant turn.")
    user = assistant = ""
    all_texts = [system]
    for index, message in enumerate(messages):
        expected = "user" if index % 2 == 0 else "assistant"
        if not isinstance(message, dict) or message.get("role") != expected:
            raise TrainingDataError(
                f"{where}: roles must alternate user/assistant starting with user; message {index} is not '{expected}'."
            )
        text = " ".join(_texts(message.get("content"), where, "content"))
        all_texts.append(text)
        user, assistant = (text, assistant) if expected == "user" else (user, text)
    if messages[-1].get("role") != "assistant":
        raise TrainingDataError(f"{where}: the last message must be an assistant turn.")
    return Example(user=user, assistant=assistant, tokens=sum(estimate_tokens(t) for t in all_texts))


def parse_conversations(
    content: bytes, min_records: int = MIN_RECORDS, max_records: int = MAX_RECORDS, *, what: str = "training"
) -> list[Example]:
    """Parse a whole file, raising TrainingDataError on the first problem or a record count out of range."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise TrainingDataError(f"The {what} data is not UTF-8 encoded.") from None
    examples = [_parse_record(line, n) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not min_records <= len(examples) <= max_records:
        raise TrainingDataError(
            f"The {what} data has {len(examples)} records; it must have between {min_records} and {max_records}."
        )
    return examples


def conversation_record(user: str, assistant: str, system: str | None = None) -> dict[str, Any]:
    """One ``bedrock-conversation-2024`` record with a single user/assistant exchange."""
    record: dict[str, Any] = {"schemaVersion": SCHEMA_VERSION}
    if system is not None:
        record["system"] = [{"text": system}]
    record["messages"] = [
        {"role": "user", "content": [{"text": user}]},
        {"role": "assistant", "content": [{"text": assistant}]},
    ]
    return record
