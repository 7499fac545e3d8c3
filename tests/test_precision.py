"""Precision and memory options of the small and paper scales: the policy's dtype, activation
checkpointing, and the reward models' own device and dtype. Bad combinations are `ConfigError`s
before anything loads or trains; none of these options exists at the tiny scale."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from test_paper_scale import TRAINING, pku_rows, save_models

from moabench.core.errors import ConfigError
from moabench.language import hub, loading
from moabench.runs.runner import execute, resolve_config

OPTIONS = dict(dtype="bfloat16", gradient_checkpointing=True, reward_device="cpu",
               reward_dtype="float32", gram_engine="jacobian")  # fmt: skip


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-precision")
    paths = save_models(root)
    Dataset.from_list(pku_rows()).save_to_disk(root / "pku")
    return {**paths, "pku": str(root / "pku")}


def safety(local, **extra):
    return {
        **dict(
            scale="paper", policy=local["policy"], dataset=local["pku"], lora_rank=4,
            reward_models={"helpfulness": local["reward-a"], "harmlessness": local["reward-b"]},
        ),
        **TRAINING,
        **extra,
    }  # fmt: skip


def run(params, algorithm="mgda"):
    return execute(resolve_config(algorithm, "safety", [0.5, 0.5], 0, None, params))


@pytest.fixture
def nothing_loads(monkeypatch):
    """Loading a model or a dataset fails the test: the error must come before."""

    def refuse(*args, **kwargs):
        raise AssertionError("loaded something before the configuration was checked")

    for name in ("load_causal_lm", "load_sequence_classifier", "load_rows"):
        monkeypatch.setattr(loading, name, refuse)


# --- bad combinations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (dict(device="cpu", reward_dtype="float16"), r"reward_dtype='float16' on a CPU"),
        (dict(device="gpu0"), r"device='gpu0' is not a torch device"),
        (dict(reward_device="nowhere"), r"reward_device='nowhere' is not a torch device"),
    ],
)
def test_bad_devices_and_dtypes_are_errors_before_anything_loads(
    local, nothing_loads, extra, message
):
    with pytest.raises(ConfigError, match=message):
        run(safety(local, **extra))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_an_error(local, nothing_loads):
    with pytest.raises(ConfigError, match=r"device='cuda': this machine has no CUDA device"):
        run(safety(local, device="cuda"))
    with pytest.raises(ConfigError, match=r"reward_device='cuda:1': this machine has no CUDA"):
        run(safety(local, reward_device="cuda:1"))


def test_checkpointing_a_model_that_cannot_is_an_error(local, monkeypatch):
    from transformers import GPT2LMHeadModel

    monkeypatch.setattr(GPT2LMHeadModel, "supports_gradient_checkpointing", False)
    with pytest.raises(ConfigError, match=r"gradient_checkpointing: policy .*GPT2LMHeadModel"):
        run(safety(local, gradient_checkpointing=True))


@pytest.mark.parametrize("name", list(OPTIONS))
def test_the_options_do_not_exist_at_the_tiny_scale(name):
    with pytest.raises(ConfigError, match=f"{name}.*the small and paper scales"):
        resolve_config("ls", "safety", [0.5, 0.5], 0, None, {name: OPTIONS[name]})


# --- where the weights live -----------------------------------------------------------------------


def test_the_default_dtype_is_bfloat16_on_cuda_and_float32_on_a_cpu(monkeypatch):
    assert hub.placement("cpu", None) == hub.Placement("cpu", torch.float32)
    assert hub.placement("cpu", "bfloat16").dtype == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert hub.placement(None, None) == hub.Placement("cuda", torch.bfloat16)
    assert hub.placement("cuda:1", "float16") == hub.Placement("cuda:1", torch.float16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(ConfigError, match="no bfloat16 support; use float16 or float32"):
        hub.placement("cuda", "bfloat16")


def loaded_dtypes(monkeypatch):
    """The dtype of every model loaded from now on, by name."""
    dtypes = {}

    def spy(load):
        def loaded(*args, **kwargs):
            model, tokenizer = load(*args, **kwargs)
            dtypes[args[0]] = model.dtype
            return model, tokenizer

        return loaded

    for name in ("load_causal_lm", "load_sequence_classifier"):
        monkeypatch.setattr(loading, name, spy(getattr(loading, name)))
    return dtypes


def test_a_bfloat16_policy_trains_next_to_float32_reward_models(local, monkeypatch):
    dtypes = loaded_dtypes(monkeypatch)
    trained = []

    def with_lora(model, rank, wrap=loading.with_lora):
        trained.append(wrap(model, rank))
        return trained[-1]

    monkeypatch.setattr(loading, "with_lora", with_lora)
    record = run(safety(local, device="cpu", dtype="bfloat16"))
    assert record.status == "ok", record.reason
    assert dtypes == {
        local["policy"]: torch.bfloat16, local["reward-a"]: torch.float32,
        local["reward-b"]: torch.float32,
    }  # fmt: skip
    (policy,) = trained
    adapters = {p.dtype for n, p in policy.named_parameters() if "lora_" in n}
    assert adapters == {torch.float32}  # peft keeps the trained adapters in float32
    assert {p.dtype for n, p in policy.named_parameters() if "lora_" not in n} == {torch.bfloat16}


def test_reward_models_take_their_own_dtype(local, monkeypatch):
    dtypes = loaded_dtypes(monkeypatch)
    record = run(safety(local, reward_dtype="bfloat16", steps=1), algorithm="ls")
    assert record.status == "ok", record.reason
    assert dtypes[local["policy"]] == torch.float32  # the CPU's default
    assert dtypes[local["reward-a"]] == dtypes[local["reward-b"]] == torch.bfloat16


# --- activation checkpointing -------------------------------------------------------------------


def block_calls(policy, train: bool) -> int:
    """How many times the first transformer block's attention runs for one loss and its
    backward pass (inside the checkpointed block: a hook on the block itself stays outside)."""
    calls = []
    block = policy.get_submodule("base_model.model.transformer.h.0.attn")
    handle = block.register_forward_hook(lambda *args: calls.append(1))
    policy.train(train)
    ids = torch.randint(5, 30, (2, 6))
    policy(input_ids=ids).logits.sum().backward()
    handle.remove()
    return len(calls)


@pytest.mark.parametrize("train", [True, False], ids=["train-mode", "eval-mode"])
def test_checkpointing_recomputes_blocks_in_both_modes(local, train):
    """The online trainer runs the policy in eval mode (no dropout); transformers checkpoints a
    layer only in training mode, so moabench keeps the checkpointed layers in it."""
    from moabench.core.algorithm import Paradigm
    from moabench.language.params import LanguageParams, params_model

    model = params_model(LanguageParams, "paper", Paradigm.ONLINE)
    at = hub.placement("cpu", None)
    plain, _ = hub.load_policy(local["policy"], model(scale="paper", lora_rank=2), at)
    checkpointed, _ = hub.load_policy(
        local["policy"], model(scale="paper", lora_rank=2, gradient_checkpointing=True), at
    )
    assert block_calls(plain, train) == 1
    assert block_calls(checkpointed, train) == 2  # the forward pass, then its recomputation


@pytest.mark.parametrize("paradigm", ["preference", "online"])
def test_checkpointing_leaves_the_results_unchanged(local, paradigm):
    extra = dict(paradigm=paradigm, lora_rank=0)
    if paradigm == "online":
        extra.update(prompts_per_step=2, group_size=2)
    plain = run(safety(local, **extra), algorithm="upgrad")
    checkpointed = run(safety(local, gradient_checkpointing=True, **extra), algorithm="upgrad")
    assert plain.status == checkpointed.status == "ok"
    assert checkpointed.objectives == pytest.approx(plain.objectives, rel=1e-6, abs=1e-7)
    assert checkpointed.config.task_params["gradient_checkpointing"] is True


# --- issue 21: what a GPU would hit first -------------------------------------------------------


def test_a_float16_policy_is_refused_before_anything_loads(local, nothing_loads):
    """float16 without loss scaling underflows; the reward models may still be float16."""
    with pytest.raises(ConfigError, match=r"dtype 'float16' for the policy.*loss scaling"):
        run(safety(local, dtype="float16"))


def tiny_llama(tmp_path):
    """A 2-layer Llama saved locally, and its tokenizer (the tests' own words)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from moabench.language.tiny import build_tokenizer
    from test_paper_scale import WORDS

    tokenizer = build_tokenizer(WORDS)
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )  # fmt: skip
    )
    model.save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")
    return str(tmp_path / "llama")


