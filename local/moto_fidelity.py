"""Where moto (5.2.5) differs from AWS in ways the stack relies on, made as AWS does it.

* DynamoDB: moto checks a condition and then writes, with no lock between, so two threads can both
  pass `attribute_not_exists(...)`; and it builds an answer from the stored item after the write, while
  another thread's write may be changing it ("dictionary changed size during iteration": a 500 where AWS
  answers a snapshot). Idempotency and the run's status leases rely on each request being one atomic
  step; a process-wide lock around each DynamoDB request (condition, write and answer) restores it.
* Step Functions' optimised integration with itself (`arn:aws:states:::states:startExecution`): its
  parameters are written as AWS documents them (`StateMachineArn`, `Input`, `Name`), which Step Functions
  maps to the API's own names; moto passes them to botocore unmapped, which fails every such task.

And three places where moto is far slower than it need be (the local stack and the tests pay for all three):
* Step Functions' parser imports its AWS Batch integration, which imports `moto.batch` for one enum, whose
  `__init__` imports Batch's backend, which imports all of EC2: 0.8 s of every stack start and test worker (half
  the stack's imports) for a service the stack never calls. `moto.batch`'s `__init__` now runs when a name it
  defines is first read; its submodules import as before (the enum's module, and Batch's backend when a Batch
  request does come).
* Step Functions parses a definition with a pure-Python ANTLR parser (about 40 ms for ours) at every create
  and every execution: the parse tree of a definition is kept by its text, and each caller still gets
  evaluation components of its own built from it.
* DynamoDB serialises every AttributeValue by walking botocore's shape of it, member by member, with several
  key spellings tried for each (a GetItem of a 200-value item took 44 ms). The values moto holds are already
  in the wire format, so they are written as they are (7 ms); a binary value, or anything not a plain
  wire-format value, still takes moto's own path.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb.responses import DynamoHandler

_lock = threading.RLock()  # DynamoDB's requests
_DEFERRED_PACKAGE = "moto.batch"
_deferred_package_lock = threading.Lock()


class _DeferredPackage(types.ModuleType):
    """A package whose `__init__` runs at the first read of a name only it defines (`__getattr__` is asked only
    for names the module lacks: its submodules' imports read `__path__` and `__spec__`, set beforehand)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        with _deferred_package_lock:
            if isinstance(self, _DeferredPackage):
                self.__class__ = types.ModuleType  # type: ignore[assignment]
                assert self.__spec__ is not None and self.__spec__.loader is not None
                self.__spec__.loader.exec_module(self)
        return getattr(self, name)


def defer_moto_batch_package() -> None:
    """Idempotent; a no-op once `moto.batch` is imported. Call it before Step Functions' parser is imported."""
    if _DEFERRED_PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(_DEFERRED_PACKAGE)
    assert spec is not None and spec.submodule_search_locations is not None
    package = _DeferredPackage(spec.name)
    package.__spec__, package.__loader__, package.__file__ = spec, spec.loader, spec.origin
    package.__path__, package.__package__ = list(spec.submodule_search_locations), spec.name
    sys.modules[spec.name] = package
    parent, _, child = spec.name.rpartition(".")
    setattr(importlib.import_module(parent), child, package)  # as the import system binds a submodule


def make_dynamodb_requests_atomic() -> None:
    """Idempotent: each DynamoDB request, its answer included, runs under one process-wide lock."""
    call_action = DynamoHandler.call_action
    if getattr(call_action, "__wrapped_atomic__", False):
        return

    @functools.wraps(call_action)
    def locked(self: DynamoHandler) -> Any:
        with _lock:
            return call_action(self)

    locked.__wrapped_atomic__ = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = locked  # type: ignore[method-assign]


def _api_cased(normalise: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(normalise)
    def mapped(self: Any, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        normalise(self, parameters, *args, **kwargs)
        for name in list(parameters):
            parameters[name[:1].lower() + name[1:]] = parameters.pop(name)  # StateMachineArn -> stateMachineArn

    mapped.__wrapped_api_cased__ = True  # type: ignore[attr-defined]
    return mapped


def map_step_functions_task_parameters() -> None:
    """Idempotent: Step Functions tasks that start an execution name its parameters as the API does."""
    defer_moto_batch_package()
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )

    normalise = StateTaskServiceSfn._normalise_parameters
    if not getattr(normalise, "__wrapped_api_cased__", False):
        StateTaskServiceSfn._normalise_parameters = _api_cased(normalise)  # type: ignore[method-assign]


_PLAIN_KINDS = frozenset({"S", "N", "BOOL", "NULL", "SS", "NS"})


def _wire_attribute_value(value: Any) -> dict[str, Any] | None:
    """`value` as DynamoDB's JSON writes it, or None where moto's own serialiser must decide (binary, other)."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    if kind in _PLAIN_KINDS:
        return {kind: inner}
    if kind == "M" and isinstance(inner, dict):
        members = {name: _wire_attribute_value(member) for name, member in inner.items()}
        return None if None in members.values() else {"M": members}
    if kind == "L" and isinstance(inner, list):
        items = [_wire_attribute_value(item) for item in inner]
        return None if None in items else {"L": items}
    return None


def serialise_dynamodb_values_directly() -> None:
    """Idempotent: AttributeValues in wire format skip moto's shape walk (the same JSON either way)."""
    walk = BaseJSONSerializer._serialize_type_structure
    if getattr(walk, "__direct_attribute_values__", False):
        return

    @functools.wraps(walk)
    def serialise(self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str) -> None:
        wire = _wire_attribute_value(value) if key and shape.name == "AttributeValue" else None
        if wire is None:
            walk(self, serialized, value, shape, key)
        else:
            serialized[self.get_serialized_name(shape, key)] = wire

    serialise.__direct_attribute_values__ = True  # type: ignore[attr-defined]
    BaseJSONSerializer._serialize_type_structure = serialise  # type: ignore[method-assign]


def reuse_step_functions_parse_trees() -> None:
    """Idempotent: a definition parsed once is not parsed again (a broken one still raises every time)."""
    defer_moto_batch_package()
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    parse = AmazonStateLanguageParser.parse
    if getattr(parse, "__reuses_trees__", False):
        return
    tree_of = functools.lru_cache(maxsize=64)(lambda definition: parse(definition)[1])

    def parse_once(definition: str) -> tuple[Any, Any]:
        tree = tree_of(definition)
        return Preprocessor().visit(tree), tree

    parse_once.__reuses_trees__ = True  # type: ignore[attr-defined]
    AmazonStateLanguageParser.parse = staticmethod(parse_once)  # type: ignore[method-assign]
