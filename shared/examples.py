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
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from shared.config import BEDROCK_SCHEMA_VERSION, NOVA_RESERVED, RunConfig, template_placeholders
from shared.errors import DatasetError

Example = dict[str, Any]


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
        message = (
            f"dataset has no column(s) {', '.join(missing)} used by the config's "
            f"filter/template; it has: {', '.join(columns)}"
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
        raise DatasetError(". ".join([message, *hints]) if hints else message)

    def _drop_reason(self, row: dict[str, Any]) -> str | None:
        for column in self._checked:
            value = row[column]
            if _is_missing(value):
                return f"missing {column}"
            text = cell_text(value)
            if text is None:
                return f"non-text {column}"
            if text == "" and column in self._non_empty:
                return f"empty {column}"
        return None

    def _render(self, row: dict[str, Any]) -> Example:
        values = {name: cell_text(row[name]) or "" for name in self._config.template.placeholders()}
        template = self._config.template
        messages = (
            [] if template.system is None else [{"role": "system", "content": template.system.format_map(values)}]
        )
        messages.append({"role": "user", "content": template.user.format_map(values)})
        messages.append({"role": "assistant", "content": template.assistant.format_map(values)})
        return {"messages": messages}

    def _render_bedrock(self, row: dict[str, Any]) -> Example | str:
        """A `bedrock-conversation-2024` record, or the drop reason of a row holding a reserved string."""
        values = {name: cell_text(row[name]) or "" for name in self._config.template.placeholders()}
        template = self._config.template
        texts = {
            "system": None if template.system is None else template.system.format_map(values),
            "user": template.user.format_map(values),
            "assistant": template.assistant.format_map(values),
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

    def examples(self, batches: Iterable[dict[str, list[Any]]]) -> Iterator[Example]:
        """Stops reading as soon as `max_examples` rows are kept."""
        limit = self._config.max_examples
        for batch in batches:
            if not self._columns_checked:
                self._check_columns(batch)
            columns = list(batch)
            for values in zip(*batch.values(), strict=True):
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
                    self.counts.kept += 1
                    yield record
                else:
                    self.counts.kept += 1
                    yield self._render(row)
                if limit is not None and self.counts.kept >= limit:
                    return
