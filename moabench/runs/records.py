"""Run configs and run records: one JSON file per run, keyed by the hash of its full config.

Records are written atomically (temporary file + `os.replace`), so a killed sweep leaves either a
whole record or none, and re-running a sweep skips the keys already on disk. A sweep replaces only
a file that holds no record at all (empty, truncated, not a JSON object); a record it cannot read
(a newer `schema_version`, unknown fields, invalid values) is kept and its run skipped, since it
may be another version's result.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moabench.core.determinism import cpu_numerics
from moabench.core.errors import describe_validation_error

SCHEMA_VERSION = 1
#: Seeds are 0 <= seed < SEED_LIMIT (numpy's legacy seeding takes 32 bits).
SEED_LIMIT = 2**32
RECORDED_PACKAGES = (
    "moabench", "torch", "numpy", "scipy", "pymoo", "moocore", "quadprog", "torchjd", "pydantic",
    "transformers", "tokenizers", "trl", "peft", "datasets", "accelerate",
)  # fmt: skip


class RunConfig(BaseModel):
    """Everything that determines a run. Params are stored with their defaults resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: str
    algorithm_params: dict[str, Any] = Field(default_factory=dict)
    task: str
    task_params: dict[str, Any] = Field(default_factory=dict)
    preference: list[float]
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    #: processes that trained the run together (data parallelism); in the key only above 1, so
    #: one-process runs keep the keys they had before it existed
    num_processes: int = Field(1, ge=1, exclude_if=lambda n: n == 1)

    def key(self) -> str:
        """A stable 16-hex-digit hash of the canonical JSON of the config."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Cost(BaseModel):
    wall_time_s: float = 0.0
    steps: int = 0
    gradient_evaluations: int = 0


class SharedTraining(BaseModel):
    """A training that several records share and that is counted once per front: an expert of a
    steerable method (`SteerableMethod`), itself a run with its own record, or its one
    preference-conditioned training (no preference; kept with its policy)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    algorithm: str
    preference: list[float]
    cost: Cost
    status: Literal["ok", "failed"] = Field("ok", exclude_if=lambda status: status == "ok")
    reason: str | None = Field(None, exclude_if=lambda reason: reason is None)


class Trajectory(BaseModel):
    steps: list[int] = Field(default_factory=list)
    objectives: list[list[float]] = Field(default_factory=list)
    weights: list[list[float]] = Field(default_factory=list)


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    key: str
    config: RunConfig
    paradigm: str
    status: Literal["ok", "failed"]
    reason: str | None = None
    objectives: list[float] | None = None
    objective_space: dict[str, Any]
    trajectory: Trajectory = Field(default_factory=Trajectory)
    capabilities: dict[str, float] = Field(default_factory=dict)  # lm-eval: "<task>/<metric>"
    #: dataset rows skipped for a known quirk, {source: {quirk: rows}}; left out when there are none
    skipped_rows: dict[str, dict[str, int]] = Field(
        default_factory=dict, exclude_if=lambda skipped: not skipped
    )
    cost: Cost = Field(default_factory=Cost)
    #: a steerable method's shared trainings (its experts); its `cost` is then the steering's own
    shared_training: list[SharedTraining] = Field(
        default_factory=list, exclude_if=lambda shared: not shared
    )
    provenance: dict[str, Any] = Field(default_factory=dict)


class CorruptRecordError(ValueError):
    """A record file that cannot be read as a `RunRecord`."""


class DamagedRecordError(CorruptRecordError):
    """A record file that holds no record at all (unreadable, empty, truncated, not a JSON
    object): a sweep may replace it."""


class RecordWriteError(OSError):
    """A record that could not be written (a folder in its place, a full disk, permissions)."""


def record_path(results_dir: Path, key: str) -> Path:
    return Path(results_dir) / f"{key}.json"


def ensure_writable(results_dir: Path) -> None:
    """Create `results_dir` if needed and check that records can be written there, before any
    run starts; a `ConfigError` names the folder and the reason otherwise."""
    from moabench.core.errors import ConfigError

    try:
        Path(results_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=results_dir):
            pass
    except OSError as error:
        raise ConfigError(
            f"results folder {results_dir} is not writable: {error.strerror or error}"
        ) from None


