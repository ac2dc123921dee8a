"""The deployment's HTTPS API (x-api-key), the only module of the CLI that speaks HTTP.

Every call has a timeout. 429 and the 5xx that mean "try again" (500, 503, 504), and connections
that failed or dropped, are retried a bounded number of times with backoff (Retry-After honoured
up to 10 s). An answer that did not come within the read timeout is not retried: a POST may have
been carried out, and API Gateway gives up at 29 s anyway. A 502 is not retried: the API answers
502 when the provider refused the request, which asking again does not change. Failures become
`ApiError`, whose message is a sentence.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import requests

from ragtune_cli.errors import CliError, ErrorCode

RETRIED_STATUSES = frozenset({429, 500, 503, 504})
ATTEMPTS = 4
TIMEOUT_SECONDS = (10, 60)  # connect, read (API Gateway gives up at 29 s)
MAX_RETRY_AFTER_SECONDS = 10.0


def run_path(run_id: str, *rest: str) -> str:
    """`/runs/{run_id}[/rest]` with the id escaped: whatever was typed stays one path segment."""
    return "/".join(["/runs", quote(run_id, safe=""), *rest])


class ApiError(CliError):
    """The API answered with an error; `code` is its stable reason (`run_not_found`, ...), or the CLI's when it
    gave none (a stack older than its gateway responses)."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message, code)
        self.status = status
        self.body: dict[str, Any] = {}
        self.api_message = message  # the API's own words, without what this client adds
        self.no_route = False


def _error_fields(response: requests.Response) -> tuple[str | None, str, dict[str, Any]]:
    """(code, message, body) from either error shape: {"code", "message"} or {"error": {"code", "message"}}."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text.strip()[:300] or response.reason, {}
    if not isinstance(body, dict):
        return None, str(body)[:300], {}
    nested = body.get("error")
    fields = nested if isinstance(nested, dict) else body
    return fields.get("code"), str(fields.get("message") or response.reason), body


def _sentence(method: str, path: str, response: requests.Response, base_url: str) -> ApiError:
    code, message, body = _error_fields(response)
    status = response.status_code
    no_route = _no_route(status, code, message)
    if status == 403 and (code == "invalid_api_key" or message == "Forbidden"):  # a stack older than its responses
        code = "invalid_api_key"
        text = (
            "The API refused the API key (403 Forbidden): check RAGTUNE_API_KEY (the local stack prints a new one "
            "each time it starts), or pass --stack NAME to read the key of a deployed stack."
        )
    elif no_route:
        text = (
            f"The API has no route {method} {path} ({status} {message}): check that the API URL "
            f"{base_url} ends with the stage (/v1), or update the deployment if it predates this command."
        )
    elif code == "run_not_found" or (status == 404 and "/runs/" in path):
        text = f"{message.rstrip('.')}. List the runs with `ragtune runs`."
    else:
        text = f"{method} {path} answered {status}" + (f" ({code})" if code else "") + f": {message}"
    error = ApiError(text, status, code or ErrorCode.API_ERROR)
    error.body = body
    error.api_message = message
    error.no_route = no_route
    return error


def _no_route(status: int, code: str | None, message: str) -> bool:
    """API Gateway's answer to a path it does not have (403 from a stack older than its gateway responses), or
    the function's router's (a newer template's route)."""
    return (status == 403 and message == "Missing Authentication Token") or (status == 404 and code == "not_found")


class ApiClient:
    def __init__(self, base_url: str, api_key: str, sleep: Any = time.sleep) -> None:
        self._base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers.update({"x-api-key": api_key, "user-agent": "ragtune-cli"})
        self._sleep = sleep

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The decoded JSON body of a 2xx answer; ApiError otherwise, after the bounded retries."""
        url = f"{self._base_url}{path}"
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._session.request(method, url, json=body, timeout=TIMEOUT_SECONDS)
            except requests.ReadTimeout:
                raise CliError(
                    f"The API at {self._base_url} did not answer {method} {path} within {TIMEOUT_SECONDS[1]} s; "
                    "try again later.",
                    ErrorCode.API_UNREACHABLE,
                ) from None
            except requests.RequestException as error:
                if attempt == ATTEMPTS:
                    raise CliError(
                        f"Could not reach the API at {self._base_url} ({type(error).__name__}): is the deployment "
                        "up (the local stack: `make local`) and its URL right?",
                        ErrorCode.API_UNREACHABLE,
                    ) from None
                self._sleep(0.25 * 2 ** (attempt - 1))
                continue
            if response.status_code in RETRIED_STATUSES and attempt < ATTEMPTS:
                self._sleep(self._backoff(response, attempt))
                continue
            if response.status_code >= 400:
                raise _sentence(method, path, response, self._base_url)
            try:
                return response.json() if response.content else {}
            except ValueError:
                raise CliError(
                    f"{method} {path} answered {response.status_code} with something other than the ragtune API's "
                    f"JSON: is {self._base_url} the API's URL, ending with its stage (/v1)?",
                    ErrorCode.API_UNREACHABLE,
                ) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _backoff(response: requests.Response, attempt: int) -> float:
        retry_after = response.headers.get("retry-after", "")
        if retry_after.replace(".", "", 1).isdigit():
            return min(float(retry_after), MAX_RETRY_AFTER_SECONDS)
        return float(0.25 * 2 ** (attempt - 1))

    def download(self, url: str) -> bytes:
        """A presigned URL's object (no API key: the URL carries its own signature)."""
        try:
            response = requests.get(url, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as error:
            raise CliError(
                f"Could not download the report ({type(error).__name__}); try again.", ErrorCode.DOWNLOAD_FAILED
            ) from None
        if response.status_code == 403:
            raise CliError(
                "The report's link has expired or was refused (403); run the command again for a new one.",
                ErrorCode.DOWNLOAD_FAILED,
            )
        if response.status_code >= 400:
            raise CliError(
                f"Downloading the report answered {response.status_code}; try again.", ErrorCode.DOWNLOAD_FAILED
            )
        return response.content
