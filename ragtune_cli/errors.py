"""The one exception the commands raise for a user to read: a sentence with the next step, never a traceback."""

from __future__ import annotations

# Exit codes: 0 done; 1 the thing checked or watched failed (an invalid config, a failed run or
# evaluation); 2 the command could not do what was asked (no deployment, refused key, unknown run).
EXIT_FAILED = 1
EXIT_ERROR = 2


class CliError(Exception):
    """What went wrong and what to do next, printed as is on stderr."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
