"""The `moabench` command line: list, run, sweep, leaderboard.

Bad input (unknown names, invalid preferences or parameters, malformed files) prints one line
starting with "error:" and exits with status 2; no traceback.

`run` under a launcher (`accelerate launch --num_processes N -m moabench run ...`, or torchrun)
trains data-parallel on the N processes (`moabench.core.distributed`); process 0 alone writes the
record and prints. `sweep` under a launcher is an error: each process would run the whole sweep.
"""

from __future__ import annotations

import json
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from moabench.core.algorithm import algorithms
from moabench.core.distributed import data_parallel, launched_processes, rank
from moabench.core.errors import ConfigError, describe_validation_error
from moabench.core.preferences import PreferenceError, PreferenceNormalizedWarning
from moabench.core.registry import UnknownNameError
from moabench.core.task import tasks
from moabench.evaluation.leaderboard import build_leaderboard, check_leaderboard
from moabench.runs.records import (
    CorruptRecordError,
    committed_records_folder,
    compare_records,
    ensure_writable,
    load_records,
    provenance,
    write_record,
)
from moabench.runs.runner import execute, reresolve, resolve_config
from moabench.runs.sweep import SweepConfig, SweepInterrupted, plan_sweep, run_sweep

app = typer.Typer(
    help="moabench: benchmark multi-objective alignment algorithms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is plain text: "moabench[ray]" keeps its brackets
)
# No console markup: messages carry user text (paths, parameters, "moabench[ray]") as it is.
console = Console(markup=False)
err = Console(stderr=True, markup=False)

USER_ERRORS = (UnknownNameError, ConfigError, PreferenceError, CorruptRecordError, OSError)


def say(console_: Console, label: str, style: str, text: object) -> None:
    """`label` in `style`, then `text` as it is: brackets in it are not read as markup."""
    console_.print(Text.assemble((label, style), " ", str(text)), highlight=False, soft_wrap=True)


class UsageError(ValueError):
    """A command-line value that cannot be parsed."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn bad input into one `error:` line and exit status 2; show notices (normalisation)."""

    def notice(message, category, *args, **kwargs) -> None:  # noqa: ANN001 - warnings' signature
        say(err, "notice:", "yellow", message)

    with warnings.catch_warnings():
        warnings.simplefilter("always", PreferenceNormalizedWarning)
        warnings.showwarning = notice
        try:
            yield
        except (*USER_ERRORS, UsageError) as error:
            say(err, "error:", "red", error)
            raise typer.Exit(2) from None


def parse_assignments(assignments: list[str] | None, option: str) -> dict[str, Any]:
    """`["p=2", "variant=main"]` -> {"p": 2, "variant": "main"} (values parsed as JSON if they can be)."""
    parsed: dict[str, Any] = {}
    for assignment in assignments or []:
        name, sep, raw = assignment.partition("=")
        if not sep or not name:
            raise UsageError(f"{option} {assignment!r}: expected NAME=VALUE")
        try:
            parsed[name] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[name] = raw
    return parsed


def parse_numbers(text: str, option: str, kind: type = float) -> list[Any]:
    try:
        return [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected comma-separated {kind.__name__}s") from None


class Executor(str, Enum):
    local = "local"
    ray = "ray"


class Listing(str, Enum):
    algorithms = "algorithms"
    tasks = "tasks"
    all = "all"


def _format_params(defaults: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in defaults.items()) or "-"


@app.command("list")
def list_entries(
    what: Annotated[Listing, typer.Argument(help="what to list")] = Listing.all,
) -> None:
    """List the registered algorithms and tasks with their paradigms and hyperparameters."""
    if what in (Listing.algorithms, Listing.all):
        table = Table(
            "algorithm",
            "description",
            "paradigms",
            "hyperparameters (defaults)",
            title="Algorithms",
        )
        for cls in algorithms:
            paradigms = ", ".join(sorted(p.value for p in cls.paradigms))
            table.add_row(
                cls.name, cls.description(), paradigms, _format_params(cls.hyperparameters())
            )
        console.print(table)
    if what in (Listing.tasks, Listing.all):
        table = Table(
            "task", "description", "paradigm", "objectives", "parameters (defaults)", title="Tasks"
        )
        for cls in tasks:
            space = cls().space
            objectives = ", ".join(
                f"{name} ({'max' if up else 'min'})"
                for name, up in zip(space.names, space.maximize)
            )
            table.add_row(
                cls.name,
                cls.description(),
                ", ".join(p.value for p in cls.paradigms),
                objectives,
                _format_params(cls.hyperparameters()),
            )
        console.print(table)


@app.command()
def run(
    algo: Annotated[str, typer.Option("--algo", help="algorithm name (see `moabench list`)")],
    task: Annotated[str, typer.Option("--task", help="task name (see `moabench list`)")],
    preference: Annotated[
        str | None, typer.Option(help="comma-separated weights; default uniform")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="algorithm hyperparameter NAME=VALUE")
    ] = None,
    task_param: Annotated[
        list[str] | None, typer.Option("--task-param", help="task parameter NAME=VALUE")
    ] = None,
    results_dir: Annotated[Path, typer.Option(help="where the run record is written")] = Path(
        "results"
    ),
) -> None:
    """Run one algorithm on one task at one preference and write its record. Under a launcher
    (accelerate launch, torchrun) its processes train it data-parallel; process 0 writes."""
    with user_errors(), data_parallel():
        weights = None if preference is None else parse_numbers(preference, "--preference")
        config = resolve_config(
            algo,
            task,
            weights,
            seed,
            parse_assignments(param, "--param"),
            parse_assignments(task_param, "--task-param"),
        )
        ensure_writable(results_dir)
        record = execute(config)
        if rank() > 0:  # the same record as process 0's, which writes it
            return
        path = write_record(record, results_dir)
    if record.status != "ok":
        say(err, "run failed:", "red", f"{record.reason} (record: {path})")
        raise typer.Exit(1)
    names = record.objective_space["names"]
    table = Table(
        "objective",
        "value",
        title=f"{algo} on {task} ({record.paradigm} training), w = {config.preference}, seed {seed}",
    )
    for name, value in zip(names, record.objectives or []):
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    console.print(
        f"{record.cost.steps} steps, {record.cost.gradient_evaluations} gradient evaluations, "
        f"{record.cost.wall_time_s:.2f} s; record: {path}",
        highlight=False,
    )


