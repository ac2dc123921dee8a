"""The `ragtune` command: submit configs, watch runs, inspect them, ask their models, against AWS or the local stack.

Every command takes `--json` for scripts. Where it points: `--stack NAME [--region R]`, or the
RAGTUNE_* variables `make local` prints. Errors are one sentence on stderr with the next step; with
--json, {"error": {"code", "message"}} on stdout instead, where a script already reads the answer.
Exit codes: 0 done, 1 what was checked or watched failed, 2 the command could not do what was asked.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import urlencode

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, Task, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from ragtune_cli import deployment
from ragtune_cli.api import ApiClient, ApiError, run_path
from ragtune_cli.errors import EXIT_ERROR, EXIT_FAILED, CliError, ErrorCode
from ragtune_cli.progress import ProgressTracker, Snapshot, api_time
from shared.domain.errors import ConfigError, UserInputError
from shared.domain.run_ids import RUN_ID_PATTERN, derive_run_id
from shared.domain.run_status import FINISHED, JOB_FINISHED, READYING_MODEL, RunStatus
from shared.providers import DEFAULT_PROVIDER, PROVIDER_NAMES

if TYPE_CHECKING:
    from shared.domain.config import Provider, RunConfig

app = typer.Typer(
    name="ragtune",
    help=f"{__doc__}\nThe error codes are the API's own (run_not_found, ...) when the API refused, else one of: "
    f"{', '.join(ErrorCode)}.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# A pipe or a file gets whole lines (a table row is one line, however many columns `runs` has, so scripts can
# grep it); a terminal gets its own width.
PIPE_WIDTH = 1000
out = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH, highlight=False, soft_wrap=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200, highlight=False, soft_wrap=True)

Stack = Annotated[
    str | None,
    typer.Option("--stack", envvar="RAGTUNE_STACK", help="Name of a deployed ragtune stack (reads its outputs)."),
]
Region = Annotated[str | None, typer.Option("--region", help="AWS region of the stack (default: your AWS config).")]
AsJson = Annotated[
    bool,
    typer.Option(
        "--json",
        help='Print JSON for scripts instead of tables; an error as {"error": {"code", "message"}} on stdout, '
        "with the same exit codes.",
    ),
]


# The registry's names, as typer's choices.
DefaultProvider = StrEnum("DefaultProvider", {name: name for name in PROVIDER_NAMES})  # type: ignore[misc]
_DEFAULT_PROVIDER_CHOICE = DefaultProvider(DEFAULT_PROVIDER)


RunIdArgument = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="A run id, as `ragtune runs` lists them.", show_default=False)
]


def _print_version(wanted: bool) -> None:
    if wanted:
        # Imported here: importlib.metadata is 26 ms of every command's start, and only --version reads it.
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"ragtune {version('ragtune')}")
        except PackageNotFoundError:  # run from a checkout that `pip install .` never saw
            print("ragtune (not installed: `pip install .` gives it a version)")
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Options before the command: --version, and typer's shell completion."""


@contextmanager
def _sentences(as_json: bool) -> Iterator[None]:
    """Every failure ends as one sentence and an exit code, never a traceback: on stderr, or with --json as an
    error object on stdout, which a script parses either way."""
    try:
        yield
    except CliError as error:
        _report(error.code, error.message, as_json)
        raise typer.Exit(error.exit_code) from None
    except BrokenPipeError:  # `ragtune runs --json | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except KeyboardInterrupt:
        _report(ErrorCode.INTERRUPTED, "Interrupted.", as_json)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:
        if os.environ.get("RAGTUNE_DEBUG"):
            raise
        _report(
            ErrorCode.INTERNAL_ERROR,
            f"Unexpected error ({type(error).__name__}: {error}); run again with RAGTUNE_DEBUG=1 for the traceback "
            "and report it.",
            as_json,
        )
        raise typer.Exit(EXIT_ERROR) from None


def _report(code: str, message: str, as_json: bool) -> None:
    if as_json:
        _print_json({"error": {"code": code, "message": message}})
    else:
        err.print(message, markup=False)


def _run_id(value: str) -> str:
    """Checked before anything is asked: a path or a typo would reach the API as a URL it has no route for."""
    if re.fullmatch(RUN_ID_PATTERN, value) is None:
        _fail(
            f"{value!r} is not a run id: run ids are lowercase letters, digits and '-', as `ragtune runs` lists them.",
            ErrorCode.INVALID_RUN_ID,
        )
    return value


def _api(stack: str | None, region: str | None) -> tuple[deployment.Deployment, ApiClient]:
    target = deployment.find(stack, region)
    return target, ApiClient(target.api_url, target.api_key)


def _show(renderable: Any) -> None:
    """A table without rich's padding at the ends of lines (a pipe or a file gets clean text)."""
    with out.capture() as captured:
        out.print(renderable)
    print("\n".join(line.rstrip() for line in captured.get().splitlines()), flush=True)


def _print_json(value: Any) -> None:
    # Plain print: rich would wrap long strings and a script wants exactly one JSON document per line.
    print(json.dumps(value, ensure_ascii=False, default=str), flush=True)


def _fail(message: str, code: str, exit_code: int = EXIT_ERROR) -> NoReturn:
    raise CliError(message, code, exit_code)


