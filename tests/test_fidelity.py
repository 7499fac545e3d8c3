"""Algorithms as their papers and official code define them: MODPO's margin on the labels'
scale, and dynamic reward weighting as the official trainer runs it (issue: fidelity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moabench import make_algorithm, make_task
from moabench.algorithms.dynamic_weighting import clipped_gram
from moabench.algorithms.modpo import modpo_loss
from moabench.core.errors import ConfigError
from moabench.language import online, tiny
from moabench.language.tiny import bradley_terry_signs, margin_rewards
from moabench.runs.runner import resolve_config

# --- MODPO: the margin is on the labels' Bradley-Terry scale ------------------------------------


def expected_modpo_minimiser(label_log_odds: float, margin: np.ndarray, weights: list) -> float:
    """argmin_x E_s[L_MODPO(x)] for one pair (k = 0) whose label is +1 with probability
    sigmoid(label_log_odds), `margin` the margin rewards handed to MODPO, by L-BFGS on the exact
    expectation."""
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    differences = torch.tensor(margin, dtype=torch.float64)[:, None]
    p = torch.sigmoid(torch.tensor(label_log_odds, dtype=torch.float64))
    w = torch.tensor(weights, dtype=torch.float64)
    ones = torch.ones(2, 1, dtype=torch.float64)
    optimizer = torch.optim.LBFGS([x], max_iter=200, tolerance_grad=1e-12)

    def closure():
        optimizer.zero_grad()
        loss = p * modpo_loss(x, ones, differences, w, 0)
        loss = loss + (1 - p) * modpo_loss(x, -ones, differences, w, 0)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(x.detach())


def test_modpo_margin_minimiser_is_the_weighted_target_on_the_labels_scale():
    """w = (0.5, 0.5), delta_r = (0.3, -0.4), labels drawn at noise 0.1 (log-odds 3 on objective
    0): beta x log-ratio should reach sum_i w_i delta_r_i / noise = -0.5. The raw differences as
    margin (the old code) gave +1.30, the opposite sign."""
    a, b = np.array([[0.3, -0.4]]), np.array([[0.0, 0.0]])
    margins = margin_rewards(a, b, noise=0.1)[:, 0]
    assert margins == pytest.approx([3.0, -4.0])
    assert expected_modpo_minimiser(3.0, margins, [0.5, 0.5]) == pytest.approx(-0.5, abs=1e-6)
    raw = (a - b)[0]
    assert expected_modpo_minimiser(3.0, raw, [0.5, 0.5]) == pytest.approx(1.3, abs=1e-6)


def test_margin_rewards_are_the_log_odds_of_the_labels():
    rng = np.random.default_rng(0)
    n = 200_000
    a = np.tile([[0.05, -0.12]], (n, 1))
    b = np.zeros((n, 2))
    signs = bradley_terry_signs(a, b, 0.1, rng)
    share = (signs > 0).mean(axis=1)
    log_odds = np.log(share / (1 - share))
    assert log_odds == pytest.approx(margin_rewards(a[:1], b[:1], 0.1)[:, 0], abs=0.03)


def test_the_tiny_scale_hands_modpo_margins_on_the_labels_scale():
    """The pairs' margin rewards are the hidden rules' differences divided by the label noise."""
    task = make_task("safety", n_pairs=16, label_noise=0.25)
    tokenizer = tiny.task_tokenizer(task)
    pairs, margins = tiny.preference_data(task, tiny.task_reference(task, tokenizer), tokenizer)
    raw = task.rewards(pairs.prompts, pairs.responses_a) - task.rewards(
        pairs.prompts, pairs.responses_b
    )
    assert margins.numpy() == pytest.approx(raw.T / 0.25, rel=1e-6, abs=1e-6)
    assert np.abs(raw).max() > 0


# --- dynamic weighting: the hypervolume-guided variant keeps its weights -----------------------


def test_hypervolume_guided_weights_are_the_preference_and_stay_fixed():
    task = make_task("math", steps=4, n_eval_prompts=8)
    w = [0.6, 0.2, 0.2]
    output = task.run(make_algorithm("dynamic-weighting", w, hypervolume_guided=True), 0)
    assert output.weight_trajectory
    for weights in output.weight_trajectory:
        assert weights == pytest.approx(w)


@pytest.mark.parametrize("task", ["zdt1", "safety"])
def test_hypervolume_guided_outside_online_training_is_an_error(task):
    params = {"paradigm": "preference"} if task == "safety" else {}
    with pytest.raises(ConfigError, match="online training only"):
        resolve_config("dynamic-weighting", task, None, 0, {"hypervolume_guided": True}, params)
    resolve_config("dynamic-weighting", task, None, 0, {}, params)  # the default variant runs


# --- dynamic weighting: the gradient-based variant, as the official trainer ---------------------


def test_influence_uses_gradients_clipped_to_norm_one():
    h = np.array([[16.0, 2.0], [2.0, 0.25]])  # norms 4 and 0.5
    assert clipped_gram(h, 1.0) == pytest.approx(np.array([[1.0, 0.5], [0.5, 0.25]]))
    assert clipped_gram(h, None) is h
    rule = make_algorithm("dynamic-weighting", [0.5, 0.5])
    huge = np.array([[1e12, 0.0], [0.0, 1.0]])
    w = rule.coefficients(huge, learning_rate=1e-3)  # mu = 10 x lr: log-weights move <= 0.1 m
    assert w[0] / w[1] == pytest.approx(np.exp(0.1 * (1.0 - 1.0)))
    unclipped = make_algorithm("dynamic-weighting", [0.5, 0.5], gradient_clip=None)
    assert unclipped.coefficients(huge, learning_rate=1e-3)[1] < 1e-100


def test_online_update_uses_one_advantage_of_the_scalarised_reward():
    rule = make_algorithm("dynamic-weighting", [0.5, 0.5])
    rewards = np.array([[1.0, 0.0], [0.0, 3.0]])
    assert rule.online_reward(rewards)[:, 0] == pytest.approx([0.5, 1.5])


class Spy:
    def __init__(self, rule):
        self.rule, self.grams, self.events = rule, [], []
        observe_gram, observe_rewards = rule.observe_gram, rule.observe_rewards

        def gram(g, lr):
            self.grams.append(g)
            self.events.append("gram")
            observe_gram(g, lr)

        def rewards(r):
            self.events.append(("rewards", np.asarray(r).copy()))
            observe_rewards(r)

        rule.observe_gram, rule.observe_rewards = gram, rewards


def test_weights_move_once_per_step_whatever_ppo_epochs(monkeypatch):
    steps = []
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1))
    task = make_task("math", steps=3, ppo_epochs=3, n_eval_prompts=8)
    spy = Spy(make_algorithm("dynamic-weighting", [1 / 3] * 3))
    output = task.run(spy.rule, 0)
    assert len(spy.grams) == 3 and len(steps) >= 9
    assert output.gradient_evaluations == 3 * (3 * 1 + 3)  # 3 updates + m gradients per step


def test_hypervolume_vector_is_post_update_and_without_the_kl_penalty(monkeypatch):
    """v_t is observed before each step's update (so after the previous one) from the raw
    rewards of the step's samples, even when the KL penalty is subtracted from the rewards."""
    raw_means = []
    train_online = online.train_online

    def capture(problem, *args, **kwargs):
        rewards = problem.rewards

        def recorded(prompts, responses):
            values = rewards(prompts, responses)
            raw_means.append(values.mean(axis=0))
            return values

        problem.rewards = recorded
        return train_online(problem, *args, **kwargs)

    monkeypatch.setattr(online, "train_online", capture)
    task = make_task("math", steps=3, n_eval_prompts=8, kl_in_reward=True, kl_coef=5.0)
    spy = Spy(make_algorithm("dynamic-weighting", [1 / 3] * 3, hypervolume_guided=True))
    task.run(spy.rule, 0)
    observed = [event[1] for event in spy.events if isinstance(event, tuple)]
    assert len(observed) == 3 and len(raw_means) == 3
    for seen, expected in zip(observed, raw_means):
        assert seen == pytest.approx(expected)


def test_a_sweep_runs_the_hypervolume_guided_variant_online_only(tmp_path):
    from moabench.runs.sweep import SweepConfig, plan_sweep

    config = SweepConfig(
        algorithms=["dynamic-weighting"],
        tasks=["safety"],
        seeds=[0],
        partitions=1,
        algorithm_params={"dynamic-weighting": {"hypervolume_guided": True}},
    )
    plan = plan_sweep(config)
    assert {c.task_params["paradigm"] for c in plan.configs} == {"online"}
