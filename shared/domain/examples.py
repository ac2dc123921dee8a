"""Rows to training examples: the config's filter, then its templates, in the provider's format.

OpenAI gets chat-format examples (`{"messages": [{"role", "content"}, ...]}`), Bedrock's Nova
`bedrock-conversation-2024` records (the system prompt in `system`, `user`/`assistant` turns
with `content: [{"text": ...}]`, `system` left out when the template has none). A bedrock row
whose rendered text holds one of Nova's reserved strings (`User:`, `[EOS]`, ...), which would
fail the whole job at Bedrock, is dropped under `reserved "<string>" in <column>`.

Only text reaches a training example. Every column the filter or the templates name must
hold, in a kept row, a string, a number or a boolean (written `3`, `2.5`, `true`); a row is
dropped, and counted under a reason naming the column, when one of them is null (`missing
<column>`), holds a list, a dict or any other structure (`non-text <column>`), or, for a
filter column, is `""` (`empty <column>`).

When the run is evaluated, each kept row also gives its would-be held-out question: the
rendered user text, exactly as in its example, with the cells of the evaluation's reference
and context columns. Those columns never drop a row: the training data stays what the
filter and templates make it.

Two ways lead to the same lines. A batch of Arrow text columns (what the pyarrow reader gives
for plain JSON Lines and Parquet) is filtered, templated and written with Arrow's kernels, a
whole batch at a time; any other batch (numbers, booleans, `datasets`' Python lists) goes row
by row. Both write each line from a pattern built once, byte for byte what
`json.dumps(example, ensure_ascii=False)` writes; tests/unit/test_examples.py holds them equal.
"""

from __future__ import annotations

import itertools
import json
import math
import string
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from json.encoder import ESCAPE_DCT, encode_basestring  # what json.dumps escapes, and how
from typing import TYPE_CHECKING, Any

from shared.domain.config import RunConfig
from shared.domain.data_gate import blank
from shared.domain.errors import DatasetError
from shared.providers import spec
from shared.providers.base import TrainingRecords

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

# Column name -> that column's cells, one per row; a mapping, so a reader may convert only the columns asked for.
Batch = Mapping[str, list[Any]]


@dataclass
class RowCounts:
    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def as_record(self) -> dict[str, Any]:
        return {
            "rows_read": self.read,
            "rows_kept": self.kept,
            "rows_dropped": sum(self.dropped.values()),
            "dropped_reasons": dict(self.dropped),
        }


@dataclass(frozen=True)
class QuestionFields:
    """What the evaluation asks about one kept row, should it be held out."""

    question: str
    reference: str
    context: str | None  # None: the config names no context column

    def as_record(self) -> dict[str, Any]:
        return {"question": self.question, "reference": self.reference, "context": self.context}


def cell_text(value: Any) -> str | None:
    """A cell as training text, or None when it has no text form (null, NaN, list, dict, bytes, ...)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return None if math.isnan(value) else repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return None


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _rows_in(batch: Batch) -> int:
    return len(batch[next(iter(batch))]) if batch else 0


class _CompiledTemplate:
    """A template parsed once into a %-format string: `format_map` parses the template again on every row.

    For text values (every value here is one) `%s` writes exactly what `format_map` would.
    `positions` says where each placeholder's text sits in a row's tuple of cells.
    """

    def __init__(self, template: str, columns: list[str]) -> None:
        literals: list[str] = [""]
        names: list[str] = []
        for literal, column, _, _ in string.Formatter().parse(template):
            literals[-1] += literal
            if column is not None:
                names.append(column)
                literals.append("")
        self.literals = literals  # len(columns) + 1 pieces of text, around the placeholders
        self.columns = tuple(names)
        self.pattern = "%s".join(piece.replace("%", "%%") for piece in literals)
        self.constant = None if names else literals[0]
        self._positions = tuple(columns.index(name) for name in names)

    def render_arrow(self, columns: list[pa.Array]) -> pa.Array:
        """`render` for every row at once, on Arrow string columns (a null cell gives a null text)."""
        import pyarrow.compute as pc

        pieces: list[Any] = [_text_scalar(self.literals[0])]
        for position, literal in zip(self._positions, self.literals[1:], strict=True):
            pieces += [columns[position], _text_scalar(literal)]
        return pc.binary_join_element_wise(*pieces, _text_scalar(""))

    def render(self, cells: tuple[str, ...]) -> str:
        if self.constant is not None:
            return self.constant
        return self.pattern % tuple([cells[position] for position in self._positions])


def _line_pieces(records: TrainingRecords, parts: list[tuple[str, _CompiledTemplate]]) -> list[str]:
    """The JSONL line `json.dumps(example, ensure_ascii=False)` writes in the provider's record format, cut
    where each rendered text that varies by row goes (JSON-escaped); constant texts are written out."""

    def text(template: _CompiledTemplate) -> str:
        return "\0" if template.constant is None else encode_basestring(template.constant)

    line = records.line([(role, text(template)) for role, template in parts])
    # "\0" cannot occur otherwise: encode_basestring writes a NUL character as \u0000.
    return line.split("\0")


# pyarrow imports pandas (0.3 s) the first time it converts a Python value or a boolean array to numpy:
# the Arrow path below builds its scalars and reads its masks from buffers instead.


def _text_scalar(text: str) -> pa.Scalar:
    import pyarrow as pa

    data = text.encode()
    offsets = pa.py_buffer(struct.pack("<ii", 0, len(data)))
    return pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(data)])[0]


def _true_rows(mask: pa.Array) -> npt.NDArray[np.bool_]:
    """A boolean Arrow array as numpy booleans, null as false."""
    import numpy as np

    def bits(buffer: pa.Buffer) -> npt.NDArray[np.bool_]:
        unpacked = np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), bitorder="little")
        return unpacked[mask.offset : mask.offset + len(mask)].astype(bool)

    if len(mask) == 0:
        return np.zeros(0, dtype=bool)
    validity, values = mask.buffers()
    rows = bits(values)
    return rows if validity is None else rows & bits(validity)


def _is_empty(texts: pa.Array) -> pa.Array:
    """True for "", null for null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.invert(pc.cast(pc.binary_length(texts), pa.bool_()))


