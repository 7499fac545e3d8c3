"""Progress while a run works: the trainers report at their evaluation points (steps done of the
total, the objectives measured there) and one-off work announces itself (the tiny scale's
reference build); whoever runs them (the command line) listens with `listening`. Nothing is
printed here, and without a listener a report is one context-variable lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """`done` of `total` training steps, and the objectives evaluated after `done` steps."""

    done: int
    total: int
    objectives: tuple[float, ...]


#: what a listener receives: a `Progress`, or a sentence about one-off work about to start
Listener = Callable[[Progress | str], None]

_listener: ContextVar[Listener | None] = ContextVar("moabench_progress", default=None)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send this context's reports and announcements to `listener`."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def report(done: int, total: int, objectives: Sequence[float]) -> None:
    """An evaluation after `done` of `total` steps measured `objectives`."""
    listener = _listener.get()
    if listener is not None:
        listener(Progress(done, total, tuple(float(v) for v in objectives)))


def announce(message: str) -> None:
    """One-off work is about to start (say what, and how long it takes)."""
    listener = _listener.get()
    if listener is not None:
        listener(message)
