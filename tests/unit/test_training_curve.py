"""Training curves: both providers' metrics files parsed into one shape, metrics.csv and loss.png written."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import pytest
from PIL import Image

from shared.domain.run_record import Run
from shared.domain.training_curve import (
    StepMetric,
    loss_png,
    merge_steps,
    metrics_csv,
)
from shared.pipeline.reports import curve_title
from shared.providers.bedrock.metrics import parse_bedrock_metrics
from shared.providers.openai.metrics import parse_openai_step_metrics

# As OpenAI writes it, plus what must be tolerated: an extra column, blank cells, -1 and NaN for "none",
# a row without a step, Windows line ends.
OPENAI_CSV = (
    b"step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy,full_valid_loss\r\n"
    b"1,2.5,0.41,2.7,0.38,2.71\r\n"
    b"2,1.25,0.5,,,\r\n"
    b"3,0.75,0.625,-1,NaN,\r\n"
    b",9,9,9,9,9\r\n"
    b"4.0,0.5,0.75,0.875,0.7,0.9\r\n"
)
OPENAI_ROWS = [
    StepMetric(1, train_loss=2.5, valid_loss=2.7, train_accuracy=0.41, valid_accuracy=0.38),
    StepMetric(2, train_loss=1.25, train_accuracy=0.5),
    StepMetric(3, train_loss=0.75, train_accuracy=0.625),
    StepMetric(4, train_loss=0.5, valid_loss=0.875, train_accuracy=0.75, valid_accuracy=0.7),
]
BEDROCK_TRAINING = (
    b"step_number,epoch_number,training_loss,perplexity\n"
    b"0,0,2.25,9.4877\n"
    b"3,0,1.5,4.4817\n"
    b"6,1,1.0,2.7183\n"
    b"9,1,0.5,1.6487\n"
)
BEDROCK_VALIDATION = b"step_number,epoch_number,validation_loss,perplexity\n0,0,1.75,5.7546\n5,1,0.625,1.8682\n"


def test_openais_step_metrics_csv_is_read_with_unknowns_left_empty() -> None:
    assert parse_openai_step_metrics(OPENAI_CSV) == OPENAI_ROWS


@pytest.mark.parametrize("wrap", [None, 76], ids=["one line", "wrapped at 76"])
def test_base64_encoded_step_metrics_read_the_same_as_plain_csv(wrap: int | None) -> None:
    encoded = base64.b64encode(OPENAI_CSV)
    if wrap:
        encoded = b"\n".join(encoded[i : i + wrap] for i in range(0, len(encoded), wrap)) + b"\n"

    assert parse_openai_step_metrics(encoded) == OPENAI_ROWS


def test_an_empty_or_unreadable_result_file_has_no_steps() -> None:
    assert parse_openai_step_metrics(b"") == []
    assert parse_openai_step_metrics(b"step,train_loss\n") == []
    assert parse_openai_step_metrics(b"not csv and not base64!") == []


def test_bedrocks_validation_loss_is_merged_into_the_training_steps_by_step_number() -> None:
    assert parse_bedrock_metrics(BEDROCK_TRAINING, BEDROCK_VALIDATION) == [
        StepMetric(0, train_loss=2.25, valid_loss=1.75),
        StepMetric(3, train_loss=1.5),
        StepMetric(5, valid_loss=0.625),
        StepMetric(6, train_loss=1.0),
        StepMetric(9, train_loss=0.5),
    ]


def test_a_bedrock_job_without_validation_has_training_loss_only() -> None:
    rows = parse_bedrock_metrics(BEDROCK_TRAINING)

    assert [(row.step, row.train_loss) for row in rows] == [(0, 2.25), (3, 1.5), (6, 1.0), (9, 0.5)]
    assert all(row.valid_loss is None and row.train_accuracy is None for row in rows)


def test_a_later_value_for_a_step_replaces_an_earlier_one_and_blanks_replace_nothing() -> None:
    merged = merge_steps([StepMetric(2, train_loss=1.0), StepMetric(1, valid_loss=3.0)], [StepMetric(2, 0.5)])

    assert merged == [StepMetric(1, valid_loss=3.0), StepMetric(2, train_loss=0.5)]


def test_metrics_csv_has_one_line_per_step_in_our_column_order() -> None:
    assert metrics_csv(OPENAI_ROWS) == (
        b"step,train_loss,valid_loss,train_accuracy,valid_accuracy\n"
        b"1,2.5,2.7,0.41,0.38\n"
        b"2,1.25,,0.5,\n"
        b"3,0.75,,0.625,\n"
        b"4,0.5,0.875,0.75,0.7\n"
    )
    assert metrics_csv([]) == b"step,train_loss,valid_loss,train_accuracy,valid_accuracy\n"


def png_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return image.size


def test_the_loss_curve_is_a_png_of_at_least_800_by_500() -> None:
    with_validation = loss_png(parse_bedrock_metrics(BEDROCK_TRAINING, BEDROCK_VALIDATION), "run-1 | nova | 2")
    training_only = loss_png(parse_bedrock_metrics(BEDROCK_TRAINING), "run-1 | nova | 2")
    no_metrics = loss_png([], "run-1 | nova | 2")

    for png in (with_validation, training_only, no_metrics):
        width, height = png_size(png)
        assert width >= 800 and height >= 500
    assert len({with_validation, training_only, no_metrics}) == 3  # each draws what it was given
    assert loss_png(OPENAI_ROWS, "t") == loss_png(OPENAI_ROWS, "t")  # same rows, same bytes: republishing is stable


def test_importing_the_module_leaves_matplotlib_unloaded() -> None:
    """The gateways import the parsers; only the function that draws should pay for matplotlib."""
    probe = "import sys, shared.domain.training_curve; print('matplotlib' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)

    assert loaded.stdout.strip() == "False"


def test_the_curves_title_names_the_run_its_base_model_and_its_epochs() -> None:
    run = Run.model_validate(
        {
            "run_id": "sciq-1a2b",
            "status": "succeeded",
            "created_at": "2026-11-28T00:00:00+00:00",
            "updated_at": "2026-11-28T00:00:00+00:00",
            "config": {"fine_tune": {"model": "amazon.nova-micro-v1:0:128k", "hyperparameters": {"n_epochs": 3}}},
        }
    )

    assert curve_title(run) == "sciq-1a2b | amazon.nova-micro-v1:0:128k | epochs: 3"
    assert curve_title(run.model_copy(update={"config": {"fine_tune": {"model": "gpt-4o-mini"}}})).endswith(
        "gpt-4o-mini | epochs: auto"
    )
