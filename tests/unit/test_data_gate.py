"""The data gate: the cookbook's format checks, token counts, epochs and cost."""

from __future__ import annotations

import json

import pytest

from shared.data_gate import (
    auto_epochs,
    enforce,
    estimate_bedrock_training,
    estimate_training,
    example_tokens,
    inspect_bedrock_jsonl,
    inspect_jsonl,
)
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


def nova(messages: object, system: object = None, **extra: object) -> bytes:
    record: dict[str, object] = {"schemaVersion": "bedrock-conversation-2024"}
    if system is not None:
        record["system"] = system
    record["messages"] = messages
    return json.dumps({**record, **extra}).encode() + b"\n"


def turn(role: str, text: str) -> dict[str, object]:
    return {"role": role, "content": [{"text": text}]}


NOVA_GOOD = nova([turn("user", "Hi"), turn("assistant", "Hello there")], system=[{"text": "Be brief."}])


def test_nova_records_are_counted_with_o200k_as_a_proxy() -> None:
    report = inspect_bedrock_jsonl([NOVA_GOOD] * 8)
    assert report.format_errors == {} and report.examples == 8
    same_as_chat = example_tokens(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello there"},
        ]
    )
    assert report.total_tokens == report.billing_tokens == 8 * same_as_chat
    enforce(report, "training file", 8, max_examples=20_000, size=8 * len(NOVA_GOOD), max_bytes=10**9)


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        (b"not json\n", ["invalid_json"]),
        (b"[1]\n", ["data_type"]),
        (nova([turn("user", "a"), turn("assistant", "b")], schemaVersion="v1"), ["wrong_schema_version"]),
        (nova([]), ["missing_messages_list"]),
        (nova([turn("assistant", "b")]), ["first_message_not_user"]),
        (nova([turn("user", "a")]), ["last_message_not_assistant"]),
        (nova([turn("user", "a"), turn("user", "b"), turn("assistant", "c")]), ["roles_not_alternating"]),
        (nova([turn("system", "a"), turn("assistant", "b")]), ["unrecognized_role", "first_message_not_user"]),
        (nova([turn("user", " "), turn("assistant", "b")]), ["missing_content"]),
        (nova([turn("user", "a"), {"role": "assistant", "content": []}]), ["missing_content"]),
        (nova([turn("user", "a"), {"role": "assistant", "content": "b"}]), ["missing_content"]),
        (nova([turn("user", "a"), {"role": "assistant", "content": [{"image": "b"}]}]), ["content_not_text"]),
        (nova([turn("user", "a"), turn("assistant", "b")], system=[{"text": ""}]), ["missing_content"]),
        (nova([turn("user", "User: a"), turn("assistant", "b")]), ["reserved_string"]),
        (nova([turn("user", "a"), turn("assistant", "b [EOS]")]), ["reserved_string"]),
        (nova([turn("user", "a"), turn("assistant", "b")], extra=1), ["record_unrecognized_key"]),
        (
            nova([turn("user", "a"), {"role": "assistant", "content": [{"text": "b"}], "x": 1}]),
            ["message_unrecognized_key"],
        ),
    ],
)
def test_each_nova_rule_is_checked_on_the_bytes(raw: bytes, errors: list[str]) -> None:
    report = inspect_bedrock_jsonl([NOVA_GOOD] * 8 + [raw])
    assert dict(report.format_errors) == dict.fromkeys(errors, 1)
    with pytest.raises(DataGateError, match=r"training file failed the data gate: format errors \(.*line 9: "):
        enforce(report, "training file", 8)


def test_nova_record_and_size_limits_are_enforced() -> None:
    report = inspect_bedrock_jsonl([NOVA_GOOD] * 7)
    with pytest.raises(DataGateError) as raised:
        enforce(report, "training file", 8, max_examples=6, size=2_000, max_bytes=1_000)
    assert raised.value.message == (
        "training file failed the data gate: 7 examples; at least 8 are required; "
        "7 examples; at most 6 are allowed; 2000 bytes; at most 1000 are allowed"
    )


def test_the_bedrock_estimate_says_its_tokens_are_estimates() -> None:
    report = inspect_bedrock_jsonl([NOVA_GOOD] * 10)
    estimate = estimate_bedrock_training(report, "auto", 0.002)
    assert estimate.epochs == 2  # Bedrock's default epochCount
    assert estimate.as_record() == {
        "epochs": 2,
        "trained_tokens": report.billing_tokens * 2,
        "cost_usd": round(report.billing_tokens * 2 * 0.002 / 1000, 4),
        "price_per_1k_tokens": 0.002,
        "tokens_estimated": True,
        "token_counting": (
            "Nova's tokenizer is not public: token counts are estimates (o200k_base as a proxy), and so is the cost"
        ),
    }
    assert estimate_bedrock_training(report, 4, 0.002).trained_tokens == report.billing_tokens * 4