def _json_escaped(texts: pa.Array) -> pa.Array:
    """Each text as the JSON encoder writes it between its quotes (`encode_basestring`, ensure_ascii=False):
    backslash first, then the quote, then whichever control characters occur, each as ESCAPE_DCT says."""
    import pyarrow.compute as pc

    if not pc.any(pc.match_substring_regex(texts, r'["\\\x00-\x1f]')).as_py():
        return texts
    escaped = pc.replace_substring(pc.replace_substring(texts, "\\", "\\\\"), '"', '\\"')
    with_controls = pc.match_substring_regex(texts, r"[\x00-\x1f]")
    if pc.any(with_controls).as_py():
        present = {char for text in texts.filter(with_controls).to_pylist() for char in text if char < " "}
        for char in sorted(present):
            escaped = pc.replace_substring(escaped, char, ESCAPE_DCT[char])
    return escaped


def _row_after_row(columns: list[list[str]]) -> list[str]:
    """[[a1, a2], [b1, b2]] -> [a1, b1, a2, b2]."""
    if len(columns) == 1:
        return columns[0]
    merged: list[str] = [""] * sum(map(len, columns))
    for offset, column in enumerate(columns):
        merged[offset :: len(columns)] = column
    return merged


@dataclass
class BuiltBatch:
    """One batch's kept rows, as the prepare function writes and gates them.

    `jsonl`: their JSONL lines, each ending in a newline, byte for byte what `json.dumps(example,
    ensure_ascii=False)` gives; line i is `jsonl[ends[i - 1]:ends[i]]` (from 0 for the first).
    `texts`: the rendered message texts that vary by row, `varying` (the builder's) per row, row
    after row: what must be counted in tokens. `blank_texts`: for the rows (by position in the
    batch) that have some, how many of their message texts are blank. `questions`: each row's
    question fields when the run is evaluated.
    """

    jsonl: bytes | memoryview = b""
    ends: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    blank_texts: dict[int, int] = field(default_factory=dict)
    questions: list[QuestionFields] | None = None

    def lines(self) -> Iterator[bytes]:
        """Each line without its newline."""
        view, start = memoryview(self.jsonl), 0
        for end in self.ends:
            yield bytes(view[start : end - 1])
            start = end


_LISTED_COLUMNS = 40  # a run's error is one DynamoDB item (400 KB at most), read by people


def _listed(columns: list[str]) -> str:
    """The dataset's columns for an error: the first `_LISTED_COLUMNS`, each cut at 64 characters."""
    shown = ", ".join(name if len(name) <= 64 else name[:63] + "…" for name in columns[:_LISTED_COLUMNS])
    more = len(columns) - _LISTED_COLUMNS
    return f"{shown} and {more} more" if more > 0 else shown


