"""Peak resident memory of one measured step, in a fresh process (Linux), for the benchmarks that
measure memory on the CPU (`test_bench_gram_memory.py`, `test_bench_rehearsal.py`).

tracemalloc does not see torch's CPU allocations, and torch has no CPU counterpart of
`torch.cuda.max_memory_allocated`; the resident set does see them. `/proc/self/clear_refs` resets
the high-water mark `VmHWM` to the current resident set, so the peak of one step is `VmHWM` read
after it. Each measurement runs in its own process (`in_subprocess`, one torch thread) with
glibc's mmap threshold fixed at 64 KiB (MALLOC_MMAP_THRESHOLD_): every tensor above that size is
then mapped and unmapped with its lifetime, so the peak follows live tensors rather than the heap
fragmentation that glibc's adaptive threshold (up to 32 MiB) would keep resident.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def resident_mib(field: str = "VmRSS") -> float:
    """This process's resident set (`VmRSS`) or its high-water mark (`VmHWM`), in MiB."""
    line = next(
        x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field)
    )
    return int(line.split()[1]) / 1024


def reset_peak() -> None:
    """Reset `VmHWM` to the current resident set."""
    Path("/proc/self/clear_refs").write_text("5")


def in_subprocess(script: str, *args: str) -> dict:
    """Run `python script args...` as a measurement process; its last line of output is JSON."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])
