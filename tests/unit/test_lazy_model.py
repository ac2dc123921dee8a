"""A LazyModel's schema is built on first use: first uses in several threads at once must all validate, each
against its own model. pydantic's own rebuild is not thread-safe: two threads building one model delete each
other's schema, and the local stack's API once answered a /curve request with a 422 naming the evaluation's fields.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
from pydantic import create_model

from shared.domain.lazy_model import LazyModel

THREADS = 8
MODELS = 60  # each a fresh model, first used by every thread at once: one chance each for the race


@pytest.fixture
def switching_often() -> Iterator[None]:
    """Threads switch every microsecond, as a busy machine interleaves them at the worst moments."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_first_uses_in_many_threads_at_once_each_validate_against_their_own_model(switching_often: None) -> None:
    failures: list[str] = []
    for number in range(MODELS):
        arm = create_model(f"Arm{number}", __base__=LazyModel, name=(str, ...), accuracy=(float, ...))
        report = create_model(f"Report{number}", __base__=LazyModel, status=(str, ...), arms=(list[arm], ...))  # type: ignore[valid-type]
        failures += _first_uses_at_once(arm, report)

    assert failures == []


def _first_uses_at_once(arm: type[LazyModel], report: type[LazyModel]) -> list[str]:
    """Half the threads validate an arm, half a report holding one, all released at the same instant."""
    start = threading.Barrier(THREADS)
    failures: list[str] = []

    def first_use(index: int) -> None:
        start.wait()
        try:
            if index % 2:
                assert arm.model_validate({"name": "tuned", "accuracy": 0.5}).model_dump()["name"] == "tuned"
            else:
                arms = [{"name": "base", "accuracy": 0.25}]
                assert report.model_validate({"status": "succeeded", "arms": arms}).model_dump()["arms"] == arms
        except Exception as error:  # what any thread raised is the finding
            failures.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=first_use, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures
