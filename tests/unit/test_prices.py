"""Training prices by model: OpenAI's list prices, a tuned model priced as its base, no price never a guess."""

from __future__ import annotations

import pytest

from shared.domain.data_gate import GateReport, estimate_training
from shared.domain.prices import DEFAULT_TRAINING_PRICES, parse_training_prices, training_price

PRICES = parse_training_prices(DEFAULT_TRAINING_PRICES)


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("gpt-4o-mini-2024-07-18", 3.0),
        ("gpt-4o-2024-08-06", 25.0),  # was estimated at gpt-4o-mini's $3 before
        ("gpt-4.1-mini-2025-04-14", 5.0),
        ("gpt-4.1-nano", 1.5),
        ("ft:gpt-4o-2024-08-06:my-org:faq:abc123", 25.0),  # continued training: its base's price
        ("gpt-5-mini", None),
        ("ft:unknown-base:org::x", None),
    ],
)
def test_each_model_has_its_own_price_or_none(model: str, price: float | None) -> None:
    assert training_price(model, PRICES) == price


def test_an_unpriced_model_is_estimated_without_a_cost() -> None:
    report = GateReport(examples=100, billing_tokens=20_000)

    priced = estimate_training(report, 3, training_price("gpt-4o-2024-08-06", PRICES)).as_record()
    unpriced = estimate_training(report, 3, training_price("gpt-5-mini", PRICES)).as_record()

    assert priced == {"epochs": 3, "trained_tokens": 60_000, "cost_usd": 1.5, "price_per_million_tokens": 25.0}
    assert unpriced == {"epochs": 3, "trained_tokens": 60_000, "cost_usd": None, "price_per_million_tokens": None}


def test_a_malformed_price_entry_is_named() -> None:
    with pytest.raises(ValueError, match="training price entry 'gpt-4o=cheap' is not <model id>="):
        parse_training_prices("gpt-4o-mini=3,gpt-4o=cheap")
