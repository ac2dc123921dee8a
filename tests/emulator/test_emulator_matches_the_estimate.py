"""The emulator trains what the data gate estimates: same `auto` epochs rule, same token counting.

A run records `estimate.epochs` and `estimate.trained_tokens` (billed tokens x epochs); the job then
reports `hyperparameters.n_epochs` and `trained_tokens`. With the emulator they must agree, or the demo
says "estimated 3 epochs" and then "trained 4".
"""

from __future__ import annotations

import pytest
from openai import OpenAI

from local.openai_emulator.finetune import auto_n_epochs
from shared.domain.data_gate import auto_epochs, estimate_training, inspect_jsonl

from .conftest import training_jsonl, upload_training


def test_the_auto_epochs_rule_is_the_cookbooks_floor_rule_for_every_size() -> None:
    assert [n for n in range(1, 30_001) if auto_n_epochs(n) != auto_epochs(n)] == []
    assert auto_n_epochs(31) == 3  # 93 examples seen < 100, but 100 // 31 is still 3


@pytest.mark.parametrize("n_examples", [10, 31, 34, 120])
def test_a_jobs_epochs_and_trained_tokens_are_the_runs_estimate(client: OpenAI, n_examples: int) -> None:
    data = training_jsonl(n_examples)
    estimate = estimate_training(inspect_jsonl(data.splitlines()), "auto", 3.0)

    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload_training(client, data))
    job = client.fine_tuning.jobs.retrieve(job.id)

    assert job.status == "succeeded"
    assert job.hyperparameters.n_epochs == estimate.epochs
    assert job.trained_tokens == estimate.trained_tokens
