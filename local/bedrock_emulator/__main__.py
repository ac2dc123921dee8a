"""CLI: ``python -m local.bedrock_emulator --port 8788 --phase-seconds 2`` serves until SIGINT/SIGTERM.

S3 (training data in, metrics out) is whatever ``boto3.client("s3")`` reaches from this environment,
e.g. a moto server named by ``AWS_ENDPOINT_URL_S3``. Point boto3 at the emulator with
``AWS_ENDPOINT_URL_BEDROCK`` and ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` set to the URL it prints.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from . import BedrockEmulator


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.bedrock_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788, help="0 picks a free port")
    parser.add_argument("--phase-seconds", type=float, default=2.0, help="seconds a job or deployment takes")
    parser.add_argument("--min-training-records", type=int, default=8)
    parser.add_argument("--fail-jobs", metavar="MESSAGE", help="every job ends Failed with this message")
    parser.add_argument("--fail-deployments", metavar="MESSAGE", help="every deployment ends Failed")
    parser.add_argument("--fail-imports", metavar="MESSAGE", help="every model import job ends Failed")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="OPERATION:KIND[:TIMES]",
        help="e.g. Converse:throttling:2 or CreateModelCustomizationJob:access_denied or *:service_unavailable",
    )
    args = parser.parse_args(argv)
    emulator = BedrockEmulator(
        args.host, args.port, phase_seconds=args.phase_seconds, min_training_records=args.min_training_records
    )
    for spec in args.fault:
        operation, kind, *times = spec.split(":")
        fault_kind: Any = kind  # checked by inject_fault
        emulator.inject_fault(operation, fault_kind, int(times[0]) if times else 1)
    emulator.fail_jobs(args.fail_jobs)
    emulator.fail_deployments(args.fail_deployments)
    emulator.fail_imports(args.fail_imports)
    emulator.serve_until_stopped(lambda: f"bedrock_endpoint_url={emulator.endpoint_url}")


if __name__ == "__main__":
    main()
