"""The emulators' fake model: a tuned one recalls its training data, a base one reads the passage it is given.

A tuned model answers with the training example closest to the question; a base model answers a
"passage, blank line, question" prompt with the passage sentence closest to the question, and anything
else with a fixed reply. This makes "did fine-tuning learn my dataset?" and "does the passage help the
base model?" checks meaningful offline without pretending to be a model. Both emulators (OpenAI's and
Bedrock's) answer by these rules; each wraps them in its provider's request and response shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One training line reduced to what recall needs: the last user turn and the final assistant turn."""

    user: str
    assistant: str
    tokens: int  # billed: the cookbook's count, capped at MAX_TOKENS_PER_EXAMPLE


def estimate_tokens(text: str) -> int:
    """~4 characters per token, OpenAI's own rule of thumb; good enough for usage and trained_tokens."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def recall_answer(question: str, examples: Sequence[Example]) -> str:
    """Assistant message of the example whose user message best overlaps the question (first wins ties)."""
    asked = words(question)
    best = max(examples, key=lambda e: jaccard(asked, words(e.user)))
    return best.assistant


def base_model_answer(prompt: str, generic_reply: str) -> str:
    """A base model's answer: the passage sentence best overlapping the question, else ``generic_reply``.

    The prompt is split on its last blank line: what comes before is the passage, the rest the question.
    Overlap is word Jaccard, as for recall; the first sentence wins ties.
    """
    passage, blank_line, question = prompt.strip().rpartition("\n\n")
    sentences = [s.strip() for s in _SENTENCE_END.split(passage) if s.strip()] if blank_line else []
    if not sentences:
        return generic_reply
    asked = words(question)
    return max(sentences, key=lambda sentence: jaccard(asked, words(sentence)))
