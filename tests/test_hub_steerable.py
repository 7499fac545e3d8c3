"""Steerable methods at the Hugging Face scales, on tiny models and datasets saved locally.

- the experts' LoRA adapters are kept with peft's `save_pretrained` and loaded beside the base
  policy's own adapter (the base loaded once);
- Rewarded Soups at w = e_i is expert i (same logits), and its merged delta at w = (0.5, 0.5) is
  the average of the experts' merged deltas (the exact interpolation, peft's "cat");
- MOD at w = e_i samples what expert i samples with the same seed;
- a preference-conditioned policy is trained once, kept with its conditioning, and the online
  reference reads neither the adapters nor the conditioning;
- RiC trains once on prompts that carry their scores as text, as the official prompts do;
- `moabench run --algo rewarded-soups --task-param scale=small ...` works end to end.
"""

# ruff: noqa: F811 - the tests take the imported fixture `local` as an argument

from __future__ import annotations

import json

import pytest
import torch
from peft.tuners.lora import LoraLayer
from test_paper_scale import TRAINING, local  # noqa: F401 - the fixture of local models and data

from moabench.core.algorithm import make_algorithm
from moabench.core.task import tasks
from moabench.language import hub, loading, ric, steering
from moabench.language.conditioning import Conditioning
from moabench.language.lm import token_log_probs
from moabench.language.ric import score_text
from moabench.runs import runner
from moabench.runs.records import read_record
from moabench.runs.runner import execute, expert_configs, resolve_config


def paper(local, **extra):
    return {
        **TRAINING,
        **dict(
            scale="paper", policy=local["policy"], dataset=local["pku"], lora_rank=4,
            learning_rate=0.05,  # the experts move apart in 2 steps
            device="cpu",  # float32 everywhere: the comparisons below are exact or nearly
            reward_models={"helpfulness": local["reward-a"], "harmlessness": local["reward-b"]},
        ),
        **extra,
    }  # fmt: skip


@pytest.fixture(scope="module")
def experts(local, tmp_path_factory):
    """A results folder holding the two LoRA experts (ls at e_1, e_2) of the paper setup."""
    store = tmp_path_factory.mktemp("results")
    config = resolve_config("rewarded-soups", "safety", [0.5, 0.5], 0, None, paper(local))
    for expert in expert_configs(config):
        runner.run_and_record(expert, store)
    return store, config


def loaded_adapters(local, experts):
    """The task's base policy with both experts' adapters loaded beside its own."""
    store, config = experts
    task = tasks.get("safety")(**config.task_params)
    pieces = task.hub_pieces()
    names = ["expert-1", "expert-2"]
    for name, expert in zip(names, expert_configs(config)):
        kept = task.load_policy(runner.policy_path(store, expert.key()))
        loading.load_adapter(pieces.policy, str(kept), name, "cpu")
    pieces.policy.eval()
    return pieces, names


def logits(policy, adapter, ids):
    policy.set_adapter(adapter)
    with torch.no_grad():
        return policy(input_ids=ids).logits


def test_experts_are_kept_as_lora_adapters(local, experts):
    store, config = experts
    for expert in expert_configs(config):
        kept = runner.policy_path(store, expert.key())
        assert (kept / "adapter_config.json").exists()
        assert not (kept / "model.safetensors").exists()  # the adapters only, not the base


def test_the_soup_at_a_vertex_is_its_expert(local, experts):
    pieces, names = loaded_adapters(local, experts)
    policy = pieces.policy
    ids = torch.tensor([[3, 5, 7, 9, 11, 4], [6, 8, 10, 12, 14, 2]])
    first, second = logits(policy, names[0], ids), logits(policy, names[1], ids)
    assert (first - second).abs().max() > 1e-3  # the experts differ
    steering.adapter_soup(make_algorithm("rewarded-soups", [1.0, 0.0]), policy, names)
    torch.testing.assert_close(logits(policy, "soup", ids), first, rtol=1e-5, atol=1e-5)


def test_the_soup_interpolates_the_merged_deltas(local, experts):
    pieces, names = loaded_adapters(local, experts)
    policy = pieces.policy
    steering.adapter_soup(make_algorithm("rewarded-soups", [0.5, 0.5]), policy, names)
    layers = [m for m in policy.modules() if isinstance(m, LoraLayer)]
    assert layers
    for layer in layers:
        expected = 0.5 * layer.get_delta_weight(names[0]) + 0.5 * layer.get_delta_weight(names[1])
        torch.testing.assert_close(layer.get_delta_weight("soup"), expected, rtol=0, atol=1e-6)
        # the official code's factor-wise average is another model (cross terms B_i A_j)
        b = sum(layer.lora_B[n].weight for n in names) / 2
        a = sum(layer.lora_A[n].weight for n in names) / 2
        factorwise = layer.scaling[names[0]] * b @ a
        factorwise = factorwise.T if getattr(layer, "fan_in_fan_out", False) else factorwise
        assert not torch.allclose(layer.get_delta_weight("soup"), factorwise, atol=1e-6)


@pytest.mark.parametrize("method", ["rewarded-soups", "mod"])
def test_at_a_vertex_a_steerable_method_is_its_expert(local, experts, method):
    store, config = experts
    for vertex, expert in zip(([1.0, 0.0], [0.0, 1.0]), expert_configs(config)):
        steered = execute(resolve_config(method, "safety", vertex, 0, None, paper(local)), store)
        assert steered.status == "ok", steered.reason
        expert_record = read_record(store / f"{expert.key()}.json")
        assert steered.objectives == pytest.approx(expert_record.objectives, rel=1e-5)
        assert steered.objective_space == expert_record.objective_space  # the reference's
        assert [s.key for s in steered.shared_training] == [c.key() for c in expert_configs(config)]


