"""The CPU code paths are pinned, so that a record re-run on another x86 host (CI's) gives the same
numbers: MKL's reproducibility branch, ATen's and oneDNN's instruction sets (AVX2)."""

import os
import subprocess
import sys

from moabench.core.determinism import CPU_NUMERICS, cpu_numerics


def _in_new_process(code: str, **env: str) -> str:
    unset = {*CPU_NUMERICS, "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"}  # as a new shell
    environment = {k: v for k, v in os.environ.items() if k not in unset} | env
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True
    )
    return done.stdout.strip()


def test_importing_moabench_pins_every_cpu_code_path_before_torch_loads():
    shown = _in_new_process(
        "import os, moabench, torch; "
        "print(os.environ['MKL_CBWR'], torch.backends.cpu.get_cpu_capability())"
    )
    mkl, capability = shown.split()
    assert mkl == "AVX2"
    assert capability in ("AVX2", "DEFAULT")  # DEFAULT: a host without AVX2 (or not x86)


def test_a_code_path_the_user_chose_is_kept():
    shown = _in_new_process(
        "import os, moabench; print(os.environ['MKL_CBWR'], os.environ['ATEN_CPU_CAPABILITY'])",
        MKL_CBWR="AUTO",
        ATEN_CPU_CAPABILITY="default",
    )
    assert shown.split() == ["AUTO", "default"]


def test_provenance_records_the_code_paths_and_torchs_capability():
    import torch

    recorded = cpu_numerics()
    assert set(CPU_NUMERICS) <= set(recorded)
    assert recorded["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_importing_moabench_puts_cuda_memory_in_expandable_segments_unless_configured():
    """Set at import, before a launcher's process group or a device query initialises CUDA."""
    code = "import os, moabench; print(os.environ.get('PYTORCH_CUDA_ALLOC_CONF'))"
    assert _in_new_process(code) == "expandable_segments:True"
    assert _in_new_process(code, PYTORCH_CUDA_ALLOC_CONF="max_split_size_mb:128") == (
        "max_split_size_mb:128"
    )
    assert _in_new_process(code, PYTORCH_ALLOC_CONF="expandable_segments:False") == "None"
