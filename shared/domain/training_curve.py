"""A fine-tuning job's loss per step, in one shape whichever provider trained it (each provider's package
parses its own metrics files with the helpers here), written out as `metrics.csv` and drawn as `loss.png`.

No AWS or OpenAI calls here: the gateways fetch the files, `shared.pipeline.reports` publishes the result.
matplotlib is imported only where a picture is drawn, so the gateways that import this module to
parse stay light.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

# metrics.csv's columns, in this order.
CSV_COLUMNS = ("step", "train_loss", "valid_loss", "train_accuracy", "valid_accuracy")
PNG_SIZE_INCHES, PNG_DPI = (10.0, 6.0), 100  # 1000 x 600 pixels
NO_METRICS_TEXT = "No step metrics reported for this job"


class StepMetric(NamedTuple):
    """What is known of one training step; None where the provider reported nothing."""

    step: int
    train_loss: float | None = None
    valid_loss: float | None = None
    train_accuracy: float | None = None
    valid_accuracy: float | None = None


def csv_text(content: bytes) -> str:
    """The CSV text of a downloaded metrics file. OpenAI may serve a result file base64-encoded: a first
    line without a comma cannot be CSV (base64 has no comma), so it is decoded; what decodes to nothing
    sensible is returned as given and parses to no rows."""
    text = content.decode("utf-8-sig", errors="replace").strip()
    if "," in text.split("\n", 1)[0]:
        return text
    try:
        return base64.b64decode("".join(text.split()), validate=True).decode("utf-8-sig").strip()
    except (binascii.Error, UnicodeDecodeError):
        return text


def metric_value(cell: str | None) -> float | None:
    """A loss or an accuracy: blank, not a number, infinite or negative (OpenAI's -1 for "none") is unknown."""
    try:
        value = float(cell) if cell is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def step_number(cell: str | None) -> int | None:
    value = metric_value(cell)
    return int(value) if value is not None else None


def merge_steps(*sources: Iterable[StepMetric]) -> list[StepMetric]:
    """One row per step, in step order; a value given for a step fills it, a later one replaces it."""
    merged: dict[int, StepMetric] = {}
    for source in sources:
        for row in source:
            given = {name: value for name, value in row._asdict().items() if value is not None}
            merged[row.step] = merged.get(row.step, StepMetric(row.step))._replace(**given)
    return [merged[step] for step in sorted(merged)]


def csv_rows(content: bytes) -> list[dict[str, str | None]]:
    return list(csv.DictReader(io.StringIO(csv_text(content))))


def metrics_csv(rows: Sequence[StepMetric]) -> bytes:
    """`step,train_loss,valid_loss,train_accuracy,valid_accuracy`, one line per step, empty where unknown."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = (getattr(row, column) for column in CSV_COLUMNS[1:])
        writer.writerow([row.step, *("" if value is None else repr(value) for value in values)])
    return out.getvalue().encode()


def loss_png(rows: Sequence[StepMetric], title: str) -> bytes:
    """Training and validation loss against step, 1000 x 600 pixels; a job without metrics gets a picture
    that says so, rather than no picture. Drawn on Agg directly (no pyplot): no global state, no display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=PNG_SIZE_INCHES, dpi=PNG_DPI)
    FigureCanvasAgg(figure)  # the figure draws on Agg, whatever backend pyplot may have chosen elsewhere
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    train = [(row.step, row.train_loss) for row in rows if row.train_loss is not None]
    valid = [(row.step, row.valid_loss) for row in rows if row.valid_loss is not None]
    if train:
        axes.plot(*zip(*train, strict=True), label="training loss", linewidth=1.2)
    if valid:
        axes.plot(*zip(*valid, strict=True), label="validation loss", linewidth=1.2, marker="o", markersize=3)
    if train or valid:
        axes.legend()
        axes.grid(alpha=0.3)
    else:
        axes.set_xticks([])
        axes.set_yticks([])
        axes.text(0.5, 0.5, NO_METRICS_TEXT, ha="center", va="center", transform=axes.transAxes, fontsize=14)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
