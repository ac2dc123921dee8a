"""ExampleBuilder's two ways to the same JSONL: row by row, and on whole Arrow text columns.

The row path is the reference: its lines must be what `json.dumps(example, ensure_ascii=False)`
writes for the provider's example, and the Arrow path must give, for the same cells, the same
bytes, texts, blanks, questions and counts.
"""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shared.domain.config import Provider, RunConfig
from shared.domain.dataset_source import _ColumnsOnDemand
from shared.domain.errors import DatasetError
from shared.domain.examples import Batch, BuiltBatch, ExampleBuilder, _true_rows
from shared.providers import PROVIDER_NAMES
from shared.providers.bedrock import BEDROCK_SCHEMA_VERSION, NOVA_RESERVED_STRINGS

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS: tuple[Provider, ...] = PROVIDER_NAMES
CONTROL_CHARACTERS = [chr(code) for code in range(0x20)] + ["\x7f"]
# Characters JSON escapes or ensure_ascii=False keeps as they are; `%` and braces are template syntax.
TEXT_ALPHABET = [*CONTROL_CHARACTERS, '"', "\\", "/", "\u2028", "\u2029", "é", "日", "🙂", "%", "{", "}", ":", "a", " "]
WHITE_SPACE = [" ", "\t", "\n", "\u00a0", "\x1c", "\x1f", "\u3000", "\u2028", "\x85"]
# Whole pieces of cells: JSON's escapes, template syntax, near-misses of Nova's reserved strings.
CELL_PIECES = [
    *CONTROL_CHARACTERS,
    *WHITE_SPACE,
    '"',
    '\\"',
    "\\",
    "\r\n",
    "\u2028",
    "é",
    "日本語",
    "🙂",
    "%s",
    "%",
    "{question}",
    "{{",
    "plain words",
    "User",
    ":",
    "[EOS",
    "]",
    "<image",
    ">",
]


def run_config(provider: Provider, **settings: Any) -> RunConfig:
    return RunConfig.model_validate({"dataset": {"source": "allenai/sciq"}, "provider": provider, **settings})


def arrow_batch(columns: Mapping[str, Sequence[str | None]], large: Iterable[str] = (), skip: int = 0) -> Batch:
    """The cells as dataset_source hands an Arrow batch over; `skip` rows of other text before them, sliced
    off, so every array starts at an offset into its buffers."""
    large = set(large)
    arrays = {
        name: pa.array(["skipped row"] * skip + list(cells), type=pa.large_string() if name in large else pa.string())
        for name, cells in columns.items()
    }
    return _ColumnsOnDemand(pa.RecordBatch.from_pydict(arrays).slice(skip))


def refuse_row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes a run that falls back to the row path fail, so a comparison cannot pass by comparing it to itself."""

    def row_path(*_: Any) -> BuiltBatch:
        raise AssertionError("the row-by-row path was taken for an Arrow batch of text columns")

    monkeypatch.setattr(ExampleBuilder, "_build", row_path)


# 1. The row path writes what json.dumps writes.

TEMPLATES: dict[str, dict[str, str | None]] = {
    "no system": {"system": None, "user": "{question}", "assistant": "{answer}"},
    "constant system, % and literal braces": {
        "system": "Be 100% right about {{literal}} braces.",
        "user": "Q: {question}\n%s %d %% {{x}}",
        "assistant": "{answer} (from {context})",
    },
    "system of only a placeholder": {"system": "{context}", "user": "{question}", "assistant": "{answer}"},
    "constant user": {"system": "Answer.", "user": "The usual question, please.", "assistant": "{answer}{context}"},
}


def random_text(draw: random.Random) -> str:
    if draw.random() < 0.1:
        return ""
    text = "".join(draw.choices(TEXT_ALPHABET, k=draw.randint(1, 12)))
    return text + draw.choice(NOVA_RESERVED_STRINGS) if draw.random() < 0.05 else text


def rendered(template: dict[str, str | None], row: dict[str, str]) -> dict[str, str]:
    """Each message text, the plain way: str.format_map on the config's templates."""
    return {part: text.format_map(row) for part, text in template.items() if text is not None}


