"""`ragtune validate` refuses the numbers prepare refuses: the same sentence, before anything is uploaded."""

from __future__ import annotations

from pathlib import Path

from .conftest import ragtune, user_shell


def test_validate_refuses_numbers_dynamodb_cannot_hold_and_repeated_keys(tmp_path: Path) -> None:
    config = tmp_path / "big.json"
    config.write_bytes(b'{"dataset": {"source": "allenai/sciq"}, "max_examples": ' + b"9" * 45 + b"}")
    repeated = tmp_path / "twice.json"
    repeated.write_bytes(b'{"dataset": {"source": "s3://b/data/x.csv"}, "dataset": {"source": "allenai/sciq"}}')

    big, twice = (
        ragtune("validate", str(config), env=user_shell()),
        ragtune("validate", str(repeated), env=user_shell()),
    )

    assert big.code == 1 and "max_examples must be an integer from 10 to 1,000,000,000" in big.stderr
    assert twice.code == 1 and 'the key "dataset" appears twice in one object' in twice.stderr
