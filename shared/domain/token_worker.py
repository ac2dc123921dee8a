"""The process behind `shared.domain.tokens.TokenCounter`: `python -m shared.domain.token_worker`.

It reads frames of texts from stdin, answers each with their token counts on stdout and exits at
the end of its input. Counting happens here because tiktoken holds the GIL: in the caller's
process it would take the CPU the caller needs for reading, rendering and writing.
"""

from __future__ import annotations

import marshal
import os
import sys
from array import array
from typing import BinaryIO

from shared.domain.tokens import FRAME_HEADER, encoding


def serve(texts_in: BinaryIO, counts_out: BinaryIO) -> None:
    """Counts exactly as `count_tokens` does: the length of `encode_ordinary`."""
    encode = encoding().encode_ordinary  # loaded while the caller prepares its first batch
    while header := texts_in.read(FRAME_HEADER.size):
        (size,) = FRAME_HEADER.unpack(header)
        frame = texts_in.read(size)
        if len(frame) != size:
            raise EOFError(f"input ended {size - len(frame)} bytes into a frame of {size}")
        texts = marshal.loads(frame)  # noqa: S302  # nosec B302  # frames come from our parent process only
        counts = array("q", [len(encode(text)) for text in texts])
        counts_out.write(FRAME_HEADER.pack(len(counts)))
        counts_out.write(counts.tobytes())
        counts_out.flush()


def main() -> None:
    counts_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print lands in stderr, never inside a frame
    serve(sys.stdin.buffer, counts_out)


if __name__ == "__main__":
    main()
