"""Peak memory and time of one full fine-tuning step of a Gram rule (upgrad, m = 3 DPO losses)
against linear scalarization (one backward pass of the weighted loss), on a random-init
Llama-architecture model, on the CPU. Gram paths: the m x d Jacobian, and torchjd's autogram
engine (`moabench.core.gradients.autogram`). Goals: autogram's peak within 1.3x of LS's, its time
within the bound of one forward and m backward passes, t_F + m (t_LS - t_F).

Sizes: `smoke` (a 2-layer model, seconds; what CI's `pytest benchmarks --benchmark-disable` runs,
where no figure is taken), and, only with MOABENCH_BENCH_GRAM_MEMORY=1 (about 30 minutes on 2
cores), `llama-58m` (58.5M parameters: vocabulary 32,000, 8 layers of width 512; the embedding
and output matrices are 56% of the parameters) and `llama-83m-v8k` (83.1M: vocabulary 8,000, 10
layers of width 768; 15%), both on 8 pairs of 128 tokens:

    MOABENCH_BENCH_GRAM_MEMORY=1 pytest benchmarks/test_bench_gram_memory.py --benchmark-only -s

Time: pytest-benchmark, in process, one torch thread, the best of 3 steps after a warm-up.
Memory: each configuration in a fresh subprocess (one torch thread), as the peak resident set
size of the process during one step after a warm-up step (`resident_memory.py`: why the resident
set, and glibc's mmap threshold fixed at 64 KiB so that the peak follows live tensors). The figures
include the process's baseline (Python, torch, transformers: about 0.6 GB) and the model's
weights; the step starts with no gradients and ends holding them (no optimizer step: Adam's
state would add 2x the weights to every method alike).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable

import pytest
import torch
from resident_memory import in_subprocess, reset_peak, resident_mib

from moabench.core.algorithm import make_algorithm
from moabench.core.determinism import one_torch_thread
from moabench.core.gradients import combine_micro_batches
from moabench.language.hub import checkpoint_activations
from moabench.language.lm import Batch, sequence_log_probs
from moabench.language.preference import per_objective_dpo_losses

M = 3
SIZES = {
    "smoke": dict(
        model=dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, num_key_value_heads=2),
        pairs=2, tokens=16,
    ),
    "llama-58m": dict(
        model=dict(vocab_size=32_000, hidden_size=512, intermediate_size=1408,
                   num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8),
        pairs=8, tokens=128,
    ),
    "llama-83m-v8k": dict(
        model=dict(vocab_size=8_000, hidden_size=768, intermediate_size=2048,
                   num_hidden_layers=10, num_attention_heads=12, num_key_value_heads=12),
        pairs=8, tokens=128,
    ),
}  # fmt: skip
METHODS = ["forward", "ls", "jacobian", "autogram"]
FULL = os.environ.get("MOABENCH_BENCH_GRAM_MEMORY") == "1"
SECONDS: dict[tuple[str, bool, str], float] = {}
PEAK_MB: dict[tuple[str, bool, str], float] = {}


def training_step(
    size: str, method: str, checkpointing: bool
) -> tuple[Callable[[], None], torch.nn.Module]:
    """One step of `method` on a fresh random-init Llama, and the model: "forward" (the losses
    only, with their graph), "ls" (one backward pass of the weighted loss), "jacobian" /
    "autogram" (upgrad)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = SIZES[size]
    torch.manual_seed(0)
    config = LlamaConfig(**spec["model"], tie_word_embeddings=False, max_position_embeddings=512)
    model = LlamaForCausalLM(config).train()
    if checkpointing:
        checkpoint_activations(model)
    parameters = list(model.parameters())
    n = spec["pairs"]
    ids = torch.randint(config.vocab_size, (2 * n, spec["tokens"]))
    batch = Batch(ids, torch.ones_like(ids), torch.ones_like(ids, dtype=torch.bool))
    signs = torch.sign(torch.randn(M, n))

    def losses() -> torch.Tensor:  # DPO against a reference whose log-probabilities are 0
        log_probs = sequence_log_probs(model, batch)
        return per_objective_dpo_losses(0.1 * (log_probs[:n] - log_probs[n:]), signs)

    rule = make_algorithm("ls" if method == "ls" else "upgrad", [1 / M] * M)
    modules = [model] if method == "autogram" else None

    def step() -> None:
        if method == "forward":
            losses()
        else:
            combine_micro_batches([losses], parameters, rule, 0.0, None, modules)

    return step, model


