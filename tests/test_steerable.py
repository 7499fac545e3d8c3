"""Steerable methods (Rewarded Soups, MOD) and GDPO: the properties their papers state, and one
shared training per front.

- RS at w = e_i is expert i (Ramé et al. 2023: the soup's endpoints are the experts);
- MOD at w = e_i samples what expert i samples with the same seed (Shi et al. 2024: the mixture
  of one expert is that expert);
- the soup is the weight interpolation sum_i w_i theta_i;
- a sweep trains each expert once for every steerable method and point of the front, and a
  resumed sweep trains nothing;
- GDPO's advantages are trl's `normalize_then_sum` formula, and GRPO's on one reward up to scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from moabench.core.algorithm import make_algorithm
from moabench.core.errors import ConfigError
from moabench.core.registry import UnknownNameError
from moabench.core.task import tasks
from moabench.evaluation import fronts, load_results
from moabench.evaluation.leaderboard import build_leaderboard
from moabench.language import steering, tiny
from moabench.language.conditioning import Conditioning
from moabench.language.advantages import advantages as group_advantages
from moabench.runs import runner
from moabench.runs.records import read_record
from moabench.runs.runner import execute, expert_configs, resolve_config
from moabench.runs.sweep import SweepConfig, plan_sweep, run_sweep

FAST = {"steps": 6, "n_pairs": 64, "n_eval_prompts": 32}
FAST_ONLINE = {"paradigm": "online", "steps": 4, "prompts_per_step": 4, "n_eval_prompts": 32}


def records(folder: Path) -> list:
    return [read_record(path) for path in sorted(folder.glob("*.json"))]


@pytest.mark.parametrize("task_params", [FAST, FAST_ONLINE], ids=["preference", "online"])
@pytest.mark.parametrize("method", ["rewarded-soups", "mod"])
def test_at_a_vertex_a_steerable_method_is_its_expert(tmp_path, method, task_params):
    params = dict(task_params)
    params.setdefault("paradigm", "preference")
    for vertex in ([1.0, 0.0], [0.0, 1.0]):
        steered = execute(resolve_config(method, "safety", vertex, 0, None, params), tmp_path)
        expert = execute(resolve_config("ls", "safety", vertex, 0, None, params))
        assert steered.status == expert.status == "ok"
        assert steered.objectives == expert.objectives
        assert [s.key for s in steered.shared_training] == [
            c.key() for c in expert_configs(steered.config)
        ]


def test_the_soup_interpolates_every_parameter(tmp_path):
    config = resolve_config("rewarded-soups", "safety", [0.3, 0.7], 0, None, FAST)
    task = tasks.get("safety")(**config.task_params)
    method = make_algorithm("rewarded-soups", [0.3, 0.7])
    experts, _ = runner.obtain_shared_training(config, method, task, tmp_path)
    soup = steering.parameter_soup(make_algorithm("rewarded-soups", [0.3, 0.7]), experts)
    first, second = (dict(e.named_parameters()) for e in experts)
    assert any(not torch.equal(first[n], second[n]) for n in first)
    for name, value in soup.named_parameters():
        torch.testing.assert_close(value, 0.3 * first[name] + 0.7 * second[name], rtol=0, atol=0)


def test_the_mixture_sampler_of_one_expert_samples_what_generate_samples():
    task = tasks.get("safety")(**FAST)
    tokenizer = tiny.task_tokenizer(task)
    model = tiny.task_reference(task, tokenizer)
    prompts = tiny.evaluation_prompts(task)
    for seed in (0, 7):
        expected = tiny.generate_responses(model, tokenizer, prompts, task.max_response_tokens, seed)
        mixed = steering.sample_mixture(
            lambda log_probs: log_probs[0], [model], tokenizer, prompts, task.max_response_tokens, seed
        )
        assert mixed == expected


def test_mod_mixes_the_experts_log_probabilities():
    method = make_algorithm("mod", [0.25, 0.75])
    log_probs = [torch.log_softmax(torch.randn(3, 5), -1) for _ in range(2)]
    torch.testing.assert_close(
        method.combine(log_probs), 0.25 * log_probs[0] + 0.75 * log_probs[1]
    )


def test_a_sweep_trains_each_expert_once_and_a_resumed_sweep_trains_nothing(tmp_path, monkeypatch):
    trained = []
    original = runner.train_expert

    def counting(task, expert, store):
        trained.append(expert.key())
        return original(task, expert, store)

    monkeypatch.setattr(runner, "train_expert", counting)
    plan = plan_sweep(
        SweepConfig(
            algorithms=["rewarded-soups", "mod"], tasks=["safety"], seeds=[0], partitions=2,
            task_params={"safety": {**FAST, "paradigm": "preference"}},
        )
    )  # fmt: skip
    summary = run_sweep(plan.configs, tmp_path)
    assert summary.ok == 6 and not summary.failed
    assert len(trained) == len(set(trained)) == 2
    written = records(tmp_path)
    steered = [r for r in written if r.config.algorithm != "ls"]
    experts = {r.key: r for r in written if r.config.algorithm == "ls"}
    assert len(steered) == 6 and set(experts) == set(trained)
    for record in steered:
        assert {s.key for s in record.shared_training} == set(experts)
        assert [s.cost for s in record.shared_training] == [
            experts[s.key].cost for s in record.shared_training
        ]
        assert record.cost.gradient_evaluations == 0
    assert run_sweep(plan.configs, tmp_path).already_done == 6
    assert len(trained) == 2
    # the front's compute counts the experts once (LS: one backward pass per step)
    per_front = fronts(load_results(tmp_path), partitions=2).set_index("algorithm")
    expert_evaluations = sum(r.cost.gradient_evaluations for r in experts.values())
    assert expert_evaluations == 2 * FAST["steps"]
    assert per_front.loc["rewarded-soups", "gradient_evaluations"] == expert_evaluations
    assert per_front.loc["mod", "gradient_evaluations"] == expert_evaluations
    assert per_front.loc["mod", "wall_time"] > sum(r.cost.wall_time_s for r in experts.values())
    # the leaderboard draws and links hypervolume against that compute
    build_leaderboard(tmp_path, tmp_path / "board", partitions=2)
    page = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    figure = next(p for p in (tmp_path / "board" / "plots").glob("*_compute.png"))
    assert f"plots/{figure.name}" in page and figure.with_suffix(".pdf").exists()


def test_an_ls_run_at_a_vertex_keeps_its_policy_for_the_steerable_methods(tmp_path, monkeypatch):
    ls = resolve_config("ls", "safety", [1.0, 0.0], 0, None, FAST)
    runner.run_and_record(ls, tmp_path)
    assert (runner.policy_path(tmp_path, ls.key()) / "config.json").exists()
    middle = resolve_config("ls", "safety", [0.5, 0.5], 0, None, FAST)
    assert not runner.is_expert(middle)
    monkeypatch.setattr(runner, "train_expert", lambda *args: pytest.fail("retrained"))
    other = resolve_config("ls", "safety", [0.0, 1.0], 0, None, FAST)
    runner.run_and_record(other, tmp_path)
    soup = execute(resolve_config("rewarded-soups", "safety", [0.5, 0.5], 0, None, FAST), tmp_path)
    assert soup.status == "ok"


def test_a_failed_expert_fails_the_steered_records_with_its_reason(tmp_path):
    config = resolve_config("rewarded-soups", "safety", [0.5, 0.5], 0, None, FAST)
    broken = expert_configs(config)[1]
    record = execute(broken).model_copy(update={"status": "failed", "reason": "diverged: test"})
    (tmp_path / f"{broken.key()}.json").write_text(json.dumps(record.model_dump(mode="json")))
    steered = execute(config, tmp_path)
    assert steered.status == "failed"
    assert "expert at e_2" in steered.reason and "diverged: test" in steered.reason


def test_steerable_methods_refuse_what_they_do_not_implement():
    with pytest.raises(ConfigError, match="does not support analytic"):
        resolve_config("rewarded-soups", "zdt1", [0.5, 0.5])


# --- GDPO --------------------------------------------------------------------------------------


def trl_normalize_then_sum(rewards: np.ndarray, weights: np.ndarray, group: int) -> np.ndarray:
    """trl's `multi_objective_aggregation="normalize_then_sum"` (GRPOTrainer, trl 1.10), in
    numpy float64: group z-scores per reward (Bessel std + 1e-4), weighted sum, batch z-score."""
    grouped = rewards.reshape(-1, group, rewards.shape[1])
    z = (grouped - grouped.mean(axis=1, keepdims=True)) / (
        grouped.std(axis=1, ddof=1, keepdims=True) + 1e-4
    )
    s = (z.reshape(len(rewards), -1) * weights).sum(axis=1)
    return (s - s.mean()) / (s.std(ddof=1) + 1e-4)


def gdpo_advantage(rewards: np.ndarray, weights, group: int) -> np.ndarray:
    per_objective = group_advantages(rewards.reshape(-1, group, rewards.shape[1]), "grpo")
    z = torch.as_tensor(per_objective.reshape(len(rewards), -1).T, dtype=torch.float32)
    return make_algorithm("gdpo", weights).rollout_advantage(z)[0].numpy()


def test_gdpo_is_trls_normalize_then_sum():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(24, 3)) * np.array([1.0, 10.0, 0.1])
    weights = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(
        gdpo_advantage(rewards, weights, 4), trl_normalize_then_sum(rewards, weights, 4), atol=1e-5
    )


def test_gdpo_by_hand():
    # two prompts, two responses each, two rewards: every group z-score is +-1/sqrt(2)/(..)
    rewards = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [1.0, 1.0]])
    z1 = np.array([1, -1, 1, -1]) * (0.5 / (np.sqrt(0.5) + 1e-4))
    z2 = np.array([-1, 1, 0, 0]) * np.array([1.0 / (np.sqrt(2) + 1e-4)] * 2 + [0, 0])
    s = 0.5 * z1 + 0.5 * z2
    expected = (s - s.mean()) / (s.std(ddof=1) + 1e-4)
    np.testing.assert_allclose(gdpo_advantage(rewards, [0.5, 0.5], 2), expected, atol=1e-5)


def test_gdpo_on_one_reward_is_grpo_up_to_one_scale():
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(16, 1))
    grpo = group_advantages(rewards.reshape(4, 4, 1), "grpo").ravel()
    gdpo = gdpo_advantage(rewards, [1.0], 4)
    scale = gdpo / grpo
    np.testing.assert_allclose(scale, scale[0], rtol=1e-4)


def test_gdpo_refuses_another_advantage_estimator():
    with pytest.raises(ConfigError, match="grpo advantages"):
        resolve_config("gdpo", "math", None, 0, None, {"advantage": "rloo"})


def test_gdpo_trains_online():
    record = execute(resolve_config("gdpo", "safety", [0.5, 0.5], 0, None, FAST_ONLINE))
    assert record.status == "ok" and record.paradigm == "online"


# --- a preference-conditioned policy ---------------------------------------------------------


def test_a_conditioned_front_comes_from_one_training(tmp_path, monkeypatch):
    trained = []
    original = runner.train_conditioned

    def counting(*args):
        trained.append(args[3])
        return original(*args)

    monkeypatch.setattr(runner, "train_conditioned", counting)
    config = SweepConfig(
        algorithms=["conditioned"], tasks=["safety"], seeds=[0], partitions=2,
        algorithm_params={"conditioned": {"rule": "upgrad"}},
        task_params={"safety": {**FAST, "steps": 40, "paradigm": "preference"}},
    )  # fmt: skip
    plan = plan_sweep(config)
    assert run_sweep(plan.configs, tmp_path, workers=1).ok == 3
    assert run_sweep(plan.configs, tmp_path).already_done == 3
    assert len(trained) == 1
    written = records(tmp_path)
    assert {tuple(r.config.preference) for r in written} == {(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)}
    assert {r.shared_training[0].key for r in written} == set(trained)
    front = fronts(load_results(tmp_path), partitions=2).iloc[0]
    # UPGrad: m backward passes per step, the one training counted once for the front
    assert front.gradient_evaluations == 2 * 40
    # w steers the one policy: its points differ
    assert len({tuple(r.objectives) for r in written}) > 1


def conditioned_model(m: int = 2):
    task = tasks.get("safety")(**FAST)
    tokenizer = tiny.task_tokenizer(task)
    model = tiny.task_reference(task, tokenizer)
    batch = tokenizer(["a b c", "d e"], padding=True, return_tensors="pt")
    return model, batch


def test_the_conditioning_starts_at_the_reference_and_then_reads_w():
    model, batch = conditioned_model()
    before = model(**batch).logits
    conditioning = Conditioning(model, 2)
    conditioning.set([0.9, 0.1])
    torch.testing.assert_close(model(**batch).logits, before, rtol=0, atol=0)
    with torch.no_grad():
        model.conditioning_embedding.normal_()
    first = model(**batch).logits
    conditioning.set([0.1, 0.9])
    assert not torch.allclose(model(**batch).logits, first)
    assert "conditioning_embedding" in dict(model.named_parameters())


def test_a_kept_conditioned_policy_loads_with_its_conditioning(tmp_path):
    model, batch = conditioned_model()
    Conditioning(model, 2)
    with torch.no_grad():
        model.conditioning_embedding.normal_()
    model.conditioning.set([0.3, 0.7])
    task = tasks.get("safety")(**FAST)
    task.save_policy(model, tmp_path)
    loaded = task.load_policy(tmp_path)
    loaded.conditioning.set([0.3, 0.7])
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)


def test_each_step_takes_the_rule_at_a_drawn_preference_fed_to_the_policy():
    seen = []
    method = make_algorithm("conditioned", [0.5, 0.5], rule="upgrad")
    rule = method.training_rule(seen.append, 3, seed=4)
    gram = np.array([[2.0, -1.0, 0.2], [-1.0, 3.0, 0.1], [0.2, 0.1, 1.0]])
    for _ in range(3):
        rule.begin_step()
        w = seen[-1]
        assert w.shape == (3,) and np.all(w >= 0) and abs(w.sum() - 1) < 1e-12
        np.testing.assert_allclose(
            rule.coefficients(gram), make_algorithm("upgrad", w).coefficients(gram)
        )
    assert not np.allclose(seen[0], seen[1])
    again = method.training_rule(lambda w: None, 3, seed=4)
    again.begin_step()
    np.testing.assert_array_equal(again.preference, seen[0])  # seeded


@pytest.mark.parametrize("rule", ["ls", "upgrad"])
def test_a_conditioned_policy_trains_online(rule):
    config = resolve_config("conditioned", "safety", [0.3, 0.7], 0, {"rule": rule}, FAST_ONLINE)
    assert execute(config).status == "ok"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rule": "mod"}, "not a combination rule"),
        ({"rule": "pama"}, "not a combination rule"),
        ({"rule": "upgradd"}, "unknown algorithm 'upgradd'"),
        ({"rule": "gapo", "rule_params": {"p": 3}}, "field 'p'"),
    ],
)
def test_a_bad_conditioned_rule_is_a_clear_error(params, message):
    with pytest.raises((ConfigError, UnknownNameError), match=message):
        resolve_config("conditioned", "safety", [0.5, 0.5], 0, params, FAST)


# --- Rewards-in-Context ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "mapping", "expected"),
    [
        # the official map_rewards_from_preference by hand, lo = (-2, -1), hi = (2, 3)
        ((0.6, 0.8), "l2", (0.4, 2.2)),  # w / ||w|| * (hi - lo) + lo
        ((0.25, 0.75), "linear", (-1.0, 2.0)),  # w * (hi - lo) + lo
        ((0.25, 0.75), "linf", (0.0, 3.0)),  # argmax -> hi; others min(m w, 1) (hi - lo) + lo
        ((0.5, 0.5), "linf", (2.0, 3.0)),  # ties: argmax is the first; min(2 x 0.5, 1) -> hi
        ((0.5625, 0.4375), "linear", (0.2, 0.8)),  # 0.25 and 0.75 round half to even
    ],
)
def test_rics_preference_to_target_mapping_is_the_official_one(w, mapping, expected):
    from moabench.algorithms.ric import map_preference

    targets = map_preference(np.array(w), np.array([-2.0, -1.0]), np.array([2.0, 3.0]), mapping)
    np.testing.assert_allclose(targets, expected, atol=1e-12)


def test_rics_online_goals_and_filter():
    method = make_algorithm("ric", [0.5, 0.5, 0.0])
    goals = method.online_goals(np.random.default_rng(0), 200, 3)
    from moabench.algorithms.ric import ONLINE_DRAWS, score_range

    low, high = score_range(3, ONLINE_DRAWS)
    assert 4.0 < high.min() and low.max() < -4.0
    # every goal: all but one coordinate at hi, the one below it
    at_high = np.isclose(goals, high)
    assert (at_high.sum(axis=1) == 2).all()
    assert ((goals >= low) & (goals <= high)).all()
    z = np.array([[0.0, 0.0], [1.0, -1.0], [-1.0, 2.0], [0.5, 0.5]])
    # 0.7 quantiles, linear interpolation at position 2.1 of the sorted columns:
    # 0.5 + 0.1 x (1 - 0.5) = 0.55 and 0.5 + 0.1 x (2 - 0.5) = 0.65; (0.5, 0.5) reaches neither
    np.testing.assert_array_equal(
        make_algorithm("ric", [0.5, 0.5]).keep(z), [False, True, True, False]
    )


def test_ric_trains_once_per_front_and_steers_by_its_targets(tmp_path, monkeypatch):
    trained = []
    original = runner.train_conditioned
    monkeypatch.setattr(runner, "train_conditioned", lambda *a: trained.append(1) or original(*a))
    params = {"paradigm": "online", "steps": 30, "prompts_per_step": 4, "n_eval_prompts": 64}
    ric = {"offline_samples": 64, "online_samples": 64}
    plan = plan_sweep(SweepConfig(
        algorithms=["ric"], tasks=["summarization"], seeds=[0], partitions=2,
        algorithm_params={"ric": ric}, task_params={"summarization": params},
    ))  # fmt: skip
    assert run_sweep(plan.configs, tmp_path).ok == 3 and trained == [1]
    written = {tuple(r.config.preference): r for r in records(tmp_path)}
    assert all(r.paradigm == "online" for r in written.values())
    assert written[(1.0, 0.0)].objectives != written[(0.0, 1.0)].objectives
    shared = written[(0.5, 0.5)].shared_training[0]
    assert shared.algorithm == "ric" and shared.cost.steps == 30 + 6  # offline + 0.2 x online


def test_ric_needs_scores_so_it_trains_online_only():
    with pytest.raises(ConfigError, match="does not support preference training"):
        resolve_config("ric", "safety", [0.5, 0.5], 0, None, {"paradigm": "preference"})