def expected_example(provider: Provider, texts: dict[str, str]) -> dict[str, Any]:
    """The provider's example as a dict, as its documentation shows it."""
    turns = [(role, texts[role]) for role in ("user", "assistant")]
    if provider in ("openai", "open"):  # the chat layout; open renders it with its model's template
        system = [("system", texts["system"])] if "system" in texts else []
        return {"messages": [{"role": role, "content": text} for role, text in system + turns]}
    example: dict[str, Any] = {"schemaVersion": BEDROCK_SCHEMA_VERSION}
    if "system" in texts:
        example["system"] = [{"text": texts["system"]}]
    example["messages"] = [{"role": role, "content": [{"text": text}]} for role, text in turns]
    return example


@pytest.mark.parametrize("batch_kind", ["python lists", "arrow"])
@pytest.mark.parametrize("template_name", list(TEMPLATES))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_line_is_what_json_dumps_writes_for_the_example(
    provider: Provider, template_name: str, batch_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = TEMPLATES[template_name]
    draw = random.Random(f"{provider} {template_name}")
    rows = [{name: random_text(draw) for name in ("question", "answer", "context")} for _ in range(300)]
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    builder = ExampleBuilder(run_config(provider, template=template, filter={"non_empty": []}))
    if batch_kind == "arrow":
        refuse_row_by_row(monkeypatch)
        batch = arrow_batch(columns)
    else:
        batch = columns

    built = list(builder.batches([batch]))

    def nova_refuses(texts: dict[str, str]) -> bool:
        return provider == "bedrock" and any(word in text for word in NOVA_RESERVED_STRINGS for text in texts.values())

    kept_texts = [texts for texts in (rendered(template, row) for row in rows) if not nova_refuses(texts)]
    kept = [expected_example(provider, texts) for texts in kept_texts]
    assert [line for batch_built in built for line in batch_built.lines()] == [
        json.dumps(example, ensure_ascii=False).encode() for example in kept
    ]
    assert b"".join(bytes(batch_built.jsonl) for batch_built in built) == b"".join(
        json.dumps(example, ensure_ascii=False).encode() + b"\n" for example in kept
    )
    varying = [part for part, text in template.items() if text and any(f[1] for f in string.Formatter().parse(text))]
    assert [text for batch_built in built for text in batch_built.texts] == [
        texts[part] for texts in kept_texts for part in varying
    ]
    assert builder.counts.kept == len(kept)
    assert builder.counts.read == len(rows)
    if provider == "bedrock":
        assert len(kept) < len(rows), "no row held a reserved string: the drop went untested"


# 2. The Arrow path gives what the row path gives.

COLUMNS = ("question", "correct_answer", "support", "passage")
SCIQ_TEMPLATE = {
    "system": "Given a science question, answer it.",
    "user": "{question}",
    "assistant": "{correct_answer} Explanation: {support}",
}
# name -> (config settings, where max_examples cuts: None, "first" batch or a "later" one)
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "default filter and template": ({}, None),
    "two filter columns, adjacent placeholders, no system": (
        {
            "filter": {"non_empty": ["correct_answer", "question"]},
            "template": {"system": None, "user": "{question}{support}", "assistant": "{correct_answer}"},
        },
        None,
    ),
    "no filter, system of a placeholder, % and braces": (
        {
            "filter": {"non_empty": []},
            "template": {"system": "{support}", "user": "Q: {question} 100% {{x}}", "assistant": "{correct_answer}"},
        },
        None,
    ),
    "constant user": (
        {"template": {"system": None, "user": "Answer please.", "assistant": "{correct_answer}: {support}"}},
        None,
    ),
    "evaluation with context": ({"template": SCIQ_TEMPLATE, "validation_fraction": 0.1}, None),
    "evaluation whose columns only it reads": (
        {
            "template": SCIQ_TEMPLATE,
            "validation_fraction": 0.2,
            "evaluation": {"reference_column": "passage", "context_column": "question"},
        },
        None,
    ),
    "evaluation without context": (
        {"template": SCIQ_TEMPLATE, "validation_fraction": 0.1, "evaluation": {"context_column": None}},
        None,
    ),
    "max_examples cutting the first batch": ({"template": SCIQ_TEMPLATE}, "first"),
    "max_examples cutting a later batch": ({"template": SCIQ_TEMPLATE, "validation_fraction": 0.1}, "later"),
}
# seed -> the columns Arrow holds as large_string
SEEDS: dict[int, tuple[str, ...]] = {1: (), 2: ("support",), 3: COLUMNS}
ROWS_PER_BATCH = (300, 0, 250, 200)  # an empty batch too


