"""SageMaker's JSON 1.1 errors: HTTP 400 (5xx for the service's own failures) and ``{"__type", "message"}``.

botocore's json parser takes the error code from the body's ``__type`` (anything before a ``:`` or up to a
``#`` dropped) and the message from ``message``, so ``ClientError.response["Error"]["Code"]`` is the code
sent. SageMaker answers nearly every client error with 400, its own ``ResourceInUse``,
``ResourceLimitExceeded`` and ``ResourceNotFound`` included; a job that does not exist is a
``ValidationException`` ("Requested resource not found."), not the ResourceNotFound its model declares
(aws/aws-sdk#165, boto/boto3#2808).
"""

from __future__ import annotations

ERROR_STATUS = {
    "AccessDeniedException": 400,
    "InternalFailure": 500,
    "ResourceInUse": 400,
    "ResourceLimitExceeded": 400,
    "ResourceNotFound": 400,
    "ServiceUnavailable": 503,
    "ThrottlingException": 400,
    "UnknownOperationException": 400,
    "ValidationException": 400,
}
NOT_FOUND = "Requested resource not found."


class SageMakerError(Exception):
    """An error answered as status ``ERROR_STATUS[code]`` with ``{"__type": code, "message": message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = ERROR_STATUS[code]


def validation(message: str) -> SageMakerError:
    return SageMakerError("ValidationException", message)
