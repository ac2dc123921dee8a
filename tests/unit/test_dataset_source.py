"""The pyarrow reader gives exactly the rows `datasets` gives, and hands `datasets` whatever it reads its own way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import pytest

from shared.domain import dataset_source
from shared.domain.config import DatasetSpec
from shared.domain.errors import DatasetError
from tests.helpers import hub_folder_whose_card_names, sciq_row

BUCKET = "ragtune-data-123456789012-us-east-1"


def rows_via_datasets(path: Path) -> list[dict[str, Any]]:
    builder = dataset_source.FILE_BUILDERS[path.suffix]
    dataset = datasets.load_dataset(builder, data_files={"train": str(path)}, split="train", streaming=True)
    return [dict(row) for row in dataset]


def rows_via_prepare(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the prepare function reads from the object `data/<name>` (its download is this very file)."""

    def download(ref: Any, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(path.read_bytes())

    monkeypatch.setattr(dataset_source, "download", download)
    spec = DatasetSpec(source=f"s3://{BUCKET}/data/{path.name}")
    rows: list[dict[str, Any]] = []
    for batch in dataset_source.stream_batches(spec, path.parent / "scratch", BUCKET):
        names = list(batch)
        rows.extend(
            dict(zip(names, cells, strict=True)) for cells in zip(*(batch[name] for name in names), strict=True)
        )
    return rows


def refuse_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("read with pyarrow alone, `datasets` must not be called")

    monkeypatch.setattr(datasets, "load_dataset_builder", refuse)


TYPED_ROWS = [
    dict(sciq_row(i), year=2000 + i, score=i / 2, verified=i % 2 == 0, hint=None if i == 3 else f"hint {i}")
    for i in range(2500)  # more than two batches
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def test_plain_json_lines_are_read_by_pyarrow_alone_with_the_rows_datasets_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jsonl(tmp_path / "typed.jsonl", TYPED_ROWS)
    expected = rows_via_datasets(path)

    refuse_datasets(monkeypatch)
    assert rows_via_prepare(path, monkeypatch) == expected
    assert expected[3]["hint"] is None and expected[1]["score"] == 0.5 and expected[0]["verified"] is True


def test_plain_parquet_is_read_by_pyarrow_alone_with_the_rows_datasets_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "typed.parquet"
    pd.DataFrame(TYPED_ROWS).to_parquet(path, row_group_size=700)
    expected = rows_via_datasets(path)

    refuse_datasets(monkeypatch)
    assert rows_via_prepare(path, monkeypatch) == expected


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(json.dumps([sciq_row(i) for i in range(5)]), id="json-array"),
        pytest.param("\ufeff" + json.dumps(sciq_row(0)) + "\n" + json.dumps(sciq_row(1)) + "\n", id="bom"),
        pytest.param(
            "".join(json.dumps(dict(sciq_row(i), meta={"text": f"m{i}"})) + "\n" for i in range(5)), id="struct-column"
        ),
        pytest.param(
            "".join(json.dumps(dict(sciq_row(i), tags=[f"t{i}"] * i)) + "\n" for i in range(5)), id="list-column"
        ),
        pytest.param(
            "".join(json.dumps(dict(sciq_row(i), code=i if i % 2 else f"c{i}")) + "\n" for i in range(5)),
            id="mixed-types",
        ),
        pytest.param(
            "".join(json.dumps(dict(sciq_row(i), meta={"a": 1} if i % 2 else {"b": "x"})) + "\n" for i in range(5)),
            id="mixed-structs",
        ),
        pytest.param(
            "".join(json.dumps(dict(sciq_row(i), when="2024-01-0" + str(i + 1))) + "\n" for i in range(5)),
            id="timestamps",
        ),
    ],
)
def test_what_datasets_reads_its_own_way_is_read_by_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    path = tmp_path / "rows.json"
    path.write_text(content, encoding="utf-8")

    assert rows_via_prepare(path, monkeypatch) == rows_via_datasets(path)


def big_rows() -> list[dict[str, Any]]:
    """Over 10 MiB: `datasets` reads the first 10 rows (1 MiB and a little each) as one chunk, the last 4 as another."""
    padding = "x" * (2**20)
    return [dict(sciq_row(i), pad=padding, code=i) for i in range(14)]


