"""Scoring held-out answers without a judge model: normalised matching, Wilson intervals, per-arm summaries.

Pure domain (standard library only): `shared.pipeline.evaluate_run` asks the models and calls these.
An answer is correct when the normalised reference is found in the normalised answer as whole
words, at its start (`"start"`, the default: an answer leads with the reference) or anywhere
(`"anywhere"`). Normalising folds what should not decide correctness: case, punctuation,
whitespace and Unicode compatibility forms (full-width letters, ligatures).
"""

from __future__ import annotations

import hashlib
import math
import statistics
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from shared.domain.errors import UserInputError
from shared.domain.prices import ModelPrice

Match = Literal["start", "anywhere"]
Z_95 = 1.959964  # the standard normal's 97.5th percentile: a two-sided 95% interval
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are quoted per million tokens
QUESTIONS_PER_COST = 1_000  # cost is shown per thousand questions


class EvaluationRefusedError(UserInputError):
    """The run cannot be evaluated as asked (nothing is asked of any model); `code` says why."""


class EvaluatedRunMissingError(EvaluationRefusedError):
    """A run the request names does not exist (the API's 404; every other refusal is a 409)."""


class RunNotFoundError(EvaluatedRunMissingError):
    code = "run_not_found"


class CompareRunNotFoundError(EvaluatedRunMissingError):
    code = "compare_run_not_found"


class NoValidationSplitError(EvaluationRefusedError):
    code = "no_validation_split"


class RunNotSucceededError(EvaluationRefusedError):
    code = "run_not_succeeded"


class CompareRunNotUsableError(EvaluationRefusedError):
    code = "compare_run_not_usable"


class EvaluationLimitError(EvaluationRefusedError):
    """The run was evaluated as often as the deployment allows in a day (the API's 429, with Retry-After)."""

    code = "evaluation_limit"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class NoRecordedAnswersError(EvaluationRefusedError):
    """A compared model is gone and its recorded answers share no question with the run's."""

    code = "no_recorded_answers"


class EvaluationRunningError(EvaluationRefusedError):
    code = "evaluation_running"


_APOSTROPHES = "'\u2019"


def _kept(text: str, at: int) -> str | None:
    """The punctuation at `at` when it is part of a word or number, not between them: an apostrophe between
    letters (can't), a point or comma between digits (2.5, 1,000), a minus sign before a number (-5)."""
    char, before = text[at], text[at - 1] if at else " "
    after = text[at + 1] if at + 1 < len(text) else " "
    if char in _APOSTROPHES and before.isalpha() and after.isalpha():
        return "'"
    if char in ".," and before.isdigit() and after.isdigit():
        return char
    if char == "-" and after.isdigit() and (before.isspace() or unicodedata.category(before).startswith("P")):
        return char
    return None


def normalise(text: str) -> str:
    """NFKC, casefolded, Unicode punctuation a space unless it belongs to a word or number (`_kept`),
    whitespace folded to one space: "2" is not the start of "2.5 m", nor "can" of "can't"."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("\u2212", "-")  # the minus sign
    spaced = "".join(
        (_kept(folded, at) or " ") if unicodedata.category(char).startswith("P") else char
        for at, char in enumerate(folded)
    )
    return " ".join(spaced.split())


def is_correct(answer: str | None, reference: str, match: Match) -> bool:
    """The reference's words, in order, at the start of the answer's words (or anywhere, whole words only).

    No answer (None, empty, a refusal) is wrong, and so is anything against a reference with no words.
    """
    answer_words, reference_words = normalise(answer or "").split(), normalise(reference).split()
    if not answer_words or not reference_words:
        return False
    width = len(reference_words)
    if match == "start":
        return answer_words[:width] == reference_words
    return any(answer_words[start : start + width] == reference_words for start in range(len(answer_words)))


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of `correct` successes in `n` trials: sound at 0/n and n/n, unlike p ± z·se.

    With no trials nothing is known: the whole range (0, 1).
    """
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)


def question_digest(question: str) -> str:
    """What matches a question across runs (a recorded answer to this run's question, a successor's row to an
    older run's question): the exact text asked, hashed."""
    return hashlib.sha256(question.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def cost_per_1k_questions(prompt_tokens_mean: float, completion_tokens_mean: float, price: ModelPrice) -> float:
    per_question = (prompt_tokens_mean * price.input + completion_tokens_mean * price.output) / TOKENS_PER_PRICE_UNIT
    return round(per_question * QUESTIONS_PER_COST, 6)


class ArmAnswer(NamedTuple):
    """One arm's answer to one question, as `reports/<run_id>/evaluation.jsonl` keeps it.

    `error` is set (and `correct` None) when no answer came back after the gateway's retries: such a
    question is left out of the arm's accuracy and counted in its `errors`.
    """

    model: str
    answer: str | None
    refusal: str | None
    correct: bool | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    error: str | None = None

    @classmethod
    def from_report(cls, line: dict[str, Any]) -> ArmAnswer:
        """The answer as `report` wrote it (extra keys, e.g. the question's index, are ignored)."""
        fields: dict[str, Any] = {name: line[name] for name in cls._fields if name in line}
        return cls(**fields)

    def report(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "answer": self.answer,
            "refusal": self.refusal,
            "correct": self.correct,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


def _mean(values: Sequence[int | None]) -> float | None:
    known = [value for value in values if value is not None]
    return round(statistics.fmean(known), 1) if known else None


def summarise_arm(
    name: str, model: str, answers: Sequence[ArmAnswer], price: ModelPrice | None, evaluated_at: str
) -> dict[str, Any]:
    """The arm's ArmSummary: accuracy and its 95% interval over the questions answered (errors excluded),
    token means and median latency of those answers, and what 1,000 such questions cost (None: unpriced)."""
    answered = [answer for answer in answers if answer.error is None]
    correct = sum(1 for answer in answered if answer.correct)
    low, high = wilson_interval(correct, len(answered))
    prompt_mean = _mean([answer.prompt_tokens for answer in answered])
    completion_mean = _mean([answer.completion_tokens for answer in answered])
    cost = None
    if price is not None and prompt_mean is not None and completion_mean is not None:
        cost = cost_per_1k_questions(prompt_mean, completion_mean, price)
    return {
        "name": name,
        "model": model,
        "accuracy": round(correct / len(answered), 4) if answered else None,
        "ci95": [round(low, 4), round(high, 4)],
        "questions": len(answered),
        "correct": correct,
        "errors": len(answers) - len(answered),
        "prompt_tokens_mean": prompt_mean,
        "completion_tokens_mean": completion_mean,
        "latency_ms_p50": round(statistics.median(a.latency_ms for a in answered), 1) if answered else None,
        "cost_per_1k_usd": cost,
        "evaluated_at": evaluated_at,
    }
