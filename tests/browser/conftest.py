"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against `python -m local serve
--demo-runs`: the stack as a user serves it, with every provider's demo run to browse.

Without chromium on the machine nothing here is collected (no skips): `make test` then says so in its last lines,
and `make install-chromium` installs it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tests.local.serving import ROOT, Serving, start_serve

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    collect_ignore_glob = ["test_*.py"]
# Where the tests leave the screenshots of each view (git-ignored; the README shows two, copied to docs/).
SCREENSHOTS = ROOT / "test-output" / "dashboard"
# Chromium on a closed network: no background connections, no sandbox (root in CI), no GPU.
CHROMIUM_ARGUMENTS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Dashboard:
    """The served stack: its dashboard's URL, the API and its key, and S3 for dropping configs."""

    url: str
    api_url: str
    api_key: str
    s3: Any
    bucket: str

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method, f"{self.api_url}{path}", headers={"x-api-key": self.api_key}, timeout=30, **kwargs
        )

    def runs(self) -> list[dict[str, Any]]:
        body: dict[str, Any] = self.api("GET", "/runs?limit=100").json()
        return list(body["runs"])

    def run_of(self, config_key: str, timeout: float = 90) -> dict[str, Any]:
        """The run of a config dropped under `config_key`, once it has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [run for run in self.runs() if run.get("config_key") == config_key]
            if found and found[0]["status"] in ("succeeded", "failed", "cancelled", "tracking_failed"):
                detail: dict[str, Any] = self.api("GET", f"/runs/{found[0]['run_id']}").json()
                return detail
            time.sleep(0.5)
        raise AssertionError(f"no finished run of {config_key} within {timeout:.0f} s")

    def drop_config(self, key: str, config: dict[str, Any]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(config).encode())

    def drop_data(self, name: str, rows: list[dict[str, str]]) -> str:
        body = "".join(json.dumps(row) + "\n" for row in rows).encode()
        self.s3.put_object(Bucket=self.bucket, Key=f"data/{name}", Body=body)
        return f"s3://{self.bucket}/data/{name}"


@pytest.fixture(scope="session")
def served() -> Iterator[Serving]:
    # Emulated jobs train for 4 s, two of the page's 2-second refreshes: a live run's bar is seen, not just hoped for.
    serving = start_serve("--demo-runs", "--phase-seconds", "4", "--output", str(ROOT / "test-output" / "demo"))
    try:
        yield serving
    finally:
        serving.stop(seconds=60)


@pytest.fixture(scope="session")
def dashboard(served: Serving) -> Dashboard:
    printed = served.printed
    s3 = boto3.client(
        "s3",
        endpoint_url=printed["s3_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    return Dashboard(printed["dashboard_url"], printed["api_url"], printed["api_key"], s3, printed["bucket"])


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGUMENTS)
        yield launched
        launched.close()


@dataclass
class Tab:
    """One page of the dashboard, every dialog it opened (an alert would be script that should not run), every
    request it made and every message it logged (a policy violation, the key)."""

    page: Any
    dialogs: list[str]
    requests: list[str]
    console: list[str]
    refused: list[str]  # "<status> <url>" of every answer that was not 2xx: a failure says which request

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def tab(browser: Any, dashboard: Dashboard, request: pytest.FixtureRequest) -> Iterator[Tab]:
    """A fresh context (an empty sessionStorage) with the key pasted; confirmations are accepted and recorded."""
    # One served stack for the module (make test: --dist loadgroup): a pytest whose xdist drops the group would
    # quietly start one per worker
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@browser"), f"xdist_group ignored: {request.node.nodeid}"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)  # a machine busy with the rest of the suite is slow, not wrong
    opened = Tab(page, [], [], [], [])

    def on_dialog(dialog: Any) -> None:
        opened.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept() if dialog.type == "confirm" else dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda request: opened.requests.append(request.url))
    page.on("console", lambda message: opened.console.append(f"{message.type}: {message.text}"))

    def on_response(response: Any) -> None:
        if not response.ok:
            opened.refused.append(f"{response.status} {response.url}")

    page.on("response", on_response)
    page.goto(dashboard.url)
    page.fill("#api-key", dashboard.api_key)
    page.click("#save-key")
    page.wait_for_selector("#runs-table tr[data-run-id]")
    yield opened
    context.close()
    print("Answers that were not 2xx:", opened.refused)  # shown beside a failure
    # Whatever the test did: the page asked its own origin only, broke no policy, and never logged the key.
    origin = dashboard.url.split("/v1/")[0]
    assert [url for url in opened.requests if not url.startswith((origin, "data:"))] == []
    assert not [line for line in opened.console if "Content Security Policy" in line or dashboard.api_key in line]