def greedy(policy, tokenizer) -> list[list[int]]:
    ids = tokenizer(["how to bake", "how to cook ok"], padding=True, return_tensors="pt")
    with torch.no_grad():
        output = policy.generate(
            **ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return output.tolist()


@pytest.mark.parametrize("name", ["policy", "llama"])
def test_checkpointing_leaves_greedy_sampling_unchanged(local, tmp_path, name):
    """In eval mode after a gradient-taking forward pass (as the online trainer runs), a
    checkpointed policy decodes as the plain one: its layers keep the key-value cache
    (transformers < 5.24 drops it in a layer left in training mode)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    from moabench.core.algorithm import Paradigm
    from moabench.language.params import LanguageParams, params_model

    path = local["policy"] if name == "policy" else tiny_llama(tmp_path)
    model = params_model(LanguageParams, "paper", Paradigm.ONLINE)
    at = hub.placement("cpu", None)
    outputs = []
    for checkpointing in (False, True):
        params = model(scale="paper", lora_rank=2, gradient_checkpointing=checkpointing)
        policy, tokenizer = hub.load_policy(path, params, at)
        tokenizer.padding_side = "left"
        policy.eval()
        policy(input_ids=torch.randint(5, 30, (2, 6))).logits.sum().backward()
        outputs.append(greedy(policy, tokenizer))
        layers = [
            m for m in policy.modules()
            if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing
        ]  # fmt: skip
        assert len(layers) == (2 if checkpointing else 0)
        assert not any(layer.training for layer in layers)  # not left in training mode
    assert outputs[0] == outputs[1]


def test_reward_models_sharing_the_policys_gpu_wait_in_cpu_memory(local, monkeypatch):
    """Offloaded, a reward model is not moved when loaded, and is moved to the scoring device
    for one scoring call, then back."""
    moves = []
    load = loading.load_sequence_classifier

    def spied(*args, **kwargs):
        model, tokenizer = load(*args, **kwargs)
        original = model.to
        model.to = lambda device: (moves.append(str(device)), original(device))[1]
        return model, tokenizer

    monkeypatch.setattr(loading, "load_sequence_classifier", spied)
    from moabench.core.algorithm import Paradigm
    from moabench.language.params import LanguageParams, params_model
    from moabench.tasks.safety import Safety

    params = params_model(LanguageParams, "paper", Paradigm.PREFERENCE)(
        **safety(local), device="cpu"
    )
    setup = Safety.paper_setups["paper"]
    scorers = hub.scorer_functions(
        setup, params, ["helpfulness", "harmlessness"], None, hub.placement("cpu", None),
        offloaded=True,
    )  # fmt: skip
    assert moves == []  # loaded in CPU memory, not moved
    scorers[0](["how to bake"], ["first then mix"], False)
    assert moves == ["cpu", "cpu"]  # to the scoring device, and back home
