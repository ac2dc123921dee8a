"""What `ragtune watch` shows of a run: status, steps done of the total, losses, elapsed and estimated finish.

The API gives the run's status, its latest checkpoint's metrics (one per epoch) and the job's
recent events. OpenAI's step events read `Step 40/93: training loss=0.512, validation loss=0.601`:
they are the only place the total number of steps appears, so steps and the freshest losses are
read from them, falling back on the checkpoint's metrics. Bedrock reports neither: its runs show
their status and times only.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

STEP_EVENT = re.compile(r"\bStep (?P<step>\d+)/(?P<total>\d+)\b")
TRAINING_LOSS = re.compile(r"\btrain(?:ing)? loss=(?P<value>[0-9.eE+-]+)")
VALIDATION_LOSS = re.compile(r"\b(?:validation|valid) loss=(?P<value>[0-9.eE+-]+)")
FINISHED = frozenset({"succeeded", "failed", "cancelled", "tracking_failed"})


@dataclass(frozen=True)
class Snapshot:
    run_id: str
    status: str
    step: int | None
    total_steps: int | None
    train_loss: float | None
    valid_loss: float | None
    elapsed_seconds: float
    estimated_finish: str | None
    fine_tuned_model: str | None
    error: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "elapsed_seconds": round(self.elapsed_seconds, 1), "finished": self.finished}

    def key(self) -> tuple[Any, ...]:
        """What must change for a new line to be worth printing."""
        return (self.status, self.step, self.train_loss, self.valid_loss, self.estimated_finish)


def api_time(text: Any) -> datetime | None:
    """An API timestamp (ISO 8601, `Z` or an offset; UTC when it has none), None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(pattern: re.Pattern[str], text: str) -> float | None:
    found = pattern.search(text)
    return float(found["value"].rstrip(",.")) if found else None


class ProgressTracker:
    """Turns successive GET /runs/{id} bodies into snapshots, estimating the finish from the step rate
    when the API gives no `estimated_finish`."""

    def __init__(self) -> None:
        self._first_step: tuple[datetime, int] | None = None

    def snapshot(self, run: dict[str, Any], now: datetime) -> Snapshot:
        step, total, train_loss, valid_loss = self._steps_and_losses(run)
        created = api_time(run.get("created_at")) or now
        # A finished run ended when it reached its final status: after training, a Bedrock run still deploys.
        finished = run.get("status") in FINISHED
        ended = api_time(run.get("status_changed_at")) or api_time(run.get("finished_at"))
        finished_at = ended if finished else None
        return Snapshot(
            run_id=str(run.get("run_id")),
            status=str(run.get("status")),
            step=step,
            total_steps=total,
            train_loss=train_loss,
            valid_loss=valid_loss,
            elapsed_seconds=max(0.0, ((finished_at or now) - created).total_seconds()),
            estimated_finish=self._estimated_finish(run, step, total, now),
            fine_tuned_model=run.get("fine_tuned_model"),
            error=run.get("error"),
        )

    @staticmethod
    def _steps_and_losses(run: dict[str, Any]) -> tuple[int | None, int | None, float | None, float | None]:
        metrics = run.get("metrics") or {}
        step = int(metrics["step"]) if isinstance(metrics.get("step"), int | float) else None
        total = None
        train_loss, valid_loss = metrics.get("train_loss"), metrics.get("valid_loss")
        for event in reversed(run.get("events") or []):
            found = STEP_EVENT.search(str(event.get("message", "")))
            if found:
                message = str(event["message"])
                step, total = int(found["step"]), int(found["total"])
                train_loss = _number(TRAINING_LOSS, message) if TRAINING_LOSS.search(message) else train_loss
                valid_loss = _number(VALIDATION_LOSS, message) if VALIDATION_LOSS.search(message) else valid_loss
                break
        if run.get("status") == "succeeded" and total is not None:
            step = total
        return step, total, train_loss, valid_loss

    def _estimated_finish(self, run: dict[str, Any], step: int | None, total: int | None, now: datetime) -> str | None:
        if run.get("status") in FINISHED:
            return None
        if run.get("estimated_finish"):
            return str(run["estimated_finish"])
        if step is None or total is None:
            return None
        if self._first_step is None:
            self._first_step = (now, step)
            return None
        since, first = self._first_step
        if step <= first:
            return None
        seconds_per_step = (now - since).total_seconds() / (step - first)
        remaining = seconds_per_step * (total - step)
        return datetime.fromtimestamp(now.timestamp() + remaining, tz=UTC).isoformat(timespec="seconds")
