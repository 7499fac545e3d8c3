"""The Gram matrix without the Jacobian: torchjd's autogram engine (`gram_modules`) gives the same
Gram matrix, coefficients and update as the m x d Jacobian, and the trainers choose it at the
small and paper scales (`gram_engine`), never at the tiny one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from datasets import Dataset
from test_paper_scale import TRAINING, WORDS, pku_rows, save_models

from moabench import make_algorithm
from moabench.core import gradients
from moabench.core.algorithm import Paradigm
from moabench.core.errors import ConfigError
from moabench.core.gradients import autogram, combine_micro_batches, gram_matrix
from moabench.language.lm import Batch, last_block_name, last_block_parameters, sequence_log_probs
from moabench.language.params import LanguageParams, params_model
from moabench.language.preference import (
    PreferenceProblem,
    per_objective_dpo_losses,
    train_preference,
)
from moabench.language.tiny import build_tokenizer
from moabench.language.training import autogram_obstacle, gram_modules
from moabench.runs.runner import execute, resolve_config

M = 3


def llama(vocab=40, tied=False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
        tie_word_embeddings=tied, pad_token_id=0, eos_token_id=2, bos_token_id=1,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def gpt2_with_lora():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=40, n_positions=64, n_embd=16, n_layer=2, n_head=2)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # nonzero, so that lora_A's gradients are nonzero too
            torch.nn.init.normal_(parameter, std=0.1)
    return model.eval()


def dpo_losses(model, n=4, length=10):
    """m = 3 per-objective DPO losses on n random pairs (the reference log-probabilities 0)."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 40, (2 * n, length), generator=generator)
    batch = Batch(ids, torch.ones_like(ids), torch.ones_like(ids, dtype=torch.bool))
    signs = torch.tensor([[1.0, -1.0, 1.0, 0.0], [-1.0, -1.0, 1.0, 1.0], [1.0, 1.0, 1.0, -1.0]])

    def losses():
        log_probs = sequence_log_probs(model, batch)
        return per_objective_dpo_losses(0.1 * (log_probs[:n] - log_probs[n:]), signs)

    return losses


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def relative(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


# --- the engine -------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [llama, gpt2_with_lora], ids=["llama", "gpt2-lora"])
def test_autogram_gives_the_jacobians_gram_matrix(build):
    model = build()
    losses_of = dpo_losses(model)
    expected = gram_matrix(gradients.per_objective_gradients(losses_of(), trainable(model)))
    losses, gram = autogram([model], losses_of)
    assert gram.shape == (M, M) and losses.shape == (M,)
    assert relative(gram, expected) < 1e-6


@pytest.mark.parametrize("rule", ["upgrad", "mgda", "raco"])
@pytest.mark.parametrize("build", [llama, gpt2_with_lora], ids=["llama", "gpt2-lora"])
def test_autogram_gives_the_same_update(build, rule, monkeypatch):
    model = build()
    parameters, losses_of = trainable(model), dpo_losses(model)
    algorithm = make_algorithm(rule, [0.5, 0.3, 0.2])
    expected = combine_micro_batches([losses_of], parameters, algorithm, 0.1)
    expected_grads = [p.grad.clone() for p in parameters]

    def no_jacobian(*args, **kwargs):
        raise AssertionError("the autogram path built the Jacobian")

    monkeypatch.setattr(gradients, "per_objective_gradients", no_jacobian)
    coefficients = combine_micro_batches([losses_of], parameters, algorithm, 0.1, None, [model])
    assert coefficients == pytest.approx(expected, abs=1e-6)
    for grad, expected_grad in zip([p.grad for p in parameters], expected_grads):
        assert grad.shape == expected_grad.shape
        assert torch.allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_autogram_on_the_last_block_gives_the_subsets_gram_matrix():
    model = llama()
    parameters, losses_of = trainable(model), dpo_losses(model)
    subset = last_block_parameters(model)
    block = model.get_submodule(last_block_name(model))
    assert [id(p) for p in trainable(block)] == [id(p) for p in subset]
    algorithm = make_algorithm("mgda", [1 / 3] * 3)
    expected = combine_micro_batches([losses_of], parameters, algorithm, 0.0, subset)
    expected_grads = [p.grad.clone() for p in parameters]
    assert combine_micro_batches(
        [losses_of], parameters, algorithm, 0.0, None, [block]
    ) == pytest.approx(expected, abs=1e-6)
    for parameter, expected_grad in zip(parameters, expected_grads):
        assert torch.allclose(parameter.grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_the_gram_pass_differentiates_to_the_embeddings_output_alone(monkeypatch):
    """Not to about five module outputs per layer, whose gradients it would hold to its end
    (torchjd 0.18's own choice of edges, replaced by `gradients.leaf_edges`)."""
    chosen = []

    def spy(registered, roots):
        chosen.append((len(registered), gradients_leaf_edges(registered, roots)))
        return chosen[-1][1]

    gradients_leaf_edges = gradients.leaf_edges
    monkeypatch.setattr(gradients, "leaf_edges", spy)
    model = llama()
    losses_of = dpo_losses(model)
    expected = gram_matrix(gradients.per_objective_gradients(losses_of(), trainable(model)))
    assert relative(autogram([model], losses_of)[1], expected) < 1e-6
    ((registered, leaves),) = chosen
    assert registered == 2 * 9 + 3  # 9 modules per layer, the embedding, the final norm, the head
    (leaf,) = leaves
    assert leaf.node.name() == "EmbeddingBackward0"


def test_the_engine_leaves_no_hooks_behind():
    model = llama()
    autogram([model], dpo_losses(model))
    assert not any(module._forward_hooks for module in model.modules())


def test_autogram_takes_one_micro_batch():
    model = llama()
    losses_of = dpo_losses(model)
    with pytest.raises(ValueError, match="one micro-batch"):
        combine_micro_batches(
            [losses_of, losses_of], trainable(model), make_algorithm("mgda", [0.5] * 3),
            0.0, None, [model],
        )  # fmt: skip


# --- when the trainers use it -------------------------------------------------------------------


def hub_params(**values):
    model = params_model(LanguageParams, "paper", Paradigm.PREFERENCE)
    return model(scale="paper", **values)


def test_autogram_cannot_compute_tied_weights_or_accumulated_micro_batches():
    tied = llama(tied=True)
    assert "tied weights" in autogram_obstacle(tied, 1)
    assert "lm_head" in autogram_obstacle(tied, 1)
    assert "micro-batches" in autogram_obstacle(llama(), 4)
    checkpointed = llama()
    checkpointed.gradient_checkpointing_enable()
    assert "gradient_checkpointing" in autogram_obstacle(checkpointed, 1)
    assert autogram_obstacle(llama(), 1) is None
    assert autogram_obstacle(gpt2_with_lora(), 1) is None  # GPT-2's tied embedding is frozen


def test_autogram_is_asked_for_and_an_error_where_it_cannot_apply():
    mgda, ls = make_algorithm("mgda", [0.5, 0.5]), make_algorithm("ls", [0.5, 0.5])
    model, tied = llama(), llama(tied=True)
    autogram_params = hub_params(gram_engine="autogram")
    assert gram_modules(model, hub_params(), mgda, 1) is None  # the Jacobian by default
    assert gram_modules(model, autogram_params, mgda, 1) == [model]
    assert gram_modules(model, autogram_params, ls, 2) is None  # no Gram matrix to compute
    with pytest.raises(ConfigError, match="gram_engine='autogram'.*tied weights.*jacobian"):
        gram_modules(tied, autogram_params, mgda, 1)
    with pytest.raises(ConfigError, match="gram_engine='autogram'.*4 micro-batches"):
        gram_modules(model, autogram_params, mgda, 4)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with pytest.raises(ConfigError, match="gram_engine='autogram': with gradient_checkpointing"):
        gram_modules(model, autogram_params, mgda, 1)


def test_the_jacobians_gram_matrix_is_summed_in_float64_blocks(monkeypatch):
    jacobian = torch.randn(M, 1000)
    whole = gram_matrix(jacobian)
    monkeypatch.setattr(gradients, "GRAM_BLOCK", 64)
    assert np.allclose(gram_matrix(jacobian), whole, rtol=1e-12, atol=1e-12)
    assert np.allclose(whole, (jacobian.double() @ jacobian.double().T).numpy(), rtol=1e-12)


def test_the_tiny_scale_keeps_the_jacobian():
    from moabench import make_task

    task = make_task("safety")
    assert "gram_engine" not in type(task.params).model_fields
    assert gram_modules(llama(), task.params, make_algorithm("mgda", [0.5, 0.5]), 1) is None


def test_preference_training_is_the_same_with_either_engine():
    """Three DPO steps of upgrad on a tiny Llama: the same policy after training (SGD, whose
    steps are the combined gradients themselves; Adam would magnify rounding in coordinates
    whose gradient is near 0)."""

    def trained(engine):
        model = llama()
        ids = torch.randint(3, 40, (16, 10), generator=torch.Generator().manual_seed(2))
        mask = torch.ones_like(ids, dtype=torch.bool)
        mask[:, :4] = False  # the prompt
        problem = PreferenceProblem(
            policy=model,
            pairs=Batch(ids, torch.ones_like(ids), mask),
            signs=torch.sign(torch.randn(M, 8, generator=torch.Generator().manual_seed(3))),
            reward_differences=lambda: torch.zeros(M, 8),
            evaluate=lambda policy: [0.0] * M,
        )
        params = hub_params(
            steps=3, batch_size=4, gram_engine=engine, learning_rate=1.0, optimizer="sgd"
        )
        train_preference(problem, make_algorithm("upgrad", [0.5, 0.3, 0.2]), 0, params, M)
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    jacobian, engine = trained("jacobian"), trained("autogram")
    assert not torch.equal(jacobian, torch.cat([p.reshape(-1) for p in llama().parameters()]))
    assert torch.allclose(engine, jacobian, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def local_llama(tmp_path_factory):
    """A tiny Llama policy (untied embeddings, so full fine-tuning can use autogram), GPT-2
    reward models and PKU-SafeRLHF-format pairs, saved locally."""
    root = tmp_path_factory.mktemp("hub-llama")
    paths = save_models(root)
    tokenizer = build_tokenizer(WORDS)
    model = llama(vocab=len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    Dataset.from_list(pku_rows()).save_to_disk(root / "pku")
    return {**paths, "llama": str(root / "llama"), "pku": str(root / "pku")}


@pytest.mark.parametrize("paradigm", ["preference", "online"])
def test_a_full_fine_tuning_run_is_the_same_with_either_engine(local_llama, paradigm, monkeypatch):
    def run(engine):
        params = dict(
            scale="paper", policy=local_llama["llama"], dataset=local_llama["pku"], lora_rank=0,
            reward_models={"helpfulness": local_llama["reward-a"],
                           "harmlessness": local_llama["reward-b"]},
            gram_engine=engine, paradigm=paradigm, learning_rate=1e-3, **TRAINING,
        )  # fmt: skip
        if paradigm == "online":
            params.update(prompts_per_step=2, group_size=2)
        record = execute(resolve_config("upgrad", "safety", [0.6, 0.4], 0, None, params))
        assert record.status == "ok", record.reason
        return record

    jacobian = run("jacobian")
    monkeypatch.setattr(gradients, "per_objective_gradients", None)  # autogram never calls it
    engine = run("autogram")
    assert engine.objectives == pytest.approx(jacobian.objectives, rel=1e-5, abs=1e-6)
    assert engine.config.task_params["gram_engine"] == "autogram"


# --- the log-probabilities' lean backward -------------------------------------------------------


def test_next_token_log_probs_are_trls_bit_for_bit():
    from trl.trainer.utils import selective_log_softmax

    from moabench.language.lm import NextTokenLogProbs

    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11, requires_grad=True)
    ids = torch.randint(0, 11, (3, 7))
    ours, _ = NextTokenLogProbs.apply(logits, ids)
    trls = selective_log_softmax(logits[:, :-1], ids[:, 1:])
    assert torch.equal(ours, trls)
    weights = torch.randn(M, 3, 6)
    batched = [
        torch.autograd.grad(out, logits, weights, is_grads_batched=True, retain_graph=True)[0]
        for out in (ours, trls)
    ]
    assert torch.allclose(*batched, rtol=1e-6, atol=1e-7)  # vmapped, as autogram runs it
    for row in weights:
        assert torch.equal(*[torch.autograd.grad(out, logits, row, retain_graph=True)[0]
                             for out in (ours, trls)])  # fmt: skip
    wide = logits.detach().double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: NextTokenLogProbs.apply(x, ids)[0], (wide,))
    half, _ = NextTokenLogProbs.apply(logits.detach().bfloat16(), ids)
    assert half.dtype == torch.float32
    assert torch.allclose(half, trls, atol=0.05)


def test_next_token_log_probs_backward_of_a_bfloat16_model_is_the_float32_ones_rounded():
    """Row by row, in float32, and returned in the logits' dtype."""
    from trl.trainer.utils import selective_log_softmax

    from moabench.language.lm import NextTokenLogProbs

    torch.manual_seed(0)
    half = torch.randn(4, 9, 13).bfloat16().requires_grad_()
    ids = torch.randint(0, 13, (4, 9))
    weights = torch.randn(4, 8)
    (ours,) = torch.autograd.grad(NextTokenLogProbs.apply(half, ids)[0], half, weights)
    wide = half.detach().float().requires_grad_()
    (expected,) = torch.autograd.grad(
        selective_log_softmax(wide[:, :-1], ids[:, 1:]), wide, weights
    )
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours, expected.bfloat16())


def aten_calls(function) -> int:
    """How many aten operators `function()` dispatches."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        function()
    return Count.calls


def test_next_token_log_probs_take_as_many_operators_for_64_rows_as_for_2():
    """No per-row loop at a small vocabulary: the tiny scale's DPO batches run in one pass."""
    from moabench.language.lm import NextTokenLogProbs

    def forward_backward(rows):
        logits = torch.randn(rows, 14, 60, requires_grad=True)
        ids = torch.randint(0, 60, (rows, 14))
        return lambda: torch.autograd.grad(
            NextTokenLogProbs.apply(logits, ids)[0], logits, torch.ones(rows, 13)
        )

    assert aten_calls(forward_backward(64)) == aten_calls(forward_backward(2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_next_token_log_probs_are_the_same_bit_for_bit_however_the_rows_are_chunked(
    monkeypatch, dtype
):
    """A sequence at a time (as at Qwen3's vocabulary) or all at once: the same bits, forward,
    backward and vmapped backward."""
    from moabench.language import lm

    torch.manual_seed(0)
    logits = (3 * torch.randn(6, 9, 50)).to(dtype).requires_grad_()
    ids = torch.randint(0, 50, (6, 9))
    weights = torch.randn(M, 6, 8)

    def computed():
        values, logsumexp = lm.NextTokenLogProbs.apply(logits, ids)
        one = torch.autograd.grad(values, logits, weights[0], retain_graph=True)[0]
        batched = torch.autograd.grad(values, logits, weights, is_grads_batched=True)[0]
        return values, logsumexp, one, batched

    whole = computed()
    monkeypatch.setattr(lm, "CHUNK_BYTES", 4 * 9 * 50)  # one sequence at a time
    assert lm.row_chunks(logits) == 1
    for one, other in zip(whole, computed()):
        assert torch.equal(one, other)
