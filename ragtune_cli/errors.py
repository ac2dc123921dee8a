"""The one exception the commands raise for a user to read: a sentence with the next step, never a traceback."""

from __future__ import annotations

from enum import StrEnum

# Exit codes: 0 done; 1 the thing checked or watched failed (an invalid config, a failed run or
# evaluation); 2 the command could not do what was asked (no deployment, refused key, unknown run).
EXIT_FAILED = 1
EXIT_ERROR = 2


class ErrorCode(StrEnum):
    """What `--json` prints as an error's `code` when the API gave none: scripts branch on it, not on the words."""

    INVALID_RUN_ID = "invalid_run_id"  # an argument that is not a run id
    FILE_ERROR = "file_error"  # a file that cannot be read, written, or is not of a kind the pipeline reads
    INVALID_CONFIG = "invalid_config"  # the config breaks the schema, or its data would fail the run (exit 1)
    NO_DEPLOYMENT = "no_deployment"  # no stack or RAGTUNE_* variables, or an incomplete one
    AWS_ERROR = "aws_error"  # AWS refused or failed a call (credentials, region, CloudFormation, S3)
    API_UNREACHABLE = "api_unreachable"  # the API did not answer, or not with its JSON
    API_ERROR = "api_error"  # the API answered an error without a code of its own
    RUN_EXISTS = "run_exists"  # submit: the same config already made a run that is not failed
    DATA_CONFLICT = "data_conflict"  # submit: data/<name> holds another file
    NOT_READY = "not_ready"  # what was asked for does not exist, or not yet: an evaluation, a loss curve
    TIMED_OUT = "timed_out"  # --timeout passed while waiting
    RUN_FAILED = "run_failed"  # watch: the run ended other than succeeded (exit 1)
    EVALUATION_FAILED = "evaluation_failed"  # (exit 1)
    DOWNLOAD_FAILED = "download_failed"  # a report's presigned link
    CONFIRMATION_REQUIRED = "confirmation_required"  # delete-model without --yes and no terminal to ask on
    INTERRUPTED = "interrupted"  # Ctrl-C (exit 130)
    INTERNAL_ERROR = "internal_error"  # a bug: RAGTUNE_DEBUG=1 shows the traceback


class CliError(Exception):
    """What went wrong and what to do next, printed as is on stderr (with --json, as an error object on stdout)."""

    def __init__(self, message: str, code: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code
