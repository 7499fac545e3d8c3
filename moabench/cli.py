"""The `moabench` command line: list, run, sweep, leaderboard.

Bad input (unknown names, invalid preferences or parameters, malformed files) prints one line
starting with "error:" and exits with status 2; no traceback.

`run` under a launcher (`accelerate launch --num_processes N -m moabench run ...`, or torchrun)
trains data-parallel on the N processes (`moabench.core.distributed`); process 0 alone writes the
record and prints. `sweep` under a launcher is an error: each process would run the whole sweep.
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from moabench.core.algorithm import Algorithm, Paradigm, algorithms
from moabench.core.errors import ConfigError, describe_validation_error
from moabench.core.preferences import PreferenceError, PreferenceNormalizedWarning, preference_text
from moabench.core.progress import Progress as ProgressReport
from moabench.core.progress import listening
from moabench.core.registry import UnknownNameError, unknown_name_message
from moabench.core.task import ObjectiveSpace, Task, tasks
from moabench.language.params import applies_to
from moabench.language.task import LanguageTask
from moabench.runs.records import (
    SEED_LIMIT,
    CorruptRecordError,
    RecordWriteError,
    RunConfig,
    RunRecord,
    committed_records_folder,
    compare_records,
    ensure_writable,
    load_records,
    provenance,
    records_on_disk,
    write_record,
)
from moabench.runs.runner import (
    RunError,
    default_paradigm,
    execute,
    one_line,
    pairs_with,
    reresolve,
    resolve_config,
    run_label,
)
from moabench.runs.sweep import (
    CONFIRM_ABOVE_RUNS,
    PlanTooLargeError,
    SweepConfig,
    SweepInterrupted,
    SweepStopped,
    SweepSummary,
    plan_sweep,
    run_sweep,
    usable_workers,
)

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

BAD_INPUT = (UnknownNameError, ConfigError, PreferenceError, CorruptRecordError)
USER_ERRORS = (*BAD_INPUT, OSError)


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
        except (RunError, RecordWriteError) as error:  # not bad input: a setup, the disk, a bug
            say(err, "error:", "red", error)
            raise typer.Exit(1) from None
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


def parse_numbers(text: str, option: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected comma-separated floats") from None


def _standard_seeds_text() -> str:
    """The standard suite's seeds per paradigm, as `--seeds` would name them ("0-37 analytic")."""
    return ", ".join(f"0-{len(Task.seeds(paradigm)) - 1} {paradigm.value}" for paradigm in Paradigm)


#: The most seeds one `--seeds` range may hold (a range becomes a list of its seeds).
MOST_SEEDS_IN_A_RANGE = 100_000


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` -> [0, 1, 2], `--seeds 0-2,7` -> [0, 1, 2, 7] (a range includes both
    ends, and holds at most `MOST_SEEDS_IN_A_RANGE`); each 0 <= seed < 2**32."""
    seeds: list[int] = []
    for item in filter(None, (item.strip() for item in text.split(","))):
        low, dash, high = (part.strip() for part in item.partition("-"))
        if dash and low.isdecimal() and high.isdecimal():
            seeds += _seed_range(text, item, int(low), int(high))
            continue
        try:
            seeds.append(int(item))
        except ValueError:
            raise UsageError(
                f"--seeds {text!r}: expected comma-separated seeds or ranges (0,3,5-9), "
                f"got {item!r}"
            ) from None
    out_of_range = [seed for seed in seeds if not 0 <= seed < SEED_LIMIT]
    if out_of_range:
        raise UsageError(f"--seeds {text!r}: a seed is 0 <= seed < 2**32, got {out_of_range[0]}")
    return seeds


def _seed_range(text: str, item: str, low: int, high: int) -> range:
    """The seeds of `item`, "low-high" with both ends included, of `--seeds text`."""
    if low > high:
        raise UsageError(f"--seeds {text!r}: the range {item!r} is empty (write it low-high)")
    if high - low + 1 > MOST_SEEDS_IN_A_RANGE:
        raise UsageError(
            f"--seeds {text!r}: the range {item!r} holds {high - low + 1:,} seeds, more than "
            f"{MOST_SEEDS_IN_A_RANGE:,}"
        )
    return range(low, high + 1)


# --- progress: a run's steps, a sweep's runs ----------------------------------------------------

#: Seconds between progress lines where the output is not a terminal (a log file, a pipe).
LOG_EVERY_S = 10.0


class _Every:
    """True when called first, then at most once every `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.last = seconds, -math.inf

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


