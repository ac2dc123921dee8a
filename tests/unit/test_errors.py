"""What a user may read in an error: never the function's own paths."""

from __future__ import annotations

import pytest

from shared.domain.errors import without_internal_paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Couldn't find any data file at /var/task/file:/etc/passwd.",
            "Couldn't find any data file at <internal path>.",
        ),
        ("Unable to find '/tmp/ragtune/run-1/source/dataset.jsonl'", "Unable to find '<internal path>'"),
        ("cache (HF_HOME=/tmp/hf) and ~/.cache/huggingface", "cache (HF_HOME=<internal path>) and <internal path>"),
        (
            "see https://huggingface.co/datasets/allenai/sciq or s3://bucket/data/x.jsonl",
            "see https://huggingface.co/datasets/allenai/sciq or s3://bucket/data/x.jsonl",
        ),
        ("allenai/sciq and 1/2 and and/or", "allenai/sciq and 1/2 and and/or"),
    ],
)
def test_absolute_paths_are_hidden_and_urls_and_ids_kept(text: str, expected: str) -> None:
    assert without_internal_paths(text) == expected


def test_known_local_files_get_the_name_the_user_knows() -> None:
    text = "JSON parse error in /tmp/ragtune/run-1/source/dataset.jsonl at row 3 (in /tmp/ragtune/run-1)"
    known = {"/tmp/ragtune/run-1/source/dataset.jsonl": "s3://bucket/data/my qa.jsonl"}

    assert without_internal_paths(text, known) == (
        "JSON parse error in s3://bucket/data/my qa.jsonl at row 3 (in <internal path>)"
    )
