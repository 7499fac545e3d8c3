"""Preference vectors: validation and the standard simplex-lattice grids."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

#: Lattice partitions of the standard grid per number of objectives (m = 2: 11 points).
DEFAULT_PARTITIONS = {2: 10, 3: 4}


class PreferenceError(ValueError):
    """An invalid preference vector."""


class PreferenceNormalizedWarning(UserWarning):
    """A preference vector that did not sum to one and was normalised."""


def validate_preference(
    preference: Sequence[float] | np.ndarray, n_objectives: int | None = None
) -> np.ndarray:
    """Return `preference` as a float64 vector on the simplex, or raise `PreferenceError`.

    Wrong length, non-finite, negative or all-zero entries are errors; a vector that does not sum
    to one is normalised with a `PreferenceNormalizedWarning`.
    """
    try:
        w = np.asarray(preference, dtype=np.float64)
    except (TypeError, ValueError):
        raise PreferenceError(f"preference {preference!r} is not a vector of numbers") from None
    if w.ndim != 1 or w.size == 0:
        raise PreferenceError(f"preference must be a non-empty vector, got shape {w.shape}")
    if n_objectives is not None and w.size != n_objectives:
        raise PreferenceError(
            f"preference {w.tolist()} has {w.size} entries but the task has {n_objectives} objectives"
        )
    if not np.all(np.isfinite(w)):
        raise PreferenceError(f"preference {w.tolist()} has non-finite entries")
    if np.any(w < 0):
        raise PreferenceError(f"preference {w.tolist()} has negative entries")
    if not np.any(w > 0):
        raise PreferenceError("preference is all zeros; at least one weight must be positive")
    with np.errstate(over="ignore"):  # huge weights: the sum is infinite, and normalised below
        total = w.sum()
    if not np.isclose(total, 1.0, rtol=0, atol=1e-9):
        scaled = w / w.max()  # huge weights would overflow the sum to infinity
        normalised = scaled / scaled.sum()
        warnings.warn(
            f"preference {w.tolist()} sums to {total:g}; normalised to "
            f"{np.round(normalised, 6).tolist()}",
            PreferenceNormalizedWarning,
            stacklevel=2,
        )
        return normalised
    return w


def preference_text(preference: Sequence[float]) -> str:
    """A preference for people to read: "0.333, 0.667" (3 significant digits each)."""
    return ", ".join(f"{float(w):.3g}" for w in preference)


def simplex_lattice(n_objectives: int, n_partitions: int | None = None) -> np.ndarray:
    """The Das-Dennis lattice on the simplex (pymoo), sorted lexicographically from the last weight.

    Defaults: 11 points for m = 2, 15 for m = 3, m points (the vertices) beyond.
    """
    if n_objectives < 1:
        raise PreferenceError(f"need at least one objective, got {n_objectives}")
    if n_partitions is None:
        n_partitions = DEFAULT_PARTITIONS.get(n_objectives, 1)
    if n_partitions < 1:
        raise PreferenceError(f"the lattice needs at least one partition, got {n_partitions}")
    from pymoo.util.ref_dirs import get_reference_directions  # on use: it imports scipy

    grid = get_reference_directions("das-dennis", n_objectives, n_partitions=n_partitions)
    grid = np.round(grid, 12)
    return grid[np.lexsort(grid.T[::-1])]
