"""The CLI's HTTP client: paths it builds, and answers that are not the API's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ragtune_cli.api import ApiClient, run_path
from ragtune_cli.errors import CliError


def test_a_run_id_stays_one_path_segment() -> None:
    assert run_path("sciq-0123456789ab") == "/runs/sciq-0123456789ab"
    assert run_path("a/../../runs", "cancel") == "/runs/a%2F..%2F..%2Fruns/cancel"
    assert run_path("x?limit=1") == "/runs/x%3Flimit%3D1"


class _HtmlPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def html_site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_that_is_not_the_api_is_a_sentence_saying_so(html_site: str) -> None:
    with pytest.raises(CliError) as refused:
        ApiClient(html_site, "key").call("GET", run_path("sciq-0123456789ab"))

    assert str(refused.value) == (
        "GET /runs/sciq-0123456789ab answered 200 with something other than the ragtune API's JSON: "
        f"is {html_site} the API's URL, ending with its stage (/v1)?"
    )
