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
"""

from __future__ import annotations

import json
import math
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from shared.config import BEDROCK_SCHEMA_VERSION, NOVA_RESERVED, RunConfig, template_placeholders
from shared.errors import DatasetError

Example = dict[str, Any]
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
    """

    def __init__(self, template: str) -> None:
        pieces: list[str] = []
        columns: list[str] = []
        for literal, column, _, _ in string.Formatter().parse(template):
            pieces.append(literal.replace("%", "%%"))
            if column is not None:
                pieces.append("%s")
                columns.append(column)
        self._pattern = "".join(pieces)
        self._columns = tuple(columns)

    def render(self, values: dict[str, str]) -> str:
        return self._pattern % tuple(map(values.__getitem__, self._columns))


class ExampleBuilder:
    """Streams examples out of column batches, counting what it keeps and drops and why."""

    def __init__(self, config: RunConfig) -> None:
        self._config = config
        self.counts = RowCounts()
        self._columns_checked = False
        self._non_empty = set(config.filter.non_empty)
        # Filter columns first, in the filter's order, then the templates' other columns.
        self._checked = list(dict.fromkeys([*config.filter.non_empty, *config.template.placeholders()]))
        self._bedrock = config.provider == "bedrock"
        template = config.template
        self._placeholders = template.placeholders()
        # The only columns read from each batch: a reader converts nothing else.
        self._used = list(dict.fromkeys([*self._checked, *config.evaluation.columns()]))
        self._system = None if template.system is None else _CompiledTemplate(template.system)
        self._user = _CompiledTemplate(template.user)
        self._assistant = _CompiledTemplate(template.assistant)
        # Where a reserved string in a rendered text came from: the columns each part of the template uses.
        self._part_columns = {
            part: template_placeholders(text)
            for part, text in (
                ("system", template.system or ""),
                ("user", template.user),
                ("assistant", template.assistant),
            )
        }

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
            f"dataset has no column(s) {', '.join(missing)} used by the config's {users}; it has: {', '.join(columns)}"
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
        raise DatasetError(". ".join([message, *hints]) if hints else message)

    def _drop_reason(self, row: dict[str, Any]) -> str | None:
        for column in self._checked:
            value = row[column]
            if type(value) is str:  # nearly every cell: the checks below, for a string, in short
                if not value and column in self._non_empty:
                    return f"empty {column}"
                continue
            if _is_missing(value):
                return f"missing {column}"
            text = cell_text(value)
            if text is None:
                return f"non-text {column}"
            if text == "" and column in self._non_empty:
                return f"empty {column}"
        return None

    def _values(self, row: dict[str, Any]) -> dict[str, str]:
        values = {}
        for name in self._placeholders:
            value = row[name]
            values[name] = value if type(value) is str else cell_text(value) or ""
        return values

    def _render(self, row: dict[str, Any]) -> Example:
        values = self._values(row)
        messages = [] if self._system is None else [{"role": "system", "content": self._system.render(values)}]
        messages.append({"role": "user", "content": self._user.render(values)})
        messages.append({"role": "assistant", "content": self._assistant.render(values)})
        return {"messages": messages}

    def _render_bedrock(self, row: dict[str, Any]) -> Example | str:
        """A `bedrock-conversation-2024` record, or the drop reason of a row holding a reserved string."""
        values = self._values(row)
        texts = {
            "system": None if self._system is None else self._system.render(values),
            "user": self._user.render(values),
            "assistant": self._assistant.render(values),
        }
        for part, text in texts.items():
            found = NOVA_RESERVED.search(text) if text is not None else None
            if found:
                reserved = found.group()
                column = next((name for name in self._part_columns[part] if reserved in values[name]), None)
                return f'reserved "{reserved}" in {column or part + " text"}'
        record: Example = {"schemaVersion": BEDROCK_SCHEMA_VERSION}
        if texts["system"] is not None:
            record["system"] = [{"text": texts["system"]}]
        record["messages"] = [
            {"role": "user", "content": [{"text": texts["user"]}]},
            {"role": "assistant", "content": [{"text": texts["assistant"]}]},
        ]
        return record

    def _question_fields(self, row: dict[str, Any], example: Example) -> QuestionFields:
        """The user turn as the example holds it, so the question asked is the one the model would have seen."""
        user_turn = example["messages"][-2]["content"]
        question = user_turn[0]["text"] if self._bedrock else user_turn
        evaluation = self._config.evaluation
        context = evaluation.context_column
        return QuestionFields(
            question=question,
            reference=cell_text(row[evaluation.reference_column]) or "",
            context=None if context is None else cell_text(row[context]) or "",
        )

    def examples(self, batches: Iterable[Batch]) -> Iterator[tuple[Example, QuestionFields | None]]:
        """Each kept row's example, with its question fields when the run is evaluated (else None).

        Stops reading as soon as `max_examples` rows are kept.
        """
        limit = self._config.max_examples
        evaluated = bool(self._config.evaluation.enabled)
        for batch in batches:
            if not self._columns_checked:
                self._check_columns(batch)
            columns = self._used
            # A template naming no column, with no filter, reads no cell: each row is then the empty tuple.
            rows = zip(*(batch[column] for column in columns), strict=True) if columns else [()] * _rows_in(batch)
            for values in rows:
                row = dict(zip(columns, values, strict=True))
                self.counts.read += 1
                reason = self._drop_reason(row)
                if reason:
                    self.counts.dropped[reason] += 1
                    continue
                if self._bedrock:
                    record = self._render_bedrock(row)
                    if isinstance(record, str):
                        self.counts.dropped[record] += 1
                        continue
                else:
                    record = self._render(row)
                self.counts.kept += 1
                yield record, self._question_fields(row, record) if evaluated else None
                if limit is not None and self.counts.kept >= limit:
                    return