def _numbers(values: Sequence[float]) -> str:
    return ", ".join(f"{value:.4g}" for value in values)


@contextmanager
def showing_run_progress(shown: bool = True) -> Iterator[None]:
    """While a run trains, show its progress reports (`moabench.core.progress`): steps done of
    the total and the objectives at the last evaluation, as a bar in a terminal and as a line at
    most every `LOG_EVERY_S` seconds (and at the end) otherwise; one-off work as a notice."""
    if not shown:
        yield
        return
    if err.is_terminal:
        columns = (
            TextColumn("[bold]run"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
            TextColumn("{task.description}"), TimeElapsedColumn(),
        )  # fmt: skip
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("", total=None)

            def show(event: ProgressReport | str) -> None:
                if isinstance(event, str):
                    say(bar.console, "notice:", "yellow", event)
                else:
                    objectives = f"objectives {_numbers(event.objectives)}"
                    bar.update(
                        task, total=event.total, completed=event.done, description=objectives
                    )

            with listening(show):
                yield
        return
    due = _Every(LOG_EVERY_S)

    def log(event: ProgressReport | str) -> None:
        if isinstance(event, str):
            say(err, "notice:", "yellow", event)
        elif due() or event.done == event.total:
            say(err, "progress:", "bold", f"step {event.done}/{event.total}, objectives "
                f"{_numbers(event.objectives)}")  # fmt: skip

    with listening(log):
        yield


class SweepProgress:
    """A sweep's progress: runs done of the total, failed, an estimate of the time left and the
    runs in flight; a bar in a terminal, else a line at most every `every` seconds."""

    def __init__(self, total: int, workers: int, every: float) -> None:
        self.total, self.workers, self.due = total, workers, _Every(every)
        self.done = self.failed = self.before = 0
        self.queue: dict[str, RunConfig] = {}  # by key, in the order they start
        self.started = time.monotonic()
        self.bar: Progress | None = None

    def __enter__(self) -> SweepProgress:
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]sweep"), BarColumn(), TextColumn("{task.description}"),
                console=err, transient=False,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()

    def notice(self, event: ProgressReport | str) -> None:
        """A report of a run in this process (one worker): one-off work (a reference build) as a
        notice; its steps are not shown."""
        if isinstance(event, str):
            say(err if self.bar is None else self.bar.console, "notice:", "yellow", event)

    def pending(self, summary: SweepSummary, queue: Sequence[RunConfig]) -> None:
        """The runs done before this sweep, and those to run in their order."""
        self.done = summary.already_done + len(summary.kept)
        self.queue = {config.key(): config for config in queue}
        self.before, self.started = self.done, time.monotonic()
        self._show(force=True)

    def record(self, record: RunRecord | None) -> None:
        """A run finished (None: another sweep ran it)."""
        key = None if record is None else record.config.key()
        if key not in self.queue and self.queue:  # another sweep's: the next one, say
            key = next(iter(self.queue))
        self.queue.pop(key, None)
        self.done += 1
        self.failed += record is not None and record.status != "ok"
        self._show(force=self.done == self.total)

    def status(self) -> str:
        """'12/40 done, 1 failed, about 2 min left; running: ls on zdt1, w=[...], seed 0'."""
        finished, left = self.done - self.before, self.total - self.done
        if not left:
            eta = ""
        elif finished:
            eta = f", about {_duration((time.monotonic() - self.started) / finished * left)} left"
        else:
            eta = ", time left: after the first run"
        running = "; ".join(map(run_label, itertools.islice(self.queue.values(), self.workers)))
        return f"{self.done}/{self.total} done, {self.failed} failed{eta}" + (
            f"; running: {running}" if running else ""
        )

    def _show(self, force: bool = False) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, description=self.status())
        elif self.due() or force:
            say(console, "sweep:", "bold", self.status())


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Executor(str, Enum):
    local = "local"
    ray = "ray"


class FrontTraining(str, Enum):
    together = "together"
    separate = "separate"


def _defaults(defaults: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in defaults.items()) or "-"


