"""The dashboard's files as DashboardFunction serves them: the page as a folder, its own files only, the headers
that keep it safe (tests/browser drives the page itself in Chromium)."""

from __future__ import annotations

from pathlib import Path

from functions.dashboard.app import STATIC, lambda_handler
from shared.pipeline.dashboard import CONTENT_SECURITY_POLICY, static_response


def _event(path: str, name: str | None = None) -> dict[str, object]:
    return {"requestContext": {"path": path}, "pathParameters": {"name": name} if name else None}


def test_the_page_and_its_assets_are_served_with_a_strict_policy() -> None:
    page = lambda_handler(_event("/v1/"), None)
    script = lambda_handler(_event("/v1/assets/app.js", "app.js"), None)
    style = lambda_handler(_event("/v1/assets/app.css", "app.css"), None)

    assert [response["statusCode"] for response in (page, script, style)] == [200, 200, 200]
    assert page["body"] == (STATIC / "index.html").read_text(encoding="utf-8")
    assert script["headers"]["Content-Type"] == "text/javascript; charset=utf-8"
    assert style["headers"]["Content-Type"] == "text/css"
    for response in (page, script, style):
        headers = response["headers"]
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    policy = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["script-src"] == policy["connect-src"] == "'self'" and policy["default-src"] == "'none'"


def test_the_page_loads_nothing_inline_and_nothing_from_elsewhere() -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert "<style" not in page and " style=" not in page and "http://" not in page and "https://" not in page
    assert all("src=" not in tag or 'src="assets/' in tag for tag in page.split("<script")[1:])


def test_the_root_without_its_slash_is_redirected_to_the_folder() -> None:
    response = lambda_handler(_event("/v1"), None)
    assert (response["statusCode"], response["headers"]["Location"]) == (301, "/v1/")


def test_only_the_folders_own_files_are_served(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("private", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "app.js").write_text("1", encoding="utf-8")

    for name in ("notes.txt", "../app.py", "sub/app.js", "index.html", "missing.js"):
        assert static_response(tmp_path, name, f"/v1/assets/{name}")["statusCode"] == 404, name
