"""Claims on runs, so that two sweeps on one results folder (two terminals, or Ray tasks on a
shared folder) never run the same run twice.

A run is claimed by creating `<results>/.claims/<key>.claim` exclusively (a hard link, which
fails when the claim exists) before it starts, and released once its record is written. The claim names its owner (host, pid) and is
touched every `HEARTBEAT_S` seconds while the run goes on. A claim expires when its owner is known
to be dead (same host, no such process) or when it has not been touched for `EXPIRY_S` seconds
(an owner on another host that died); an expired claim is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HEARTBEAT_S = 30.0
EXPIRY_S = 300.0

#: The claims this process holds (`release_claims` frees them when it is stopped).
_held: set[Path] = set()


def claim_path(results_dir: Path, key: str) -> Path:
    return Path(results_dir) / ".claims" / f"{key}.claim"


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _expired(path: Path) -> bool:
    """Whether the claim at `path` belongs to nobody alive (see the module's docstring)."""
    try:
        owner = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return True  # vanished, or unreadable
    if owner.get("host") == socket.gethostname():
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, TypeError, ValueError):
            pass
        else:
            return age > EXPIRY_S and owner.get("pid") != os.getpid()
    return age > EXPIRY_S


def _create(path: Path) -> bool:
    """Create the claim with its owner already in it: written to a private file, then linked
    into place, which fails when the claim exists (so no reader ever sees it half-written)."""
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(_owner(), handle)
        os.link(scratch, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(scratch)
    return True


def try_claim(results_dir: Path, key: str) -> bool:
    """Claim the run `key` for this process; False when another live owner holds it."""
    path = claim_path(results_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _create(path):
        return True
    if not _expired(path):
        return False
    path.unlink(missing_ok=True)  # take the expired claim over; of two takers, one creates it
    return _create(path)


@contextmanager
def claimed(results_dir: Path, key: str) -> Iterator[bool]:
    """`with claimed(dir, key) as mine:` runs the body with `mine` telling whether this process
    holds the claim; while it does, the claim is kept fresh, and it is released at the end."""
    if not try_claim(results_dir, key):
        yield False
        return
    path, stop = claim_path(results_dir, key), threading.Event()
    _held.add(path)

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(path)
            except OSError:
                return

    beating = threading.Thread(target=heartbeat, daemon=True)
    beating.start()
    try:
        yield True
    finally:
        stop.set()
        _held.discard(path)
        path.unlink(missing_ok=True)


def release_claims() -> None:
    """Release every claim this process holds (a worker about to exit mid-run)."""
    for path in list(_held):
        path.unlink(missing_ok=True)
        _held.discard(path)
