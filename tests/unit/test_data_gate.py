"""The data gate: the cookbook's format checks, token counts, epochs and cost."""

from __future__ import annotations

import json

import pytest

from shared.data_gate import auto_epochs, enforce, estimate_training, inspect_jsonl
from shared.errors import DataGateError
from shared.tokens import count_tokens


def line(messages: object) -> bytes:
    return json.dumps({"messages": messages}).encode() + b"\n"


GOOD = line(
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there"},
    ]
)


def test_token_counts_follow_the_cookbook_formula_with_o200k_base() -> None:
    report = inspect_jsonl([GOOD])

    content = sum(count_tokens(t) for t in ["system", "Be brief.", "user", "Hi", "assistant", "Hello there"])
    assert report.total_tokens == 3 + 3 * 3 + content
    assert count_tokens("Hello world") == 2  # o200k_base, offline


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"not json\n", "invalid_json"),
        (b"[1]\n", "data_type"),
        (b'{"prompt": "old format"}\n', "missing_messages_list"),
        (line([{"role": "user"}, {"role": "assistant", "content": "a"}]), "message_missing_key"),
        (
            line([{"role": "user", "content": "q", "extra": 1}, {"role": "assistant", "content": "a"}]),
            "message_unrecognized_key",
        ),
        (line([{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]), "unrecognized_role"),
        (line([{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}]), "missing_content"),
        (line([{"role": "user", "content": "q"}]), "example_missing_assistant_message"),
    ],
)
def test_each_format_error_is_counted_and_refused(raw: bytes, error: str) -> None:
    report = inspect_jsonl([GOOD] * 10 + [raw])

    assert report.format_errors == {error: 1}
    with pytest.raises(DataGateError, match=f"{error} x1; line 11: {error}"):
        enforce(report, "training file", 10)


def test_duplicates_are_reported_not_refused() -> None:
    report = inspect_jsonl([GOOD] * 12)
    assert report.duplicate_examples == 11
    enforce(report, "training file", 10)


def test_auto_epochs_matches_openais_rule() -> None:
    assert [auto_epochs(n) for n in (10, 12, 33, 34, 1000, 8333, 8334, 10481, 100_000)] == [10, 8, 3, 3, 3, 3, 2, 2, 1]


def test_estimate_uses_explicit_epochs_and_the_configured_price() -> None:
    report = inspect_jsonl([GOOD] * 20)
    assert estimate_training(report, 2, 3.0).trained_tokens == report.billing_tokens * 2
    estimate = estimate_training(report, "auto", 10.0)
    assert estimate.epochs == 5
    assert estimate.cost_usd == pytest.approx(report.billing_tokens * 5 * 10.0 / 1e6)