def test_a_later_chunk_read_its_own_way_is_read_by_datasets_after_the_rows_already_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = big_rows()
    rows[10:] = [dict(reversed(row.items())) for row in rows[10:]]  # the same columns, in another order
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    expected = rows_via_datasets(path)
    loads: list[str] = []
    load_dataset_builder = datasets.load_dataset_builder

    def counted_load(path: str, **kwargs: Any) -> Any:
        loads.append(path)
        return load_dataset_builder(path, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset_builder", counted_load)

    read = rows_via_prepare(path, monkeypatch)

    assert read == expected
    assert [row["code"] for row in read] == list(range(14))
    assert loads == ["json"]  # once, for the second chunk


def test_a_later_chunk_datasets_cannot_read_fails_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[dict[str, Any]] = big_rows()
    rows[12]["code"] = {"nested": "only in the second chunk"}
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    with pytest.raises(Exception) as by_datasets:
        rows_via_datasets(path)

    with pytest.raises(DatasetError) as by_prepare:
        rows_via_prepare(path, monkeypatch)

    assert str(by_prepare.value).endswith(f"could not be read: {by_datasets.value}")


OWN = "hf://datasets/allenai/sciq@2c94ad3e1aafab77146f384e23536f97a4849815/data/train-00000-of-00001.parquet"


@pytest.mark.parametrize(
    "files",
    [
        [OWN],
        [OWN, "hf://datasets/allenai/sciq@refs%2Fconvert%2Fparquet/default/train/0000.parquet"],  # its parquet export
        [],
    ],
)
def test_a_hub_dataset_may_read_its_own_files_at_any_revision(files: list[str]) -> None:
    dataset_source._only_its_own_files("allenai/sciq", {"train": files})


@pytest.mark.parametrize(
    "outside",
    [
        "/var/task/shared/settings.json",  # an absolute path: `datasets` globs it on the function's disk
        "/tmp/hf/hub/token.json",
        "file:///var/task/x.json",
        "https://example.com/rows.json",
        "hf://datasets/someone/else@abc123/train.json",  # another repository
        "hf://datasets/allenai/sciq-copy@abc123/train.json",  # a name the id is a prefix of
        "hf://datasets/allenai/sciq@abc123/../../someone/else@abc/train.json",  # climbs out of it
        "data/train.json",  # unresolved: never trusted
    ],
)
def test_a_hub_dataset_naming_any_other_file_is_refused(outside: str) -> None:
    with pytest.raises(DatasetError) as refused:
        dataset_source._only_its_own_files("allenai/sciq", {"train": [OWN], "test": [outside]})

    assert str(refused.value) == (
        "dataset 'allenai/sciq' lists data files outside its own Hub repository (its card's data_files or "
        "data_dir); only a dataset's own files are read"
    )
    assert outside not in str(refused.value)


def test_a_hub_card_naming_a_file_of_the_function_is_refused_before_a_row_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real `datasets` resolution of a card whose data_files is an absolute local path (the Hub repository
    is a local folder here, as there is no network), behind the config's Hub id."""
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("AWS_SECRET_ACCESS_KEY=not-a-real-secret,b\n1,2\n", encoding="utf-8")
    repository = hub_folder_whose_card_names(tmp_path / "repository", secret)
    load_dataset_builder = datasets.load_dataset_builder
    asked: list[tuple[str, dict[str, Any]]] = []

    def hub_served_from_the_folder(path: str, **kwargs: Any) -> Any:
        asked.append((path, kwargs))
        return load_dataset_builder(str(repository), **kwargs)

    monkeypatch.setattr(datasets, "load_dataset_builder", hub_served_from_the_folder)
    assert dict(datasets.load_dataset_builder("hf://datasets/owner/name").config.data_files) == {"train": [str(secret)]}

    with pytest.raises(DatasetError) as refused:
        list(dataset_source.stream_batches(DatasetSpec(source="owner/name"), tmp_path / "scratch", BUCKET))

    assert asked[-1] == ("hf://datasets/owner/name", {})
    assert "outside its own Hub repository" in str(refused.value)
    assert "AWS_SECRET_ACCESS_KEY" not in str(refused.value) and str(tmp_path) not in str(refused.value)
