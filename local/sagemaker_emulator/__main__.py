"""CLI: ``python -m local.sagemaker_emulator --port 8789 --phase-seconds 2`` serves until SIGINT/SIGTERM.

S3 (training data in, model and metrics out) is whatever ``boto3.client("s3")`` reaches from this
environment, e.g. a moto server named by ``AWS_ENDPOINT_URL_S3``. Point boto3 at the emulator with
``AWS_ENDPOINT_URL_SAGEMAKER`` set to the URL it prints.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from . import SageMakerEmulator


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.sagemaker_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8789, help="0 picks a free port")
    parser.add_argument("--phase-seconds", type=float, default=2.0, help="seconds a training job runs")
    parser.add_argument("--fail-jobs", metavar="REASON", help="every job ends Failed with this FailureReason")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="OPERATION:KIND[:TIMES]",
        help="e.g. DescribeTrainingJob:throttling:2 or CreateTrainingJob:resource_limit or *:service_unavailable",
    )
    args = parser.parse_args(argv)
    emulator = SageMakerEmulator(args.host, args.port, phase_seconds=args.phase_seconds)
    for spec in args.fault:
        operation, kind, *times = spec.split(":")
        fault_kind: Any = kind  # checked by inject_fault
        emulator.inject_fault(operation, fault_kind, int(times[0]) if times else 1)
    emulator.fail_jobs(args.fail_jobs)
    emulator.serve_until_stopped(lambda: f"sagemaker_endpoint_url={emulator.endpoint_url}")


if __name__ == "__main__":
    main()
