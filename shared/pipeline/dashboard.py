"""Use case: serve the dashboard's static files with the headers that keep the page safe.

The page is plain HTML, CSS and JavaScript (functions/dashboard/static/), no build step, no CDN. Everything it
shows comes from the keyed API on the same origin, rendered as text. The Content-Security-Policy allows scripts,
styles and fetches from this origin only (no inline script, no third party); nothing may frame the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INDEX = "index.html"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def static_response(folder: Path, asset: str | None, request_path: str) -> dict[str, Any]:
    """The proxy response for GET / (`asset` None) or GET /assets/{asset}. The page's own URLs are relative, so it
    must be opened as a folder: `/Prod` is redirected to `/Prod/`. Only files of `folder` itself are served."""
    if asset is None and not request_path.endswith("/"):
        return {"statusCode": 301, "headers": {"Location": f"{request_path}/", **SECURITY_HEADERS}, "body": ""}
    name = INDEX if asset is None else asset
    served = {path.name: path for path in folder.iterdir() if path.is_file() and path.suffix in CONTENT_TYPES}
    if name not in served or (asset is not None and name == INDEX):
        return _text(404, "Not found.")
    path = served[name]
    return {
        "statusCode": 200,
        "headers": {"Content-Type": CONTENT_TYPES[path.suffix], **SECURITY_HEADERS},
        "body": path.read_text(encoding="utf-8"),
    }


def _text(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "text/plain", **SECURITY_HEADERS}, "body": message}
