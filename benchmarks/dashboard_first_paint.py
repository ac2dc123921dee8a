"""The dashboard's first paint against the local stack holding 100 runs: from navigation to the runs table's first
page on screen, in headless Chromium (Debian's, driven by Playwright), median of several fresh page loads.

The stack is `python -m local serve` as a user starts it; the 100 runs are written straight into its runs table
(the page reads them through GET /runs like any others), each a finished run with an estimate and trained tokens.
Printed beside the goal (1 s); nothing is asserted here: tests/benchmarks checks that it keeps working.
Usage: python -m benchmarks.dashboard_first_paint [page loads]
"""

from __future__ import annotations

import shutil
import statistics
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from tests.browser.conftest import CHROMIUM_ARGUMENTS
from tests.local.serving import start_serve

RUNS = 100
GOAL_MS = 1000


def _runs_table(endpoint: str) -> Any:
    dynamodb = boto3.resource(
        "dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )
    [name] = [table.name for table in dynamodb.tables.all() if "runs" in table.name.lower()]
    return dynamodb.Table(name)


def _write_runs(table: Any) -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    with table.batch_writer() as batch:
        for index in range(RUNS):
            created = (start + timedelta(minutes=index)).isoformat()
            batch.put_item(
                Item={
                    "run_id": f"bench-{index:03d}",
                    "entity": "run",
                    "status": ("succeeded", "failed", "running")[index % 3],
                    "provider": ("openai", "bedrock", "open")[index % 3],
                    "created_at": created,
                    "updated_at": created,
                    "status_changed_at": created,
                    "config_key": f"configs/bench-{index:03d}.json",
                    "config": {"provider": "openai", "fine_tune": {"model": "gpt-4o-mini-2024-07-18"}},
                    "trained_tokens": 1000 + index,
                }
            )


def main(loads: int = 5) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("no chromium on this machine: make install-chromium installs Debian's")
        return
    from playwright.sync_api import sync_playwright

    serving = start_serve()
    try:
        printed = serving.printed
        _write_runs(_runs_table(printed["s3_endpoint"]))
        timings, paints = [], []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGUMENTS)
            for _ in range(loads):
                context = browser.new_context()
                # The key as the page keeps it once pasted: the load measured is a returning visitor's.
                context.add_init_script(f"sessionStorage.setItem('ragtune.apiKey', {printed['api_key']!r})")
                page = context.new_page()
                page.goto(printed["dashboard_url"])
                page.wait_for_selector("#runs-table tr[data-run-id]")
                shown = page.evaluate("() => performance.now()")
                paint = page.evaluate(
                    "() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null"
                )
                timings.append(float(shown))
                if paint is not None:
                    paints.append(float(paint))
                context.close()
            browser.close()
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=60)
    print(f"dashboard, local stack with {RUNS} runs, {loads} fresh page loads in headless Chromium:")
    print(f"  runs table on screen  median {statistics.median(timings):7.1f} ms  (goal <= {GOAL_MS} ms)")
    if paints:
        print(f"  first contentful paint median {statistics.median(paints):7.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