def write_record(record: RunRecord, results_dir: Path) -> Path:
    """Write `record` atomically as `<results_dir>/<key>.json`."""
    results_dir = Path(results_dir)
    path = record_path(results_dir, record.key)
    text = json.dumps(record.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"
    tmp = None
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=results_dir, prefix=f".{record.key}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide it from the group
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise RecordWriteError(
                f"cannot write the record {path}: {error.strerror or error}"
            ) from None
        raise
    return path


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_record(path: Path) -> RunRecord:
    """The record in `path`; a `DamagedRecordError` when the file holds no record at all, a
    `CorruptRecordError` when it holds one that this version cannot use."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as error:  # ValueError: JSON and UTF-8 errors
        reason = error.strerror if isinstance(error, OSError) else error
        raise DamagedRecordError(f"{path}: not a readable JSON file ({reason})") from None
    if not isinstance(data, dict):
        raise DamagedRecordError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise CorruptRecordError(
            f"{path}: schema_version {data.get('schema_version')!r}, this moabench reads "
            f"{SCHEMA_VERSION}"
        )
    try:
        record = RunRecord.model_validate(data)
    except ValidationError as error:
        raise CorruptRecordError(f"{path}: {describe_validation_error(error)}") from None
    if record.key != record.config.key() or Path(path).stem != record.key:
        raise CorruptRecordError(f"{path}: key {record.key!r} does not match its config")
    problem = inconsistency(record)
    if problem is not None:
        raise CorruptRecordError(f"{path}: {problem}")
    return record


def inconsistency(record: RunRecord) -> str | None:
    """What makes a record unusable although its schema is valid, or None: an objective space
    whose lists differ in length or hold non-finite bounds; a successful run whose objectives or
    trajectory are missing, of another length than the space's names, or not finite; a failure
    without a reason."""
    space = record.objective_space
    try:
        names, maximize = list(space["names"]), list(space["maximize"])
        bounds = np.asarray([space["ideal"], space["nadir"]], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return "objective_space needs names, maximize, ideal and nadir"
    m = len(names)
    if len(maximize) != m or bounds.shape != (2, m) or not np.all(np.isfinite(bounds)):
        return f"objective_space: names, maximize, ideal and nadir must be {m} finite entries each"
    if record.status == "failed":
        return None if record.reason else "a failed run without a reason"
    vectors = [("objectives", record.objectives)] + [
        (f"trajectory point {i}", point) for i, point in enumerate(record.trajectory.objectives)
    ]
    for what, vector in vectors:
        if vector is None or len(vector) != m:
            return f"{what}: expected {m} values ({', '.join(map(str, names))}), got {vector}"
        if not np.all(np.isfinite(vector)):
            return f"{what}: not finite ({vector})"
    return None


@dataclass
class LoadedRecords:
    records: list[RunRecord]
    #: (path, reason) for every file that was skipped.
    skipped: list[tuple[Path, str]]
    #: the file each record was read from, by key
    paths: dict[str, Path] = field(default_factory=dict)


def load_records(results_dir: Path) -> LoadedRecords:
    """Every readable record under `results_dir` and its subfolders (one per contributor, say;
    hidden ones, such as the kept policies' `.policies`, are not read), sorted by key. Corrupt files are reported; so is a record whose key is already taken by a
    different record (the first, in path order, is kept; an identical copy is simply ignored)."""
    by_key: dict[str, tuple[Path, RunRecord]] = {}
    skipped = []
    for path in sorted(Path(results_dir).rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(results_dir).parts):
            continue  # moabench's own files (.claims, .policies) and hidden ones: no records
        try:
            record = read_record(path)
        except CorruptRecordError as error:
            skipped.append((path, str(error).removeprefix(f"{path}: ")))
            continue
        if record.key not in by_key:
            by_key[record.key] = (path, record)
        elif by_key[record.key][1] != record:
            skipped.append(
                (path, f"same key as {by_key[record.key][0]} but different contents; kept that one")
            )
    return LoadedRecords(
        [record for _, (_, record) in sorted(by_key.items())],
        skipped,
        {key: path for key, (path, _) in by_key.items()},
    )


def compare_records(rerun_dir: Path, reference_dir: Path, tolerance: float) -> list[str]:
    """Differences between re-run records and the records of the same keys in `reference_dir`
    (status, reason, objectives and trajectory within `tolerance`), and the re-run files that
    cannot be read; one line each, [] if none."""
    reference = {r.key: r for r in load_records(reference_dir).records}
    reruns = load_records(rerun_dir)
    differences = [f"{path}: unreadable: {reason}" for path, reason in reruns.skipped]
    for rerun in reruns.records:
        label = f"{rerun.key} ({rerun.config.algorithm} on {rerun.config.task}, seed {rerun.config.seed})"
        committed = reference.get(rerun.key)
        if committed is None:
            differences.append(f"{label}: not in {reference_dir}")
        elif (rerun.status, rerun.reason) != (committed.status, committed.reason):
            differences.append(
                f"{label}: {rerun.status} {rerun.reason!r}, committed {committed.status} {committed.reason!r}"
            )
        elif rerun.status == "ok":
            pairs = [(rerun.objectives, committed.objectives)] + list(
                zip(rerun.trajectory.objectives, committed.trajectory.objectives)
            )
            gap = max(float(np.max(np.abs(np.subtract(a, b)))) for a, b in pairs)
            if (
                len(rerun.trajectory.objectives) != len(committed.trajectory.objectives)
                or gap > tolerance
            ):
                differences.append(
                    f"{label}: objectives {rerun.objectives}, committed {committed.objectives} (largest difference {gap:.3g})"
                )
    return differences


@dataclass
class RecordsOnDisk:
    """What a sweep finds in its results folder."""

    #: keys of the runs it skips: readable records (ok, or failed unless retried) and kept files
    finished: set[str] = field(default_factory=set)
    #: (path, reason) of the files that hold a record this version cannot read, kept as they are
    kept: list[tuple[Path, str]] = field(default_factory=list)


def records_on_disk(
    results_dir: Path, retry_failed: bool = False, keys: Iterable[str] | None = None
) -> RecordsOnDisk:
    """The records in `results_dir` (among `keys`; default: every record there) that a sweep
    must not run again: readable ones (ok, or failed unless `retry_failed`), and those it cannot
    read but that hold a record (another version's, say), which it keeps. A damaged file
    (`DamagedRecordError`) is neither: its run is run again and the file replaced."""
    folder = Path(results_dir)
    paths = (
        [record_path(folder, key) for key in keys]
        if keys is not None
        else (sorted(folder.glob("*.json")) if folder.is_dir() else [])
    )
    found = RecordsOnDisk()
    for path in paths:
        if not path.exists():
            continue
        try:
            record = read_record(path)
        except DamagedRecordError:
            continue
        except CorruptRecordError as error:
            found.finished.add(path.stem)
            found.kept.append((path, str(error).removeprefix(f"{path}: ")))
            continue
        if record.status == "ok" or not retry_failed:
            found.finished.add(record.key)
    return found


def finished_keys(
    results_dir: Path, retry_failed: bool = False, keys: Iterable[str] | None = None
) -> set[str]:
    """Keys of the runs a sweep skips (`records_on_disk`)."""
    return records_on_disk(results_dir, retry_failed, keys).finished


def run_provenance() -> dict[str, Any]:
    """A run's provenance: `provenance()` and the number of processes that trained it together
    (data parallelism, `moabench.core.distributed`; records written before it have none: 1)."""
    from moabench.core.distributed import processes  # torch: imported by runs only

    return {**provenance(), "num_processes": processes()}


@lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    """Package versions, git commit and hardware of this process, recorded with every run."""
    packages = {}
    for name in RECORDED_PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "packages": packages,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "hardware": _hardware(),
    }


def _git_commit() -> str | None:
    """HEAD's commit, with "-dirty" when the package's source (or pyproject.toml) differs from it,
    untracked files included; None outside a git checkout."""
    package = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", "../pyproject.toml"],
            cwd=package, capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def committed_records_folder(results_dir: Path) -> bool:
    """Whether `results_dir` lies in the `leaderboard/` folder of the checkout moabench runs from
    (the committed standings' records)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return False
    return Path(results_dir).resolve().is_relative_to((root / "leaderboard").resolve())


def _hardware() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_numerics": cpu_numerics(),
        "gpus": gpus,
    }
