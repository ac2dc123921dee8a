"""Scoring without a judge model: normalisation, matching, Wilson intervals, arm summaries and prices."""

from __future__ import annotations

import pytest

from shared.domain.evaluation import (
    ArmAnswer,
    cost_per_1k_questions,
    is_correct,
    normalise,
    summarise_arm,
    wilson_interval,
)
from shared.domain.prices import DEFAULT_INFERENCE_PRICES, ModelPrice, parse_prices, price_for

PRICES = parse_prices(DEFAULT_INFERENCE_PRICES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Coriolis Effect.", "coriolis effect"),
        ("  many   spaces\tand\nnewlines ", "many spaces and newlines"),
        ("“Quoted” — dashes… and ¿questions?", "quoted dashes and questions"),
        ("ＦＵＬＬ－width", "full width"),  # NFKC: full-width letters and hyphen
        ("STRASSE Straße", "strasse strasse"),  # casefold, not lower
        ("H₂O", "h2o"),
        ("don't", "don't"),  # an apostrophe inside a word stays, typographic or not
        ("Don\u2019t 'quote'", "don't quote"),
        ("2.5 m, 1,000 J, -5 °C, \u22125", "2.5 m 1,000 j -5 °c -5"),
        ("end.", "end"),
        ("a-b", "a b"),
        ("", ""),
        ("?!...", ""),
    ],
)
def test_normalise_folds_case_punctuation_whitespace_and_unicode_forms(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("answer", "reference", "right"),
    [
        ("2.5 meters", "2", False),
        ("2 meters", "2", True),
        ("1,000 joules", "1", False),
        ("5 degrees", "-5", False),
        ("-5 degrees", "-5", True),
        ("\u22125 degrees", "-5", True),
        ("can't say", "can", False),
        ("Can't.", "can't", True),
    ],
)
def test_numbers_and_contractions_are_matched_whole(answer: str, reference: str, right: bool) -> None:
    assert is_correct(answer, reference, "start") is right


def test_start_needs_the_reference_words_first_anywhere_anywhere() -> None:
    answer = "Energy, measured in joules. Explanation: the Coriolis effect."
    assert is_correct(answer, "energy", "start")
    assert not is_correct(answer, "coriolis effect", "start")
    assert is_correct(answer, "Coriolis effect!", "anywhere")
    assert not is_correct(answer, "effect coriolis", "anywhere")  # order matters


def test_matching_is_by_whole_words() -> None:
    assert not is_correct("energy123 is it", "energy", "start")
    assert not is_correct("photosynthesis", "photo", "start")
    assert not is_correct("the photosynthesis", "synthesis", "anywhere")
    assert is_correct("It is the MANTLE.", "mantle", "anywhere")
    assert is_correct("Mantle", "mantle", "start")


def test_no_answer_or_an_empty_reference_is_wrong() -> None:
    assert not is_correct(None, "mantle", "start")
    assert not is_correct("", "mantle", "anywhere")
    assert not is_correct("  ...  ", "mantle", "anywhere")
    assert not is_correct("mantle", "?", "start")


@pytest.mark.parametrize(
    ("correct", "n", "expected"),
    [
        (8, 10, (0.4902, 0.9433)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (50, 100, (0.4038, 0.5962)),
        (0, 0, (0.0, 1.0)),
    ],
)
def test_wilson_interval_matches_known_values(correct: int, n: int, expected: tuple[float, float]) -> None:
    low, high = wilson_interval(correct, n)
    assert (round(low, 4), round(high, 4)) == expected


def test_prices_parse_and_the_longest_prefix_wins() -> None:
    assert PRICES["gpt-4o-mini"] == ModelPrice(0.15, 0.60)
    assert price_for("gpt-4o-mini-2024-07-18", PRICES) == ModelPrice(0.15, 0.60)
    assert price_for("ft:gpt-4o-mini-2024-07-18:org::abc123", PRICES) == ModelPrice(0.30, 1.20)
    assert price_for("amazon.nova-2-lite-v1:0", PRICES) == ModelPrice(0.30, 2.50)
    assert price_for("amazon.nova-lite-v1:0", PRICES) == ModelPrice(0.06, 0.24)
    assert price_for("gpt-4.1", PRICES) is None
    assert price_for("gpt-4o", parse_prices("gpt=1/2,gpt-4o=3/4")) == ModelPrice(3, 4)
    assert parse_prices("") == {}


@pytest.mark.parametrize("text", ["gpt-4o-mini", "gpt-4o-mini=0.15", "=1/2", "m=a/b", "m=-1/2", "m=nan/1"])
def test_a_malformed_price_entry_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="is not <model prefix>="):
        parse_prices(text)


def test_cost_per_1k_questions() -> None:
    # 1,000 questions of 100 prompt and 20 completion tokens at 0.15/0.60 per million: 0.015 + 0.012 USD
    assert cost_per_1k_questions(100, 20, ModelPrice(0.15, 0.60)) == 0.027


def _answer(correct: bool | None, prompt: int | None = 10, completion: int | None = 4, latency: int = 100) -> ArmAnswer:
    error = "OpenAI: the chat completion failed transiently" if correct is None else None
    return ArmAnswer("m", None if error else "a", None, correct, prompt, completion, latency, error=error)


def test_an_arm_summary_leaves_errors_out_of_accuracy_and_means() -> None:
    answers = [_answer(True, 10, 4, 100)] * 8 + [_answer(False, 20, 6, 300)] * 2 + [_answer(None, None, None, 5000)]

    summary = summarise_arm("tuned", "ft:gpt-4o-mini:x", answers, ModelPrice(0.30, 1.20), "2025-01-01T00:00:00+00:00")

    assert summary == {
        "name": "tuned",
        "model": "ft:gpt-4o-mini:x",
        "accuracy": 0.8,
        "ci95": [0.4902, 0.9433],
        "questions": 10,
        "correct": 8,
        "errors": 1,
        "prompt_tokens_mean": 12.0,
        "completion_tokens_mean": 4.4,
        "latency_ms_p50": 100.0,
        "cost_per_1k_usd": round((12.0 * 0.30 + 4.4 * 1.20) / 1000, 6),
        "evaluated_at": "2025-01-01T00:00:00+00:00",
    }


def test_an_unpriced_or_unanswered_arm_has_no_cost_nor_accuracy() -> None:
    unpriced = summarise_arm("base", "gpt-9", [_answer(True)], None, "t")
    nothing = summarise_arm("base", "gpt-4o-mini", [_answer(None)], ModelPrice(1, 1), "t")

    assert unpriced["cost_per_1k_usd"] is None and unpriced["accuracy"] == 1.0
    assert nothing["accuracy"] is None and nothing["ci95"] == [0.0, 1.0] and nothing["cost_per_1k_usd"] is None
    assert (nothing["questions"], nothing["errors"], nothing["latency_ms_p50"]) == (0, 1, None)
