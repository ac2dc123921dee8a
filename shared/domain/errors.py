"""Errors caused by the user's own input: recorded on the run, never retried, never a 500."""

from __future__ import annotations

import re

# An absolute path (or ~/...) standing on its own: not the path part of a URL or of an s3:// URI.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])~?/[^\s'\"`,;()\[\]{}<>]*[^\s'\"`,;()\[\]{}<>.]")


def without_internal_paths(text: str, known: dict[str, str] | None = None) -> str:
    """Text fit for a user: the function's own files and folders never show (scratch, cwd, caches, code).

    `known` names local paths the user knows by another name (a downloaded object: its s3:// URI);
    any other absolute path becomes `<internal path>`.
    """
    for local, public in sorted((known or {}).items(), key=lambda item: -len(item[0])):
        text = text.replace(local, public)
    return _ABSOLUTE_PATH.sub("<internal path>", text)


class UserInputError(Exception):
    """A problem the user can fix; `code` is stable, the message names the problem."""

    code = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(UserInputError):
    code = "invalid_config"


class DatasetError(UserInputError):
    code = "invalid_dataset"


class DataGateError(UserInputError):
    code = "data_gate_failed"