def _table(title: str | None, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        if value not in (None, "", [], {}):
            table.add_row(name, str(value))
    return table


def _money(value: Any) -> str | None:
    return f"${value:,.4f}" if isinstance(value, int | float) else None


def _count(value: Any) -> str | None:
    return f"{value:,}" if isinstance(value, int) else None


def _error_text(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None
    return f"{error.get('message')} ({error.get('code')})"


# -- validate ------------------------------------------------------------------------------------------


def _read_config(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        _fail(f"Cannot read the config {path}: {error.strerror or error}.", ErrorCode.FILE_ERROR)


def _parse(path: Path, raw: bytes, default_provider: Provider = DEFAULT_PROVIDER) -> RunConfig:
    """`default_provider`: what a config naming no provider gets (the deployment's DefaultProvider).

    The config's schema is imported here: building its models is a third of the command's start, which every
    command but submit and validate would pay for nothing."""
    from shared.domain.config import parse_run_config

    try:
        return parse_run_config(raw, default_provider=default_provider)
    except ConfigError as error:
        _fail(f"{path}: {error.message.rstrip('.')}.", ErrorCode.INVALID_CONFIG, EXIT_FAILED)


def _what_the_run_would_do(config: RunConfig) -> list[tuple[str, Any]]:
    spec = config.dataset
    hyperparameters = config.fine_tune.hyperparameters.model_dump(exclude_none=True)
    if config.adopt:  # nothing is trained: no base model, suffix or hyperparameters apply
        training: list[tuple[str, Any]] = [
            ("adopts", f"{config.adopt.model} (trains nothing; records its answers to the held-out questions)")
        ]
    else:
        training = [("base model", config.fine_tune.model), ("suffix", config.fine_tune.suffix)]
    return [
        ("provider", config.provider + ("" if "provider" in config.model_fields_set else " (the stack's default)")),
        *training,
        ("dataset", spec.source + (f" @ {spec.revision}" if spec.revision else "") + f" (split {spec.split})"),
        ("columns used", ", ".join(config.required_columns()) or "none"),
        ("filter", "rows with a value in " + ", ".join(config.filter.non_empty) if config.filter.non_empty else "none"),
        ("system", config.template.system),
        ("user", config.template.user),
        ("assistant", config.template.assistant),
        (
            "validation",
            f"{config.validation_fraction:.0%} of kept rows held out" if config.validation_fraction else "none",
        ),
        ("max examples", config.max_examples),
        ("seed", config.seed),
        ("questions from", config.evaluation.questions_from),
        ("hyperparameters", None if config.adopt else ", ".join(f"{k}={v}" for k, v in hyperparameters.items())),
    ]


def _estimate_rows(found: dict[str, Any], adopted: bool) -> list[tuple[str, Any]]:
    """What the data gives; an adopted run's rows only become questions: no training file, no training cost."""
    counts, tokens, estimate = found["counts"], found["tokens"], found["estimate"]
    dropped = ", ".join(f"{reason} x{n}" for reason, n in counts["dropped_reasons"].items())
    rows = [
        ("rows", f"{counts['rows_read']:,} read, {counts['rows_kept']:,} kept, {counts['rows_dropped']:,} dropped"),
        ("dropped because", dropped),
    ]
    if adopted:
        return [*rows, ("held out", f"{counts['validation_examples']:,} rows, the questions the model is asked")]
    return [
        *rows,
        ("examples", f"{counts['train_examples']:,} training, {counts['validation_examples']:,} validation"),
        ("tokens", f"{tokens['total_tokens']:,} in the training file, {tokens['billing_tokens']:,} billed per epoch"),
        (
            "estimate",
            f"{estimate['epochs']} epochs = {estimate['trained_tokens']:,} trained tokens, "
            f"{_money(estimate['cost_usd'])} at the template's default price",
        ),
    ]


@app.command()
def validate(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="A run config (JSON).", show_default=False)],
    data: Annotated[
        Path | None, typer.Option("--data", help="A local data file: read it and estimate tokens and cost.")
    ] = None,
    default_provider: Annotated[
        DefaultProvider,
        typer.Option(
            "--default-provider",
            envvar="RAGTUNE_DEFAULT_PROVIDER",
            help="The provider a config naming none gets: your stack's DefaultProvider parameter.",
        ),
    ] = _DEFAULT_PROVIDER_CHOICE,
    as_json: AsJson = False,
) -> None:
    """Check a config against the schema offline and print what the run would do; nothing is uploaded."""
    with _sentences(as_json):
        config = _parse(config_path, _read_config(config_path), default_provider.value)
        found = None
        if data is not None:
            from ragtune_cli.estimate import estimate  # imports `datasets`: only when asked for

            if not data.is_file():
                _fail(f"No data file at {data}.", ErrorCode.FILE_ERROR)
            try:
                found = estimate(config, data)
            except UserInputError as error:
                _fail(
                    f"{config_path} with {data}: the run would fail: {error.message.rstrip('.')}.",
                    ErrorCode.INVALID_CONFIG,
                    EXIT_FAILED,
                )
        if as_json:
            _print_json(
                {
                    "valid": True,
                    "config": config.model_dump(mode="json"),
                    "columns": config.required_columns(),
                    **(found or {}),
                }
            )
            return
        out.print(f"{config_path}: valid", markup=False)
        rows = _estimate_rows(found, adopted=config.adopt is not None) if found else []
        _show(_table(None, _what_the_run_would_do(config) + rows))


# -- submit --------------------------------------------------------------------------------------------


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice")
    return dict(pairs)


def _with_source(raw: bytes, source: str) -> bytes:
    """The config with dataset.source set to `source` (and a dataset object if it had none); left as it is when it
    is not a JSON object with one value per key, so that the parser says what is wrong with it."""
    try:
        document = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_one_value_per_key)
    except (ValueError, RecursionError):
        return raw
    if not isinstance(document, dict) or not isinstance(document.setdefault("dataset", {}), dict):
        return raw
    document["dataset"]["source"] = source
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def _described(stored: deployment.StoredObject) -> str:
    return (f"version {stored.version_id}, " if stored.version_id else "") + f"ETag {stored.etag}"