def peak_memory(size: str, method: str, checkpointing: bool) -> dict[str, float]:
    """In this process: resident set before one step (after a warm-up step, gradients freed) and
    its peak during the step, in MiB."""

    with one_torch_thread():
        step, model = training_step(size, method, checkpointing)
        step()
        model.zero_grad(set_to_none=True)
        gc.collect()
        reset_peak()
        before = resident_mib("VmRSS")
        step()
        return {"before_mb": before, "peak_mb": resident_mib("VmHWM")}


def measured_in_subprocess(size: str, method: str, checkpointing: bool) -> dict[str, float]:
    return in_subprocess(__file__, size, method, str(int(checkpointing)))


def configurations() -> list:
    """(size, checkpointing, method): every method on each size, with and without activation
    checkpointing, but autogram with it (rejected by the trainers: the engine holds what
    checkpointing frees; measured once, BENCHMARKS.md)."""
    skip = pytest.mark.skipif(not FULL, reason="set MOABENCH_BENCH_GRAM_MEMORY=1 (minutes)")
    return [
        pytest.param(size, checkpointing, method, marks=[] if size == "smoke" else [skip],
                     id=f"{size}{'-checkpointing' if checkpointing else ''}-{method}")
        for size in SIZES
        for checkpointing in (False, True)
        for method in METHODS
        if not (checkpointing and method == "autogram")
    ]  # fmt: skip


@pytest.mark.parametrize(("size", "checkpointing", "method"), configurations())
def test_gram_step_memory_and_time(benchmark, size, checkpointing, method):
    benchmark.group = f"{size}{', checkpointing' if checkpointing else ''}: one step, m = {M}"
    step, _ = training_step(size, method, checkpointing)

    def timed() -> None:
        with one_torch_thread():
            step()

    timed()  # warm-up
    benchmark.pedantic(timed, rounds=3, iterations=1)
    if benchmark.disabled:  # --benchmark-disable (CI's smoke run): the step runs, no figures
        return
    key = (size, checkpointing, method)
    SECONDS[key] = benchmark.stats.stats.min
    memory = measured_in_subprocess(size, method, checkpointing)
    PEAK_MB[key] = memory["peak_mb"]
    benchmark.extra_info.update(memory)
    print(f"\n{key}: {SECONDS[key]:.2f} s, peak {memory['peak_mb']:.0f} MiB")


@pytest.fixture(scope="module", autouse=True)
def report_against_the_goals():
    """After the measurements: each Gram path's peak and time as ratios to LS's, and the bound."""
    yield
    rows = []
    for size, checkpointing, method in sorted(SECONDS):
        base = (size, checkpointing)
        if method in ("forward", "ls") or {(*base, "ls"), (*base, "forward")} - set(SECONDS):
            continue
        forward, ls = SECONDS[(*base, "forward")], SECONDS[(*base, "ls")]
        rows.append(
            f"{size}{' checkpointing' if checkpointing else ''} {method}: peak "
            f"{PEAK_MB[(size, checkpointing, method)] / PEAK_MB[(*base, 'ls')]:.2f}x LS's "
            f"(goal 1.3), time {SECONDS[(size, checkpointing, method)] / ls:.2f}x LS's "
            f"(bound t_F + m (t_LS - t_F): {(forward + M * (ls - forward)) / ls:.2f}x)"
        )
    if rows:
        print("\n" + "\n".join(rows))


if __name__ == "__main__":  # one measurement, in its own process (`measured_in_subprocess`)
    name, how, checkpoint = sys.argv[1:]
    print(json.dumps(peak_memory(name, how, checkpoint == "1")))