class ExampleBuilder:
    """Turns column batches into JSONL lines, counting what it keeps and drops and why.

    Each row is the tuple of the columns the run reads (`_used`); the filter and template columns
    are checked in order, the templates rendered from the row's text, and the line written from a
    pattern built once (`_line_pattern`), so no row goes through the generic JSON encoder.
    """

    def __init__(self, config: RunConfig) -> None:
        self._config = config
        self.counts = RowCounts()
        self._columns_checked = False
        template = config.template
        non_empty = self._non_empty = set(config.filter.non_empty)
        # Filter columns first, in the filter's order, then the templates' other columns.
        checked = list(dict.fromkeys([*config.filter.non_empty, *template.placeholders()]))
        # The only columns read from each batch: a reader converts nothing else.
        self._used = list(dict.fromkeys([*checked, *config.evaluation.columns()]))
        self._checks = tuple((self._used.index(name), name, name in non_empty) for name in checked)
        provider = spec(config.provider)
        self._reserved = provider.reserved_text.pattern if provider.reserved_text else None
        parts = [("system", template.system), ("user", template.user), ("assistant", template.assistant)]
        self._parts = [(role, _CompiledTemplate(text, self._used)) for role, text in parts if text is not None]
        self._user = next(template for role, template in self._parts if role == "user")
        self._varying = [template for _, template in self._parts if template.constant is None]
        self._line_pieces = _line_pieces(provider.records(), self._parts)
        self._line = "%s".join(piece.replace("%", "%%") for piece in self._line_pieces)
        self._constant_blanks = sum(blank(t.constant) for _, t in self._parts if t.constant is not None)
        evaluation = config.evaluation
        self._question_positions = (
            (self._used.index(evaluation.reference_column), self._position(evaluation.context_column))
            if evaluation.enabled
            else None
        )

    @property
    def roles(self) -> list[str]:
        """Each example's message roles, in order (a Nova record's system prompt counted as one)."""
        return [role for role, _ in self._parts]

    @property
    def constant_texts(self) -> list[str]:
        """The message texts every example shares (templates without placeholders)."""
        return [template.constant for _, template in self._parts if template.constant is not None]

    @property
    def varying(self) -> int:
        """How many of each example's message texts vary by row (`BuiltBatch.texts` holds these)."""
        return len(self._varying)

    def _position(self, column: str | None) -> int | None:
        return None if column is None else self._used.index(column)

    def _uses_default(self, section: str) -> bool:
        spec = getattr(self._config, section)
        return section not in self._config.model_fields_set or not spec.model_fields_set

    def _check_columns(self, columns: Iterable[str]) -> None:
        columns = sorted(columns)
        missing = sorted(set(self._config.required_columns()) - set(columns))
        if not missing:
            self._columns_checked = True
            return
        evaluation = self._config.evaluation
        users = "filter/template/evaluation" if evaluation.enabled else "filter/template"
        message = (
            f"dataset has no column(s) {', '.join(missing)} used by the config's {users}; it has: {_listed(columns)}"
        )
        hints = []
        if self._uses_default("filter") and self._non_empty & set(missing):
            present = [name for name in self._config.template.placeholders() if name in columns]
            example = json.dumps(present) if present else '["<column>", ...]'
            hints.append(
                "The filter is the default one (the notebook's SciQ columns "
                f"{', '.join(self._config.filter.non_empty)}): set "
                f'"filter": {{"non_empty": {example}}} to the columns that must not be empty, or '
                '"filter": {"non_empty": []} to keep every row.'
            )
        if self._uses_default("template") and set(self._config.template.placeholders()) & set(missing):
            hints.append(
                "The template is the default one (the notebook's SciQ columns "
                f'{", ".join(self._config.template.placeholders())}): set "template": '
                '{"user": "...", "assistant": "..."} with {column} placeholders naming your columns.'
            )
        roles = {evaluation.reference_column: "reference_column", evaluation.context_column: "context_column"}
        missing_roles = [f"evaluation.{roles[name]} ({name})" for name in evaluation.columns() if name in missing]
        if missing_roles:
            hints.append(
                "The evaluation is on (it is by default when validation_fraction > 0) and reads "
                f"{' and '.join(missing_roles)} from the held-out rows: set evaluation.reference_column and "
                "evaluation.context_column (null for no passage) to your columns, or evaluation.enabled to false."
            )
        raise DatasetError(" ".join([f"{message}.", *hints]) if hints else message)

    def _screen(self, cells: tuple[Any, ...]) -> str | tuple[Any, ...]:
        """The row's drop reason, or its cells with every checked one as text."""
        converted: list[Any] | None = None
        for position, column, non_empty in self._checks:
            value = cells[position]
            if type(value) is str:  # nearly every cell: the checks below, for a string, in short
                if non_empty and not value:
                    return f"empty {column}"
                continue
            if _is_missing(value):
                return f"missing {column}"
            text = cell_text(value)
            if text is None:
                return f"non-text {column}"
            if non_empty and text == "":
                return f"empty {column}"
            if converted is None:
                converted = list(cells)
            converted[position] = text
        return cells if converted is None else tuple(converted)

    def batches(self, batches: Iterable[Batch]) -> Iterator[BuiltBatch]:
        """Each batch's kept rows. Stops reading as soon as `max_examples` rows are kept."""
        limit = self._config.max_examples
        for batch in batches:
            if not self._columns_checked:
                self._check_columns(batch)
            room = None if limit is None else limit - self.counts.kept
            columns = self._text_columns(batch)
            yield self._build(batch, room) if columns is None else self._build_arrow(columns, room)
            if limit is not None and self.counts.kept >= limit:
                return

    def _build(self, batch: Batch, room: int | None) -> BuiltBatch:
        columns = self._used
        # A template naming no column, with no filter, reads no cell: each row is then the empty tuple.
        rows: Iterable[tuple[Any, ...]] = (
            zip(*(batch[column] for column in columns), strict=True) if columns else [()] * _rows_in(batch)
        )
        built = BuiltBatch(questions=None if self._question_positions is None else [])
        lines: list[bytes] = []
        texts, line, varying = built.texts, self._line, self._varying
        counts, dropped = self.counts, self.counts.dropped
        for row in rows:
            counts.read += 1
            cells = self._screen(row)
            if isinstance(cells, str):
                dropped[cells] += 1
                continue
            if self._reserved:
                reason = self._reserved_reason(cells)
                if reason:
                    dropped[reason] += 1
                    continue
            rendered = [template.render(cells) for template in varying]
            blanks = self._constant_blanks + sum(map(blank, rendered))
            if blanks:
                built.blank_texts[len(lines)] = blanks
            lines.append((line % tuple(map(encode_basestring, rendered)) + "\n").encode())
            texts += rendered
            if built.questions is not None:
                built.questions.append(self._question_fields(cells))
            counts.kept += 1
            if room is not None and len(lines) == room:
                break
        built.jsonl = b"".join(lines)
        built.ends = list(itertools.accumulate(map(len, lines)))
        return built

    def _text_columns(self, batch: Batch) -> list[pa.Array] | None:
        """The columns the run reads, when the batch is Arrow's and each holds only text or nulls: what
        `_build_arrow` takes. None sends the batch row by row through `_build`."""
        record_batch = getattr(batch, "record_batch", None)
        if record_batch is None or not self._varying:
            return None
        import pyarrow as pa

        columns = [record_batch.column(name) for name in self._used]
        if not all(pa.types.is_string(column.type) or pa.types.is_large_string(column.type) for column in columns):
            return None
        return [column.cast(pa.string()) if pa.types.is_large_string(column.type) else column for column in columns]

    def _build_arrow(self, columns: list[pa.Array], room: int | None) -> BuiltBatch:
        """`_build` on a whole batch of text columns at once, with Arrow's kernels: the same rows kept and
        dropped for the same reasons, the same lines, texts, blanks and questions (tests compare the two)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        rendered = [template.render_arrow(columns) for template in self._varying]
        kept_rows = self._arrow_kept_rows(columns, rendered, room)
        take = pa.Array.from_buffers(pa.int64(), len(kept_rows), [None, pa.py_buffer(kept_rows.astype(np.int64))])
        texts = [pc.take(column, take) for column in rendered]
        values = [column.to_pylist() for column in texts]
        built = BuiltBatch(texts=_row_after_row(values))
        built.jsonl, built.ends = self._arrow_lines(texts)
        built.blank_texts = self._arrow_blanks(texts, values, len(kept_rows))
        if self._question_positions is not None:
            built.questions = self._arrow_questions(columns, take, values)
        return built

    def _arrow_kept_rows(self, columns: list[pa.Array], rendered: list[pa.Array], room: int | None) -> Any:
        """The rows kept (a numpy array of positions), counting what is read and dropped, as `_build` would."""
        import numpy as np
        import pyarrow.compute as pc

        rows = len(columns[0])
        reason = np.full(rows, -1)  # each row's first drop reason, as an index into `reasons`
        reasons: list[str] = []
        for position, column, non_empty in self._checks:
            cells = columns[position]
            for why, hit in (
                (f"missing {column}", cells.is_null() if cells.null_count else None),
                (f"empty {column}", _is_empty(cells) if non_empty else None),
            ):
                if hit is not None:
                    newly = _true_rows(hit) & (reason < 0)
                    reason[newly] = len(reasons)
                    reasons.append(why)
        reserved = np.zeros(rows, dtype=bool)
        if self._reserved:
            for texts in rendered:
                reserved |= _true_rows(pc.match_substring_regex(texts, self._reserved.pattern))
            reserved &= reason < 0
        kept_rows = np.flatnonzero((reason < 0) & ~reserved)
        read = rows if room is None or len(kept_rows) < room else int(kept_rows[room - 1]) + 1
        self.counts.read += read
        for index, count in enumerate(np.bincount(reason[:read][reason[:read] >= 0], minlength=len(reasons))):
            if count:
                self.counts.dropped[reasons[index]] += int(count)
        for row in np.flatnonzero(reserved[:read]).tolist():  # rare: their reason is worked out row by row
            cells = tuple(column[row].as_py() for column in columns)
            self.counts.dropped[self._reserved_reason(cells) or "reserved"] += 1
        kept_rows = kept_rows[kept_rows < read]
        self.counts.kept += len(kept_rows)
        return kept_rows

    def _arrow_lines(self, texts: list[pa.Array]) -> tuple[memoryview, list[int]]:
        """The batch's JSONL: one Arrow join of the line's pieces and the JSON-escaped texts, read in place."""
        import numpy as np
        import pyarrow.compute as pc

        literals = [self._line_pieces[0] + '"', *('"' + piece + '"' for piece in self._line_pieces[1:])]
        literals[-1] = literals[-1][:-1] + "\n"
        pieces: list[Any] = [_text_scalar(literals[0])]
        for escaped, literal in zip(map(_json_escaped, texts), literals[1:], strict=True):
            pieces += [escaped, _text_scalar(literal)]
        lines = pc.binary_join_element_wise(*pieces, _text_scalar(""))
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
        data = lines.buffers()[2]
        start = int(offsets[0])
        view = memoryview(data)[start : int(offsets[-1])] if data is not None else memoryview(b"")
        return view, (offsets[1:] - start).tolist()

    def _arrow_blanks(self, texts: list[pa.Array], values: list[list[str]], rows: int) -> dict[int, int]:
        """`blank` decides for the texts Arrow finds empty or all white space: its white space includes all
        of Python's (a test checks every code point), so no blank text is missed."""
        import numpy as np
        import pyarrow.compute as pc

        blanks = np.full(rows, self._constant_blanks)
        for column, column_values in zip(texts, values, strict=True):
            maybe = pc.or_(_is_empty(column), pc.utf8_is_space(column))
            for row in np.flatnonzero(_true_rows(maybe)).tolist():
                blanks[row] += blank(column_values[row])
        return {int(row): int(blanks[row]) for row in np.flatnonzero(blanks)}

    def _arrow_questions(
        self, columns: list[pa.Array], take: pa.Array, values: list[list[str]]
    ) -> list[QuestionFields]:
        import pyarrow.compute as pc

        reference, context = self._question_positions or (0, None)
        questions = (
            values[self._varying.index(self._user)]
            if self._user in self._varying
            else [self._user.constant or ""] * len(take)
        )
        references = pc.take(columns[reference], take).to_pylist()
        contexts = [None] * len(take) if context is None else pc.take(columns[context], take).to_pylist()
        return [
            QuestionFields(question, reference or "", None if context is None else text or "")
            for question, reference, text in zip(questions, references, contexts, strict=True)
        ]

    def _reserved_reason(self, cells: tuple[Any, ...]) -> str | None:
        """Text the provider reserves (Nova's) fails a whole job: the drop reason of a row whose texts hold some."""
        for part, template in self._parts:
            found = self._reserved.search(template.render(cells)) if self._reserved else None
            if found:
                reserved = found.group()
                column = next((name for name in template.columns if reserved in cells[self._used.index(name)]), None)
                return f'reserved "{reserved}" in {column or part + " text"}'
        return None

    def _question_fields(self, cells: tuple[Any, ...]) -> QuestionFields:
        """The user turn as the example holds it, so the question asked is the one the model would have seen."""
        reference, context = self._question_positions or (0, None)
        return QuestionFields(
            question=self._user.render(cells),
            reference=cell_text(cells[reference]) or "",
            context=None if context is None else cell_text(cells[context]) or "",
        )