@app.command()
def submit(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="A run config (JSON).", show_default=False)],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Upload this file as data/<its name> and point the config's dataset.source at it (whatever the "
            "config names there, e.g. the local file).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="With --data: replace data/<name> even when it holds another file."),
    ] = False,
    stack: Stack = None,
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """Upload the data (with --data) and the config; the run starts as the config lands. Prints the run id."""
    from shared.domain.config import DATA_FILE_TYPES, data_object_key

    with _sentences(as_json):
        raw = _read_config(config_path)
        target = deployment.find(stack, region)
        data_key = None
        if data is not None:
            if not data.is_file():
                _fail(f"No data file at {data}.", ErrorCode.FILE_ERROR)
            if data.suffix.lower() not in DATA_FILE_TYPES:
                _fail(
                    f"{data}: the pipeline reads {', '.join(DATA_FILE_TYPES)} files; name it so.", ErrorCode.FILE_ERROR
                )
            data_key = f"data/{data.name}"
            # Before validating: the source a config written for --data names is the local file, which is refused.
            raw = _with_source(raw, f"s3://{target.bucket}/{data_key}")
        config = _parse(config_path, raw, target.default_provider)
        location = data_object_key(config.dataset.source)
        if data is None and location is not None and location[0] != target.bucket:
            _fail(
                f"{config_path}: dataset.source is in bucket {location[0]}, but this deployment reads only "
                f"s3://{target.bucket}/data/: pass --data FILE to upload your file there.",
                ErrorCode.INVALID_CONFIG,
            )
        if config_path.suffix != ".json":
            _fail(
                f"{config_path}: the pipeline starts a run only for configs/*.json; name the file "
                f"{config_path.stem}.json.",
                ErrorCode.FILE_ERROR,
            )
        config_key = f"configs/{config_path.name}"
        run_id = derive_run_id(config_key, raw)
        _refuse_a_run_that_exists(ApiClient(target.api_url, target.api_key), run_id)
        stored, uploaded = (
            _upload_data(target, data_key, data, force) if data is not None and data_key is not None else (None, False)
        )
        deployment.upload(target, config_key, raw)
        if as_json:
            _print_json(
                {
                    "run_id": run_id,
                    "bucket": target.bucket,
                    "config_key": config_key,
                    "data_key": data_key,
                    "data_version_id": stored.version_id if stored else None,
                    "data_etag": stored.etag if stored else None,
                }
            )
            return
        if stored and uploaded:
            out.print(f"uploaded {data} to s3://{target.bucket}/{data_key} ({_described(stored)})", markup=False)
        elif stored:
            out.print(
                f"s3://{target.bucket}/{data_key} already holds {data} ({_described(stored)}): not uploaded again",
                markup=False,
            )
        out.print(f"uploaded {config_path} to s3://{target.bucket}/{config_key}", markup=False)
        out.print(f"run {run_id}", markup=False)
        out.print(f"follow it with: ragtune watch {run_id}", markup=False)


def _upload_data(
    target: deployment.Deployment, key: str, path: Path, force: bool
) -> tuple[deployment.StoredObject, bool]:
    """(what the bucket holds at `key`, whether it was uploaded now). Files of the same name share data/<name>:
    replacing another file would change what the runs made from it read on a retry, so only with --force; the
    same content is not uploaded again (a new version of nothing)."""
    existing = deployment.stored(target, key)
    if existing is not None and deployment.holds(existing, path):
        return existing, False
    if existing is not None and not force:
        modified = existing.last_modified.astimezone(UTC)
        _fail(
            f"s3://{target.bucket}/{key} already holds another file ({existing.size:,} bytes, uploaded "
            f"{modified:%Y-%m-%d %H:%M:%S} UTC, {_described(existing)}): rename yours, or pass --force to replace it.",
            ErrorCode.DATA_CONFLICT,
        )
    return deployment.upload_file(target, key, path), True


def _refuse_a_run_that_exists(api: ApiClient, run_id: str) -> None:
    """The same config name and content make the same run, which only retries if it failed: uploading again
    would start nothing, and --data would replace the data that run was prepared from."""
    try:
        existing = api.call("GET", run_path(run_id))
    except ApiError as error:
        if error.status == 404:
            return
        raise
    if existing.get("status") != "failed":
        _fail(
            f"Run {run_id} exists already ({existing.get('status')}): the same config name and content make the same "
            "run, and only a failed one is retried. Change the config (or its file name) to start another; "
            f"`ragtune show {run_id}` shows this one.",
            ErrorCode.RUN_EXISTS,
        )


