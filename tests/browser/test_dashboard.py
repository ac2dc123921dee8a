"""The dashboard as a person uses it, in headless Chromium against the served stack with every provider's demo run:
the runs, one run (live progress, curve, evaluation, answers, actions), comparing and asking, the key, and that
nothing a run holds can run as script in the page."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser.conftest import Dashboard, Tab
from tests.helpers import sciq_row

# One served stack for the module: both xdist workers would otherwise start their own (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("browser")

FINAL = ("succeeded", "failed", "cancelled", "tracking_failed")
XSS_ANSWER = "Joules <img src=x onerror=alert(1)> measure energy."
XSS_SYSTEM = "You answer science questions. <script>alert('config')</script>"


def _demo_run(dashboard: Dashboard, provider: str) -> dict[str, Any]:
    [run] = [run for run in dashboard.runs() if run.get("config_key") == f"configs/demo-{provider}.json"]
    detail: dict[str, Any] = dashboard.api("GET", f"/runs/{run['run_id']}").json()
    return detail


def _open_run(tab: Tab, run_id: str) -> None:
    tab.page.click(f"#runs-table tr[data-run-id='{run_id}'] a")
    tab.page.wait_for_selector("#run-view")
    tab.page.wait_for_function(
        "id => document.querySelector('#run-status') && document.querySelector('#run-view').textContent.includes(id)",
        arg=run_id,
    )


def test_the_runs_table_lists_every_providers_finished_run(tab: Tab, dashboard: Dashboard) -> None:
    rows = tab.page.locator("#runs-table tr[data-run-id]")
    shown = {
        rows.nth(i).get_attribute("data-run-id"): [cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    }

    for provider in ("openai", "bedrock", "open"):
        run = _demo_run(dashboard, provider)
        cells = shown[run["run_id"]]
        assert run["status"] == "succeeded"
        assert provider in cells and "succeeded" in cells and run["config"]["fine_tune"]["model"] in cells
    assert tab.dialogs == []
    tab.screenshot("runs")
    tab.page.select_option("#status-filter", "failed")  # the API's filter: none of the demo's runs failed
    tab.page.wait_for_function("() => !document.querySelector('#runs-table tr[data-run-id]')")
    assert "No run has the status failed" in tab.page.inner_text("#runs-table")


def test_a_run_shows_its_curve_with_one_point_per_metrics_row_and_its_evaluation_as_the_api_has_it(
    tab: Tab, dashboard: Dashboard
) -> None:
    run = _demo_run(dashboard, "openai")
    _open_run(tab, run["run_id"])
    tab.page.wait_for_selector("#curve circle.point", state="attached")
    tab.page.wait_for_selector("#evaluation-table tr[data-arm]")

    metrics = dashboard.s3.get_object(Bucket=dashboard.bucket, Key=f"reports/{run['run_id']}/metrics.csv")[
        "Body"
    ].read()
    rows = list(csv.DictReader(io.StringIO(metrics.decode())))
    steps = tab.page.eval_on_selector_all("#curve circle.point", "points => points.map(p => p.dataset.step)")
    assert steps == [row["step"] for row in rows] and len(rows) > 1
    evaluation = dashboard.api("GET", f"/runs/{run['run_id']}/evaluation").json()
    shown = {
        row.get_attribute("data-arm"): row.locator("td.accuracy").inner_text()
        for row in tab.page.locator("#evaluation-table tr[data-arm]").all()
    }
    assert set(shown) == {arm["name"] for arm in evaluation["arms"]} and len(shown) == 3
    for arm in evaluation["arms"]:  # the page's one decimal, whichever way a tie rounds
        assert abs(float(shown[arm["name"]].rstrip("%")) - 100 * arm["accuracy"]) <= 0.051, arm["name"]
    assert tab.page.locator("#accuracy-chart").count() == 1 and tab.page.locator("#answers-table tr").count() > 1
    assert tab.page.get_attribute("#curve-png", "href", timeout=5000)
    tab.screenshot("run")


def test_a_live_run_moves_on_the_page_without_a_reload(tab: Tab, dashboard: Dashboard) -> None:
    source = dashboard.drop_data("live.jsonl", [sciq_row(i) for i in range(24)])
    dashboard.drop_config("configs/live.json", {"dataset": {"source": source}})
    run_id = ""
    for _ in range(120):
        run_id = next((run["run_id"] for run in dashboard.runs() if run.get("config_key") == "configs/live.json"), "")
        if run_id:
            break
        tab.page.wait_for_timeout(250)
    tab.page.evaluate("() => { window.notReloaded = true; }")  # gone if the page were loaded again
    tab.page.evaluate(f"() => {{ location.hash = '#/runs/{run_id}'; }}")
    seen, steps = [], []
    for _ in range(240):
        status = tab.page.locator("#run-status")
        if status.count():
            seen.append(status.inner_text().strip())
        progress = tab.page.locator("#progress")
        if progress.count() and progress.is_visible() and progress.get_attribute("value"):
            steps.append(float(str(progress.get_attribute("value"))))
        if set(seen) & set(FINAL):
            break
        tab.page.wait_for_timeout(200)

    assert seen[-1] == "succeeded" and len(set(seen)) >= 2  # it moved through a live status on the same page
    # The bar showed the job's steps while it trained (the emulated job trains for a second or two: the page may see
    # one step count or several), never going back
    assert steps and steps == sorted(steps)
    assert tab.page.evaluate("() => window.notReloaded") is True


def test_nothing_a_run_holds_is_run_as_script(tab: Tab, dashboard: Dashboard) -> None:
    rows = [sciq_row(i, correct_answer=f"{i} {XSS_ANSWER}") for i in range(24)]
    source = dashboard.drop_data("xss.jsonl", rows)
    template = {"system": XSS_SYSTEM}
    config = {"dataset": {"source": source}, "template": template, "validation_fraction": 0.25}
    dashboard.drop_config("configs/xss.json", config)
    run = dashboard.run_of("configs/xss.json")
    assert run["status"] == "succeeded"
    trained = dashboard.s3.get_object(Bucket=dashboard.bucket, Key=run["files"]["train"]["key"])["Body"].read()
    question = json.loads(trained.splitlines()[0])["messages"][1]["content"]

    tab.page.goto(f"{dashboard.url}#/runs/{run['run_id']}")
    tab.page.wait_for_function("() => (document.querySelector('#config') || {}).textContent")
    # Every answer holds the payload; the table is drawn once the evaluation the run started has finished
    tab.page.wait_for_selector("#answers-table tr[data-index]", state="attached", timeout=90_000)
    assert "<script>alert('config')</script>" in tab.page.inner_text("#config")
    assert "<img src=x onerror=alert(1)>" in tab.page.inner_text("#answers-table")
    assert tab.page.locator("#run-view img, #run-view script, #config *").count() == 0
    tab.page.goto(f"{dashboard.url}#/ask")
    tab.page.wait_for_selector(f"#ask-run option[value='{run['run_id']}']", state="attached")
    tab.page.select_option("#ask-run", run["run_id"])
    tab.page.fill("#question", question)
    tab.page.click("#ask-button")
    tab.page.wait_for_function("() => document.querySelector('#answer').textContent.length > 0", timeout=30_000)

    assert "<img src=x onerror=alert(1)>" in tab.page.inner_text("#answer")
    assert tab.page.locator("#answer *, img[src='x']").count() == 0
    assert tab.page.inner_text("#answer-model") and tab.page.inner_text("#answer-usage")
    assert "ms" in tab.page.inner_text("#answer-latency")
    tab.page.wait_for_timeout(500)
    assert not [dialog for dialog in tab.dialogs if dialog.startswith("alert")]
    tab.screenshot("ask")


def test_a_wrong_key_is_told_in_a_sentence(browser: Any, dashboard: Dashboard) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(dashboard.url)
    page.fill("#api-key", "not-the-key")
    page.click("#save-key")
    page.wait_for_selector("#alert:not(:empty)")

    assert "403" in page.inner_text("#alert") and "key" in page.inner_text("#alert").lower()
    assert "not-the-key" not in page.evaluate("() => JSON.stringify(sessionStorage)")  # a refused key is dropped
    assert "not-the-key" not in page.url
    context.close()


def test_a_refused_cancel_shows_the_apis_sentence(tab: Tab, dashboard: Dashboard) -> None:
    run = _demo_run(dashboard, "bedrock")
    _open_run(tab, run["run_id"])
    refused = dashboard.api("POST", f"/runs/{run['run_id']}/cancel")
    assert refused.status_code == 409, f"{refused.text} (the stack's log: test-output/serve/)"
    expected = refused.json()["message"]

    tab.page.click("#cancel-run")
    tab.page.wait_for_selector("#alert:not(:empty)")

    assert expected in tab.page.inner_text("#alert")
    assert any(dialog.startswith("confirm") for dialog in tab.dialogs)


def test_the_compare_view_lists_the_runs_to_choose(tab: Tab, dashboard: Dashboard) -> None:
    tab.page.goto(f"{dashboard.url}#/compare")
    tab.page.wait_for_selector("#compare-view input[type=checkbox]")

    assert tab.page.locator("#compare-view input[type=checkbox]").count() >= 3
    tab.screenshot("compare")


def test_every_view_passes_axe_cores_serious_and_critical_rules(browser: Any, dashboard: Dashboard) -> None:
    """axe-core is injected into the page: a context that lets it past the page's own policy (the page itself
    is the same; only the checker's script is allowed in)."""
    context = browser.new_context(bypass_csp=True)
    context.add_init_script(f"sessionStorage.setItem('ragtune.apiKey', {dashboard.api_key!r})")
    page = context.new_page()
    views = {
        "#/runs": "#runs-table tr[data-run-id]",
        f"#/runs/{_demo_run(dashboard, 'open')['run_id']}": "#evaluation-table tr[data-arm]",
        "#/compare": "#compare-view input[type=checkbox]",
        "#/ask": "#ask-run option",
    }
    for view, loaded in views.items():
        page.goto(f"{dashboard.url}{view}")
        page.wait_for_selector(loaded, state="attached")
        results = Axe().run(page)
        serious = [
            violation["id"]
            for violation in results.response["violations"]
            if violation["impact"] in ("serious", "critical")
        ]
        assert serious == [], view
    context.close()
