"""Errors caused by the user's own input: recorded on the run, never retried, never a 500."""

from __future__ import annotations


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
