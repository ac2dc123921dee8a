"""Bedrock's training metrics: the job's output CSVs (training and validation loss) in the common shape of a curve."""

from __future__ import annotations

from shared.domain.training_curve import StepMetric, csv_rows, merge_steps, metric_value, step_number


def _bedrock_losses(content: bytes, loss_column: str, field_name: str) -> list[StepMetric]:
    parsed = []
    for row in csv_rows(content):
        step = step_number(row.get("step_number"))
        if step is not None:
            parsed.append(StepMetric(step, **{field_name: metric_value(row.get(loss_column))}))
    return parsed


def parse_bedrock_metrics(training: bytes, validation: bytes | None = None) -> list[StepMetric]:
    """Bedrock's step_wise_training_metrics.csv (`step_number,epoch_number,training_loss,perplexity`) and,
    when the job had a validation set, validation_metrics.csv (`validation_loss`), merged by step."""
    train = _bedrock_losses(training, "training_loss", "train_loss")
    valid = _bedrock_losses(validation, "validation_loss", "valid_loss") if validation is not None else []
    return merge_steps(train, valid)
