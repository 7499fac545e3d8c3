"""Pinned reference sets: a fixed reference per task table without an exact front (the language
tables), so that its HV / reference HV does not move when an algorithm is added.

`freeze` takes, per such table, the union reference of the records at hand (`frame.reference_of`:
the non-dominated points of every algorithm's complete fronts, all seeds) and records where it
came from: the day, the number of records, their algorithms and seeds, and the SHA-256 of their
sorted keys. `write_references` saves it as JSON (`leaderboard/references.json` beside the
committed leaderboard, written only by `moabench leaderboard --freeze-references`), and
`read_references` gives the leaderboard its `frame.PinnedReference`s. A later algorithm's points
beyond the pinned set are reported as they are (an HV / reference HV above 1) rather than moving
the reference; refreezing is an explicit act, and moves every score of the table at once.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moabench.core.errors import ConfigError
from moabench.evaluation.frame import (
    PinnedReference,
    ReferenceFront,
    default_reference_front,
    mark_fronts,
    reference_of,
)

ABOUT = (
    "Pinned reference sets of the task tables without an exact front, written by `moabench "
    "leaderboard --freeze-references`: per table the non-dominated points (raw units) of every "
    "algorithm's complete fronts, all seeds, in the records named. The leaderboard's HV / "
    "reference HV of these tables divides by their HV."
)


def freeze(
    records: pd.DataFrame,
    reference_front: ReferenceFront = default_reference_front,
    partitions: int | None = None,
    day: datetime.date | None = None,
) -> dict[str, Any]:
    """The pinned reference sets of `records` (`frame.load_results`' frame) as JSON data: one
    entry per table without an exact front and with a complete front, frozen on `day` (today
    by default, UTC)."""
    day = day or datetime.datetime.now(datetime.UTC).date()
    marked = mark_fronts(records, partitions)
    tables = {}
    for label, table in marked.groupby("table", sort=True):
        reference = reference_of(table, reference_front)
        if reference.kind != "union" or not len(reference.raw):
            continue
        used = table[table["complete"] & (table["status"] == "ok")]
        keys = "\n".join(sorted(used["key"]))
        tables[str(label)] = {
            "frozen": day.isoformat(),
            "records": len(used),
            "algorithms": sorted(used["algorithm"].unique().tolist()),
            "seeds": sorted(int(seed) for seed in used["seed"].unique()),
            "keys_sha256": hashlib.sha256(keys.encode()).hexdigest(),
            "objectives": list(table.iloc[0]["objective_names"]),
            "points": reference.raw.tolist(),
        }
    return {"about": ABOUT, "tables": tables}


def write_references(path: Path, references: dict[str, Any]) -> None:
    """Save `freeze`'s data at `path`."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(references, indent=1) + "\n")


def read_references(path: Path) -> dict[str, PinnedReference]:
    """The pinned reference sets saved at `path` by table label ({} when there is no file)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        tables = json.loads(path.read_text())["tables"]
        return {label: _pinned(entry) for label, entry in tables.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(
            f"{path}: not a pinned reference file ({type(error).__name__}: {error}); write it "
            "again with `moabench leaderboard --freeze-references`"
        ) from None


def _pinned(entry: dict[str, Any]) -> PinnedReference:
    raw = np.asarray(entry["points"], dtype=np.float64)
    if raw.ndim != 2 or not len(raw) or raw.shape[1] != len(entry["objectives"]):
        raise ValueError("points must be a non-empty list of one value per objective")
    seeds = [int(seed) for seed in entry["seeds"]]
    consecutive = seeds == list(range(seeds[0], seeds[-1] + 1))
    seed_text = f"seeds {seeds[0]}-{seeds[-1]}" if consecutive else f"seeds {seeds}"
    provenance = (
        f"frozen on {entry['frozen']} from {entry['records']:,} records of "
        f"{len(entry['algorithms'])} algorithms ({', '.join(entry['algorithms'])}; {seed_text}; "
        f"SHA-256 of their keys {entry['keys_sha256'][:12]})"
    )
    return PinnedReference(raw, provenance)
