"""A loopback stand-in for the API Gateway REST API, built from the template's own routes.

moto does not implement REST proxy integrations, so the local stack serves HTTP itself: it
reads the routes (paths, methods, target functions, API key requirement) from the translated
template, answers the requests API Gateway answers itself (unknown route, outside the stage,
missing or wrong key) the way API Gateway does, and hands everything else to the function as
the proxy event AWS would send. Routes are never written by hand, so the local API cannot
drift from the deployed one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.http_server import ANY_METHOD as ANY_HTTP_METHOD
from local.http_server import LoopbackServer, Reply, Request
from local.template import load_template, translated_template

ACCOUNT_ID = "123456789012"  # moto's default account
API_ID = "ragtunelcl"  # API Gateway ids are 10 lowercase alphanumerics
ANY_METHOD = "ANY"

_SWAGGER_METHODS = {"get", "put", "post", "delete", "options", "head", "patch"}
_ANY_METHOD_KEY = "x-amazon-apigateway-any-method"
_FUNCTION_ARN = re.compile(r"\$\{(\w+)\.Arn\}")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Computed by the server for the bytes it sends; a function's values would be wrong or unsafe.
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection"}

_log = logging.getLogger(__name__)

Invoke = Callable[[str, dict[str, Any]], object]
"""(function logical id, proxy event) -> the function's proxy response; raising is a function error."""


MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's payload quota (REST): above it, its own 413


@dataclass(frozen=True)
class Route:
    """One operation of the API: which function answers `method` on the `path` template."""

    path: str
    method: str
    function_logical_id: str
    api_key_required: bool


def _api_key_required(operation: dict[str, Any], document: dict[str, Any]) -> bool:
    """True when the operation's security names the x-api-key header scheme, as API Gateway imports it."""
    definitions = document.get("securityDefinitions", {})
    for requirement in operation.get("security", document.get("security", [])):
        for name in requirement:
            scheme = definitions.get(name, {})
            if (
                scheme.get("type") == "apiKey"
                and scheme.get("in") == "header"
                and str(scheme.get("name", "")).lower() == "x-api-key"
            ):
                return True
    return False


def _integration_function(path: str, operation: dict[str, Any]) -> str:
    integration = operation.get("x-amazon-apigateway-integration", {})
    if integration.get("type") != "aws_proxy":
        raise ValueError(f"{path}: only aws_proxy (Lambda proxy) integrations are served locally")
    uri = integration.get("uri", {})
    found = _FUNCTION_ARN.search(uri.get("Fn::Sub", "") if isinstance(uri, dict) else "")
    if found is None:
        raise ValueError(f"{path}: integration uri names no function as ${{X.Arn}}: {uri!r}")
    return found.group(1)


def routes_from_template(api_logical_id: str = "RagtuneApi") -> list[Route]:
    """Every operation of the API's Swagger body, as SAM translated it."""
    document: dict[str, Any] = translated_template()["Resources"][api_logical_id]["Properties"]["Body"]
    routes = []
    for path, operations in document["paths"].items():
        if "+}" in path:
            raise ValueError(f"{path}: greedy path parameters are not served locally")
        for key, operation in operations.items():
            if key in _SWAGGER_METHODS or key == _ANY_METHOD_KEY:
                method = ANY_METHOD if key == _ANY_METHOD_KEY else key.upper()
                routes.append(
                    Route(path, method, _integration_function(path, operation), _api_key_required(operation, document))
                )
    return routes


def stage_name(api_logical_id: str = "RagtuneApi") -> str:
    """The stage the API is deployed to: the first segment of every URL."""
    stage = load_template()["Resources"][api_logical_id]["Properties"]["StageName"]
    if not isinstance(stage, str):
        raise ValueError(f"{api_logical_id}: StageName must be a literal to run locally, not {stage!r}")
    return stage