def _objectives(space: ObjectiveSpace) -> str:
    return ", ".join(
        f"{name} ({'max' if up else 'min'})" for name, up in zip(space.names, space.maximize)
    )


def _runs_in(algorithm_cls: type[Algorithm], task_cls: type[Task]) -> str:
    """The task's paradigms the algorithm runs in with its defaults, its default one first."""
    offered = [p for p in task_cls.paradigms if pairs_with(algorithm_cls, p, {})]
    if len(offered) > 1:
        default = default_paradigm(algorithm_cls, task_cls.paradigms)
        offered.sort(key=lambda p: p != default)
        return f"{offered[0].value} (default), " + ", ".join(p.value for p in offered[1:])
    return ", ".join(p.value for p in offered)


def _table(*columns: str, title: str | None = None) -> Table:
    return Table(*columns, title=title, title_justify="left", box=box.SIMPLE_HEAD)


def _paradigms(cls: type[Algorithm]) -> str:
    return ", ".join(p.value for p in Paradigm if p in cls.paradigms)


def _algorithms_table(hyperparameters: bool) -> Table:
    table = _table("algorithm", "paradigms", "description", title="Algorithms")
    table.columns[1].max_width = 20
    for cls in algorithms:
        description = cls.description()
        if hyperparameters:
            description += f"\n{_defaults(cls.hyperparameters())}"
        table.add_row(cls.name, _paradigms(cls), description)
    return table


def _tasks_table() -> Table:
    table = _table("task", "objectives", "paradigms (default first)", title="Tasks")
    for cls in tasks:
        paradigms = ", ".join(p.value for p in cls.paradigms)
        table.add_row(cls.name, _objectives(cls().space), paradigms)
    return table


def _parameter_tables(
    cls: type[Algorithm] | type[Task], kind: str, where: Callable[[str], str | None]
) -> list[Table]:
    """Parameter, default and description: one table per `where(name)`, where they apply."""
    fields = cls.parameters()
    sections: dict[str | None, list[str]] = {}
    for name in fields:
        sections.setdefault(where(name), []).append(name)
    tables = []
    for place, names in sections.items():
        table = _table(
            "parameter", "default", "description", title=f"{kind} for {place}" if place else kind
        )
        for name in names:
            default = fields[name].get_default(call_default_factory=True)
            table.add_row(name, repr(default), fields[name].description or "")
        tables.append(table)
    return tables


def _show_task(cls: type[Task]) -> None:
    facts = Table.grid(padding=(0, 2))
    facts.add_row("objectives", _objectives(cls().space))
    paradigms = ", ".join(p.value for p in cls.paradigms)
    facts.add_row("paradigms", f"{paradigms} (the first is the default)")
    if issubclass(cls, LanguageTask):
        scales = ", ".join(["tiny", *cls.paper_setups])
        facts.add_row("scales", f"{scales} (--task-param scale=NAME; tiny is the default)")
    seeds = ", ".join(f"{p.value} 0-{len(cls.seeds(p)) - 1}" for p in cls.paradigms)
    facts.add_row("standard seeds", seeds)
    facts.add_row("parameters", "--task-param NAME=VALUE; below with their defaults")
    console.print(Text.assemble((cls.name, "bold"), f": {cls.description()}"), facts, "")
    language = issubclass(cls, LanguageTask)
    where = applies_to if language else lambda name: None
    console.print(*_parameter_tables(cls, "Parameters", where))
    for scale, setup in getattr(cls, "paper_setups", {}).items():
        defaults = _defaults(dict(setup.defaults))
        console.print(f"Defaults at scale {scale}: {defaults}", highlight=False)
    runs = _table("algorithm", "paradigms it runs in here", title="\nAlgorithms")
    elsewhere = []
    for algorithm_cls in algorithms:
        paradigms = _runs_in(algorithm_cls, cls)
        if paradigms:
            runs.add_row(algorithm_cls.name, paradigms)
        else:
            elsewhere.append(algorithm_cls.name)
    console.print(runs)
    if elsewhere:
        console.print(f"Not on {cls.name}: {', '.join(elsewhere)}", highlight=False)