# -- watch ---------------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}"


def _finish_in(snapshot: Snapshot, now: datetime) -> str | None:
    """Only while the job runs and before the estimate: a queued job's time, or one past, would read ~0:00:00."""
    if snapshot.status != "running" or not snapshot.estimated_finish:
        return None
    try:
        finish = datetime.fromisoformat(snapshot.estimated_finish.replace("Z", "+00:00"))
    except ValueError:
        return None
    left = ((finish if finish.tzinfo else finish.replace(tzinfo=UTC)) - now).total_seconds()
    return f"~{_clock(left)} left" if left >= 1 else None


def _progress_line(snapshot: Snapshot, now: datetime, bar: bool = False) -> str:
    """Status, steps, losses, elapsed, time left; beside a bar (which shows status, and steps of a known total),
    the rest only."""
    parts = [] if bar else [snapshot.status]
    if snapshot.step is not None and not (bar and snapshot.total_steps):
        parts.append(f"step {snapshot.step}" + (f"/{snapshot.total_steps}" if snapshot.total_steps else ""))
    if snapshot.train_loss is not None:
        parts.append(f"train loss {snapshot.train_loss:.4f}")
    if snapshot.valid_loss is not None:
        parts.append(f"valid loss {snapshot.valid_loss:.4f}")
    parts.append(f"elapsed {_clock(snapshot.elapsed_seconds)}")
    finish = _finish_in(snapshot, now)
    if finish:
        parts.append(finish)
    return "  ".join(parts)


class _StepsBar(BarColumn):
    """No bar until the total is known: rich would pulse a full-width one beside 0/?."""

    def render(self, task: Task) -> Any:  # a ProgressBar, or nothing
        return Text() if task.total is None else super().render(task)


class _StepsDone(MofNCompleteColumn):
    def render(self, task: Task) -> Text:
        return Text() if task.total is None else super().render(task)


class _LiveBar:
    """A terminal's progress bar; the same fields as the line printed to a pipe."""

    def __init__(self, console: Console = out) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            _StepsBar(),
            _StepsDone(),
            TextColumn("{task.fields[details]}"),
            console=console,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> _LiveBar:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def show(self, snapshot: Snapshot, now: datetime) -> None:
        details = _progress_line(snapshot, now, bar=True)
        if self._task is None:
            self._task = self._progress.add_task(snapshot.status, total=snapshot.total_steps, details=details)
        self._progress.update(
            self._task,
            description=snapshot.status,
            completed=snapshot.step or 0,
            total=snapshot.total_steps,
            details=details,
        )


def _follow(
    api: ApiClient,
    run_id: str,
    interval: float,
    timeout: float | None,
    show: Callable[[Snapshot], None],
    every_poll: bool = False,
) -> Snapshot:
    """Poll until the run finishes; `show` each new state (`every_poll`: each poll, so a bar's clock runs on)."""
    tracker, started, last = ProgressTracker(), time.monotonic(), None
    while True:
        snapshot = tracker.snapshot(api.call("GET", run_path(run_id)), datetime.now(UTC))
        if every_poll or last is None or snapshot.key() != last.key():
            show(snapshot)
            last = snapshot
        if snapshot.finished:
            return snapshot
        if timeout is not None and time.monotonic() - started > timeout:
            _fail(
                f"Run {run_id} is still {snapshot.status} after {timeout:g} s; it goes on: `ragtune watch {run_id}` "
                "follows it again.",
                ErrorCode.TIMED_OUT,
            )
        time.sleep(interval)


@app.command()
def watch(
    run_id: RunIdArgument,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls.")] = 5.0,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="Give up after this many seconds (exit 2).")
    ] = None,
    stack: Stack = None,
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """Follow a run until it finishes: exit 0 when it succeeded, 1 when it failed, was cancelled or tracking failed.

    --json prints one JSON object per change (the last one has "finished": true; an error object follows it when
    the run did not succeed).
    """
    with _sentences(as_json):
        run_id = _run_id(run_id)
        _, api = _api(stack, region)
        if as_json:
            final = _follow(api, run_id, interval, timeout, lambda snapshot: _print_json(snapshot.as_json()))
        elif out.is_terminal:
            with _LiveBar() as bar:
                final = _follow(
                    api, run_id, interval, timeout, lambda s: bar.show(s, datetime.now(UTC)), every_poll=True
                )
        else:
            out.print(f"watching run {run_id}", markup=False)
            final = _follow(
                api, run_id, interval, timeout, lambda s: out.print(_progress_line(s, datetime.now(UTC)), markup=False)
            )
        if final.status != "succeeded":
            _fail(
                f"Run {run_id} ended {final.status}: {_error_text(final.error) or 'no error recorded'}.",
                ErrorCode.RUN_FAILED,
                EXIT_FAILED,
            )
        if not as_json:
            out.print(f"run {run_id} succeeded: model {final.fine_tuned_model}", markup=False)


