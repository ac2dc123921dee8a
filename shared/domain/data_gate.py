"""The data gate: nothing reaches a provider unless it passes the checks that provider makes.

It reads the JSONL bytes that would be uploaded (not the objects that produced them),
counts tokens the way OpenAI's cookbook does, and estimates epochs and training cost.
Chat files get the cookbook's checks (`inspect_jsonl`); a provider with a record format of its own
checks it in its package (`shared.providers.bedrock.records` for Nova's `bedrock-conversation-2024`),
with the tally, limits and estimates here.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.domain.errors import DataGateError
from shared.domain.tokens import count_tokens

MIN_EXAMPLES = 10
MAX_TOKENS_PER_EXAMPLE = 65_536
ALLOWED_ROLES = frozenset({"system", "user", "assistant", "tool", "function"})
ALLOWED_MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call"})
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_TOKENS_REPLY_PRIMING = 3
_ERRORS_QUOTED = 5

# OpenAI's rule for n_epochs="auto" (from the cookbook's data-prep notebook).
_TARGET_EPOCHS = 3
_MIN_TARGET_EXAMPLES = 100
_MAX_TARGET_EXAMPLES = 25_000
_MIN_DEFAULT_EPOCHS = 1
_MAX_DEFAULT_EPOCHS = 25


@dataclass
class GateReport:
    """What the gate found in one JSONL file."""

    examples: int = 0
    total_tokens: int = 0
    billing_tokens: int = 0
    max_example_tokens: int = 0
    examples_over_token_limit: int = 0
    duplicate_examples: int = 0
    format_errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "total_tokens": self.total_tokens,
            "billing_tokens": self.billing_tokens,
            "max_example_tokens": self.max_example_tokens,
            "examples_over_token_limit": self.examples_over_token_limit,
            "duplicate_examples": self.duplicate_examples,
            "format_errors": dict(self.format_errors),
        }


def blank(text: str) -> bool:
    """`not text.strip()` without copying the text: both use the same notion of whitespace."""
    return not text or text.isspace()


def _example_errors(example: Any) -> list[str]:
    if not isinstance(example, dict):
        return ["data_type"]
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["missing_messages_list"]
    errors = []
    has_assistant = False
    for message in messages:
        if not isinstance(message, dict):
            errors.append("message_missing_key")
            continue
        has_assistant = has_assistant or message.get("role") == "assistant"
        if "role" not in message or "content" not in message:
            errors.append("message_missing_key")
            continue
        if not ALLOWED_MESSAGE_KEYS.issuperset(message):
            errors.append("message_unrecognized_key")
        if message["role"] not in ALLOWED_ROLES:
            errors.append("unrecognized_role")
        content = message["content"]
        has_call = message.get("tool_calls") or message.get("function_call")
        if (not isinstance(content, str) or blank(content)) and not has_call:
            errors.append("missing_content")
    if not has_assistant:
        errors.append("example_missing_assistant_message")
    return errors


def built_example_errors(blank_texts: int, one_per_record: bool) -> list[str]:
    """The format errors of an example the ExampleBuilder made, whose structure is always right: one
    `missing_content` per blank message (OpenAI's check), or once for the record (Nova's, deduplicated)."""
    return ["missing_content"] * (min(blank_texts, 1) if one_per_record else blank_texts)


def chat_line(parts: list[tuple[str, str]]) -> str:
    """A chat example's JSONL line (`{"messages": [{"role", "content"}...]}`), each text a JSON string literal."""
    messages = ", ".join(f'{{"role": "{role}", "content": {text}}}' for role, text in parts)
    return f'{{"messages": [{messages}]}}'


def example_tokens(messages: list[dict[str, Any]]) -> int:
    """One example's tokens the cookbook's way (the OpenAI emulator counts with this too)."""
    tokens = _TOKENS_REPLY_PRIMING + _TOKENS_PER_MESSAGE * len(messages)
    for message in messages:
        for key, value in message.items():
            if isinstance(value, str):
                tokens += count_tokens(value)
            if key == "name":
                tokens += _TOKENS_PER_NAME
    return tokens


def check_chat_example(example: Any) -> tuple[list[str], int]:
    """One OpenAI example's format errors, and its tokens when it has none."""
    errors = _example_errors(example)
    return errors, 0 if errors else example_tokens(example["messages"])


def _count_repeats(digests: bytes | bytearray) -> int:
    """How many 16-byte digests equal an earlier one: sorted as pairs of 64-bit halves, neighbours compared."""
    import numpy as np  # only the gate's end needs it (pyarrow has loaded it already in the function)

    halves = np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
    ordered = halves[np.lexsort((halves[:, 1], halves[:, 0]))]
    return int(np.count_nonzero((ordered[1:] == ordered[:-1]).all(axis=1)))


def line_digest(line: bytes) -> bytes:
    """What tells two lines apart: 16 bytes of blake2b over the line without surrounding whitespace."""
    return hashlib.blake2b(line.strip(), digest_size=16).digest()


