"""Bedrock's REST-JSON errors: the code in ``x-amzn-ErrorType``, ``{"message"}`` in the body.

botocore's rest-json parser takes the error code from that header (anything after a ``:`` dropped),
else from the body's ``__type`` or ``code``; the status is the error shape's ``httpStatusCode`` in the
service model (ConflictException and ServiceQuotaExceededException are 400 there, not 409/402).
"""

from __future__ import annotations

# Status per error code, as declared by the error shapes of botocore's bedrock and bedrock-runtime models.
ERROR_STATUS = {
    "AccessDeniedException": 403,
    "ConflictException": 400,
    "InternalServerException": 500,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ModelTimeoutException": 408,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 400,
    "ServiceUnavailableException": 503,
    "ThrottlingException": 429,
    "TooManyTagsException": 400,
    "ValidationException": 400,
}


class BedrockError(Exception):
    """An error answered as status ``ERROR_STATUS[code]`` with ``x-amzn-ErrorType: code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = ERROR_STATUS[code]


def validation(message: str) -> BedrockError:
    return BedrockError("ValidationException", message)


def not_found(message: str) -> BedrockError:
    return BedrockError("ResourceNotFoundException", message)