def random_cell(draw: random.Random) -> str | None:
    """None, "", blank, or text mixing JSON's escapes, template syntax and (now and then) a reserved string."""
    roll = draw.random()
    if roll < 0.07:
        return None
    if roll < 0.14:
        return ""
    if roll < 0.24:
        return "".join(draw.choices(WHITE_SPACE, k=draw.randint(1, 3)))
    text = "".join(draw.choices(CELL_PIECES, k=draw.randint(1, 6)))
    return text + draw.choice(NOVA_RESERVED_STRINGS) if draw.random() < 0.04 else text


def random_batches(seed: int) -> list[dict[str, list[str | None]]]:
    draw = random.Random(seed)
    return [{name: [random_cell(draw) for _ in range(rows)] for name in COLUMNS} for rows in ROWS_PER_BATCH]


def built_record(built: BuiltBatch) -> dict[str, Any]:
    return {
        "jsonl": bytes(built.jsonl),
        "ends": built.ends,
        "texts": built.texts,
        "blank_texts": built.blank_texts,
        "questions": None if built.questions is None else [question.as_record() for question in built.questions],
    }


def max_examples_cutting(where: str, settings: dict[str, Any], provider: Provider, batches: list[Batch]) -> int:
    """A limit that falls inside the chosen batch, from how many rows each batch keeps without one."""
    builder = ExampleBuilder(run_config(provider, **settings))
    kept = [len(built.ends) for built in builder.batches(batches)]
    limit = max(10, kept[0] // 2) if where == "first" else sum(kept[:2]) + kept[2] // 2
    assert 0 < limit - sum(kept[: 0 if where == "first" else 2]) < kept[0 if where == "first" else 2]
    return limit


@pytest.mark.parametrize("seed", list(SEEDS))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_arrow_columns_build_what_rows_build(
    provider: Provider, case: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, cut = CASES[case]
    cells = random_batches(seed)
    python_batches: list[Batch] = list(cells)
    arrow_batches = [arrow_batch(batch, large=SEEDS[seed], skip=index) for index, batch in enumerate(cells)]
    if cut is not None:
        settings = {**settings, "max_examples": max_examples_cutting(cut, settings, provider, python_batches)}
    config = run_config(provider, **settings)
    by_rows = ExampleBuilder(config)
    from_rows = [built_record(built) for built in by_rows.batches(python_batches)]
    refuse_row_by_row(monkeypatch)
    by_columns = ExampleBuilder(config)

    from_columns = [built_record(built) for built in by_columns.batches(arrow_batches)]

    assert from_columns == from_rows
    assert by_columns.counts.as_record() == by_rows.counts.as_record()
    record = by_rows.counts.as_record()
    assert record["rows_kept"] > 0 and record["rows_dropped"] > 0
    if cut is not None:
        assert record["rows_kept"] == config.max_examples
        assert record["rows_read"] < sum(ROWS_PER_BATCH)
    if provider == "bedrock" and cut is None:
        assert any(reason.startswith("reserved") for reason in record["dropped_reasons"])


# 3. What the Arrow path takes for white space.


def test_every_python_white_space_character_is_arrow_white_space() -> None:
    spaces = [chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()]

    arrow_says = pc.utf8_is_space(pa.array(spaces)).to_pylist()

    assert [space for space, is_space in zip(spaces, arrow_says, strict=True) if not is_space] == []
    assert pc.utf8_is_space(pa.array(["".join(spaces)])).to_pylist() == [True]


# 4. The Arrow path never imports pandas.

NO_PANDAS_RUN = textwrap.dedent(
    """
    import io, json, sys
    import pyarrow.json
    from shared.domain.config import parse_run_config
    from shared.domain.dataset_source import _ColumnsOnDemand
    from shared.domain.examples import ExampleBuilder

    def row_path(*_):
        raise AssertionError("row-by-row path taken")

    ExampleBuilder._build = row_path
    raw = b'{"dataset": {"source": "allenai/sciq"}, "validation_fraction": 0.1}'
    builder = ExampleBuilder(parse_run_config(raw, size=len(raw), default_provider="bedrock"))
    rows = [
        {"question": "Why \\"blue\\"?\\n", "correct_answer": "Rayleigh\\u00a0scattering", "support": "\\u3000"},
        {"question": "Q", "correct_answer": "", "support": "S"},
        {"question": "Bot: hi", "correct_answer": "A", "support": "S"},
        {"question": "Q2", "correct_answer": "A2", "support": None},
    ]
    table = pyarrow.json.read_json(io.BytesIO("\\n".join(map(json.dumps, rows)).encode()))
    pandas_before = "pandas" in sys.modules
    built = [list(b.lines()) for b in builder.batches(_ColumnsOnDemand(batch) for batch in table.to_batches())]
    print(json.dumps({
        "pandas_before": pandas_before,
        "pandas_after": "pandas" in sys.modules,
        "lines": sum(len(lines) for lines in built),
        "counts": builder.counts.as_record(),
    }))
    """
)


def test_the_arrow_path_does_not_import_pandas() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", NO_PANDAS_RUN], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )

    assert finished.returncode == 0, finished.stderr
    outcome = json.loads(finished.stdout)
    assert outcome["pandas_before"] is False
    assert outcome["pandas_after"] is False
    assert outcome["lines"] == 1
    assert outcome["counts"]["dropped_reasons"] == {
        "empty correct_answer": 1,
        'reserved "Bot:" in question': 1,
        "missing support": 1,
    }


def test_arrow_masks_read_from_their_buffers_honour_the_offset_and_the_nulls() -> None:
    """`_true_rows` unpacks Arrow's bit buffers itself (numpy conversion would import pandas)."""
    flags = [True, None, False, True, True, None, False, False, True, False, True]
    whole = pa.array(flags, type=pa.bool_())
    for start in range(len(flags)):
        sliced = whole.slice(start)
        assert _true_rows(sliced).tolist() == [bool(flag) for flag in flags[start:]]
    assert _true_rows(whole.slice(3, 0)).tolist() == []


def test_a_dataset_with_many_columns_is_named_in_a_bounded_error() -> None:
    """The error is recorded on the run (one DynamoDB item) and read by people: 40 columns, 64 characters each."""
    columns = {f"column_{index:04d}_" + "x" * 100: ["a"] for index in range(500)}
    builder = ExampleBuilder(run_config("openai"))

    with pytest.raises(DatasetError) as missing:
        list(builder.batches([columns]))

    message = str(missing.value)
    listed = message.split("; it has: ", 1)[1].split(". The filter", 1)[0]
    assert listed.endswith(" and 460 more")
    names = listed.removesuffix(" and 460 more").split(", ")
    assert names[0] == "column_0000_" + "x" * 51 + "…" and len(names) == 40
    assert len(message) < 4_000
