"""Rows to chat-format training examples: the config's filter, then its templates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.config import RunConfig
from shared.errors import DatasetError

Example = dict[str, list[dict[str, str]]]


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


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class ExampleBuilder:
    """Streams examples out of column batches, counting what it keeps and drops and why."""

    def __init__(self, config: RunConfig) -> None:
        self._config = config
        self.counts = RowCounts()
        self._columns_checked = False

    def _check_columns(self, columns: Iterable[str]) -> None:
        missing = sorted(set(self._config.required_columns()) - set(columns))
        if missing:
            raise DatasetError(
                f"dataset has no column(s) {', '.join(missing)} used by the config's "
                f"filter/template; it has: {', '.join(sorted(columns))}"
            )
        self._columns_checked = True

    def _drop_reason(self, row: dict[str, Any]) -> str | None:
        for column in self._config.filter.non_empty:
            if _text(row[column]) == "":
                return f"empty {column}"
        return None

    def _render(self, row: dict[str, Any]) -> Example:
        values = {name: _text(row[name]) for name in self._config.template.placeholders()}
        template = self._config.template
        messages = [] if template.system is None else [
            {"role": "system", "content": template.system.format_map(values)}
        ]
        messages.append({"role": "user", "content": template.user.format_map(values)})
        messages.append({"role": "assistant", "content": template.assistant.format_map(values)})
        return {"messages": messages}

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
                self.counts.kept += 1
                yield self._render(row)
                if limit is not None and self.counts.kept >= limit:
                    return