def _single_and_multi(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """AWS's two views of repeated names: the last value, and all values; None when there are none."""
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    if not multi:
        return None, None
    return {name: values[-1] for name, values in multi.items()}, multi


def _request_time(epoch_seconds: float) -> str:
    """API Gateway's requestTime, e.g. 27/Nov/2026:08:00:00 +0000 (English months whatever the locale)."""
    moment = time.gmtime(epoch_seconds)
    return f"{moment.tm_mday:02d}/{_MONTHS[moment.tm_mon - 1]}/{moment.tm_year}:" + time.strftime(
        "%H:%M:%S +0000", moment
    )


def build_proxy_event(
    route: Route,
    method: str,
    path: str,
    query_string: str,
    headers: Sequence[tuple[str, str]],
    body_bytes: bytes,
    path_parameters: dict[str, str],
    stage: str,
    api_key: str | None,
    *,
    source_ip: str = "127.0.0.1",
    request_id: str | None = None,
    request_path: str | None = None,
) -> dict[str, Any]:
    """The REST proxy event API Gateway sends for this request; `path` is without the stage prefix, `request_path`
    the URL's path as sent (the stage, and a trailing slash or not: `/v1` and `/v1/` are both the root)."""
    single_headers, multi_headers = _single_and_multi(headers)
    query, multi_query = _single_and_multi(parse_qsl(query_string, keep_blank_values=True))
    lowered = {name.lower(): value for name, value in (single_headers or {}).items()}
    now = time.time()
    body: str | None = None
    is_base64 = False
    if body_bytes:
        try:
            body = body_bytes.decode("utf-8")
        except UnicodeDecodeError:
            body, is_base64 = base64.b64encode(body_bytes).decode("ascii"), True
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "resourceId": hashlib.sha256(route.path.encode()).hexdigest()[:6],
            "resourcePath": route.path,
            "httpMethod": method,
            "path": request_path or f"/{stage}{path}",
            "stage": stage,
            "protocol": "HTTP/1.1",
            "requestId": request_id or str(uuid.uuid4()),
            "requestTime": _request_time(now),
            "requestTimeEpoch": int(now * 1000),
            "domainName": lowered.get("host", "localhost"),
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "accessKey": None,
                "sourceIp": source_ip,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": lowered.get("user-agent"),
                "user": None,
                "apiKey": api_key,
                "apiKeyId": hashlib.sha256(api_key.encode()).hexdigest()[:10] if api_key else None,
            },
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


@dataclass(frozen=True)
class GatewayResponse:
    """How the API answers one kind of request API Gateway refuses itself: a status (None: API Gateway's
    own) and the JSON body's template, in which `$context.error.messageString` is the quoted message."""

    status: int | None
    template: str | None


def gateway_responses_from_template(api_logical_id: str = "RagtuneApi") -> dict[str, GatewayResponse]:
    """The API's gateway responses by type (MISSING_AUTHENTICATION_TOKEN, INVALID_API_KEY, DEFAULT_4XX...)."""
    document: dict[str, Any] = translated_template()["Resources"][api_logical_id]["Properties"]["Body"]
    return {
        kind: GatewayResponse(
            int(response["statusCode"]) if "statusCode" in response else None,
            (response.get("responseTemplates") or {}).get("application/json"),
        )
        for kind, response in document.get("x-amazon-apigateway-gateway-responses", {}).items()
    }


def _gateway_error(status: int, message: str, error_type: str, response: GatewayResponse | None = None) -> Reply:
    """An answer API Gateway gives itself, without calling the function: its own `{"message"}`, or the
    API's gateway response for that kind of refusal."""
    body = json.dumps({"message": message})
    if response is not None:
        status = response.status or status
        body = (
            response.template.replace("$context.error.messageString", json.dumps(message))
            if response.template
            else body
        )
    return Reply(status, [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)], body.encode())


def _function_reply(response: object) -> Reply:
    """The function's proxy response as HTTP; a malformed one raises ValueError (API Gateway's 502)."""
    if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
        raise ValueError(f"not a proxy response: {response!r}"[:500])
    single = response.get("headers") or {}
    multi = response.get("multiValueHeaders") or {}
    body = response.get("body") or ""
    if not isinstance(single, dict) or not isinstance(multi, dict) or not isinstance(body, str):
        raise ValueError("proxy response headers, multiValueHeaders or body have the wrong type")
    # As API Gateway merges them: a name in multiValueHeaders takes its values from there only.
    in_multi = {name.lower() for name in multi}
    headers = [(name, str(value)) for name, values in multi.items() for value in values]
    headers += [(name, str(value)) for name, value in single.items() if name.lower() not in in_multi]
    headers = [(name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))  # API Gateway's default
    try:
        payload = base64.b64decode(body, validate=True) if response.get("isBase64Encoded") else body.encode()
    except binascii.Error as error:
        raise ValueError("isBase64Encoded body is not base64") from error
    return Reply(response["statusCode"], headers, payload)


def _match(template: str, segments: list[str]) -> dict[str, str] | None:
    """Path parameters when the request's (decoded) segments fit the template, else None."""
    parts = template.split("/")[1:]
    if len(parts) != len(segments):
        return None
    parameters = {}
    for part, segment in zip(parts, segments, strict=True):
        if part.startswith("{") and part.endswith("}"):
            if not segment:
                return None
            parameters[part[1:-1]] = segment
        elif part != segment:
            return None
    return parameters