# -- runs, show ----------------------------------------------------------------------------------------


def _runs_with_status(api: ApiClient, statuses: set[str], limit: int) -> tuple[list[dict[str, Any]], bool]:
    """(the newest `limit` runs with one of `statuses`, whether there are more). GET /runs filters nothing: its
    pages are read until one run more than asked for is found, or there are no more pages."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = urlencode({"limit": 100, **({"cursor": cursor} if cursor else {})})
        page = api.call("GET", f"/runs?{query}")
        found += [run for run in page["runs"] if run["status"] in statuses]
        cursor = page.get("next_cursor")
        if len(found) > limit or not cursor:
            return found[:limit], len(found) > limit


def _runs_table(listed: list[dict[str, Any]]) -> Table:
    """Nothing is cut in a narrow terminal: the short columns keep their width, the others wrap, and an id too
    long for its column folds onto the next line rather than lose its end to an ellipsis."""
    table = Table(box=None)
    for name in ("run", "status", "provider", "created", "config", "model", "model shutdown", "error"):
        table.add_column(
            name,
            no_wrap=name in {"status", "provider"},
            overflow="fold",
            min_width=10 if name == "created" else None,  # the date on one line, the time under it
        )
    for run in listed:
        model = run.get("fine_tuned_model") or ""
        table.add_row(
            run["run_id"],
            run["status"],
            run.get("provider") or DEFAULT_PROVIDER,
            str(run["created_at"])[:19].replace("T", " "),
            run.get("config_key") or "",
            f"{model} (adopted)" if run.get("adopted") else model,
            run.get("model_shutdown") or "",
            (run.get("error") or {}).get("message") or "",
        )
    return table


# A constant: annotations are strings (`from __future__ import annotations`) that typer evaluates again.
STATUS_HELP = (
    f"Only runs with this status, one of {', '.join(RunStatus)} (repeatable). With --json: "
    '{"runs": [...], "more": true when more such runs exist}.'
)


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="How many runs, newest first.")] = 20,
    status: Annotated[
        list[RunStatus] | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            case_sensitive=False,
            help=STATUS_HELP,
        ),
    ] = None,
    stack: Stack = None,
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """List the newest runs."""
    with _sentences(as_json):
        _, api = _api(stack, region)
        if status:
            wanted = " or ".join(dict.fromkeys(status))
            listed, more = _runs_with_status(api, {name.value for name in status}, limit)
            if as_json:
                _print_json({"runs": listed, "more": more})
                return
            empty = f"no runs with status {wanted}"
            hint = f"(more runs with status {wanted} exist; --limit shows up to 100)"
        else:
            page = api.call("GET", f"/runs?limit={limit}")
            if as_json:
                _print_json(page)
                return
            listed, more = page["runs"], bool(page.get("next_cursor"))
            empty = "no runs yet: start one with `ragtune submit CONFIG`"
            hint = f"(more runs exist; --limit up to 100, or GET /runs?cursor={page.get('next_cursor')})"
        if not listed:
            out.print(empty, markup=False)
            return
        _show(_runs_table(listed))
        if more:
            out.print(hint, markup=False)


def _model_rows(run: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, Any]]:
    """An adopted run's config still carries the default fine_tune.model, which it never used: no base model."""
    if run.get("adopted"):
        adopted = run.get("fine_tuned_model") or (config.get("adopt") or {}).get("model")
        return [("adopted", f"{adopted} (trained elsewhere; nothing trained here)")]
    return [
        ("base model", (config.get("fine_tune") or {}).get("model")),
        ("tuned model", run.get("fine_tuned_model") or run.get("deployment_arn")),
        ("weights", run.get("weights_uri")),  # an open run's: the user's to keep
    ]


def _run_rows(run: dict[str, Any]) -> list[tuple[str, Any]]:
    config = run.get("config") or {}
    counts, tokens, estimate = run.get("counts") or {}, run.get("tokens") or {}, run.get("estimate") or {}
    events = run.get("events") or []
    metrics = run.get("metrics") or {}
    dropped = ", ".join(f"{reason} x{n}" for reason, n in (counts.get("dropped_reasons") or {}).items())
    return [
        ("status", run.get("status")),
        ("provider", config.get("provider")),
        *_model_rows(run, config),
        ("model", run.get("model_shutdown")),
        ("config", run.get("config_key")),
        ("dataset", (config.get("dataset") or {}).get("source")),
        ("created", run.get("created_at")),
        ("updated", run.get("updated_at")),
        ("finished", run.get("finished_at")),
        (
            "rows",
            f"{_count(counts.get('rows_read'))} read, {_count(counts.get('rows_kept'))} kept, "
            f"{_count(counts.get('rows_dropped'))} dropped"
            if counts.get("rows_read") is not None
            else None,
        ),
        ("dropped because", dropped),
        (
            "examples",
            f"{_count(counts.get('train_examples'))} training, "
            f"{_count(counts.get('validation_examples') or 0)} validation"
            if counts.get("train_examples") is not None
            else None,
        ),
        (
            "tokens",
            f"{_count(tokens.get('total_tokens'))} total, {_count(tokens.get('billing_tokens'))} billed per epoch"
            if tokens
            else None,
        ),
        (
            "estimate",
            f"{estimate.get('epochs')} epochs, {_count(estimate.get('trained_tokens'))} trained tokens, "
            f"{_money(estimate.get('cost_usd'))}"
            if estimate
            else None,
        ),
        ("trained tokens", _count(run.get("trained_tokens"))),
        ("job", run.get("job_id")),
        ("estimated finish", run.get("estimated_finish")),
        ("metrics", ", ".join(f"{name}={value}" for name, value in metrics.items())),
        ("last event", events[-1].get("message") if events else None),
        ("error", _error_text(run.get("error"))),
        ("reports", ", ".join(sorted(run.get("report_urls") or {}))),
    ]


