"""A request checked against its operation's input shape in botocore's ``sagemaker`` service model.

The service model is the published contract (the same one boto3 validates with before sending), so the
emulator reads its required members, enums, lengths, ranges and patterns rather than copying them: what
a request breaks is reported the way SageMaker's front door words it, e.g. ``1 validation error detected:
Value 'bad_name' at 'trainingJobName' failed to satisfy constraint: Member must satisfy regular expression
pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``. Member paths are lowerCamelCase, list items ``name.N.member``
(from 1). Members the model does not declare are ignored, as the service ignores them.

Two patterns use Java's ``\\p{...}`` classes, which Python's ``re`` lacks; they are rewritten to the nearest
``re`` classes (``\\p{L}``/``\\p{N}`` to ``\\w``, ``\\p{Z}`` to ``\\s``, ``\\p{Alnum}`` to ``a-zA-Z0-9``).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from .errors import validation

_JAVA_CLASSES = {r"\p{L}": r"\w", r"\p{N}": r"\w", r"\p{Z}": r"\s", r"\p{Alnum}": "a-zA-Z0-9"}


@cache
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("sagemaker")


def operation_model(operation: str) -> OperationModel:
    return service_model().operation_model(operation)


@cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    for java, python in _JAVA_CLASSES.items():
        pattern = pattern.replace(java, python)
    try:
        return re.compile(pattern)
    except re.error:  # a pattern re cannot read is not checked
        return None


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _shown(value: Any) -> str:
    return "null" if value is None else f"'{value}'" if isinstance(value, str) else str(value)


def _constraint(value: Any, path: str, rule: str) -> str:
    return f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must {rule}"


def _length_problems(length: int, meta: dict[str, Any]) -> list[str]:
    found = []
    if "min" in meta and length < meta["min"]:
        found.append(f"have length greater than or equal to {meta['min']}")
    if "max" in meta and length > meta["max"]:
        found.append(f"have length less than or equal to {meta['max']}")
    return found


def problems(shape: Shape, value: Any, path: str) -> list[str]:
    """What in ``value`` breaks ``shape``, one Coral-style sentence per problem."""
    kind, meta = shape.type_name, shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            return [_constraint("...", path, "be a structure")]
        found: list[str] = []
        for name, member in shape.members.items():
            where = f"{path}.{_camel(name)}" if path else _camel(name)
            if name not in value or value[name] is None:
                if name in shape.required_members:
                    found.append(_constraint(None, where, "not be null"))
                continue
            found += problems(member, value[name], where)
        return found
    if kind == "list":
        if not isinstance(value, list):
            return [_constraint("...", path, "be a list")]
        found = [_constraint(value, path, rule) for rule in _length_problems(len(value), meta)]
        for index, item in enumerate(value, start=1):
            found += problems(shape.member, item, f"{path}.{index}.member")
        return found
    if kind == "map":
        if not isinstance(value, dict):
            return [_constraint("...", path, "be a map")]
        found = [_constraint(value, path, rule) for rule in _length_problems(len(value), meta)]
        for key, item in value.items():
            found += [f"Map key {p}" for p in problems(shape.key, key, path)]
            found += [f"Map value {p}" for p in problems(shape.value, item, path)]
        return found
    if kind == "string":
        if not isinstance(value, str):
            return [_constraint(value, path, "be a string")]
        if shape.enum and value not in shape.enum:
            return [_constraint(value, path, f"satisfy enum value set: [{', '.join(shape.enum)}]")]
        found = [_constraint(value, path, rule) for rule in _length_problems(len(value), meta)]
        compiled = _pattern(meta["pattern"]) if "pattern" in meta else None
        if compiled is not None and compiled.fullmatch(value) is None:
            found.append(_constraint(value, path, f"satisfy regular expression pattern: ^{meta['pattern']}"))
        return found
    if kind in ("integer", "long", "float", "double"):
        number_types = int if kind in ("integer", "long") else int | float
        if not isinstance(value, number_types) or isinstance(value, bool):
            return [_constraint(value, path, f"be a{'n' if kind == 'integer' else ''} {kind}")]
        found = []
        if "min" in meta and value < meta["min"]:
            found.append(_constraint(value, path, f"have value greater than or equal to {meta['min']}"))
        if "max" in meta and value > meta["max"]:
            found.append(_constraint(value, path, f"have value less than or equal to {meta['max']}"))
        return found
    if kind == "boolean":
        return [] if isinstance(value, bool) else [_constraint(value, path, "be a boolean")]
    if kind == "timestamp":
        return [] if timestamp(value) is not None else [_constraint(value, path, "be a timestamp")]
    return []  # blobs and documents: not used by the emulated operations


def timestamp(value: Any) -> float | None:
    """A JSON-protocol timestamp (epoch seconds, as botocore sends them, or ISO 8601) as epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def check_request(operation: str, body: dict[str, Any]) -> None:
    """Raise a ValidationException listing every way ``body`` breaks the operation's input shape."""
    shape = operation_model(operation).input_shape
    found = problems(shape, body, "") if shape is not None else []
    if found:
        count = f"{len(found)} validation error{'s' if len(found) > 1 else ''} detected"
        raise validation(f"{count}: {'; '.join(found)}")
