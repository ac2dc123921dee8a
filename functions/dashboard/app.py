"""DashboardFunction: the browser dashboard's page and assets (GET / and GET /assets/{name}, no API key: the page
asks for the key and calls the keyed API with it). Parses the path and answers with one static file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.pipeline.dashboard import static_response

STATIC = Path(__file__).resolve().parent / "static"


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    context_path = str((event.get("requestContext") or {}).get("path") or "/")
    asset = (event.get("pathParameters") or {}).get("name")
    return static_response(STATIC, asset, context_path)
