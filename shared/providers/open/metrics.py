"""The training script's metrics.csv (`step,epoch,train_loss,valid_loss`) in the common shape of a curve."""

from __future__ import annotations

from shared.domain.training_curve import StepMetric, csv_rows, merge_steps, metric_value, step_number


def parse_open_metrics(content: bytes) -> list[StepMetric]:
    """One row per logged step; `valid_loss` is empty where validation did not run; a row without a step is skipped."""
    parsed = [
        StepMetric(step, train_loss=metric_value(row.get("train_loss")), valid_loss=metric_value(row.get("valid_loss")))
        for row in csv_rows(content)
        if (step := step_number(row.get("step"))) is not None
    ]
    return merge_steps(parsed)