def _split(values: str | None) -> list[str] | None:
    return [v.strip() for v in values.split(",") if v.strip()] if values else None


@app.command()
def sweep(
    algo: Annotated[
        str | None, typer.Option("--algo", help="comma-separated algorithms or 'all' [all]")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="comma-separated tasks, 'all' or a paradigm (analytic, preference, online) [all]",
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="comma-separated seeds [each task's standard seeds: 0-9 analytic, 0-4 language]"
        ),
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(help="simplex-lattice partitions (m=2: 10 gives 11 points)")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="a JSON sweep file; command-line options override it")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="local worker processes (Ray: CPUs of a local instance)")
    ] = 1,
    results_dir: Annotated[Path, typer.Option(help="where run records are written")] = Path(
        "results"
    ),
    executor: Annotated[
        Executor, typer.Option(help="local processes, or Ray tasks (pip install 'moabench[ray]')")
    ] = Executor.local,
    address: Annotated[
        str | None, typer.Option(help="Ray: the cluster's address [a new local instance]")
    ] = None,
    gpus_per_run: Annotated[float, typer.Option(min=0, help="Ray: GPUs each run requests")] = 0.0,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="run again the runs recorded as failed")
    ] = False,
    allow_dirty: Annotated[
        bool,
        typer.Option(
            "--allow-dirty", help="write into leaderboard/ from uncommitted source all the same"
        ),
    ] = False,
) -> None:
    """Run algorithms x tasks x preference grid x seeds; finished runs are skipped (resume)."""
    with user_errors():
        if launched_processes() > 1:
            raise UsageError(
                f"sweep under a launcher of {launched_processes()} processes: each would run the "
                "whole sweep. Launch `moabench run` for one data-parallel run, or run the sweep "
                "without a launcher (--workers runs several runs at once)"
            )
        commit = provenance()["git_commit"] or ""
        if committed_records_folder(results_dir) and commit.endswith("-dirty") and not allow_dirty:
            raise UsageError(
                f"--results-dir {results_dir} holds committed records, and moabench's source "
                "has uncommitted changes (git status): records committed with the standings must "
                "come from a commit that reproduces them. Commit first, or pass --allow-dirty"
            )
        sweep_config = _load_sweep_config(config)
        overrides = {
            "algorithms": _split(algo),
            "tasks": _split(task),
            "seeds": parse_numbers(seeds, "--seeds", int) if seeds else None,
            "partitions": partitions,
        }
        sweep_config = sweep_config.model_copy(
            update={k: v for k, v in overrides.items() if v is not None}
        )
        plan = plan_sweep(sweep_config)
        for algorithm_name, task_name in plan.unsupported:
            err.print(
                f"notice: {algorithm_name} does not support {task_name}; left out (n/a)",
                highlight=False,
            )
        with Progress(
            TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=False,
        ) as progress:  # fmt: skip
            bar = progress.add_task("runs", total=len({c.key() for c in plan.configs}))
            try:
                summary = run_sweep(
                    plan.configs,
                    results_dir,
                    workers=workers,
                    on_record=lambda record: progress.advance(bar),
                    executor=executor.value,
                    ray_address=address,
                    gpus_per_run=gpus_per_run,
                    retry_failed=retry_failed,
                )
            except SweepInterrupted as stop:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping already; say so and exit
                progress.stop()
                done = stop.summary
                say(
                    err,
                    "interrupted:",
                    "yellow",
                    f"{done.ok + len(done.failed)} runs finished in this sweep "
                    f"({done.already_done} of the {done.total} were done before); "
                    "run the same command again to resume",
                )
                raise typer.Exit(130) from None
            progress.advance(bar, summary.already_done)
    console.print(
        f"{summary.total} runs: {summary.already_done} already done, {summary.ok} ok, "
        f"{len(summary.failed)} failed"
        + (f", {summary.elsewhere} run by another sweep" if summary.elsewhere else "")
        + f"; records in {results_dir}",
        highlight=False,
    )
    for record in summary.failed:
        err.print(
            f"failed: {record.config.algorithm} on {record.config.task} w={record.config.preference} "
            f"seed={record.config.seed}: {record.reason}",
            highlight=False,
        )