@app.command()
def show(run_id: RunIdArgument, stack: Stack = None, region: Region = None, as_json: AsJson = False) -> None:
    """Everything recorded about one run: status, provider, model, counts, tokens, cost estimate, error."""
    with _sentences(as_json):
        run_id = _run_id(run_id)
        _, api = _api(stack, region)
        run = api.call("GET", run_path(run_id))
        if as_json:
            _print_json(run)
            return
        _show(_table(f"run {run['run_id']}", _run_rows(run)))


# -- ask, cancel ---------------------------------------------------------------------------------------


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.", show_default=False)],
    run: Annotated[
        str | None, typer.Option("--run", help="The run whose model answers (default: the latest succeeded run).")
    ] = None,
    stack: Stack = None,
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """Ask a fine-tuned model; prints the answer, the model and the run it came from."""
    with _sentences(as_json):
        run = _run_id(run) if run is not None else None
        _, api = _api(stack, region)
        body = {"question": question, **({"run_id": run} if run else {})}
        try:
            answer = api.call("POST", "/ask", body)
        except ApiError as error:
            if error.status == 409 and run is None:
                _fail(
                    f"{error.message.rstrip('.')}. `ragtune runs` lists the runs; `ragtune watch RUN_ID` waits.",
                    error.code,
                )
            raise
        if as_json:
            _print_json(answer)
            return
        if answer.get("answer") is None:
            out.print(f"(the model declined to answer) {answer.get('refusal')}", markup=False)
        else:
            out.print(answer["answer"], markup=False)
        chosen = "" if run else " (the latest succeeded run; pass --run RUN_ID to choose)"
        out.print(f"model: {answer['model']}", markup=False)
        out.print(f"run: {answer['run_id']}{chosen}", markup=False)


def _not_cancellable(run_id: str, status: str | None, reason: str) -> str:
    """A finished run's in words of its status (the API says "has already cancelled"); the API's reason otherwise."""
    if status == "cancelled":
        return f"Run {run_id} is already cancelled: there is nothing to cancel."
    if status in JOB_FINISHED:
        return f"Run {run_id} has already {status}: there is nothing to cancel."
    return reason


@app.command()
def cancel(run_id: RunIdArgument, stack: Stack = None, region: Region = None, as_json: AsJson = False) -> None:
    """Cancel a run's fine-tuning job."""
    with _sentences(as_json):
        run_id = _run_id(run_id)
        _, api = _api(stack, region)
        try:
            result = api.call("POST", run_path(run_id, "cancel"))
        except ApiError as error:
            if error.status == 409:
                _fail(_not_cancellable(run_id, _conflicting_status(error), error.api_message), error.code)
            raise
        if as_json:
            _print_json(result)
            return
        out.print(f"cancel requested for run {run_id}; its job is {result['status']}", markup=False)


def _conflicting_status(error: ApiError) -> str | None:
    """The run's status a 409 carries, in either error shape."""
    status = error.body.get("status") or (error.body.get("error") or {}).get("status")
    return str(status) if status else None


@app.command(name="delete-model")
def delete_model(
    run_id: RunIdArgument,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking (needed when no terminal can ask).")
    ] = False,
    stack: Stack = None,
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """Delete what serves a run's model (a Bedrock run's on-demand deployment, an open run's imported model, never
    its weights): it stops answering and billing."""
    with _sentences(as_json):
        run_id = _run_id(run_id)
        _, api = _api(stack, region)
        if not yes:
            if not sys.stdin.isatty():
                _fail(
                    f"Deleting the model deployment of run {run_id} cannot be undone: pass --yes to delete it.",
                    ErrorCode.CONFIRMATION_REQUIRED,
                )
            typer.confirm(
                f"Delete the model deployment of run {run_id}? Its model stops answering; this cannot be undone.",
                abort=True,
                err=True,  # stdout is for the answer (--json's)
            )
        try:
            deleted = api.call("DELETE", run_path(run_id, "model"))
        except ApiError as error:
            if error.status == 409:
                _fail(
                    f"Run {run_id} has no model deployment to delete (status {_conflicting_status(error)}): only a "
                    "run whose model a deployment or an import serves has one, until it is deleted.",
                    error.code,
                )
            raise
        if as_json:
            _print_json(deleted)
            return
        out.print(deleted["message"], markup=False)


# -- eval, curve ---------------------------------------------------------------------------------------


EVALUATION_RUNNING = "evaluation_running"