class GateTally:
    """One file's report built line by line, from each line's format errors and tokens however obtained.

    It keeps what `tally_file` needs: the lines with errors, and the 16-byte digests (one bytearray,
    16 bytes a line where a set of digest objects takes about 100) and tokens of the others.
    `token_limit`: OpenAI's per-example limit, which caps billing and counts the examples over it; None for Nova.
    """

    def __init__(self, token_limit: int | None) -> None:
        self._examples = 0
        self._errors: list[tuple[int, list[str]]] = []
        self._digests = bytearray()
        self._tokens = array("q")
        self._token_limit = token_limit

    def add(self, digest: bytes, errors: list[str], tokens: int) -> None:
        """One line: its `line_digest`, its format errors and, when it has none, its tokens."""
        self._examples += 1
        if errors:
            self._errors.append((self._examples, errors))
            return
        self._digests += digest
        self._tokens.append(tokens)

    def report(self) -> GateReport:
        return tally_file(self._examples, self._errors, bytes(self._digests), self._tokens, self._token_limit)


def tally_file(
    examples: int,
    errors: Iterable[tuple[int, list[str]]],
    digests: bytes,
    tokens: Sequence[int],
    token_limit: int | None,
) -> GateReport:
    """What `GateTally` reports for a file, from all its lines at once: `errors` are the lines with
    format errors, as (line number from 1, errors) in file order; `digests` (16 bytes each) and
    `tokens` are those of the other lines, in file order."""
    import numpy as np  # as in _count_repeats

    report = GateReport(examples=examples)
    for number, line_errors in errors:
        report.format_errors.update(line_errors)
        if len(report.first_errors) < _ERRORS_QUOTED:
            report.first_errors.append(f"line {number}: {', '.join(line_errors)}")
    counted = np.asarray(tokens, dtype=np.int64)
    report.total_tokens = int(counted.sum())
    report.max_example_tokens = int(counted.max(initial=0))
    if token_limit is None:
        report.billing_tokens = report.total_tokens
    else:
        report.billing_tokens = int(np.minimum(counted, token_limit).sum())
        report.examples_over_token_limit = int(np.count_nonzero(counted > token_limit))
    report.duplicate_examples = _count_repeats(digests)
    return report


def inspect_jsonl(lines: Iterable[bytes]) -> GateReport:
    """Check and count every line; streaming, so memory stays flat for any file size."""
    tally = GateTally(MAX_TOKENS_PER_EXAMPLE)
    for line in lines:
        try:
            example = json.loads(line)
        except json.JSONDecodeError:
            example = None
        errors, tokens = check_chat_example(example) if example is not None else (["invalid_json"], 0)
        tally.add(line_digest(line), errors, tokens)
    return tally.report()


def enforce(
    report: GateReport,
    file_label: str,
    min_examples: int,
    max_examples: int | None = None,
    size: int | None = None,
    max_bytes: int | None = None,
    token_limit: int = MAX_TOKENS_PER_EXAMPLE,
) -> None:
    """Raise a DataGateError naming every reason the file would be refused (`token_limit`: the one the report
    was tallied against)."""
    reasons = []
    if report.format_errors:
        counts = ", ".join(f"{name} x{count}" for name, count in sorted(report.format_errors.items()))
        reasons.append(f"format errors ({counts}; {'; '.join(report.first_errors)})")
    if report.examples_over_token_limit:
        reasons.append(
            f"{report.examples_over_token_limit} examples exceed {token_limit:,} tokens "
            f"(longest {report.max_example_tokens:,})"
        )
    if report.examples < min_examples:
        reasons.append(f"{report.examples} examples; at least {min_examples} are required")
    if max_examples is not None and report.examples > max_examples:
        reasons.append(f"{report.examples} examples; at most {max_examples} are allowed")
    if size is not None and max_bytes is not None and size > max_bytes:
        reasons.append(f"{size} bytes; at most {max_bytes} are allowed")
    if reasons:
        raise DataGateError(f"{file_label} failed the data gate: {'; '.join(reasons)}")


def auto_epochs(n_examples: int) -> int:
    """The number of epochs OpenAI picks for n_epochs="auto"."""
    if n_examples <= 0:
        return _TARGET_EPOCHS
    if n_examples * _TARGET_EPOCHS < _MIN_TARGET_EXAMPLES:
        return min(_MAX_DEFAULT_EPOCHS, _MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * _TARGET_EPOCHS > _MAX_TARGET_EXAMPLES:
        return max(_MIN_DEFAULT_EPOCHS, _MAX_TARGET_EXAMPLES // n_examples)
    return _TARGET_EPOCHS


@dataclass(frozen=True)
class TrainingEstimate:
    """`price_per_million_tokens` None: no price is known for the model, so no cost is given."""

    epochs: int
    trained_tokens: int
    cost_usd: float | None
    price_per_million_tokens: float | None

    def as_record(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "trained_tokens": self.trained_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 4),
            "price_per_million_tokens": self.price_per_million_tokens,
        }


def estimate_training(
    train: GateReport, n_epochs: int | str, price_per_million_tokens: float | None
) -> TrainingEstimate:
    """Tokens billed are the training file's tokens times the epochs; validation is free. No price, no cost."""
    epochs = n_epochs if isinstance(n_epochs, int) else auto_epochs(train.examples)
    trained_tokens = train.billing_tokens * epochs
    cost = None if price_per_million_tokens is None else trained_tokens * price_per_million_tokens / 1_000_000
    return TrainingEstimate(
        epochs=epochs, trained_tokens=trained_tokens, cost_usd=cost, price_per_million_tokens=price_per_million_tokens
    )
