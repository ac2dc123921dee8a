"""CLI: ``python -m local.openai_emulator --port 8787 --phase-seconds 2`` serves until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date

from . import OpenAIEmulator
from .models import DEFAULT_SHUTDOWN_DATES


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.openai_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument("--phase-seconds", type=float, default=2.0, help="active seconds per job phase")
    parser.add_argument("--min-training-examples", type=int, default=10)
    parser.add_argument("--no-fine-tuning-access", action="store_true", help="refuse job creation with 403")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="METHOD:PATH_REGEX:KIND[:STATUS_OR_DELAY[:TIMES]]",
        help="e.g. POST:/fine_tuning/jobs:status:429:2 or ANY:/chat/completions:slow:5:1 or GET:.*:drop",
    )
    parser.add_argument(
        "--shutdown-date",
        action="append",
        default=[],
        metavar="MODEL=YYYY-MM-DD|null",
        help="a base model's shutdown date for GET /models/{model} (its fine-tunes follow it)",
    )
    args = parser.parse_args(argv)
    dates = dict(DEFAULT_SHUTDOWN_DATES)
    for given in args.shutdown_date:
        model, _, when = given.partition("=")
        dates[model] = None if when in ("", "null") else date.fromisoformat(when).isoformat()
    emulator = OpenAIEmulator(
        args.host,
        args.port,
        phase_seconds=args.phase_seconds,
        min_training_examples=args.min_training_examples,
        fine_tuning_access=not args.no_fine_tuning_access,
        shutdown_dates=dates,
    )
    for spec in args.fault:
        method, path, kind, *rest = spec.split(":")
        value = float(rest[0]) if rest else 0.0
        emulator.inject_fault(
            path,
            kind,  # validated by inject_fault
            method=None if method.upper() == "ANY" else method,
            status=int(value) if kind == "status" and rest else 500,
            delay=value,
            times=int(rest[1]) if len(rest) > 1 else 1,
        )
    emulator.serve_until_stopped(lambda: f"openai_base_url={emulator.base_url}")


if __name__ == "__main__":
    main()