def _show_algorithm(cls: type[Algorithm]) -> None:
    facts = Table.grid(padding=(0, 2))
    facts.add_row("paradigms", _paradigms(cls))
    if cls.home_paradigm is not None:
        facts.add_row("home paradigm", cls.home_paradigm.value)
    if cls.parameters():
        facts.add_row("hyperparameters", "--param NAME=VALUE; below with their defaults")
    console.print(Text.assemble((cls.name, "bold"), f": {cls.description()}"), facts, "")
    tables = _parameter_tables(cls, "Hyperparameters", lambda name: None)
    console.print(*tables or ["No hyperparameters."])
    runs = _table("task", "paradigms it runs in", title="\nTasks")
    for task_cls in tasks:
        paradigms = _runs_in(cls, task_cls)
        if paradigms:
            runs.add_row(task_cls.name, paradigms)
    console.print(runs)


@app.command("list")
def list_entries(
    name: Annotated[
        str | None,
        typer.Argument(
            help="a task or an algorithm: its parameters, defaults and pairings; or 'algorithms' "
            "(with their hyperparameters) or 'tasks'",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List the algorithms and the tasks; `moabench list NAME` shows one task (objectives,
    paradigms, scales, parameters and defaults, the algorithms that run on it) or one algorithm."""
    with user_errors():
        if name is None or name in ("algorithms", "tasks"):
            if name != "tasks":
                console.print(_algorithms_table(hyperparameters=name == "algorithms"))
            if name != "algorithms":
                console.print(_tasks_table())
            if name is None:
                console.print("moabench list NAME: one task's or algorithm's parameters")
        elif name in tasks:
            _show_task(tasks.get(name))
        elif name in algorithms:
            _show_algorithm(algorithms.get(name))
        else:
            known = ["algorithms", "tasks", *tasks.names(), *algorithms.names()]
            raise UnknownNameError(unknown_name_message("task or algorithm", name, known))


@app.command()
def run(
    algo: Annotated[str, typer.Option("--algo", help="algorithm name (see `moabench list`)")],
    task: Annotated[str, typer.Option("--task", help="task name (see `moabench list`)")],
    preference: Annotated[
        str | None, typer.Option(help="comma-separated weights; default uniform")
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, max=SEED_LIMIT - 1, help="random seed, 0 <= seed < 2**32")
    ] = 0,
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
    with user_errors():
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
        for path, reason in records_on_disk(results_dir, keys=[config.key()]).kept:
            raise UsageError(
                f"{path} holds a record this version cannot read ({reason}); it is kept: move it "
                "away to run again"
            )
    from moabench.core.distributed import data_parallel, rank  # torch: the run's, not its errors'

    with user_errors(), data_parallel():
        try:
            with showing_run_progress(shown=rank() == 0):
                record = execute(config, results_dir)
        except (*BAD_INPUT, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - the cache, a model, a bug: one line
            raise RunError(f"{run_label(config)}: {one_line(error)}; no record written") from None
        if rank() > 0:  # the same record as process 0's, which writes it
            return
        path = write_record(record, results_dir)
    if record.status != "ok":
        say(err, "run failed:", "red", f"{record.reason} (record: {path})")
        raise typer.Exit(1)
    names = record.objective_space["names"]
    console.print(
        f"{algo} on {task} ({record.paradigm} training), w = {preference_text(config.preference)}, "
        f"seed {seed}",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    table = Table("objective", "value", box=box.SIMPLE_HEAD)
    for name, value in zip(names, record.objectives or []):
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    shared = record.shared_training
    if shared:  # a steerable method: its shared training's cost, then the steering's own
        console.print(
            f"shared training ({len(shared)} run{'s' * (len(shared) > 1)}, trained once for every "
            f"preference): {sum(s.cost.steps for s in shared)} steps, "
            f"{sum(s.cost.gradient_evaluations for s in shared)} gradient evaluations, "
            f"{sum(s.cost.wall_time_s for s in shared):.2f} s; steering this preference:",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    console.print(
        f"{record.cost.steps} steps, {record.cost.gradient_evaluations} gradient evaluations, "
        f"{record.cost.wall_time_s:.2f} s; record: {path}",
        highlight=False, soft_wrap=True,
    )  # fmt: skip


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
            help="comma-separated seeds or ranges (0,3,5-9), 0 <= seed < 2**32 [each task's "
            f"standard seeds; the built-in tasks': {_standard_seeds_text()}]"
        ),
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(help="simplex-lattice partitions (m=2: 10 gives 11 points)")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="a JSON sweep file; command-line options override it")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="local worker processes (Ray: CPUs of a local instance); capped at this "
            "machine's CPUs and at 512 MiB of available memory each",
        ),
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
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help=f"run a sweep of more than {CONFIRM_ABOVE_RUNS:,} runs all the same"
        ),
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="NAME=VALUE for every algorithm of the sweep that has the hyperparameter NAME",
        ),
    ] = None,
    task_param: Annotated[
        list[str] | None,
        typer.Option(
            "--task-param", help="NAME=VALUE for every task of the sweep that has the parameter"
        ),
    ] = None,
    log_every: Annotated[
        float,
        typer.Option(
            min=0, help="seconds between progress lines when stdout is not a terminal (a log)"
        ),
    ] = LOG_EVERY_S,
    front_training: Annotated[
        FrontTraining | None,
        typer.Option(
            help="local workers: the points of one front as one job (together), or each point "
            "as a job (separate); the same records [together; Ray: each point]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run algorithms x tasks x preference grid x seeds; finished runs are skipped (resume)."""
    with user_errors():
        if executor == Executor.ray and front_training == FrontTraining.together:
            raise UsageError("--front-training together runs on local workers; Ray runs each point")
        sweep_config = _load_sweep_config(config)
        shared = parse_assignments(param, "--param")
        shared_task = parse_assignments(task_param, "--task-param")
        overrides = {
            "algorithms": _split(algo),
            "tasks": _split(task),
            "seeds": parse_seeds(seeds) if seeds else None,
            "partitions": partitions,
            "algorithm_params": _for_every(algorithms, shared, sweep_config.algorithm_params),
            "task_params": _for_every(tasks, shared_task, sweep_config.task_params),
        }
        sweep_config = sweep_config.model_copy(
            update={k: v for k, v in overrides.items() if v is not None}
        )
        try:
            plan = plan_sweep(sweep_config, limit=None if yes else CONFIRM_ABOVE_RUNS)
        except PlanTooLargeError as error:
            raise UsageError(f"{error} with --yes") from None
        _check_used(plan.configs, shared, "--param", "algorithm")
        _check_used(plan.configs, shared_task, "--task-param", "task")
        from moabench.core.distributed import launched_processes  # torch

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
        runs = len({c.key() for c in plan.configs})
        say(err, "plan:", "bold", f"{runs:,} runs; records in {results_dir}")
        capped = usable_workers(workers) if executor == Executor.local else workers
        if capped < workers:
            say(err, "notice:", "yellow", f"--workers {workers} capped at {capped}: this "
                "machine's CPUs, and 512 MiB of available memory per worker")  # fmt: skip
        for algorithm_name, task_name in plan.unsupported:
            err.print(
                f"notice: {algorithm_name} does not support {task_name}; left out (n/a)",
                highlight=False,
            )
        with SweepProgress(runs, capped, log_every) as progress, listening(progress.notice):
            try:
                summary = run_sweep(
                    plan.configs,
                    results_dir,
                    workers=capped,
                    on_record=progress.record,
                    executor=executor.value,
                    ray_address=address,
                    gpus_per_run=gpus_per_run,
                    retry_failed=retry_failed,
                    on_pending=progress.pending,
                    front_training=(front_training or FrontTraining.together).value,
                )
            except SweepInterrupted as stop:
                for number in (signal.SIGINT, signal.SIGTERM):  # stopping already: say so, exit
                    signal.signal(number, signal.SIG_IGN)
                progress.stop()
                _report_kept(stop.summary.kept)
                say(err, "interrupted:", "yellow", _finished_before(stop.summary))
                raise typer.Exit(128 + stop.signal_number) from None
            except SweepStopped as stop:
                progress.stop()
                _report_kept(stop.summary.kept)
                say(err, "error:", "red", stop.error)
                say(err, "stopped:", "red", _finished_before(stop.summary))
                raise typer.Exit(1) from None
    _report_kept(summary.kept)
    console.print(
        f"{summary.total} runs: {summary.already_done} already done, {summary.ok} ok, "
        f"{len(summary.failed)} failed"
        + (f", {summary.elsewhere} run by another sweep" if summary.elsewhere else "")
        + (f", {len(summary.kept)} kept unread (see the warnings)" if summary.kept else "")
        + f"; records in {results_dir}",
        highlight=False,
        soft_wrap=True,
    )
    for record in summary.failed:
        say(err, "failed:", "red", f"{run_label(record.config)}: {record.reason}")


def _for_every(
    registry: Any, params: dict[str, Any], per_name: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]] | None:
    """`per_name` (a sweep file's parameters by name) with each of `params` added for every
    registered name that has that parameter (the command line wins); None without `params`."""
    if not params:
        return None
    merged = {name: dict(values) for name, values in per_name.items()}
    for name in registry.names():
        mine = {k: v for k, v in params.items() if k in registry.get(name).hyperparameters()}
        if mine:
            merged[name] = merged.get(name, {}) | mine
    return merged


def _check_used(configs: list[RunConfig], params: dict[str, Any], option: str, kind: str) -> None:
    """A `UsageError` for a parameter that no run of the sweep has."""
    known = sorted({name for c in configs for name in getattr(c, f"{kind}_params")})
    for name in params:
        if name not in known:
            raise UsageError(
                f"{option} {name}: no {kind} of this sweep has this parameter; "
                + unknown_name_message(f"{kind} parameter", name, known)
            )


def _finished_before(summary: SweepSummary) -> str:
    return (
        f"{summary.ok + len(summary.failed)} runs finished in this sweep ({summary.already_done} "
        f"of the {summary.total} were done before); run the same command again to resume"
    )


def _report_kept(kept: list[tuple[Path, str]]) -> None:
    for path, reason in kept:
        say(err, "warning:", "yellow", f"kept {path} as it is, and did not run it again: "
            f"{reason} (move the file away to run it again)")  # fmt: skip


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
    freeze_references: Annotated[
        bool,
        typer.Option(
            "--freeze-references",
            help="first write OUT/references.json: per table without an exact front, the union "
            "of these records' complete fronts, pinned as its reference from then on (every "
            "score of such a table moves once, now)",
        ),
    ] = False,
) -> None:
    """Rank algorithms per task from the run records; write LEADERBOARD.md, CSV files, the web
    page and plots. Tables without an exact front are scored against the reference sets pinned
    in OUT/references.json where it has them, else against the union of their records' fronts."""
    from moabench.evaluation.leaderboard import build_leaderboard, check_leaderboard  # pandas

    with user_errors():
        if not results_dir.is_dir():
            raise UsageError(f"--results-dir {results_dir}: no such folder")
        out = results_dir / "leaderboard" if out is None else out
        if check and freeze_references:
            raise UsageError("--check compares, --freeze-references writes: give one of them")
        if check:
            checked = check_leaderboard(results_dir, out, partitions=partitions)
            _report_skipped(checked.skipped)
            if checked.differences:
                console.print(
                    f"the leaderboard in {out} is stale; the regenerated one differs:",
                    highlight=False,
                    soft_wrap=True,
                )
                console.print("\n".join(checked.differences), highlight=False, markup=False)
                raise typer.Exit(1)
            console.print(
                f"the leaderboard in {out} (LEADERBOARD.md, CSV files, web page, plot files) is up "
                "to date",
                highlight=False,
                soft_wrap=True,
            )
            return
        result = build_leaderboard(
            results_dir, out, partitions=partitions, freeze_references=freeze_references
        )
    _report_skipped(result.skipped)
    plots = f", the plots in {out / 'plots'}" if (out / "plots").is_dir() else ""
    console.print(
        f"wrote {out / 'LEADERBOARD.md'} ({len(result.tables)} task tables), its CSV files"
        f"{plots}; the web page: {out / 'site' / 'index.html'}",
        highlight=False, soft_wrap=True,
    )  # fmt: skip


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
        loaded = load_records(results_dir)
        checked = len(loaded.records) + len(loaded.skipped)
    if differences:
        console.print(
            f"{len(differences)} of {checked} re-run records differ from {reference}:",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        console.print("\n".join(differences), highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(
        f"{checked} re-run records match {reference} (tolerance {tolerance:g})", highlight=False
    )


def _report_skipped(skipped: list[tuple[Path, str]]) -> None:
    for path, reason in skipped:
        say(err, "warning:", "yellow", f"skipped {path}: {reason}")
