"""One Logger, Tracer and Metrics for every function (Powertools; names from the environment).

With tracing off (POWERTOOLS_TRACE_DISABLED, or outside a Lambda sandbox: tests, the local stack) the
Tracer is given a provider that records nothing, so the X-Ray SDK (about 15 ms of a cold start as shipped: its
imports, and patching botocore) is never loaded; Powertools would import it even to stay silent.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncGenerator, Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment


class _UnrecordedSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(
        self, exception: BaseException, stack: list[traceback.StackSummary], remote: bool = False
    ) -> None:
        pass


class UntracedProvider(BaseProvider):
    """What the Tracer calls when tracing is off: every segment is thrown away unrecorded."""

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        yield _UnrecordedSegment()

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncGenerator[BaseSegment, None]:
        yield _UnrecordedSegment()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


# What the X-Ray SDK patches: the AWS SDK, the only traced library the functions call (the OpenAI SDK's HTTP client is
# not one X-Ray knows). Powertools' default patches every library X-Ray supports that is installed, sqlite3 among them.
PATCHED_MODULES = ("botocore",)


def _tracer() -> Tracer:
    """Powertools' own rule decides whether tracing is off; only the provider then differs."""
    if Tracer._is_tracer_disabled():
        return Tracer(disabled=True, provider=UntracedProvider())
    return Tracer(patch_modules=PATCHED_MODULES)


logger = Logger()
tracer = _tracer()
metrics = Metrics()
