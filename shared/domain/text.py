"""Checks on text from users (configs, questions), in a module of its own so a handler that checks a
question does not import the config schema."""

from __future__ import annotations


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in `text`, as its JSON escape: JSON escapes can spell them (\\ud800), and no
    UTF-8 writer downstream accepts them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"\\u{ord(error.object[error.start]):04x}"
    return None
