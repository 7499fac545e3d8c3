"""A rehearsal of the paper setups' training steps at their real shapes, on the CPU: time and
peak memory per transformer layer of one step of linear scalarization (`ls`, one backward pass
of the weighted loss) and of a Gram rule (`upgrad`: m backward passes, the m x m Gram matrix),
and the full-depth figures projected from them.

The setups are the tasks' `paper_setups["paper"]` with their first paradigm and their defaults at
that scale (read from `moabench.tasks`, so this file follows them):

    task           paradigm  policy (layers)                m  one step
    safety         DPO       mistral-7b-sft-beta (32)       2  64 pairs: 8 micro-batches of 8
                             (HuggingFaceH4, Mistral-7B)       pairs (16 sequences) of <= 512 tokens
    summarization  DPO       Qwen/Qwen3-4B-Base (36)        2  64 pairs: 16 micro-batches of 4
                                                               pairs of <= 1,024 tokens
    math           GRPO      Qwen/Qwen3-8B (36)             3  64 prompts x 8 responses: 256
                                                               micro-batches of 2 sequences of
                                                               2,048 + 256 tokens

Each policy's architecture is built with random weights from its published sizes
(`ARCHITECTURES`, no Hub download) at 1 and 2 layers, in the dtype the setup trains in on a GPU
(bfloat16: `hub.placement`'s default on CUDA; the development CPU has AVX512-BF16, where a
forward pass ran 2.3-2.9x faster than in float32, so memory is measured in that dtype rather than
projected by bytes), with LoRA as configured (rank 16 on peft's default modules, q_proj and v_proj; adapters in
float32; `loading.with_lora`), activation checkpointing and the Gram engine as configured (off,
and the Jacobian path). One step is the trainers' own code: the per-objective DPO losses
(`sequence_log_probs`, `per_objective_dpo_losses`) or the per-objective clipped policy-gradient
losses with the KL term (`online.objective_losses`), combined by
`gradients.combine_micro_batches`. Reference and rollout log-probabilities are constants (the
trainers compute them without gradients before the step), token ids random. Sequences are as long
as the setup allows: a preference micro-batch is cut to its longest row, at most `max_length`;
an online batch is padded to its longest prompt + response, taken as `max_new_tokens` + 256
prompt tokens (`PROMPT_TOKENS`: MATH-500's problems with the instruction and a chat template).

Measured on the CPU, per configuration in a fresh process (`resident_memory.py`), one step
without a warm-up (each takes seconds to minutes), one torch thread: its CPU time (other jobs on
a shared machine do not count in it, but a single step's still varied by several seconds between
runs, so the per-layer times are rough where a layer costs less than that) and its peak
resident memory above the resident set before it (the weights and the process), at s sequences
of the setup's length (one pair, or one response: the micro-batch does not fit 8 GB at one
layer). Projection to L layers and to the configured step, for X = time or peak increment:

    per layer  X_l = X(2) - X(1)      fixed  X_0 = X(1) - X_l      X(L) = X_0 + L X_l
    time of one step    = K * E * (S / s) * t(L)
    peak memory of one step = W(L) + (S / s) * dM(L)

with S the configured sequences per micro-batch, K micro-batches per step, E updates per batch
(ppo_epochs, 1), W(L) the parameters' bytes (exact: counted on the 1- and 2-layer models, linear in
L). Both are linear in sequences at fixed length (each sequence's activations and work are its
own); K micro-batches take K times one's time and the memory of one (each micro-batch's graph is
freed after its backward passes; the Jacobian accumulated over them is m x the LoRA parameters
in float32, under 0.1 GB, and its float64 copy for the Gram matrix twice that). Not in the figures: optimizer state (Adam: 2 x the LoRA parameters), the reference
log-probabilities (computed once, without gradients), and for online training the rollout's
log-probabilities (no-gradient forward passes, one per micro-batch), sampling (its key-value
cache) and the reward models (safety's two beaver-7B models score outside the step). Times are
one CPU thread's; only their Gram / LS ratios carry over to a GPU.

Sizes: `smoke` (tiny models of the same families, seconds, in process; what CI's
`pytest benchmarks --benchmark-disable` runs) and, only with MOABENCH_BENCH_REHEARSAL=1, the real
shapes (about 14 minutes on the 2-core development machine: 6 for the preference setups, 8 for
math; `-k "safety or summarization"` / `-k math` split them; peak 8.4 GB resident):

    MOABENCH_BENCH_REHEARSAL=1 pytest benchmarks/test_bench_rehearsal.py --benchmark-only -s

With CUDA, the same command measures on the GPU (torch.cuda.max_memory_allocated above the memory
allocated before the step, CUDA-synchronised wall times): the 1- and 2-layer models at s =
`GPU_SEQUENCES` sequences, then the full-depth model at s sequences and the
configured step (K micro-batches of S sequences, all layers), each printed against its
projection; an out-of-memory error is reported as such. The pytest-benchmark time of a real
configuration is its whole measurement process (model construction included); the step's own
time and memory are in extra_info and the printed table.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from resident_memory import in_subprocess, reset_peak, resident_mib

from moabench.core.algorithm import Paradigm, make_algorithm
from moabench.core.determinism import one_torch_thread
from moabench.core.gradients import combine_micro_batches
from moabench.core.task import make_task
from moabench.language.hub import DTYPES, checkpoint_activations
from moabench.language.lm import Batch, sequence_log_probs
from moabench.language.loading import with_lora
from moabench.language.online import Rollout, objective_losses
from moabench.language.params import LanguageParams
from moabench.language.preference import per_objective_dpo_losses
from moabench.language.training import gram_modules

#: The published sizes of each paper setup's policy (its config.json on the Hugging Face Hub).
ARCHITECTURES = {
    # huggingface.co/HuggingFaceH4/mistral-7b-sft-beta/blob/main/config.json, a fine-tune of
    # mistralai/Mistral-7B-v0.1 with its sizes
    "HuggingFaceH4/mistral-7b-sft-beta": dict(
        model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
        tie_word_embeddings=False,
    ),
    # huggingface.co/Qwen/Qwen3-4B-Base/blob/main/config.json
    "Qwen/Qwen3-4B-Base": dict(
        model_type="qwen3", hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
        tie_word_embeddings=True,
    ),
    # huggingface.co/Qwen/Qwen3-8B/blob/main/config.json
    "Qwen/Qwen3-8B": dict(
        model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
        tie_word_embeddings=False,
    ),
}  # fmt: skip
#: The smoke size: the same families and embedding ties, tiny.
SMOKE_SIZES = dict(
    hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, vocab_size=128,
)  # fmt: skip
SMOKE_TOKENS = 16
TASKS = ("safety", "summarization", "math")
METHODS = ("ls", "upgrad")
PROMPT_TOKENS = 256
#: Sequences measured per configuration on the CPU: one pair, or one response.
CPU_SEQUENCES = {Paradigm.PREFERENCE: 2, Paradigm.ONLINE: 1}
#: Sequences measured per configuration on a GPU, few enough that all layers fit 80 GB.
GPU_SEQUENCES = {Paradigm.PREFERENCE: 4, Paradigm.ONLINE: 2}
FULL = os.environ.get("MOABENCH_BENCH_REHEARSAL") == "1"
CUDA = torch.cuda.is_available()
MEASURED: dict[tuple[str, str, str], dict] = {}


@dataclass(frozen=True)
class Setup:
    """The training step of a task's paper setup, from its defaults at scale "paper"."""

    task: str
    params: LanguageParams
    paradigm: Paradigm
    m: int
    policy: str
    sequences: int  # S: sequences per micro-batch
    micro_batches: int  # K
    updates: int  # E: updates per batch (ppo_epochs)
    tokens: int  # tokens per sequence


