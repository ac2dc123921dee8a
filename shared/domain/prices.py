"""What models cost, as the stack's parameters give it: list prices to update, never a guess.

Standard library only: settings parse these at their first read.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class ModelPrice(NamedTuple):
    """USD per million tokens."""

    input: float
    output: float


def parse_prices(text: str) -> dict[str, ModelPrice]:
    """`"gpt-4o-mini=0.15/0.60,ft:gpt-4o-mini=0.30/1.20"`: model-id prefix = input/output USD per 1M tokens.

    Empty text prices nothing (every cost is then unknown). A malformed entry is an error naming it.
    """
    prices: dict[str, ModelPrice] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        prefix, _, pair = entry.partition("=")
        given_input, _, given_output = pair.partition("/")
        try:
            price = ModelPrice(float(given_input), float(given_output))
        except ValueError:
            price = None
        if not prefix.strip() or price is None or min(price) < 0 or not all(map(math.isfinite, price)):
            raise ValueError(f"price entry {entry!r} is not <model prefix>=<input USD>/<output USD> per 1M tokens")
        prices[prefix.strip()] = price
    return prices


def price_for(model: str, prices: dict[str, ModelPrice]) -> ModelPrice | None:
    """The price of the longest prefix of `model` that is priced (`ft:gpt-4o-mini` beats `gpt-4o-mini`), else None."""
    matching = [prefix for prefix in prices if model.startswith(prefix)]
    return prices[max(matching, key=len)] if matching else None


# The evaluation's default (the stack's InferencePricesPerMillionTokens): `<model-id prefix>=<input>/<output>`.
DEFAULT_INFERENCE_PRICES = (
    "gpt-4o-mini=0.15/0.60,ft:gpt-4o-mini=0.30/1.20,amazon.nova-micro=0.035/0.14,amazon.nova-lite=0.06/0.24,"
    "amazon.nova-2-lite=0.30/2.50,amazon.nova-pro=0.80/3.20"
)

# OpenAI's list prices for fine-tuning, USD per million trained tokens, by model (an alias as its snapshot).
DEFAULT_TRAINING_PRICES = (
    "gpt-4o-mini-2024-07-18=3.00,gpt-4o-mini=3.00,gpt-4o-2024-08-06=25.00,gpt-4o=25.00,"
    "gpt-4.1-2025-04-14=25.00,gpt-4.1=25.00,gpt-4.1-mini-2025-04-14=5.00,gpt-4.1-mini=5.00,"
    "gpt-4.1-nano-2025-04-14=1.50,gpt-4.1-nano=1.50"
)


def parse_training_prices(text: str) -> dict[str, float]:
    """`"gpt-4o-mini-2024-07-18=3.00,..."`: a model id = USD per million trained tokens; a malformed entry is an
    error naming it."""
    prices: dict[str, float] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        model, _, given = entry.partition("=")
        try:
            price = float(given)
        except ValueError:
            price = -1.0
        if not model.strip() or not math.isfinite(price) or price < 0:
            raise ValueError(f"training price entry {entry!r} is not <model id>=<USD per million trained tokens>")
        prices[model.strip()] = price
    return prices


def training_price(model: str, prices: dict[str, float]) -> float | None:
    """The model's price, a tuned `ft:<base>:...` model's its base's; None when no price is known (never a guess)."""
    if model in prices:
        return prices[model]
    parts = model.split(":")
    return prices.get(parts[1]) if len(parts) > 2 and parts[0] == "ft" else None