def test_mod_samples_what_the_expert_samples(local, experts):
    pieces, names = loaded_adapters(local, experts)
    task = tasks.get("safety")(**experts[1].task_params)
    torch.manual_seed(0)  # two short trainings sample alike: the second expert moved far away
    for layer in pieces.policy.modules():
        if isinstance(layer, LoraLayer):
            torch.nn.init.normal_(layer.lora_B[names[1]].weight, std=1.0)
    prompts = pieces.eval_prompts * 3
    samples = {}
    for index, vertex in enumerate(([1.0, 0.0], [0.0, 1.0])):
        for seed in (0, 3):
            pieces.policy.set_adapter(names[index])  # the mixture leaves the last expert's on
            expected = pieces.sample(pieces.policy, prompts, seed).responses
            mixed = steering.hub_mixture_responses(
                make_algorithm("mod", vertex),
                [steering.adapter_expert(pieces.policy, name) for name in names],
                pieces, task.params, prompts, seed,
            )  # fmt: skip
            assert mixed == expected
            samples[index, seed] = expected
    assert samples[0, 0] != samples[1, 0] and samples[0, 3] != samples[1, 3]


def test_full_fine_tuned_experts_are_kept_whole(local, tmp_path):
    params = paper(local, lora_rank=0, learning_rate=1e-3)
    for method in ("rewarded-soups", "mod"):
        steered = execute(resolve_config(method, "safety", [1.0, 0.0], 0, None, params), tmp_path)
        assert steered.status == "ok", steered.reason
    expert = expert_configs(steered.config)[0]
    assert (runner.policy_path(tmp_path, expert.key()) / "model.safetensors").exists()
    assert steered.objectives == pytest.approx(
        read_record(tmp_path / f"{expert.key()}.json").objectives, rel=1e-5
    )


def online(local, **extra):
    params = paper(local, paradigm="online", prompts_per_step=2, group_size=2, **extra)
    params.pop("batch_size")
    return params


def test_rics_scores_are_written_as_the_official_prompts_write_them():
    assert score_text("how to bake", [0.5, -0.31]) == (
        "how to bake <rm1_score>: 0.5 <rm2_score>: -0.3"
    )


def test_ric_trains_once_on_score_conditioned_prompts_and_steers_by_its_targets(
    local, tmp_path, monkeypatch
):
    shown = []
    original = ric.make_batch

    def spied(tokenizer, prompts, responses, max_length=None):
        shown.extend(prompts)
        return original(tokenizer, prompts, responses, max_length)

    monkeypatch.setattr(ric, "make_batch", spied)
    small = dict(offline_samples=8, online_samples=8)
    steered = [
        execute(resolve_config("ric", "safety", w, 0, small, online(local)), tmp_path)
        for w in ([1.0, 0.0], [0.3, 0.7])
    ]
    assert all(r.status == "ok" for r in steered), [r.reason for r in steered]
    (first,), (second,) = (r.shared_training for r in steered)
    assert first == second and first.cost.gradient_evaluations > 0
    assert (runner.policy_path(tmp_path, first.key) / "adapter_config.json").exists()
    assert shown and all("<rm1_score>: " in p and "<rm2_score>: " in p for p in shown)
    assert steered[0].objective_space == steered[1].objective_space  # the reference's


@pytest.mark.parametrize("paradigm", ["preference", "online"])
def test_a_conditioned_policy_is_trained_once_and_kept_with_its_conditioning(
    local, tmp_path, paradigm
):
    params = paper(local) if paradigm == "preference" else online(local)
    steered = [
        execute(resolve_config("conditioned", "safety", w, 0, None, params), tmp_path)
        for w in ([1.0, 0.0], [0.0, 1.0])
    ]
    assert all(r.status == "ok" for r in steered), [r.reason for r in steered]
    (first,), (second,) = (r.shared_training for r in steered)
    assert first == second and first.cost.gradient_evaluations > 0  # one training, counted
    kept = runner.policy_path(tmp_path, first.key)
    assert (kept / "adapter_config.json").exists()
    assert torch.load(kept / Conditioning.FILE).abs().max() > 0  # w was learned from
    assert steered[0].objective_space == steered[1].objective_space  # the reference's


def test_the_online_reference_reads_neither_adapters_nor_conditioning(local):
    task = tasks.get("safety")(**online(local))
    problem = hub.online_problem(task.hub_pieces(), task.params, task.tiny_space.names, "safety")
    samples = problem.sample(["how to bake", "how to steal"], 0)
    before = problem.reference_log_probs(samples.batch)
    conditioning = Conditioning(problem.policy, 2)
    with torch.no_grad():
        problem.policy.conditioning_embedding.normal_()
        for layer in problem.policy.modules():
            if isinstance(layer, LoraLayer):
                layer.lora_B["default"].weight.normal_()
    conditioning.set([0.2, 0.8])
    assert not torch.allclose(token_log_probs(problem.policy, samples.batch), before)
    torch.testing.assert_close(problem.reference_log_probs(samples.batch), before)


def test_cli_runs_rewarded_soups_at_the_small_scale(cli, local, tmp_path):
    params = {**paper(local), "scale": "small", "dataset": local["hh"], "lora_rank": 4}
    args = ["run", "--algo", "rewarded-soups", "--task", "safety", "--preference", "0.3,0.7",
            "--results-dir", str(tmp_path)]  # fmt: skip
    for name, value in params.items():
        args += ["--task-param", f"{name}={value if isinstance(value, str) else json.dumps(value)}"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    written = [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]
    assert sorted(r["config"]["algorithm"] for r in written) == ["ls", "ls", "rewarded-soups"]
    assert all(r["status"] == "ok" for r in written)
    assert len(list((tmp_path / ".policies").iterdir())) == 2
