"""What `ragtune watch` makes of successive GET /runs/{id} bodies, and how it shows them (no subprocess: the
tracker, the line printed to a pipe and the terminal's bar)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from ragtune_cli.main import _LiveBar, _progress_line
from ragtune_cli.progress import ProgressTracker, Snapshot

CREATED = "2026-11-27T10:00:00Z"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def run(status: str, **fields: Any) -> dict[str, Any]:
    return {"run_id": "sciq-000000000000", "status": status, "created_at": CREATED, **fields}


def test_steps_and_losses_come_from_the_newest_step_event_and_the_finish_from_the_step_rate() -> None:
    tracker = ProgressTracker()
    events = [
        {"message": "Step 10/100: training loss=0.900"},
        {"message": "Step 40/100: training loss=0.512, validation loss=0.601"},
        {"message": "Checkpoint created at step 40"},
    ]

    first = tracker.snapshot(run("running", events=events[:1]), at("2026-11-27T10:10:00Z"))
    later = tracker.snapshot(run("running", events=events), at("2026-11-27T10:20:00Z"))

    assert (first.step, first.total_steps, first.train_loss, first.estimated_finish) == (10, 100, 0.9, None)
    assert (later.step, later.total_steps, later.train_loss, later.valid_loss) == (40, 100, 0.512, 0.601)
    # 30 steps in 10 minutes: the 60 left take 20 more
    assert later.estimated_finish == "2026-11-27T10:40:00+00:00"
    assert later.elapsed_seconds == 20 * 60 and not later.finished


def test_a_finished_run_is_timed_to_its_final_status_not_to_the_end_of_training() -> None:
    """A Bedrock run trains, then deploys its model: it succeeds when the deployment is up."""
    deployed = run(
        "succeeded", finished_at="2026-11-27T10:05:00Z", status_changed_at="2026-11-27T10:20:00Z", metrics={}
    )

    snapshot = ProgressTracker().snapshot(deployed, at("2026-11-27T11:00:00Z"))

    assert snapshot.finished and snapshot.elapsed_seconds == 20 * 60
    assert snapshot.estimated_finish is None


def test_a_succeeded_run_shows_every_step_done() -> None:
    done = run("succeeded", events=[{"message": "Step 90/93: training loss=0.1"}], status_changed_at=CREATED)

    snapshot = ProgressTracker().snapshot(done, at("2026-11-27T10:30:00Z"))

    assert (snapshot.step, snapshot.total_steps) == (93, 93)


def _snapshot(status: str, step: int | None = None, total: int | None = None, finish: str | None = None) -> Snapshot:
    return Snapshot(
        run_id="sciq-000000000000",
        status=status,
        step=step,
        total_steps=total,
        train_loss=None,
        valid_loss=None,
        elapsed_seconds=300,
        estimated_finish=finish,
        fine_tuned_model=None,
        error=None,
    )


def test_time_left_is_shown_only_while_the_job_runs_and_before_its_estimate() -> None:
    now = at("2026-11-27T10:05:00Z")

    assert _progress_line(_snapshot("queued", finish="2026-11-27T10:00:00Z"), now) == "queued  elapsed 0:05:00"
    assert _progress_line(_snapshot("queued", finish="2026-11-27T10:15:00Z"), now) == "queued  elapsed 0:05:00"
    assert (
        _progress_line(_snapshot("running", 40, 93, finish="2026-11-27T10:15:00Z"), now)
        == "running  step 40/93  elapsed 0:05:00  ~0:10:00 left"
    )
    assert (
        _progress_line(_snapshot("running", 40, 93, finish="2026-11-27T10:04:00Z"), now)
        == "running  step 40/93  elapsed 0:05:00"
    )
    assert _progress_line(_snapshot("running", 40), now) == "running  step 40  elapsed 0:05:00"


def _bar(snapshot: Snapshot) -> str:
    """What a terminal 80 columns wide shows last of the live bar."""
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None, record=True)
    with _LiveBar(console) as bar:
        bar.show(snapshot, at("2026-11-27T10:05:00Z"))
    return console.export_text()


def test_the_bar_waits_for_a_total_instead_of_filling_up_at_0_of_unknown() -> None:
    queued = _bar(_snapshot("queued"))
    untold = _bar(_snapshot("running", 40))
    counted = _bar(_snapshot("running", 40, 93))

    assert "━" not in queued and "?" not in queued
    assert queued.endswith("queued   elapsed 0:05:00\n")
    assert "━" not in untold and untold.endswith("running   step 40  elapsed 0:05:00\n")
    assert "━" in counted and counted.endswith(" 40/93 elapsed 0:05:00\n")