def _evaluation_call(
    api: ApiClient,
    method: str,
    run_id: str,
    body: dict[str, Any] | None = None,
    running_waited_until: float | None = None,
    interval: float = 5.0,
) -> Any:
    """With `running_waited_until`, an evaluation already under way (409 `evaluation_running`: say the one a run's
    tracking starts when it succeeds, which a `watch` just before does not wait for) is waited out until then and
    the call made again: the API runs one evaluation of a run at a time."""
    said_waiting = False
    while True:
        try:
            return api.call(method, run_path(run_id, "evaluation"), body)
        except ApiError as error:
            running = error.status == 409 and error.code == EVALUATION_RUNNING
            if not (running and running_waited_until is not None and time.monotonic() < running_waited_until):
                _evaluation_error(error)
        if not said_waiting:
            err.print(f"run {run_id} is being evaluated already: waiting for that to finish first", markup=False)
            said_waiting = True
        time.sleep(interval)


def _evaluation_error(error: ApiError) -> NoReturn:
    if error.status == 409:  # no held-out questions, or not evaluable now: the API says which and what to do
        _fail(error.api_message, error.code)
    if error.no_route:
        _fail(
            "This deployment has no evaluation endpoint (GET /runs/{id}/evaluation): deploy a newer ragtune.",
            error.code,
        )
    raise error


def _not_evaluated(run_id: str, status: str) -> str:
    """Why a pending evaluation will not start by waiting: only a succeeded run's tracking starts it."""
    if status in FINISHED:
        return f"Run {run_id} ended {status}: only a succeeded run is evaluated, so it has no evaluation."
    return (
        f"Run {run_id} has not finished (it is {status}): it is evaluated once it has succeeded; "
        f"`ragtune watch {run_id}` waits for that."
    )


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else ""


def _evaluation_table(evaluation: dict[str, Any]) -> Table:
    """As `runs`: in a narrow terminal, a cell wraps or folds rather than lose its end to an ellipsis."""
    table = Table(
        title=f"evaluation: {evaluation.get('status')}, {evaluation.get('questions')} questions",
        title_justify="left",
        box=None,
    )
    for name in ("arm", "model", "accuracy", "95% CI", "questions", "prompt tok", "completion tok", "p50 ms", "$ / 1k"):
        table.add_column(name, overflow="fold")
    for arm in evaluation.get("arms") or []:
        low, high = (arm.get("ci95") or [None, None])[:2]
        interval = f"{_number(low, '.1%')}–{_number(high, '.1%')}" if low is not None and high is not None else ""
        table.add_row(
            str(arm.get("name")),
            str(arm.get("model")),
            _number(arm.get("accuracy"), ".1%"),
            interval,
            str(arm.get("questions", "")),
            _number(arm.get("prompt_tokens_mean"), ".0f"),
            _number(arm.get("completion_tokens_mean"), ".0f"),
            _number(arm.get("latency_ms_p50"), ".0f"),
            _number(arm.get("cost_per_1k_usd"), ".4f"),
        )
    return table


