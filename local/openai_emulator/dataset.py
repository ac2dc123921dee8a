"""Chat-format JSONL training data: validation the way OpenAI reports it, and token counts.

Training tokens are counted exactly as the data gate counts them (o200k_base, the cookbook's
per-message overhead, capped per example), so a job's trained_tokens equal the run's estimate
(billed tokens x epochs). Chat usage keeps the ~4 characters per token rule of thumb.
"""

from __future__ import annotations

import json
from typing import Any

from local.fake_model import Example
from shared.domain.data_gate import MAX_TOKENS_PER_EXAMPLE, example_tokens

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


class TrainingFileError(ValueError):
    """The file cannot be used for fine-tuning; the message names the offending line."""


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def parse_training_file(content: bytes, min_examples: int = 1) -> list[Example]:
    """Parse chat-format JSONL, raising TrainingFileError with a line number on the first problem."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TrainingFileError("Invalid file format. The file is not UTF-8 encoded.") from exc
    examples: list[Example] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        examples.append(_parse_line(line, number))
    if len(examples) < max(1, min_examples):
        raise TrainingFileError(
            f"Training file has {len(examples)} example(s), but must have at least {max(1, min_examples)} examples"
        )
    return examples


def _parse_line(line: str, number: int) -> Example:
    where = f"Invalid file format. Line {number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrainingFileError(f"{where}: the line is not valid JSON.") from exc
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise TrainingFileError(f"{where}: expected a non-empty 'messages' list.")
    user = assistant = ""
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise TrainingFileError(f"{where}: every message needs a valid 'role'.")
        body = message_text(message.get("content"))
        if message.get("content") is None and not message.get("tool_calls"):
            raise TrainingFileError(f"{where}: a message has no 'content'.")
        if message["role"] == "user":
            user = body
        elif message["role"] == "assistant":
            assistant = body
    if not any(m["role"] == "assistant" for m in messages):
        raise TrainingFileError(f"{where}: the example has no assistant message.")
    return Example(user=user, assistant=assistant, tokens=min(example_tokens(messages), MAX_TOKENS_PER_EXAMPLE))
