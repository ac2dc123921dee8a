"""The data gate: the cookbook's format checks, token counts, epochs and cost."""

from __future__ import annotations

import json
import random
from array import array
from collections import Counter

import pytest

from shared.domain.data_gate import (
    MAX_TOKENS_PER_EXAMPLE,
    GateReport,
    GateTally,
    auto_epochs,
    built_example_errors,
    check_chat_example,
    enforce,
    estimate_training,
    example_tokens,
    inspect_jsonl,
    line_digest,
    tally_file,
)
from shared.domain.errors import DataGateError
from shared.domain.tokens import count_tokens
from shared.providers.bedrock.records import check_bedrock_record, estimate_bedrock_training, inspect_bedrock_jsonl


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


_TALLY_ERRORS = ("missing_content", "invalid_json", "message_missing_key", "unrecognized_role")


def _random_lines(rng: random.Random) -> list[tuple[bytes, list[str], int]]:
    """A file's lines as the gate sees them: (digest, format errors, tokens), with repeats and tokens near the limit."""
    size = rng.choice([0, 1, 2, rng.randint(3, 300)])
    error_share = rng.choice([0.0, 0.05, 0.3, 1.0])
    distinct = [line_digest(f"example {rng.random()}".encode()) for _ in range(max(1, size // rng.choice([1, 2, 8])))]
    near_limit = (MAX_TOKENS_PER_EXAMPLE - 1, MAX_TOKENS_PER_EXAMPLE, MAX_TOKENS_PER_EXAMPLE + 1)
    lines = []
    for _ in range(size):
        errors = rng.sample(_TALLY_ERRORS, rng.randint(1, 2)) if rng.random() < error_share else []
        tokens = rng.choice([rng.randint(8, 2_000), rng.choice(near_limit), rng.randint(60_000, 70_000)])
        lines.append((rng.choice(distinct), errors, 0 if errors else tokens))
    return lines


def _line_by_line(lines: list[tuple[bytes, list[str], int]], token_limit: int | None) -> GateReport:
    """The report worked out plainly, line after line: the reference both tallies must match."""
    report = GateReport(examples=len(lines))
    seen: set[bytes] = set()
    for number, (digest, errors, tokens) in enumerate(lines, start=1):
        if errors:
            report.format_errors.update(errors)
            if len(report.first_errors) < 5:
                report.first_errors.append(f"line {number}: {', '.join(errors)}")
            continue
        report.duplicate_examples += digest in seen
        seen.add(digest)
        report.total_tokens += tokens
        report.max_example_tokens = max(report.max_example_tokens, tokens)
        report.billing_tokens += tokens if token_limit is None else min(tokens, token_limit)
        report.examples_over_token_limit += token_limit is not None and tokens > token_limit
    return report


def _with_gate_tally(lines: list[tuple[bytes, list[str], int]], token_limit: int | None) -> GateReport:
    tally = GateTally(token_limit)
    for digest, errors, tokens in lines:
        tally.add(digest, errors, tokens)
    return tally.report()


def _all_at_once(lines: list[tuple[bytes, list[str], int]], token_limit: int | None, as_array: bool) -> GateReport:
    good = [(digest, tokens) for digest, errors, tokens in lines if not errors]
    counts = [tokens for _, tokens in good]
    return tally_file(
        len(lines),
        iter([(number, errors) for number, (_, errors, _) in enumerate(lines, start=1) if errors]),  # read once
        b"".join(digest for digest, _ in good),
        array("q", counts) if as_array else counts,
        token_limit,
    )


def test_both_tallies_report_what_the_lines_plainly_add_up_to() -> None:
    rng = random.Random(11)  # seeded: a failure replays exactly
    seen = Counter[str]()
    for _ in range(400):
        lines = _random_lines(rng)
        for token_limit in (MAX_TOKENS_PER_EXAMPLE, None):
            expected = _line_by_line(lines, token_limit)
            for found in (_all_at_once(lines, token_limit, rng.random() < 0.5), _with_gate_tally(lines, token_limit)):
                assert found.as_record() == expected.as_record()
                assert found.first_errors == expected.first_errors
            seen.update(
                {
                    "duplicates": expected.duplicate_examples > 0,
                    "over_limit": expected.examples_over_token_limit > 0,
                    "errors_beyond_quoted": expected.format_errors.total() > len(expected.first_errors) > 0,
                    "two_errors_on_a_line": any(", " in quoted for quoted in expected.first_errors),
                    "no_errors": expected.examples > 0 and not expected.format_errors,
                }
            )
    assert min(seen.values()) >= 20, seen  # the comparison covered every case it is meant to


@pytest.mark.parametrize("token_limit", [MAX_TOKENS_PER_EXAMPLE, None])
def test_an_empty_file_tallied_at_once_is_an_empty_report(token_limit: int | None) -> None:
    found = tally_file(0, [], b"", [], token_limit)

    assert found.as_record() == GateTally(token_limit).report().as_record() == GateReport().as_record()
    assert found.first_errors == []


@pytest.mark.parametrize("blank", [(), ("user",), ("system", "assistant"), ("system", "user", "assistant")])
def test_the_errors_of_a_built_example_are_what_the_full_checks_find(blank: tuple[str, ...]) -> None:
    """Prepare gates its own examples from their blank texts alone: it must agree with both providers' checks."""
    texts = {role: " \n" if role in blank else f"{role} text" for role in ("system", "user", "assistant")}
    chat = {"messages": [{"role": role, "content": text} for role, text in texts.items()]}
    nova = {
        "schemaVersion": "bedrock-conversation-2024",
        "system": [{"text": texts["system"]}],
        "messages": [{"role": role, "content": [{"text": texts[role]}]} for role in ("user", "assistant")],
    }

    assert check_chat_example(chat)[0] == built_example_errors(len(blank), one_per_record=False)
    assert check_bedrock_record(nova)[0] == built_example_errors(len(blank), one_per_record=True)