def paper_setup(task_name: str) -> Setup:
    task = make_task(task_name, scale="paper")
    p = task.params
    if task.paradigm == Paradigm.PREFERENCE:
        pairs = p.micro_batch_size or p.batch_size
        shape = (2 * pairs, p.batch_size // pairs, 1, p.max_length)
    else:
        tokens = min(p.max_length, p.max_new_tokens + PROMPT_TOKENS)
        responses = p.prompts_per_step * p.group_size
        size = p.micro_batch_size or responses
        shape = (size, responses // size, p.ppo_epochs, tokens)
    policy = task.paper_setups["paper"].policy
    return Setup(task_name, p, task.paradigm, len(task.tiny_space.names), policy, *shape)


def measured_sequences(setup: Setup, smoke: bool) -> int:
    """s: the sequences one measured micro-batch holds (see the module docstring)."""
    return (CPU_SEQUENCES if smoke or not CUDA else GPU_SEQUENCES)[setup.paradigm]


def build_policy(setup: Setup, layers: int, smoke: bool, device: str) -> torch.nn.Module:
    """The setup's policy architecture with `layers` layers and random weights, in its dtype
    on a GPU, with its LoRA adapters and activation checkpointing."""
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = dict(ARCHITECTURES[setup.policy], num_hidden_layers=layers)
    if smoke:
        sizes.update(SMOKE_SIZES)
    config = AutoConfig.for_model(**sizes)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            config, dtype=DTYPES[setup.params.dtype or "bfloat16"]
        )
    if setup.params.gradient_checkpointing:
        checkpoint_activations(model)
    return with_lora(model, setup.params.lora_rank).to(device)


def training_step(
    setup: Setup, method: str, layers: int, sequences: int, micro_batches: int, smoke: bool,
    device: str,
) -> tuple[Callable[[], None], torch.nn.Module]:  # fmt: skip
    """One step of `method` on `micro_batches` micro-batches of `sequences` sequences, and the
    policy: the trainers' per-objective losses through `combine_micro_batches`."""
    policy = build_policy(setup, layers, smoke, device)
    params, m = setup.params, setup.m
    tokens = SMOKE_TOKENS if smoke else setup.tokens
    vocabulary = policy.config.vocab_size
    ids = torch.randint(vocabulary, (sequences, tokens), device=device)
    batch = Batch(ids, torch.ones_like(ids), torch.ones_like(ids, dtype=torch.bool))
    rule = make_algorithm(method, [1 / m] * m)
    rule.coefficients(np.eye(m), 0.0)  # the first call imports the rule's solver (seconds)
    if setup.paradigm == Paradigm.PREFERENCE:
        policy.train()
        pairs = sequences // 2
        signs = torch.sign(torch.randn(m, pairs, device=device))

        def losses() -> torch.Tensor:  # reference log-probabilities 0
            log_ratios = sequence_log_probs(policy, batch)
            return per_objective_dpo_losses(
                params.beta * (log_ratios[:pairs] - log_ratios[pairs:]), signs
            )
    else:
        policy.eval()  # as the online trainer runs it
        mask = batch.response_mask[:, 1:].float()
        uniform = torch.full_like(mask, -math.log(vocabulary))  # old and reference policies
        rollout = Rollout(
            batch=batch, mask=mask, old_log_probs=uniform, reference_log_probs=uniform,
            tokens=mask.sum(),
        )  # fmt: skip
        advantage = torch.randn(m, sequences, device=device)

        def losses() -> torch.Tensor:
            return objective_losses(policy, rollout, advantage, params)

    parameters = [p for p in policy.parameters() if p.requires_grad]
    modules = gram_modules(policy, params, rule, micro_batches)

    def step() -> None:
        combine_micro_batches(
            [losses] * micro_batches, parameters, rule, params.learning_rate, None, modules
        )

    return step, policy


def measure(
    task: str, method: str, layers: int, sequences: int, micro_batches: int, smoke: bool
) -> dict[str, float]:
    """In this process: one step's seconds, the memory held before it (weights, process) and its
    peak, and the parameters' bytes, in MiB. On CUDA: wall time, the allocator's figures; on the
    CPU: the process's CPU time (a shared machine's other jobs do not count in it), the resident
    set's."""
    device = "cuda" if CUDA and not smoke else "cpu"
    setup = paper_setup(task)
    with one_torch_thread():
        step, policy = training_step(setup, method, layers, sequences, micro_batches, smoke, device)
        weights = sum(p.numel() * p.element_size() for p in policy.parameters()) / 2**20
        gc.collect()
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated() / 2**20
        else:
            reset_peak()
            before = resident_mib("VmRSS")
        clock = time.perf_counter if device == "cuda" else time.process_time
        start = clock()
        try:
            step()
        except torch.cuda.OutOfMemoryError:
            return {"weights_mb": weights, "before_mb": before, "out_of_memory": True}
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = clock() - start
        peak = (
            torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else resident_mib("VmHWM")
        )
    return {"seconds": seconds, "weights_mb": weights, "before_mb": before, "peak_mb": peak}


def run(task: str, method: str, depth: str) -> dict[str, float]:
    """The measurement of one configuration: in process at the smoke size, else in a fresh
    process. `depth`: "1", "2", "full" (all layers, s sequences) or "step" (the configured
    step: all layers, K micro-batches of S sequences)."""
    smoke = not FULL
    setup = paper_setup(task)
    layers = (
        ARCHITECTURES[setup.policy]["num_hidden_layers"]
        if depth in ("full", "step")
        else int(depth)
    )
    sequences, micro_batches = (
        (setup.sequences, setup.micro_batches)
        if depth == "step"
        else (measured_sequences(setup, smoke), 1)
    )
    arguments = (task, method, str(layers), str(sequences), str(micro_batches))
    if smoke:
        return measure(*arguments[:2], layers, sequences, micro_batches, smoke=True)
    return in_subprocess(__file__, *arguments)


def configurations() -> list:
    """(task, method, depth): 1 and 2 layers of every setup and method; on a GPU also all layers
    and the configured step."""
    depths = ["1", "2"] + (["full", "step"] if CUDA else [])
    return [
        pytest.param(task, method, depth, id=f"{task}-{method}-{depth}")
        for task in TASKS
        for method in METHODS
        for depth in depths
        if FULL or depth in ("1", "2")
    ]


@pytest.mark.parametrize(("task", "method", "depth"), configurations())
def test_rehearsal_step(benchmark, task, method, depth):
    benchmark.group = f"rehearsal {'smoke' if not FULL else task}: one step's measurement"
    figures = benchmark.pedantic(run, args=(task, method, depth), rounds=1, iterations=1)
    MEASURED[(task, method, depth)] = figures
    benchmark.extra_info.update(figures)


# --- projection and report -------------------------------------------------------------------


def linear_in_layers(one: float, two: float) -> tuple[float, float]:
    """(fixed part X_0, per-layer part X_l) of a quantity measured at 1 and 2 layers."""
    per_layer = two - one
    return one - per_layer, per_layer


@dataclass(frozen=True)
class Projection:
    """The full-depth figures of one setup and method, from its 1- and 2-layer measurements."""

    seconds: tuple[float, float]  # (fixed, per layer) at s sequences
    increment_mb: tuple[float, float]  # peak - before: (fixed, per layer) at s sequences
    weights_mb: tuple[float, float]

    @classmethod
    def of(cls, one: dict, two: dict) -> Projection:
        return cls(
            linear_in_layers(one["seconds"], two["seconds"]),
            linear_in_layers(one["peak_mb"] - one["before_mb"], two["peak_mb"] - two["before_mb"]),
            linear_in_layers(one["weights_mb"], two["weights_mb"]),
        )

    @staticmethod
    def at(part: tuple[float, float], layers: int) -> float:
        return part[0] + layers * part[1]

    def step_seconds(self, setup: Setup, layers: int, scale: float) -> float:
        return setup.micro_batches * setup.updates * scale * self.at(self.seconds, layers)

    def peak_mb(self, layers: int, scale: float) -> float:
        return self.at(self.weights_mb, layers) + scale * self.at(self.increment_mb, layers)


def report_rows() -> list[str]:
    """The table: per setup and method, the fixed and per-layer parts and the projections."""
    rows = [
        "| setup | method | s | t fixed, per layer (s) | peak increment fixed, per layer (MiB) "
        "| L | t(L), s seq. (s) | one step (s) | weights W(L) (GiB) | peak of one step (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    smoke = not FULL
    for task in TASKS:
        setup = paper_setup(task)
        layers = ARCHITECTURES[setup.policy]["num_hidden_layers"]
        s = measured_sequences(setup, smoke)
        scale = setup.sequences / s
        for method in METHODS:
            one, two = MEASURED.get((task, method, "1")), MEASURED.get((task, method, "2"))
            if one is None or two is None or "seconds" not in one or "seconds" not in two:
                continue
            p = Projection.of(one, two)
            rows.append(
                f"| {task} ({setup.paradigm.value}, m = {setup.m}) | {method} | {s} "
                f"| {p.seconds[0]:.1f}, {p.seconds[1]:.2f} "
                f"| {p.increment_mb[0]:.0f}, {p.increment_mb[1]:.0f} | {layers} "
                f"| {p.at(p.seconds, layers):.0f} | {p.step_seconds(setup, layers, scale):,.0f} "
                f"| {p.at(p.weights_mb, layers) / 1024:.1f} | {p.peak_mb(layers, scale) / 1024:,.1f} |"
            )
            for depth, sequences, step_scale in (
                ("full", s, 1.0),
                ("step", setup.sequences, scale),
            ):
                measured = MEASURED.get((task, method, depth))
                if measured is None:
                    continue
                projected_seconds = (
                    p.at(p.seconds, layers)
                    if depth == "full"
                    else p.step_seconds(setup, layers, step_scale)
                )
                got = (
                    "out of memory"
                    if measured.get("out_of_memory")
                    else f"{measured['seconds']:.2f} s, peak {measured['peak_mb'] / 1024:.1f} GiB"
                )
                checks.append(
                    f"{task} {method}, {layers} layers, {sequences} sequences"
                    f"{f' x {setup.micro_batches} micro-batches' if depth == 'step' else ''}: "
                    f"measured {got}; projected {projected_seconds:.2f} s, peak "
                    f"{p.peak_mb(layers, step_scale) / 1024:.1f} GiB"
                )
    return rows + ([""] + checks if checks else [])


@pytest.fixture(scope="module", autouse=True)
def report_projections():
    """After the measurements: the table of per-layer figures and projections."""
    yield
    if any(key[2] in ("1", "2") for key in MEASURED):
        where = (
            "tiny models: the code path, figures meaningless"
            if not FULL
            else (torch.cuda.get_device_name() if CUDA else "CPU, one thread")
        )
        print(f"\nRehearsal ({where})\n" + "\n".join(report_rows()))


if __name__ == "__main__":  # one measurement, in its own process (`run`)
    name, how, depth, count, micro = sys.argv[1:]
    print(json.dumps(measure(name, how, int(depth), int(count), int(micro), smoke=False)))
