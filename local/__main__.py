"""`python -m local demo` (make demo) and `python -m local serve` (make local)."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path

# The stack's heap is large and long-lived (moto's backends, botocore's models, the handlers' modules) and Python's
# default thresholds walked it again every few thousand allocations: 13% of a demo's CPU.
gc.set_threshold(50_000, 20, 100)

from local.demo import (  # noqa: E402
    DEMO_CONFIGS,
    DEMO_OUTPUT,
    NOTEBOOK_TEST_QUESTION,
    SAMPLE_DATA,
    DemoFailed,
    run_demo,
    run_every_demo,
)
from local.migration_demo import NOTEBOOK_MODEL, add_notebook_model, migration_stack, run_migration_demo  # noqa: E402
from local.stack import MotoStack  # noqa: E402

DEMO_RUNS_PHASE_SECONDS = 0.0


def _stack(poll_interval: int | None, log_level: str | None = None, phase_seconds: float = 1.5) -> MotoStack:
    """The emulator unless OPENAI_API_KEY or OPENAI_BASE_URL is set; then that endpoint, polled every 60 s."""
    if os.environ.get("OPENAI_API_KEY"):
        print("OPENAI_API_KEY is set: fine-tuning through a real endpoint costs money; see the README.")
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        return MotoStack(poll_interval_seconds=poll_interval or 60, log_level=log_level)
    return MotoStack(
        poll_interval_seconds=poll_interval or 1, emulator_phase_seconds=phase_seconds, log_level=log_level
    )


def demo(arguments: argparse.Namespace) -> int:
    started = time.monotonic()
    print("starting the local stack (moto + in-process handlers)")
    if arguments.migration:
        return _migration_demo(arguments, started)
    try:
        with _stack(arguments.poll_interval, log_level="WARNING", phase_seconds=arguments.phase_seconds) as stack:
            print(stack.openai_endpoint)
            if arguments.provider in ("bedrock", "open"):
                print(stack.bedrock_endpoint)
            if arguments.provider == "open":
                print(stack.sagemaker_endpoint)
            # A real fine-tuning job takes minutes to hours; the emulator's takes seconds.
            emulated = {"bedrock": stack.bedrock_emulator, "open": stack.sagemaker_emulator}.get(
                arguments.provider, stack.emulator
            )
            timeout = 300 if emulated else 4 * 3600
            config = arguments.config or DEMO_CONFIGS[arguments.provider]
            run_demo(
                stack,
                data=arguments.data,
                config=config,
                timeout_seconds=timeout,
                question=arguments.question,
                output=arguments.output,
            )
    except DemoFailed as failure:
        print(f"demo failed: {failure}", file=sys.stderr)
        return 1
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    return 0


def _migration_demo(arguments: argparse.Namespace, started: float) -> int:
    """Always on the emulators: the demo shuts the old model down, which no real endpoint lets us do."""
    try:
        with migration_stack(arguments.poll_interval or 1) as stack:
            run_migration_demo(stack)
    except DemoFailed as failure:
        print(f"demo failed: {failure}", file=sys.stderr)
        return 1
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    return 0


def serve(arguments: argparse.Namespace) -> int:
    stopping = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stopping.set())
    stack_to_serve = (
        migration_stack(arguments.poll_interval or 1)
        if arguments.migration
        else _stack(arguments.poll_interval, phase_seconds=arguments.phase_seconds)
    )
    with stack_to_serve as stack:
        print(stack.openai_endpoint)
        print(stack.bedrock_endpoint)
        print(stack.sagemaker_endpoint)
        if arguments.migration:
            add_notebook_model(stack)
            print(f"adoptable_model={NOTEBOOK_MODEL}")
        if arguments.demo_runs:
            # They finish before anything is served, so nobody can watch them train: quick phases for them,
            # --phase-seconds for the runs dropped once the stack serves.
            stack.set_emulator_phase_seconds(DEMO_RUNS_PHASE_SECONDS)
            try:
                run_every_demo(stack, arguments.output)
            except DemoFailed as failure:
                print(f"demo failed: {failure}", file=sys.stderr)
                return 1
            stack.set_emulator_phase_seconds(arguments.phase_seconds)
        print(f"s3_endpoint={stack.endpoint_url}")
        print(f"bucket={stack.bucket}")
        print(f"api_url={stack.api_url}")
        print(f"api_key={stack.api_key}")
        print(f"openai_base_url={stack.openai_base_url}")
        print(f"bedrock_endpoint_url={stack.bedrock_endpoint_url}")
        print(f"dashboard_url={stack.api_url}/")
        # One pasteable line: the names the ragtune command and the README's walkthrough use, and the placeholder
        # credentials any AWS client needs to talk to the local endpoints.
        print(
            f"export RAGTUNE_API_URL={stack.api_url} RAGTUNE_API_KEY={stack.api_key} "
            f"RAGTUNE_BUCKET={stack.bucket} RAGTUNE_S3_ENDPOINT={stack.endpoint_url} "
            f"RAGTUNE_DEFAULT_PROVIDER={stack.default_provider} "
            "AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1",
            flush=True,
        )
        # Wakes every second: a signal handler runs only when the main thread runs Python, and a wait with no
        # timeout may never return to it (a SIGTERM once left a stack running after its tests were done).
        while not stopping.wait(timeout=1):
            pass
        print("stopping", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    parser.add_argument("command", choices=["demo", "serve"])
    parser.add_argument(
        "--poll-interval",
        type=int,
        default=None,
        help="seconds between job polls (default: 1 with the emulator, 60 with another endpoint)",
    )
    parser.add_argument(
        "--phase-seconds",
        type=float,
        default=1.5,
        help="seconds an emulated job spends in each phase (validating, queued, running): longer, to watch one train "
        "(serve --demo-runs: the runs dropped once it serves; its own demo runs go through quick phases)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=SAMPLE_DATA,
        help="demo: dataset uploaded to s3://<bucket>/data/<its name> (default: the SciQ sample)",
    )
    parser.add_argument(
        "--provider",
        choices=sorted(DEMO_CONFIGS),
        default="openai",
        help="demo: who fine-tunes (default openai); picks its sample, local/sample/demo-config[-<provider>].json",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="demo: run config (default: the provider's sample); its dataset.source should point at the uploaded data",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEMO_OUTPUT,
        help="demo: folder the run's reports (loss.png, metrics.csv, evaluation.jsonl) are copied to (default: "
        "demo-output/)",
    )
    parser.add_argument(
        "--migration",
        action="store_true",
        help="demo: adopt an emulated notebook fine-tune, train its Bedrock successor on the same questions, compare "
        "them, shut the old model down and compare again from its recording (emulators only); serve: the stack "
        "with that fine-tune at the OpenAI emulator and on AdoptableModels",
    )
    parser.add_argument(
        "--demo-runs",
        action="store_true",
        help="serve: first run the demo of every provider (their runs to browse in the dashboard), then serve",
    )
    parser.add_argument(
        "--question",
        default=NOTEBOOK_TEST_QUESTION,
        help="demo: what to ask the tuned model (default: the notebook's test question)",
    )
    arguments = parser.parse_args()
    return {"demo": demo, "serve": serve}[arguments.command](arguments)


if __name__ == "__main__":
    exit_code = main()
    # Everything is stopped and flushed: skip interpreter teardown, where pyarrow's native thread pool
    # (loaded by an in-process prepare) was seen aborting the process ("terminate called without an
    # active exception") while the stack's daemon threads were being torn down.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
