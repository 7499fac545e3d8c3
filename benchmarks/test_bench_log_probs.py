"""Peak memory of the per-token log-probabilities' backward pass (`NextTokenLogProbs`) against
autograd's backward of the same float32 computation (trl's `selective_log_softmax` on the
logits cast to float32), for a bfloat16 model's logits at Qwen3's vocabulary (151,936) on the CPU:
the part of a training step's memory that grows with the vocabulary (BENCHMARKS.md).

Sizes: `smoke` (a small vocabulary, seconds; CI's `pytest benchmarks --benchmark-disable`), and,
only with MOABENCH_BENCH_LOG_PROBS=1 (about 1 minute, 6 GB), one math online response (1 x 2,304
tokens) and a summarization DPO micro-batch's worth (4 x 1,024 tokens):

    MOABENCH_BENCH_LOG_PROBS=1 pytest benchmarks/test_bench_log_probs.py --benchmark-only -s

Each measurement runs in a fresh process (`resident_memory.py`): the peak resident set during
the backward pass above the resident set before it (which holds the logits and their graph).
"""

from __future__ import annotations

import gc
import json
import os
import sys

import pytest
import torch
from resident_memory import in_subprocess, reset_peak, resident_mib

from moabench.language.lm import NextTokenLogProbs

FULL = os.environ.get("MOABENCH_BENCH_LOG_PROBS") == "1"
SHAPES = {  # sequences, tokens, vocabulary
    "smoke": (2, 16, 1000),
    "one-2304": (1, 2304, 151936),
    "four-1024": (4, 1024, 151936),
}


def autograd_log_probs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    from trl.trainer.utils import selective_log_softmax

    return selective_log_softmax(logits.float()[:, :-1], ids[:, 1:])


def backward_peak_mib(shape: str, how: str) -> dict[str, float]:
    """One backward pass of the log-probabilities of random bfloat16 logits: its peak above the
    resident set before it, and the logits' size."""
    n, tokens, vocabulary = SHAPES[shape]
    torch.manual_seed(0)
    logits = torch.randn(n, tokens, vocabulary, dtype=torch.bfloat16, requires_grad=True)
    ids = torch.randint(vocabulary, (n, tokens))
    if how == "moabench":
        log_probs = NextTokenLogProbs.apply(logits, ids)[0]
    else:
        log_probs = autograd_log_probs(logits, ids)
    weights = torch.randn(n, tokens - 1)
    gc.collect()
    before = resident_mib()
    reset_peak()
    torch.autograd.grad(log_probs, logits, weights)
    return {"peak_mib": resident_mib("VmHWM") - before, "logits_mib": logits.numel() * 2 / 2**20}


@pytest.mark.parametrize("how", ["moabench", "autograd"])
@pytest.mark.parametrize(
    "shape", [s if s == "smoke" or FULL else pytest.param(s, marks=pytest.mark.skip(
        reason="set MOABENCH_BENCH_LOG_PROBS=1 for the real sizes")) for s in SHAPES],
)  # fmt: skip
def test_log_prob_backward_memory(benchmark, shape, how):
    measured = benchmark.pedantic(
        lambda: in_subprocess(__file__, shape, how), rounds=1, iterations=1
    )
    benchmark.extra_info.update(measured)
    print(
        f"\n{shape} {how}: backward peak {measured['peak_mib']:,.0f} MiB above the resident set "
        f"(logits {measured['logits_mib']:,.0f} MiB)"
    )
    assert measured["peak_mib"] >= 0


if __name__ == "__main__":  # one measurement, in its own process (`in_subprocess`)
    print(json.dumps(backward_peak_mib(*sys.argv[1:3])))
