"""What `ragtune watch` makes of successive GET /runs/{id} bodies (no subprocess: the tracker alone)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ragtune_cli.progress import ProgressTracker

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
