"""OpenAI's training metrics: the job's result file (step_metrics.csv) in the common shape of a curve."""

from __future__ import annotations

from shared.domain.training_curve import StepMetric, csv_rows, merge_steps, metric_value, step_number

# OpenAI's step_metrics.csv: each of our fields, from the first of these columns present in the file.
OPENAI_COLUMNS = {
    "train_loss": ("train_loss",),
    "valid_loss": ("valid_loss",),
    "train_accuracy": ("train_accuracy", "train_mean_token_accuracy"),
    "valid_accuracy": ("valid_mean_token_accuracy", "valid_accuracy"),
}


def parse_openai_step_metrics(content: bytes) -> list[StepMetric]:
    """OpenAI's step_metrics.csv (`step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy`,
    plain or base64); other columns are ignored, a row without a step is skipped."""
    parsed = []
    for row in csv_rows(content):
        step = step_number(row.get("step"))
        if step is None:
            continue
        values = {
            name: next((value for column in columns if (value := metric_value(row.get(column))) is not None), None)
            for name, columns in OPENAI_COLUMNS.items()
        }
        parsed.append(StepMetric(step, **values))
    return merge_steps(parsed)
