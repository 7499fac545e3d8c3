"""What stacking a front's models could win (issue 20, option (a)): the forward and backward of
one DPO step's 64 rows (safety, 32 pairs) for K tiny GPT-2 policies, as one model whose weights
carry a leading K dimension (`stacked_log_probs`, written here from transformers' GPT-2 in eval
mode: no dropout) against the K models one after the other. The stacked values are the models'
own to float rounding, not bit for bit (checked below: log-probabilities within 1e-4).

    pytest benchmarks/test_bench_front_stacked.py --benchmark-only \\
        --benchmark-timer time.process_time
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from moabench.core.determinism import one_torch_thread
from moabench.core.task import make_task
from moabench.language import tiny
from moabench.language.lm import NextTokenLogProbs, select_rows, sequence_log_probs


def front_models(k: int):
    """K copies of safety's tiny reference, each moved a little (distinct weights), and a DPO
    step's batch."""
    problem = tiny.preference_problem(make_task("safety"))
    generator = torch.Generator().manual_seed(0)
    models = [copy.deepcopy(problem.policy).eval() for _ in range(k)]
    with torch.no_grad():
        for i, model in enumerate(models):
            for parameter in model.parameters():
                parameter.add_(1e-3 * i * torch.randn(parameter.shape, generator=generator))
    n = problem.pairs.input_ids.shape[0] // 2
    index = torch.randint(n, (32,), generator=generator)
    return models, select_rows(problem.pairs, torch.cat([index, index + n]), trim=False)


def stacked_weights(models) -> dict[str, torch.Tensor]:
    """Each parameter of the K models stacked along a new first dimension, as a leaf."""
    named = [dict(model.named_parameters()) for model in models]
    return {
        name: torch.stack([p[name].detach() for p in named]).requires_grad_() for name in named[0]
    }


def layer_norm(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
    """LayerNorm of (K, B, T, E) with the K models' own affine weights (K, E)."""
    normalized = F.layer_norm(h, h.shape[-1:], None, None, eps)
    return normalized * weight[:, None, None] + bias[:, None, None]


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """GPT-2's Conv1D (x W + b) for K models at once: x (K, N, in), W (K, in, out), b (K, out)."""
    return torch.baddbmm(bias[:, None, :], x, weight)


def stacked_log_probs(w: dict[str, torch.Tensor], config, ids, mask, response) -> torch.Tensor:
    """(K, B) sums of the response tokens' log-probabilities under the K stacked GPT-2s."""
    k, (b, t) = next(iter(w.values())).shape[0], ids.shape
    e, heads, eps = config.n_embd, config.n_head, config.layer_norm_epsilon
    h = w["transformer.wte.weight"][:, ids] + w["transformer.wpe.weight"][:, :t][:, None]
    allowed = torch.ones(t, t, dtype=torch.bool).tril()[None, None] & mask.bool()[:, None, None]
    allowed = allowed.repeat(k, 1, 1, 1)
    for layer in range(config.n_layer):
        p = f"transformer.h.{layer}."
        x = layer_norm(h, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps).reshape(k, b * t, e)
        qkv = conv1d(x, w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"])
        q, key, v = qkv.view(k * b, t, 3, heads, e // heads).unbind(2)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), key.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed
        ).transpose(1, 2).reshape(k, b * t, e)
        h = h + conv1d(a, w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"]).view(k, b, t, e)
        x = layer_norm(h, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps).reshape(k, b * t, e)
        f = F.gelu(conv1d(x, w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"]), approximate="tanh")
        h = h + conv1d(f, w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"]).view(k, b, t, e)
    h = layer_norm(h, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], eps)
    logits = torch.bmm(h.reshape(k, b * t, e), w["transformer.wte.weight"].transpose(1, 2))
    log_probs = NextTokenLogProbs.apply(logits.view(k * b, t, -1), ids.repeat(k, 1))[0]
    return (log_probs.view(k, b, t - 1) * response[None, :, 1:]).sum(-1)


@pytest.mark.parametrize("k", [4, 11])
@pytest.mark.parametrize("mode", ["stacked", "one after the other"])
def test_forward_and_backward_of_k_models(benchmark, k, mode):
    models, batch = front_models(k)
    weights = stacked_weights(models)
    ids, mask, response = batch.input_ids, batch.attention_mask, batch.response_mask

    def stacked() -> torch.Tensor:
        log_probs = stacked_log_probs(weights, models[0].config, ids, mask, response)
        torch.autograd.grad(log_probs.sum(), list(weights.values()))
        return log_probs

    def one_after_the_other() -> torch.Tensor:
        values = []
        for model in models:
            log_probs = sequence_log_probs(model, batch)
            torch.autograd.grad(log_probs.sum(), list(model.parameters()))
            values.append(log_probs)
        return torch.stack(values)

    with one_torch_thread():
        torch.testing.assert_close(stacked(), one_after_the_other(), atol=1e-4, rtol=0)
        benchmark.group = f"DPO step's forward and backward, K = {k}"
        function = stacked if mode == "stacked" else one_after_the_other
        benchmark.pedantic(function, rounds=10, iterations=1, warmup_rounds=1)