def _utc_time(value: Any) -> str:
    """An API timestamp in UTC, as the demo prints it (the API may give any offset); as given if not ISO 8601."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return (moment.astimezone(UTC) if moment.tzinfo else moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def _arm_notes(evaluation: dict[str, Any]) -> list[str]:
    """What a figure alone would not tell, one line per arm under the table (a column would pass 120 characters):
    figures from answers recorded before its model went, and when its model shuts down."""
    notes = []
    for arm in evaluation.get("arms") or []:
        said = []
        recorded = arm.get("recorded")
        if recorded:
            when = _utc_time(recorded["recorded_at"]) if recorded.get("recorded_at") else "at an unknown time"
            said.append(
                f"recorded {when} (model gone): answered {arm.get('questions')} of {recorded.get('questions')} "
                "questions"
            )
        if arm.get("model_shutdown"):
            said.append(f"model {arm['model_shutdown']}")
        if said:
            notes.append(f"{arm.get('name')}: {'; '.join(said)}")
    return notes


@app.command(name="eval")
def evaluate(
    run_id: RunIdArgument,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            "--compare",
            help="Another run to evaluate on the same questions (repeatable); starts a new evaluation, once the "
            "run's evaluation under way (if any) has finished.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for an evaluation under way to finish.")] = True,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls.")] = 5.0,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Stop waiting after this many seconds.")] = 1800,
    stack: Stack = None,
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """The run's evaluation on its held-out questions: accuracy with a 95% interval, tokens, latency, cost per arm.

    Exits 2 while there is none to show yet (the run or its evaluation has not finished), 1 when it failed.
    """
    with _sentences(as_json):
        run_id = _run_id(run_id)
        others = [_run_id(other) for other in compare or []]
        _, api = _api(stack, region)
        deadline = time.monotonic() + timeout
        if others:
            body = {"compare_with": others}
            evaluation = _evaluation_call(api, "POST", run_id, body, deadline if wait else None, interval)
        else:
            evaluation = _evaluation_call(api, "GET", run_id)
        while evaluation.get("status") in {"pending", "running"}:
            if evaluation["status"] == "pending":
                status = str(api.call("GET", run_path(run_id)).get("status"))
                if status != "succeeded":
                    _fail(_not_evaluated(run_id, status), ErrorCode.NOT_READY)
            if not wait and others:  # asked to start it, not to wait for it
                if as_json:
                    _print_json(evaluation)
                else:
                    out.print(
                        f"started the evaluation of run {run_id} ({evaluation['status']}): `ragtune eval {run_id}` "
                        "shows it once it has finished",
                        markup=False,
                    )
                return
            if not wait:
                _fail(
                    f"The evaluation of run {run_id} is {evaluation['status']}: `ragtune eval {run_id}` waits for it.",
                    ErrorCode.NOT_READY,
                )
            if time.monotonic() > deadline:
                _fail(
                    f"The evaluation of run {run_id} is still {evaluation['status']} after {timeout:g} s; "
                    f"`ragtune eval {run_id}` shows it later.",
                    ErrorCode.TIMED_OUT,
                )
            time.sleep(interval)
            evaluation = _evaluation_call(api, "GET", run_id)
        failed = evaluation.get("status") == "failed"
        if as_json and not failed:
            _print_json(evaluation)
        elif not as_json and (not failed or evaluation.get("arms")):  # a failed one's arms, if any, still tell
            _show(_evaluation_table(evaluation))
            for note in _arm_notes(evaluation):
                out.print(note, markup=False)
        if failed:
            reason = _error_text(evaluation.get("error")) or "no error recorded"
            _fail(f"The evaluation of run {run_id} failed: {reason}.", ErrorCode.EVALUATION_FAILED, EXIT_FAILED)


@app.command()
def curve(
    run_id: RunIdArgument,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to save the PNG (default: <run id>-loss.png).")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait for the curve of a job that has just ended (drawn moments later)."),
    ] = True,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls.")] = 2.0,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Wait at most until this many seconds after the job ended.")
    ] = 120,
    stack: Stack = None,
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """Save the run's training and validation loss curve as a PNG.

    The deployment draws it just after the job ends, so straight after `ragtune watch` it waits for it.
    """
    with _sentences(as_json):
        run_id = _run_id(run_id)
        _, api = _api(stack, region)
        run = api.call("GET", run_path(run_id))
        ended = _job_ended_at(run)
        deadline = min(ended + timeout, time.time() + timeout) if wait and ended is not None else 0.0
        waited = False
        while not _curve_url(run) and (left := deadline - time.time()) > 0:
            if not waited and not as_json:
                err.print(f"waiting for the loss curve of run {run_id}, drawn just after its job ended", markup=False)
            waited = True
            time.sleep(min(interval, left))
            run = api.call("GET", run_path(run_id))
        url = _curve_url(run)
        if not url and waited:
            _fail(
                f"Run {run_id} still has no loss curve {timeout:g} s after its job ended: drawing it failed, or the "
                "deployment is older than the training curves and draws none.",
                ErrorCode.TIMED_OUT,
            )
        if not url:
            recent = ended is not None and time.time() - ended < timeout
            _fail(_no_curve(run_id, run, recent=recent), ErrorCode.NOT_READY)
        path = output or Path(f"{run_id}-loss.png")
        content = api.download(url)
        try:
            path.write_bytes(content)
        except OSError as error:
            _fail(f"Cannot write {path}: {error.strerror or error}.", ErrorCode.FILE_ERROR)
        if as_json:
            _print_json({"run_id": run_id, "path": str(path), "bytes": len(content)})
            return
        out.print(f"saved the loss curve of run {run_id} to {path} ({len(content):,} bytes)", markup=False)


def _curve_url(run: dict[str, Any]) -> str | None:
    url = (run.get("report_urls") or {}).get("loss_png")
    return str(url) if url else None


def _job_ended_at(run: dict[str, Any]) -> float | None:
    """When the job ended, for a run whose tracking draws its curve (the state machine does as the run finishes)."""
    changed = api_time(run.get("status_changed_at"))
    if run.get("adopted") or not run.get("job_id") or run.get("status") not in JOB_FINISHED or changed is None:
        return None
    return changed.timestamp()


def _no_curve(run_id: str, run: dict[str, Any], *, recent: bool) -> str:
    """Whether a curve is still to come, and why not when it never will."""
    status = run.get("status")
    if run.get("adopted"):
        return f"Run {run_id} adopted a model and trained nothing: it has no loss curve."
    if status in FINISHED and not run.get("job_id"):
        return f"Run {run_id} ended {status} before its fine-tuning job started: nothing was trained, so no loss curve."
    if status == RunStatus.TRACKING_FAILED:
        return f"Run {run_id} has no loss curve: its tracking failed, so nothing drew one when its job ended."
    if status in JOB_FINISHED and recent:
        return (
            f"Run {run_id} has no loss curve yet: the deployment draws it from the job's metrics just after the job "
            "ends; try again in a minute."
        )
    if status in JOB_FINISHED:
        return (
            f"Run {run_id} has no loss curve: none was drawn when its job ended (drawing it failed, or the deployment "
            "is older than the training curves)."
        )
    if status in READYING_MODEL:
        return (
            f"Run {run_id} has no loss curve yet (it is {status}): the deployment draws it from the job's metrics "
            "once the model is ready."
        )
    return (
        f"Run {run_id} has no loss curve yet (it is {status}): the deployment draws it from the job's metrics once "
        "the job has ended."
    )