def _load_sweep_config(path: Path | None) -> SweepConfig:
    if path is None:
        return SweepConfig()
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not valid JSON ({error})") from None
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as error:
        raise UsageError(f"{path}: {describe_validation_error(error)}") from None


def main() -> None:
    app()


@app.command()
def leaderboard(
    results_dir: Annotated[Path, typer.Option(help="where the run records are")] = Path("results"),
    out: Annotated[
        Path | None,
        typer.Option(
            help="where LEADERBOARD.md, plots/ and site/ are written; default RESULTS_DIR/leaderboard "
            "(so that the repository's committed leaderboard/ is only written when named)"
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="compare with the files in --out instead; exit 1 if stale"),
    ] = False,
    partitions: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="simplex-lattice partitions of the preference grid that a complete front covers, "
            "as for `moabench sweep` (default: its standard grid, 11 points for two objectives, "
            "15 for three); only complete fronts are ranked",
        ),
    ] = None,
) -> None:
    """Rank algorithms per task from the run records; write LEADERBOARD.md, CSV files, the web
    page and plots."""
    with user_errors():
        if not results_dir.is_dir():
            raise UsageError(f"--results-dir {results_dir}: no such folder")
        out = results_dir / "leaderboard" if out is None else out
        if check:
            checked = check_leaderboard(results_dir, out, partitions=partitions)
            _report_skipped(checked.skipped)
            if checked.differences:
                console.print(
                    f"the leaderboard in {out} is stale; the regenerated one differs:",
                    highlight=False,
                )
                console.print("\n".join(checked.differences), highlight=False, markup=False)
                raise typer.Exit(1)
            console.print(
                f"the leaderboard in {out} (LEADERBOARD.md, CSV files, web page, plot files) is up "
                "to date",
                highlight=False,
            )
            return
        result = build_leaderboard(results_dir, out, partitions=partitions)
    _report_skipped(result.skipped)
    console.print(
        f"wrote {out / 'LEADERBOARD.md'} ({len(result.tables)} task tables) and plots in {out / 'plots'}",
        highlight=False,
    )


@app.command()
def migrate(
    results_dir: Annotated[Path, typer.Option(help="the records to migrate")],
    out: Annotated[Path, typer.Option(help="where the migrated records are written")],
) -> None:
    """Rewrite records under this version's resolved configs (parameters added since they were
    written get their defaults; keys follow). Check with `moabench reproduce` that the new
    defaults do not change results."""
    with user_errors():
        loaded = load_records(results_dir)
        _report_skipped(loaded.skipped)
        for record in loaded.records:
            write_record(reresolve(record), out)
    console.print(f"migrated {len(loaded.records)} records into {out}", highlight=False)


@app.command()
def reproduce(
    results_dir: Annotated[Path, typer.Option(help="the re-run records")],
    reference: Annotated[Path, typer.Option(help="the committed records")] = Path(
        "leaderboard/results"
    ),
    tolerance: Annotated[float, typer.Option(help="largest allowed objective difference")] = 1e-6,
) -> None:
    """Check that re-run records reproduce the committed ones (same keys); exit 1 listing what
    differs: a stale record or a nondeterministic run."""
    with user_errors():
        for folder in (results_dir, reference):
            if not folder.is_dir():
                raise UsageError(f"{folder}: no such folder")
        differences = compare_records(results_dir, reference, tolerance)
        checked = len(load_records(results_dir).records)
    if differences:
        console.print(
            f"{len(differences)} of {checked} re-run records differ from {reference}:",
            highlight=False,
        )
        console.print("\n".join(differences), highlight=False, markup=False)
        raise typer.Exit(1)
    console.print(
        f"{checked} re-run records match {reference} (tolerance {tolerance:g})", highlight=False
    )


def _report_skipped(skipped: list[tuple[Path, str]]) -> None:
    for path, reason in skipped:
        say(err, "warning:", "yellow", f"skipped {path}: {reason}")
