"""The base of every pydantic model a handler may not need: its schema is built on first use, under one lock.

`defer_build` keeps a model's schema out of the cold start (a handler pays only for the models it touches), but
pydantic's `model_rebuild`, which that first use calls, is not thread-safe: two threads building at once delete
each other's schema (an AttributeError) or leave a route validating its answer against another model's schema (a
422 seen on the local stack, whose server answers in threads). First use does happen in threads: the evaluation's
pool of model calls, the local stack's HTTP servers. So every build takes the same lock; a build nests the builds of
the models it refers to, hence a re-entrant one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

_BUILDING = threading.RLock()


class LazyModel(BaseModel):
    model_config = ConfigDict(defer_build=True)

    @classmethod
    def model_rebuild(
        cls,
        *,
        force: bool = False,
        raise_errors: bool = True,
        _parent_namespace_depth: int = 2,
        _types_namespace: Mapping[str, Any] | None = None,
    ) -> bool | None:
        with _BUILDING:
            return super().model_rebuild(
                force=force,
                raise_errors=raise_errors,
                # one frame more between pydantic and the caller whose namespace it reads
                _parent_namespace_depth=_parent_namespace_depth + 1 if _parent_namespace_depth > 0 else 0,
                _types_namespace=_types_namespace,
            )
