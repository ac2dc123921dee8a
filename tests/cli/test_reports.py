"""`ragtune eval` and `ragtune curve`, and the client's retries, against a small fake of the API.

The fake answers as issue #10's contract says GET/POST /runs/{id}/evaluation and GET /runs/{id}'s
`report_urls` will; the local stack does not serve them yet. The adopted run, the run whose model shuts
down and the evaluation with a recorded arm go through the API's own response models, as the API serves them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.api_models import EvaluationResponse, RunDetail, RunPage

from .conftest import ragtune, user_shell

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
        self.failures_left = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/v1/runs?limit=20":
            page = {"runs": [ADOPTED, EXPIRING], "next_cursor": None}
            return 200, RunPage.model_validate(page).model_dump(mode="json")
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
        if path == "/v1/runs/done/evaluation" and method == "POST":
            self.polls_until_done = 2
            return 202, {**self.evaluation, "status": "running", "arms": []}
        if path == "/v1/runs/done/evaluation":
            if self.polls_until_done:
                self.polls_until_done -= 1
                return 200, {**self.evaluation, "status": "running", "arms": []}
            return 200, self.evaluation
        return 404, {"error": {"code": "run_not_found", "message": f"No run with id {path.split('/')[3]!r}."}}


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


def test_a_pending_evaluation_is_waited_for_only_once_its_run_has_succeeded(fake_api: FakeApi) -> None:
    waited = ragtune("eval", "just-done", "--interval", "0.1", "--json", env=_env(fake_api))
    not_yet = ragtune("eval", "training", env=_env(fake_api))

    assert waited.code == 0, waited.stderr
    assert waited.json()["status"] == "succeeded"
    assert [path for _, path, *_ in fake_api.requests].count("/v1/runs/just-done/evaluation") == 3
    assert not_yet.code == 0
    assert not_yet.stdout.splitlines()[0] == "evaluation: pending, 40 questions"
    assert not_yet.stdout.splitlines()[-1] == "not started: the run's tracking evaluates it once the run has succeeded"


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
