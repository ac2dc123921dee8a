"""The dashboard as a person uses it, in headless Chromium against the served stack with every provider's demo run:
the runs, one run (live progress, curve, evaluation, answers, actions), comparing and asking, the key, and that
nothing a run holds can run as script in the page."""

from __future__ import annotations

import csv
import io
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
    shown = {rows.nth(i).get_attribute("data-run-id"): rows.nth(i).inner_text() for i in range(rows.count())}

    for provider in ("openai", "bedrock", "open"):
        run = _demo_run(dashboard, provider)
        assert run["status"] == "succeeded"
        assert provider in shown[run["run_id"]] and "succeeded" in shown[run["run_id"]]
    assert tab.dialogs == []
    tab.screenshot("runs")


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
    assert len(set(steps)) == len(rows) > 1
    evaluation = dashboard.api("GET", f"/runs/{run['run_id']}/evaluation").json()
    shown = {
        row.get_attribute("data-arm"): row.locator("td.accuracy").inner_text()
        for row in tab.page.locator("#evaluation-table tr[data-arm]").all()
    }
    expected = {arm["name"]: f"{arm['accuracy']:.1%}" for arm in evaluation["arms"] if arm.get("accuracy") is not None}
    assert {name: shown[name] for name in expected} == expected
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
    seen = set()
    for _ in range(240):
        status = tab.page.locator("#run-status")
        if status.count():
            seen.add(status.inner_text().strip())
        if seen & set(FINAL):
            break
        tab.page.wait_for_timeout(250)

    assert "succeeded" in seen and len(seen) >= 2  # it moved through at least one live status on the same page
    assert tab.page.evaluate("() => window.notReloaded") is True


def test_nothing_a_run_holds_is_run_as_script(tab: Tab, dashboard: Dashboard) -> None:
    rows = [sciq_row(i) for i in range(20)] + [sciq_row(99, correct_answer=XSS_ANSWER)]
    source = dashboard.drop_data("xss.jsonl", rows)
    template = {"system": XSS_SYSTEM}
    dashboard.drop_config("configs/xss.json", {"dataset": {"source": source}, "template": template})
    run = dashboard.run_of("configs/xss.json")
    assert run["status"] == "succeeded"
    question = sciq_row(99)["question"]

    tab.page.goto(f"{dashboard.url}#/runs/{run['run_id']}")
    tab.page.wait_for_function("() => (document.querySelector('#config') || {}).textContent")
    assert "<script>alert('config')</script>" in tab.page.inner_text("#config")
    tab.page.goto(f"{dashboard.url}#/ask")
    tab.page.wait_for_selector(f"#ask-run option[value='{run['run_id']}']", state="attached")
    tab.page.select_option("#ask-run", run["run_id"])
    tab.page.fill("#question", question)
    tab.page.click("#ask-button")
    tab.page.wait_for_function("() => document.querySelector('#answer').textContent.length > 0", timeout=30_000)

    assert XSS_ANSWER.split(" ", 1)[1].split(" measure")[0] in tab.page.inner_text("#answer")
    assert tab.page.locator("#answer img, #config script, img[src='x']").count() == 0
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
    assert page.evaluate("() => JSON.stringify(sessionStorage)").count("not-the-key") <= 1
    assert "not-the-key" not in page.url
    context.close()


def test_a_refused_cancel_shows_the_apis_sentence(tab: Tab, dashboard: Dashboard) -> None:
    run = _demo_run(dashboard, "bedrock")
    _open_run(tab, run["run_id"])
    expected = dashboard.api("POST", f"/runs/{run['run_id']}/cancel").json()["message"]

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
    for view in ("#/runs", f"#/runs/{_demo_run(dashboard, 'open')['run_id']}", "#/compare", "#/ask"):
        page.goto(f"{dashboard.url}{view}")
        page.wait_for_timeout(1500)
        results = Axe().run(page)
        serious = [
            violation["id"]
            for violation in results.response["violations"]
            if violation["impact"] in ("serious", "critical")
        ]
        assert serious == [], view
    context.close()