def _specificity(template: str) -> tuple[int, ...]:
    """Lower sorts first: a literal segment beats a parameter at the same position."""
    return tuple(1 if part.startswith("{") else 0 for part in template.split("/")[1:])


class LocalApiGateway:
    """Serves the routes on loopback under /{stage}/, invoking functions through `invoke`."""

    def __init__(
        self,
        routes: Iterable[Route],
        invoke: Invoke,
        api_keys: set[str],
        stage: str = "v1",
        host: str = "127.0.0.1",
        port: int = 0,
        responses: dict[str, GatewayResponse] | None = None,
    ) -> None:
        self.routes = list(routes)
        self.invoke = invoke
        # One request at a time per function, as one Lambda execution environment serves them: a handler keeps the
        # request it serves in module state (Powertools' resolver: the route in `app.context`), and run side by side
        # on this server's threads, a dashboard's parallel requests could be validated against each other's routes
        # (a browser test saw a 422 for a curve). Different functions still run side by side.
        self._environments = {route.function_logical_id: threading.Lock() for route in self.routes}
        self.api_keys = frozenset(api_keys)
        self.stage = stage
        self.responses = responses or {}
        self._address = (host, port)
        self._server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        """The invoke URL, stage included, as the deployed stack's ApiUrl output gives it."""
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{self.stage}"

    def start(self) -> LocalApiGateway:
        self._server = LoopbackServer(
            self.handle,
            *self._address,
            name="local-api-gateway",
            # Any method a client may send: one no route declares gets API Gateway's own answer, not a 501.
            methods=(ANY_HTTP_METHOD,),
            keep_alive=False,
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> LocalApiGateway:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _resolve(self, segments: list[str]) -> tuple[str, dict[str, str]] | None:
        """The most specific resource path matching the segments, as API Gateway picks it."""
        matches = [
            (route.path, parameters)
            for route in self.routes
            if (parameters := _match(route.path, segments)) is not None
        ]
        return min(matches, key=lambda match: _specificity(match[0]), default=None)

    def handle(self, request: Request) -> Reply:
        """One request, answered as API Gateway would (checks in its order: stage, route, key)."""
        request_id = str(uuid.uuid4())
        reply = self._answer(request, request_id)
        return Reply(reply.status, [*reply.headers, ("x-amzn-RequestId", request_id)], reply.body)

    def _response(self, kind: str) -> GatewayResponse | None:
        """The API's gateway response of `kind`, else its DEFAULT_4XX (every refusal here is a 4xx)."""
        return self.responses.get(kind) or self.responses.get("DEFAULT_4XX")

    def _answer(self, request: Request, request_id: str) -> Reply:
        method, headers = request.method, list(request.headers.items())
        split = urlsplit(request.target)
        segments = split.path.split("/")[1:]
        if not segments or segments[0] != self.stage:
            return _gateway_error(403, "Forbidden", "ForbiddenException")
        decoded = [unquote(segment) for segment in segments[1:]] or [""]
        resource, path_parameters = self._resolve(decoded) or ("", {})
        candidates = [r for r in self.routes if resource and r.path == resource and r.method in (method, ANY_METHOD)]
        route = min(candidates, key=lambda r: r.method == ANY_METHOD, default=None)
        if route is None:
            no_route = self._response("MISSING_AUTHENTICATION_TOKEN")
            return _gateway_error(403, "Missing Authentication Token", "MissingAuthenticationTokenException", no_route)
        api_key = next((value for name, value in headers if name.lower() == "x-api-key"), None)
        if route.api_key_required and api_key not in self.api_keys:
            return _gateway_error(403, "Forbidden", "ForbiddenException", self._response("INVALID_API_KEY"))
        if len(request.body) > MAX_PAYLOAD_BYTES:
            too_large = self._response("REQUEST_TOO_LARGE")
            return _gateway_error(413, "Request Too Long", "RequestTooLargeException", too_large)
        event = build_proxy_event(
            route,
            method,
            "/" + "/".join(decoded),
            split.query,
            headers,
            request.body,
            path_parameters,
            self.stage,
            api_key if route.api_key_required else None,
            source_ip=request.client_ip,
            request_id=request_id,
            request_path=split.path,
        )
        try:
            with self._environments[route.function_logical_id]:
                reply = self.invoke(route.function_logical_id, event)
            return _function_reply(reply)
        except Exception:  # any function failure is API Gateway's 502, never the server's crash
            _log.warning("function %s failed for %s %s", route.function_logical_id, method, split.path, exc_info=True)
            return _gateway_error(502, "Internal server error", "InternalServerErrorException")
