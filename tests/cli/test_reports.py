"""`ragtune eval`, `curve`, `runs --status`, `cancel` and `delete-model`, run ids, --json errors and the client's
retries, against a small fake of the API.

The fake answers as issue #10's contract says GET/POST /runs/{id}/evaluation and GET /runs/{id}'s
`report_urls` will; the local stack does not serve them yet. The adopted run, the run whose model shuts
down, the evaluation with a recorded arm, the pages of runs and the deleted model go through the API's own
response models, as the API serves them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.domain.api_models import DeletedModelResponse, EvaluationResponse, RunConflictBody, RunDetail, RunPage

from .conftest import Result, ragtune, ragtune_in_a_terminal, user_shell

API_KEY = "fake-key"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
ARMS = [
    {
        "name": "tuned",
        "model": "ft:gpt-4o-mini-2024-07-18:org:faq:abc",
        "accuracy": 0.825,
        "ci95": [0.68, 0.91],
        "questions": 40,
        "prompt_tokens_mean": 41.5,
        "completion_tokens_mean": 22.25,
        "latency_ms_p50": 412.0,
        "cost_per_1k_usd": 0.0513,
    },
    {
        "name": "base_with_context",
        "model": "gpt-4o-mini-2024-07-18",
        "accuracy": 0.7,
        "ci95": [0.55, 0.82],
        "questions": 40,
        "prompt_tokens_mean": 310.0,
        "completion_tokens_mean": 30.0,
        "latency_ms_p50": 520.0,
        "cost_per_1k_usd": 0.0645,
    },
]

OLD_MODEL = "ft:gpt-4o-mini-2024-07-18:org:faq:old"
NEW_MODEL = "ft:gpt-4.1-mini-2025-04-14:org:faq:new"
# An adopted run: the old notebook's model, its answers recorded; the successor trained on the same questions.
ADOPTED = {
    "run_id": "adopted",
    "status": "succeeded",
    "created_at": "2026-12-07T09:30:00Z",
    "updated_at": "2026-12-07T09:41:12Z",
    "config_key": "configs/adopt-faq.json",
    "fine_tuned_model": OLD_MODEL,
    "adopted": True,
    "model_shutdown": "shuts down on 2027-01-14 (38 days)",
    "config": {"provider": "openai", "fine_tune": {"model": "gpt-4o-mini-2024-07-18"}, "adopt": {"model": OLD_MODEL}},
    "counts": {"rows_read": 50, "rows_kept": 48, "rows_dropped": 2, "dropped_reasons": {"empty_column": 2}},
    "files": {"train": None, "questions": {"key": "datasets/adopted/questions.jsonl", "bytes": 9120, "examples": 40}},
    "base_model_shutdown_date": "2027-01-14",
    "evaluation_status": "succeeded",
}
EXPIRING = {
    "run_id": "expiring",
    "status": "succeeded",
    "created_at": "2026-12-08T10:00:00Z",
    "updated_at": "2026-12-08T11:00:00Z",
    "config_key": "configs/faq.json",
    "fine_tuned_model": NEW_MODEL,
    "model_shutdown": "shuts down on 2027-06-30 (204 days)",
    "job_id": "ftjob-1",
}
# A run that failed before its job started, and one that failed later: what `runs --status failed` finds.
FLOPPED = {
    "run_id": "flopped",
    "status": "failed",
    "created_at": "2026-12-09T08:00:00Z",
    "updated_at": "2026-12-09T08:01:00Z",
    "status_changed_at": "2026-12-09T08:01:00Z",
    "config_key": "configs/wrong-columns.json",
    "error": {"code": "dataset_error", "message": "dataset has no column(s) question"},
}
FAILED_LATER = {
    **FLOPPED,
    "run_id": "failed-later",
    "created_at": "2026-12-01T08:00:00Z",
    "config_key": "configs/faq-v0.json",
    "job_id": "ftjob-0",
    "error": {"code": "job_failed", "message": "The job failed"},
}
RUN_PAGES = {  # GET /runs?limit=100[&cursor=...]: the newest first, two pages
    "/v1/runs?limit=100": {"runs": [FLOPPED, ADOPTED], "next_cursor": "page-2"},
    "/v1/runs?limit=100&cursor=page-2": {"runs": [EXPIRING, FAILED_LATER], "next_cursor": None},
}
DELETED: dict[str, Any] = {
    "run_id": "nova",
    "deleted": "custom_model_deployment",
    "deployment_arn": "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/abc",
    "already_gone": False,
    "message": "Run nova's on-demand deployment arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/abc "
    "was deleted; the run no longer has a model to ask.",
}
# POST /runs/{id}/cancel's 409s (code not_cancellable), as shared.pipeline.ask words them
NOT_CANCELLABLE = {
    "stopped": ("Run stopped has already been cancelled; there is nothing to cancel.", "cancelled"),
    "expiring": ("Run expiring has already succeeded; there is nothing to cancel.", "succeeded"),
    "waiting": ("Run waiting is prepared and has no fine-tuning job yet; nothing to cancel.", "prepared"),
}
SUCCESSOR_EVALUATION = {
    "run_id": "successor",
    "status": "succeeded",
    "questions": 40,
    "arms": [
        {**ARMS[0], "model": NEW_MODEL, "model_shutdown": "shuts down on 2027-06-30 (204 days)"},
        {
            **ARMS[0],
            "name": "adopted",
            "model": OLD_MODEL,
            "accuracy": 27 / 38,
            "ci95": [0.55, 0.83],
            "questions": 38,
            "recorded": {"recorded_at": "2026-12-07T10:41:12+01:00", "questions": 40},
            "model_shutdown": "shut down on 2027-01-14",
        },
    ],
}


class FakeApi(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, str | None, Any]] = []
        self.evaluation: dict[str, Any] = {"status": "succeeded", "questions": 40, "arms": ARMS, "report_keys": []}
        self.polls_until_done = 0
        self.polls_until_drawn = 3
        self.failures_left = 1
        self.busy_posts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/v1/runs?limit=20":
            page = {"runs": [ADOPTED, EXPIRING], "next_cursor": None}
            return 200, RunPage.model_validate(page).model_dump(mode="json")
        if path in RUN_PAGES:
            return 200, RunPage.model_validate(RUN_PAGES[path]).model_dump(mode="json")
        if method == "DELETE" and path == "/v1/runs/nova/model":
            return 200, DeletedModelResponse.model_validate(DELETED).model_dump(mode="json")
        if method == "DELETE" and path == "/v1/runs/expiring/model":
            message = "Run expiring is succeeded and has no model deployment to delete."
            return 409, RunConflictBody(message=message, code="no_deployment", status="succeeded").model_dump()
        if method == "POST" and path.endswith("/cancel") and path.split("/")[3] in NOT_CANCELLABLE:
            message, status = NOT_CANCELLABLE[path.split("/")[3]]
            return 409, RunConflictBody(message=message, code="not_cancellable", status=status).model_dump()
        if path == "/v1/runs/flopped":
            return 200, RunDetail.model_validate(FLOPPED).model_dump(mode="json")
        if path == "/v1/runs/flopped/evaluation":
            return 200, {**self.evaluation, "run_id": "flopped", "status": "pending", "questions": 0, "arms": []}
        if path == "/v1/runs/stopped":  # cancelled 10 s ago, its curve not drawn (yet)
            ended = _ago(seconds=10)
            return 200, {"run_id": "stopped", "status": "cancelled", "job_id": "ftjob-2", "status_changed_at": ended}
        if path == "/v1/runs/long-stopped":  # cancelled a week ago and never drawn (an older deployment's run)
            ended = _ago(days=7)
            return 200, {
                "run_id": "long-stopped",
                "status": "cancelled",
                "job_id": "ftjob-4",
                "status_changed_at": ended,
            }
        if path == "/v1/runs/deploying":  # a Bedrock run: the curve is drawn once the model is ready
            return 200, {"run_id": "deploying", "status": "deploying", "job_id": "arn:job", "status_changed_at": _ago()}
        if path in {"/v1/runs/adopted", "/v1/runs/expiring"}:
            detail = ADOPTED if path.endswith("adopted") else EXPIRING
            return 200, RunDetail.model_validate(detail).model_dump(mode="json")
        if path == "/v1/runs/successor/evaluation":
            return 200, EvaluationResponse.model_validate(SUCCESSOR_EVALUATION).model_dump(mode="json")
        if path == "/v1/runs/curved":
            return 200, {
                "run_id": "curved",
                "status": "succeeded",
                "report_urls": {"loss_png": f"{self.url}/signed/loss.png"},
            }
        if path == "/v1/runs/drawing":  # the job has just ended: its curve is drawn by the third look
            self.polls_until_drawn -= 1
            urls = {} if self.polls_until_drawn > 0 else {"loss_png": f"{self.url}/signed/loss.png"}
            return 200, {
                "run_id": "drawing",
                "status": "succeeded",
                "job_id": "ftjob-3",
                "status_changed_at": _ago(seconds=1),
                "report_urls": urls,
            }
        if path == "/v1/runs/early":
            return 200, {"run_id": "early", "status": "running", "report_urls": {}}
        if path == "/v1/runs/flaky":
            if self.failures_left:
                self.failures_left -= 1
                return 503, {"message": "Service Unavailable", "code": "openai_unavailable"}
            return 200, {"run_id": "flaky", "status": "queued"}
        if path == "/v1/runs/throttled":
            return 429, {"message": "Too Many Requests"}
        if path == "/v1/runs/split-less/evaluation":
            return 409, {"error": {"code": "no_questions", "message": "Run split-less has no held-out questions."}}
        if path == "/v1/runs/training/evaluation":
            return 200, {**self.evaluation, "status": "pending", "arms": []}
        if path == "/v1/runs/training":
            return 200, {"run_id": "training", "status": "running"}
        if path == "/v1/runs/just-done/evaluation":
            self.polls_until_done += 1
            return 200, self.evaluation if self.polls_until_done > 2 else {**self.evaluation, "status": "pending"}
        if path == "/v1/runs/just-done":
            return 200, {"run_id": "just-done", "status": "succeeded"}
        if path == "/v1/runs/broken/evaluation":
            return 200, {
                "status": "failed",
                "questions": 0,
                "arms": [],
                "error": {"code": "evaluation_failed", "message": "OpenAI refused the request"},
            }
        if path == "/v1/runs/busy/evaluation" and method == "POST":
            self.busy_posts += 1
            if self.busy_posts <= 2:  # the evaluation the run's tracking started is still running
                message = "Run busy is being evaluated already; try again once it has finished."
                return 409, {"message": message, "code": "evaluation_running"}
            return 202, {**self.evaluation, "status": "running", "arms": []}
        if path == "/v1/runs/busy/evaluation":
            return 200, self.evaluation
        if path == "/v1/runs/done/evaluation" and method == "POST":
            self.polls_until_done = 2
            return 202, {**self.evaluation, "status": "running", "arms": []}
        if path == "/v1/runs/done/evaluation":
            if self.polls_until_done:
                self.polls_until_done -= 1
                return 200, {**self.evaluation, "status": "running", "arms": []}
            return 200, self.evaluation
        return 404, {"error": {"code": "run_not_found", "message": f"No run with id {path.split('/')[3]!r}."}}


def _ago(**elapsed: float) -> str:
    return (datetime.now(UTC) - timedelta(**elapsed)).isoformat()


class _Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def _reply(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((method, self.path, self.headers.get("x-api-key"), body))
        if self.path == "/signed/loss.png":
            self._send(200, PNG, "image/png")
            return
        if self.headers.get("x-api-key") != API_KEY:
            self._send(403, json.dumps({"message": "Forbidden"}).encode(), "application/json")
            return
        status, answer = self.server.answer(method, self.path, body)
        self._send(status, json.dumps(answer).encode(), "application/json")

    def _send(self, status: int, content: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(content)))
        if status in {429, 503}:
            self.send_header("retry-after", "0")
        self.end_headers()
        self.wfile.write(content)

    def do_GET(self) -> None:
        self._reply("GET")

    def do_POST(self) -> None:
        self._reply("POST")

    def do_DELETE(self) -> None:
        self._reply("DELETE")

    def log_message(self, *_: Any) -> None:
        """Quiet: the test reads `requests` instead."""


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _env(fake_api: FakeApi) -> dict[str, str]:
    return user_shell(RAGTUNE_API_URL=f"{fake_api.url}/v1", RAGTUNE_API_KEY=API_KEY, RAGTUNE_BUCKET="unused")


def test_eval_prints_one_row_per_arm(fake_api: FakeApi) -> None:
    shown = ragtune("eval", "done", env=_env(fake_api))
    as_json = ragtune("eval", "done", "--json", env=_env(fake_api))

    assert shown.code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "evaluation: succeeded, 40 questions"
    assert lines[2].split() == [
        "tuned",
        "ft:gpt-4o-mini-2024-07-18:org:faq:abc",
        "82.5%",
        "68.0%–91.0%",
        "40",
        "42",
        "22",
        "412",
        "0.0513",
    ]
    assert lines[3].split()[:3] == ["base_with_context", "gpt-4o-mini-2024-07-18", "70.0%"]
    assert as_json.json() == fake_api.evaluation
    assert {(method, path) for method, path, *_ in fake_api.requests} == {("GET", "/v1/runs/done/evaluation")}


def test_eval_compare_starts_an_evaluation_and_waits_for_it(fake_api: FakeApi) -> None:
    result = ragtune(
        "eval",
        "done",
        "--compare",
        "other-a",
        "--compare",
        "other-b",
        "--interval",
        "0.1",
        "--json",
        env=_env(fake_api),
    )

    assert result.code == 0, result.stderr
    assert result.json()["status"] == "succeeded"
    assert fake_api.requests[0] == (
        "POST",
        "/v1/runs/done/evaluation",
        API_KEY,
        {"compare_with": ["other-a", "other-b"]},
    )
    assert [r[:2] for r in fake_api.requests[1:]] == [("GET", "/v1/runs/done/evaluation")] * 3


def test_eval_compare_waits_out_the_evaluation_under_way_then_starts_its_own(fake_api: FakeApi) -> None:
    """The README's migration walkthrough met it: `watch` returns when the run succeeds, while the evaluation its
    tracking started then is still running, and the comparison asked for next was refused (409)."""
    waited = ragtune("eval", "busy", "--compare", "other", "--interval", "0.1", "--json", env=_env(fake_api))
    posts = [request for request in fake_api.requests if request[0] == "POST"]
    fake_api.busy_posts = 0
    refused = ragtune("eval", "busy", "--compare", "other", "--no-wait", env=_env(fake_api))

    assert waited.code == 0, waited.stderr
    assert waited.json()["status"] == "succeeded"
    assert posts == [("POST", "/v1/runs/busy/evaluation", API_KEY, {"compare_with": ["other"]})] * 3
    assert waited.stderr == "run busy is being evaluated already: waiting for that to finish first\n"
    assert (refused.code, refused.stdout) == (2, "")
    assert refused.stderr == "Run busy is being evaluated already; try again once it has finished.\n"


def test_a_pending_evaluation_is_waited_for_only_once_its_run_has_succeeded(fake_api: FakeApi) -> None:
    waited = ragtune("eval", "just-done", "--interval", "0.1", "--json", env=_env(fake_api))
    not_yet = ragtune("eval", "training", env=_env(fake_api))
    never = ragtune("eval", "flopped", "--json", env=_env(fake_api))

    assert waited.code == 0, waited.stderr
    assert waited.json()["status"] == "succeeded"
    assert [path for _, path, *_ in fake_api.requests].count("/v1/runs/just-done/evaluation") == 3
    # no empty table and no exit 0: a sentence saying there is nothing to show yet, and why
    assert (not_yet.code, not_yet.stdout) == (2, "")
    assert not_yet.stderr == (
        "Run training has not finished (it is running): it is evaluated once it has succeeded; "
        "`ragtune watch training` waits for that.\n"
    )
    assert never.code == 2
    assert never.json() == {
        "error": {
            "code": "not_ready",
            "message": "Run flopped ended failed: only a succeeded run is evaluated, so it has no evaluation.",
        }
    }


def test_eval_no_wait_says_the_evaluation_is_under_way_unless_it_was_asked_to_start_one(fake_api: FakeApi) -> None:
    pending = ragtune("eval", "just-done", "--no-wait", env=_env(fake_api))
    started = ragtune("eval", "done", "--compare", "other-a", "--no-wait", env=_env(fake_api))

    assert (pending.code, pending.stdout) == (2, "")
    assert pending.stderr == "The evaluation of run just-done is pending: `ragtune eval just-done` waits for it.\n"
    assert (started.code, started.stderr) == (0, "")
    assert started.stdout == (
        "started the evaluation of run done (running): `ragtune eval done` shows it once it has finished\n"
    )
    assert [r[:2] for r in fake_api.requests] == [
        ("GET", "/v1/runs/just-done/evaluation"),
        ("GET", "/v1/runs/just-done"),
        ("POST", "/v1/runs/done/evaluation"),
    ]


def test_eval_failures_are_sentences(fake_api: FakeApi) -> None:
    split_less = ragtune("eval", "split-less", env=_env(fake_api))
    broken = ragtune("eval", "broken", env=_env(fake_api))
    unknown = ragtune("eval", "nope", env=_env(fake_api))

    assert split_less.code == 2
    assert split_less.stderr.strip() == "Run split-less has no held-out questions."
    assert broken.code == 1
    assert (
        broken.stderr.strip() == "The evaluation of run broken failed: OpenAI refused the request (evaluation_failed)."
    )
    assert unknown.code == 2
    assert unknown.stderr.strip() == "No run with id 'nope'. List the runs with `ragtune runs`."


def test_runs_marks_an_adopted_run_and_when_a_model_shuts_down(fake_api: FakeApi) -> None:
    result = ragtune("runs", env=_env(fake_api))

    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        " run       status     provider  created              config                  "
        "model                                            model shutdown                       error",
        " adopted   succeeded  openai    2026-12-07 09:30:00  configs/adopt-faq.json  "
        f"{OLD_MODEL} (adopted)  shuts down on 2027-01-14 (38 days)",
        " expiring  succeeded  openai    2026-12-08 10:00:00  configs/faq.json        "
        f"{NEW_MODEL}           shuts down on 2027-06-30 (204 days)",
    ]


def test_show_an_adopted_run_names_its_model_and_nothing_it_did_not_train(fake_api: FakeApi) -> None:
    shown = ragtune("show", "adopted", env=_env(fake_api))
    as_json = ragtune("show", "adopted", "--json", env=_env(fake_api))

    assert shown.code == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "run adopted",
        "status           succeeded",
        "provider         openai",
        f"adopted          {OLD_MODEL} (trained elsewhere; nothing trained here)",
        "model            shuts down on 2027-01-14 (38 days)",
        "config           configs/adopt-faq.json",
        "created          2026-12-07T09:30:00Z",
        "updated          2026-12-07T09:41:12Z",
        "rows             50 read, 48 kept, 2 dropped",
        "dropped because  empty_column x2",
    ]
    curve = ragtune("curve", "adopted", env=_env(fake_api))
    assert (curve.code, curve.stderr.strip()) == (
        2,
        "Run adopted adopted a model and trained nothing: it has no loss curve.",
    )
    detail = as_json.json()
    assert detail["files"]["train"] is None
    assert [detail[name] for name in ("job_id", "tokens", "estimate", "trained_tokens")] == [None] * 4
    assert detail["counts"]["train_examples"] is None


def test_show_says_when_a_tuned_model_shuts_down(fake_api: FakeApi) -> None:
    shown = ragtune("show", "expiring", env=_env(fake_api))

    assert shown.code == 0, shown.stderr
    assert shown.stdout.splitlines()[1:4] == [
        "status       succeeded",
        f"tuned model  {NEW_MODEL}",
        "model        shuts down on 2027-06-30 (204 days)",
    ]


def test_eval_notes_a_recorded_arm_and_when_each_model_shuts_down(fake_api: FakeApi) -> None:
    shown = ragtune("eval", "successor", env=_env(fake_api))
    as_json = ragtune("eval", "successor", "--json", env=_env(fake_api))

    assert shown.code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[3].split() == [
        "adopted",
        OLD_MODEL,
        "71.1%",
        "55.0%–83.0%",
        "38",
        "42",
        "22",
        "412",
        "0.0513",
    ]
    assert lines[4:] == [
        "tuned: model shuts down on 2027-06-30 (204 days)",
        "adopted: recorded 2026-12-07 09:41:12 UTC (model gone): answered 38 of 40 questions; "
        "model shut down on 2027-01-14",
    ]
    assert as_json.json() == EvaluationResponse.model_validate(SUCCESSOR_EVALUATION).model_dump(mode="json")


def test_curve_saves_the_png_from_the_presigned_url(fake_api: FakeApi, tmp_path: Path) -> None:
    target = tmp_path / "loss.png"

    saved = ragtune("curve", "curved", "-o", str(target), "--json", env=_env(fake_api))
    early = ragtune("curve", "early", "-o", str(tmp_path / "early.png"), env=_env(fake_api))

    assert saved.code == 0, saved.stderr
    assert target.read_bytes() == PNG
    assert saved.json() == {"run_id": "curved", "path": str(target), "bytes": len(PNG)}
    download = [r for r in fake_api.requests if r[1] == "/signed/loss.png"]
    assert download == [("GET", "/signed/loss.png", None, None)]  # the URL is signed: no API key sent along
    assert early.code == 2
    assert early.stderr.startswith("Run early has no loss curve yet (it is running)")
    assert not (tmp_path / "early.png").exists()


def test_429_and_5xx_are_retried_a_bounded_number_of_times(fake_api: FakeApi) -> None:
    recovered = ragtune("show", "flaky", "--json", env=_env(fake_api))
    throttled = ragtune("show", "throttled", env=_env(fake_api))

    assert recovered.code == 0 and recovered.json() == {"run_id": "flaky", "status": "queued"}
    assert [r[1] for r in fake_api.requests].count("/v1/runs/flaky") == 2
    assert throttled.code == 2
    assert throttled.stderr.strip() == "GET /runs/throttled answered 429: Too Many Requests"
    assert [r[1] for r in fake_api.requests].count("/v1/runs/throttled") == 4


def test_an_unreachable_api_is_a_sentence() -> None:
    result = ragtune(
        "runs", env=user_shell(RAGTUNE_API_URL="http://127.0.0.1:9/v1", RAGTUNE_API_KEY="k", RAGTUNE_BUCKET="b")
    )

    assert result.code == 2
    assert result.stderr.strip() == (
        "Could not reach the API at http://127.0.0.1:9/v1 (ConnectionError): is the deployment up (the local stack: "
        "`make local`) and its URL right?"
    )


def test_curve_waits_for_the_curve_of_a_job_that_has_just_ended(fake_api: FakeApi, tmp_path: Path) -> None:
    saved = ragtune("curve", "drawing", "-o", str(tmp_path / "loss.png"), "--interval", "0.1", env=_env(fake_api))

    assert saved.code == 0, saved.stderr
    assert (tmp_path / "loss.png").read_bytes() == PNG
    assert saved.stderr == "waiting for the loss curve of run drawing, drawn just after its job ended\n"
    assert saved.stdout.startswith(f"saved the loss curve of run drawing to {tmp_path / 'loss.png'} (")
    assert [r[1] for r in fake_api.requests].count("/v1/runs/drawing") == 3


def test_curve_says_whether_a_curve_is_still_to_come(fake_api: FakeApi) -> None:
    early = ragtune("curve", "early", env=_env(fake_api))
    flopped = ragtune("curve", "flopped", env=_env(fake_api))
    deploying = ragtune("curve", "deploying", env=_env(fake_api))
    long_stopped = ragtune("curve", "long-stopped", env=_env(fake_api))
    stopped = ragtune("curve", "stopped", "--no-wait", env=_env(fake_api))
    started = time.monotonic()
    waited = ragtune("curve", "stopped", "--interval", "5", "--timeout", "11", "--json", env=_env(fake_api))
    waited_seconds = time.monotonic() - started

    assert (early.code, early.stderr) == (
        2,
        "Run early has no loss curve yet (it is running): the deployment draws it from the job's metrics once the "
        "job has ended.\n",
    )
    assert (flopped.code, flopped.stderr) == (
        2,
        "Run flopped ended failed before its fine-tuning job started: nothing was trained, so no loss curve.\n",
    )
    assert (deploying.code, deploying.stderr) == (
        2,
        "Run deploying has no loss curve yet (it is deploying): the deployment draws it from the job's metrics once "
        "the model is ready.\n",
    )
    assert (long_stopped.code, long_stopped.stderr) == (
        2,
        "Run long-stopped has no loss curve: none was drawn when its job ended (drawing it failed, or the deployment "
        "is older than the training curves).\n",
    )
    assert (stopped.code, stopped.stderr) == (
        2,
        "Run stopped has no loss curve yet: the deployment draws it from the job's metrics just after the job ends; "
        "try again in a minute.\n",
    )
    # waited until 11 s after the job ended (10 s before the command), not 11 s from the command's start
    assert waited.code == 2 and waited_seconds < 5
    assert waited.json() == {
        "error": {
            "code": "timed_out",
            "message": "Run stopped still has no loss curve 11 s after its job ended: drawing it failed, or the "
            "deployment is older than the training curves and draws none.",
        }
    }
    # only a job that ended moments ago is waited for: every other run was asked once
    for run_id in ("early", "flopped", "deploying", "long-stopped"):
        assert [r[1] for r in fake_api.requests].count(f"/v1/runs/{run_id}") == 1, run_id
    assert [r[1] for r in fake_api.requests].count("/v1/runs/stopped") == 1 + 2


def test_every_run_id_is_checked_before_anything_is_asked(fake_api: FakeApi) -> None:
    typed = "../../etc/passwd"
    refusal = f"'{typed}' is not a run id: run ids are lowercase letters, digits and '-', as `ragtune runs` lists them."
    commands = [
        ("show", typed),
        ("watch", typed),
        ("cancel", typed),
        ("delete-model", typed, "--yes"),
        ("eval", typed),
        ("eval", "done", "--compare", typed),
        ("curve", typed),
        ("ask", "Why?", "--run", typed),
    ]

    shown = [ragtune(*command, env=_env(fake_api)) for command in commands]
    as_json = ragtune("delete-model", typed, "--yes", "--json", env=_env(fake_api))
    capital = ragtune("show", "Sciq-1", env=_env(fake_api))

    for command, result in zip(commands, shown, strict=True):
        assert (result.code, result.stdout, result.stderr) == (2, "", refusal + "\n"), command
    assert (as_json.code, as_json.stderr) == (2, "")
    assert as_json.json() == {"error": {"code": "invalid_run_id", "message": refusal}}
    assert capital.stderr.startswith("'Sciq-1' is not a run id: ")
    assert fake_api.requests == []


def test_json_errors_are_objects_on_stdout_with_the_same_exit_codes(fake_api: FakeApi, tmp_path: Path) -> None:
    unknown = ragtune("show", "nope", "--json", env=_env(fake_api))
    throttled = ragtune("show", "throttled", "--json", env=_env(fake_api))
    broken = ragtune("eval", "broken", "--json", env=_env(fake_api))
    watched = ragtune("watch", "flopped", "--interval", "0.1", "--json", env=_env(fake_api))
    wrong_key = ragtune("runs", "--json", env={**_env(fake_api), "RAGTUNE_API_KEY": "other"})
    nowhere = ragtune("runs", "--json", env=user_shell())
    unreachable = ragtune(
        "runs",
        "--json",
        env=user_shell(RAGTUNE_API_URL="http://127.0.0.1:9/v1", RAGTUNE_API_KEY="k", RAGTUNE_BUCKET="b"),
    )
    config = tmp_path / "typo.json"
    config.write_text(json.dumps({"dataset": {"source": "allenai/sciq"}, "validaton_fraction": 0.1}))
    invalid = ragtune("validate", str(config), "--json", env=user_shell())

    def error(result: Result) -> tuple[int, str, str]:
        assert result.stderr == ""
        [line] = result.stdout.splitlines()  # one document, the error alone
        found = json.loads(line)["error"]
        return result.code, found["code"], found["message"]

    assert error(unknown) == (2, "run_not_found", "No run with id 'nope'. List the runs with `ragtune runs`.")
    assert error(throttled) == (2, "api_error", "GET /runs/throttled answered 429: Too Many Requests")
    assert error(broken) == (
        1,
        "evaluation_failed",
        "The evaluation of run broken failed: OpenAI refused the request (evaluation_failed).",
    )
    assert error(wrong_key)[:2] == (2, "invalid_api_key")
    assert error(nowhere)[:2] == (2, "no_deployment")
    assert error(unreachable)[:2] == (2, "api_unreachable")
    assert error(invalid) == (1, "invalid_config", f"{config}: config is invalid: validaton_fraction: unknown key.")
    # watch prints a line per change: the error follows the last one
    *changes, last = watched.json_lines()
    assert watched.code == 1 and watched.stderr == ""
    assert [(c["status"], c["finished"]) for c in changes] == [("failed", True)]
    assert last == {
        "error": {
            "code": "run_failed",
            "message": "Run flopped ended failed: dataset has no column(s) question (dataset_error).",
        }
    }


def test_runs_status_reads_pages_until_it_has_enough_runs_of_that_status(fake_api: FakeApi) -> None:
    every = ragtune("runs", "--status", "failed", "--json", env=_env(fake_api))
    first_requests = [r[:2] for r in fake_api.requests]
    newest = ragtune("runs", "--status", "FAILED", "--limit", "1", env=_env(fake_api))
    none = ragtune("runs", "--status", "cancelled", "--status", "paused", env=_env(fake_api))

    assert every.code == 0, every.stderr
    assert [run["run_id"] for run in every.json()["runs"]] == ["flopped", "failed-later"]
    assert every.json()["more"] is False
    assert first_requests == [("GET", "/v1/runs?limit=100"), ("GET", "/v1/runs?limit=100&cursor=page-2")]
    assert newest.code == 0, newest.stderr
    assert [line.split()[:2] for line in newest.stdout.splitlines()] == [
        ["run", "status"],
        ["flopped", "failed"],
        ["(more", "runs"],
    ]
    assert newest.stdout.splitlines()[-1] == "(more runs with status failed exist; --limit shows up to 100)"
    assert (none.code, none.stdout) == (0, "no runs with status cancelled or paused\n")


def _read_down(lines: list[str], text: str) -> bool:
    """Whether `text` is whole in one column: its pieces at one offset on consecutive lines (a folded cell)."""
    for row, line in enumerate(lines):
        start = line.find(text[:6])
        while start != -1:
            rest, below = text, row
            while rest and below < len(lines):
                piece = lines[below][start:].split(" ", 1)[0]
                if not piece or not rest.startswith(piece):
                    break
                rest, below = rest[len(piece) :], below + 1
            if not rest:
                return True
            start = line.find(text[:6], start + 1)
    return False


def test_runs_and_eval_in_a_narrow_terminal_fold_ids_instead_of_cutting_them(fake_api: FakeApi) -> None:
    shown = ragtune_in_a_terminal("runs", env=_env(fake_api), columns=80)
    evaluated = ragtune_in_a_terminal("eval", "successor", env=_env(fake_api), columns=80)

    assert shown.code == 0, shown.stdout
    lines = shown.stdout.splitlines()
    assert "…" not in shown.stdout
    assert max(len(line.rstrip()) for line in lines) <= 80
    for whole in ("adopted", "expiring", "configs/adopt-faq.json", "configs/faq.json", OLD_MODEL, NEW_MODEL):
        assert _read_down(lines, whole), f"{whole} not whole in:\n{shown.stdout}"
    assert lines[2].split()[1:4] == ["succeeded", "openai", "2026-12-07"]
    assert evaluated.code == 0, evaluated.stdout
    assert "…" not in evaluated.stdout
    for whole in (OLD_MODEL, NEW_MODEL):
        assert _read_down(evaluated.stdout.splitlines(), whole), f"{whole} not whole in:\n{evaluated.stdout}"


def test_cancel_of_a_finished_run_says_so_in_words_of_its_status(fake_api: FakeApi) -> None:
    stopped = ragtune("cancel", "stopped", env=_env(fake_api))
    succeeded = ragtune("cancel", "expiring", "--json", env=_env(fake_api))
    waiting = ragtune("cancel", "waiting", env=_env(fake_api))

    assert (stopped.code, stopped.stderr) == (2, "Run stopped is already cancelled: there is nothing to cancel.\n")
    assert succeeded.code == 2
    assert succeeded.json()["error"] == {
        "code": "not_cancellable",
        "message": "Run expiring has already succeeded: there is nothing to cancel.",
    }
    assert (waiting.code, waiting.stderr) == (
        2,
        "Run waiting is prepared and has no fine-tuning job yet; nothing to cancel.\n",
    )


def test_delete_model_deletes_a_bedrock_runs_deployment_once_confirmed(fake_api: FakeApi) -> None:
    unconfirmed = ragtune("delete-model", "nova", env=_env(fake_api))
    asked_nothing = list(fake_api.requests)
    deleted = ragtune("delete-model", "nova", "--yes", env=_env(fake_api))
    as_json = ragtune("delete-model", "nova", "-y", "--json", env=_env(fake_api))
    no_deployment = ragtune("delete-model", "expiring", "--yes", env=_env(fake_api))

    assert (unconfirmed.code, unconfirmed.stdout) == (2, "")
    assert unconfirmed.stderr == (
        "Deleting the model deployment of run nova cannot be undone: pass --yes to delete it.\n"
    )
    assert asked_nothing == []
    assert (deleted.code, deleted.stdout, deleted.stderr) == (0, DELETED["message"] + "\n", "")
    assert as_json.json() == DELETED
    assert [r for r in fake_api.requests if r[0] == "DELETE"] == [
        ("DELETE", "/v1/runs/nova/model", API_KEY, None),
        ("DELETE", "/v1/runs/nova/model", API_KEY, None),
        ("DELETE", "/v1/runs/expiring/model", API_KEY, None),
    ]
    assert (no_deployment.code, no_deployment.stderr) == (
        2,
        "Run expiring has no model deployment to delete (status succeeded): only a run whose model a deployment or "
        "an import serves has one, until it is deleted.\n",
    )
