"""Online training: advantage estimators, PAMA, the hypervolume-guided multiplier, MORLHF's two
orders, the math task, default paradigms, bad input and objective improvement."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch

from moabench import make_algorithm, make_task
from moabench.algorithms.dynamic_weighting import hypervolume_gain, hypervolume_multiplier
from moabench.algorithms.pama import pama_advantage, simplex_weights_zeroing
from moabench.core.errors import ConfigError
from moabench.language import tiny
from moabench.language.advantages import advantages
from moabench.language.tiny import checked_rewards
from moabench.runs.runner import UnsupportedPairingError, execute, resolve_config
from moabench.tasks.math import Math, accuracy, clarity, conciseness

# --- advantage estimators, by hand --------------------------------------------------------------


def test_advantage_estimators_by_hand():
    rewards = np.array([[[1.0], [0.0], [2.0]], [[3.0], [3.0], [3.0]]])  # 2 prompts, k = 3, m = 1
    grpo = advantages(rewards, "grpo")
    assert grpo[0, :, 0] == pytest.approx(np.array([0.0, -1.0, 1.0]) / (1.0 + 1e-4))
    assert grpo[1, :, 0] == pytest.approx([0.0, 0.0, 0.0])  # equal rewards: no signal
    rloo = advantages(rewards, "rloo")
    assert rloo[0, :, 0] == pytest.approx([1 - 1.0, 0 - 1.5, 2 - 0.5])
    reinforce = advantages(rewards, "reinforce")
    assert reinforce[:, :, 0].ravel() == pytest.approx(rewards.ravel() - 2.0)


# --- PAMA ---------------------------------------------------------------------------------------


def test_pama_per_token_is_the_minimum_of_the_noon_advantages():
    a = torch.tensor([[[0.5, -1.0, 2.0]], [[1.5, 0.3, 0.1]]])  # m = 2, n = 1, T = 3
    ratios, mask = torch.ones(1, 3), torch.ones(1, 3)
    assert pama_advantage(a, ratios, mask)[0].tolist() == pytest.approx([0.5, 0.0, 0.1])
    clipped = torch.tensor([[1.0, 1.0, 1.5]])  # ratio above 1 + eps: that token's I(A) is 0
    assert pama_advantage(a, clipped, mask)[0].tolist() == pytest.approx([0.5, 0.0, 0.0])


def test_pama_closed_form_solves_the_simplex_problem():
    """min_c (sum_i c_i v_i)^2 over the simplex, by brute force on a grid, for m = 3."""
    rng = np.random.default_rng(0)
    grid = [(i / 40, j / 40, 1 - (i + j) / 40) for i in range(41) for j in range(41 - i)]
    for _ in range(50):
        v = rng.normal(size=3)
        best = min(np.dot(c, v) ** 2 for c in grid)
        c = simplex_weights_zeroing(torch.as_tensor(v)).numpy()
        assert c.sum() == pytest.approx(1) and np.all(c >= 0)
        assert np.dot(c, v) ** 2 <= best + 1e-12
        low, high = v.min(), v.max()  # the value is 0 projected onto [min, max]
        assert np.dot(c, v) == pytest.approx(np.clip(0, low, high), abs=1e-12)


def test_pama_batch_level_puts_the_weight_on_the_smallest_mean():
    a = torch.tensor([[[1.0, 1.0]], [[0.2, 0.6]]])  # means 1.0 and 0.4: objective 1 wins
    ones = torch.ones(1, 2)
    combined = pama_advantage(a, ones, ones, level="batch")
    assert combined[0].tolist() == pytest.approx([0.2, 0.6])
    b = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert pama_advantage(b, ones, ones).tolist() == [[0.0, 0.0]]  # per token: min
    assert pama_advantage(b, ones, ones, level="batch").tolist() == [[1.0, 0.0]]


def test_pama_batch_level_averages_over_response_tokens_only():
    """Prompt and padding positions carry the sequence's advantage too (it is broadcast over
    every position) but are no response tokens: they must not move the batch means."""
    # response tokens: objective 0 has mean 0.2, objective 1 mean 0.6 -> objective 0 wins;
    # counting the two padding positions (1.0 for objective 0) would make it 0.6 vs 0.45
    a = torch.tensor([[[0.2, 0.2, 1.0, 1.0]], [[0.6, 0.6, 0.3, 0.3]]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    combined = pama_advantage(a, torch.ones(1, 4), mask, level="batch")
    assert combined[0].tolist() == pytest.approx([0.2, 0.2, 1.0, 1.0])


# --- dynamic weighting, hypervolume-guided --------------------------------------------------------


def test_hypervolume_gain_by_hand():
    reference = np.array([0.0, 0.0])
    assert hypervolume_gain([], np.array([1.0, 2.0]), reference) == pytest.approx(2.0)
    gain = hypervolume_gain([np.array([1.0, 2.0])], np.array([2.0, 1.0]), reference)
    assert gain == pytest.approx(1.0)  # union 3 minus 2
    assert hypervolume_gain([np.array([1.0, 2.0])], np.array([0.5, 0.5]), reference) == 0.0
    assert hypervolume_multiplier(0.0) == 0.5 and hypervolume_multiplier(10.0) == pytest.approx(2.0)


def test_hypervolume_guided_multiplier_follows_the_observations():
    rule = make_algorithm("dynamic-weighting", [0.5, 0.5], hypervolume_guided=True)
    rule.observe_rewards(np.array([0.2, 0.2]))  # the reference point
    assert rule.step_size_multiplier() == 1.0
    rule.observe_rewards(np.array([0.4, 0.3]))  # gain 0.02
    assert rule.step_size_multiplier() == pytest.approx(0.5 + 1.5 * np.tanh(0.02))
    rule.observe_rewards(np.array([0.3, 0.25]))  # dominated by the buffer: gain 0
    assert rule.step_size_multiplier() == 0.5
    plain = make_algorithm("dynamic-weighting", [0.5, 0.5])
    plain.observe_rewards(np.array([0.2, 0.2]))
    plain.observe_rewards(np.array([0.4, 0.3]))
    assert plain.step_size_multiplier() == 1.0


def test_the_hypervolume_multiplier_acts_under_group_normalised_advantages(monkeypatch):
    """The multiplier scales the learning rate, which GRPO's normalisation cannot cancel."""
    learning_rates = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        learning_rates.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    task = make_task("math", steps=4, advantage="grpo", n_eval_prompts=8)
    rule = make_algorithm("dynamic-weighting", [1 / 3] * 3, hypervolume_guided=True)
    task.run(rule, 0)
    steps = learning_rates[-4:]  # (earlier entries: the reference policy's fine-tune, if run here)
    assert steps[0] == 1e-3  # the first observation (the initial model) is the reference point
    assert all(lr != 1e-3 for lr in steps[1:])  # then v_t, after update t - 1, scales step t


# --- MORLHF's two orders --------------------------------------------------------------------------


def test_morlhf_orders():
    rewards = np.array([[1.0, 0.0], [0.0, 2.0]])
    ls = make_algorithm("ls", [0.75, 0.25])
    assert ls.online_reward(rewards)[:, 0] == pytest.approx([0.75, 0.5])
    assert (
        make_algorithm("ls", [0.75, 0.25], order="normalize-then-sum").online_reward(rewards)
        is None
    )
    a = execute(resolve_config("ls", "math", [0.6, 0.2, 0.2], 0, None, {"steps": 8}))
    b = execute(
        resolve_config(
            "ls", "math", [0.6, 0.2, 0.2], 0, {"order": "normalize-then-sum"}, {"steps": 8}
        )
    )
    assert a.objectives != b.objectives
    assert b.cost.gradient_evaluations == a.cost.gradient_evaluations == 8


# --- the math task ----------------------------------------------------------------------------------


def test_math_rules():
    prompt = "<bos> add 3 4 <sep>"
    worked, direct = "step 3 plus 4 answer 7", "answer 7"
    assert accuracy(prompt, worked) == accuracy(prompt, direct) == 1.0
    assert accuracy(prompt, "answer 6") == accuracy(prompt, "7") == 0.0  # wrong; unmarked
    assert clarity(worked) == 1.0 and clarity(direct) == 0.5 and clarity("7") == 0.0
    assert conciseness(direct) > conciseness(worked)  # showing steps costs length


def test_math_reference_succeeds_sometimes_but_not_always():
    task = make_task("math")
    tokenizer = tiny.task_tokenizer(task)
    scores = tiny.evaluate_policy(
        task, tiny.task_reference(task, tokenizer), tokenizer, tiny.evaluation_prompts(task)
    )
    assert 0.2 < scores[0] < 0.9, scores


# --- default paradigms, pairings, bad input -------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "task", "paradigm"),
    [("gapo", "safety", "online"), ("pama", "safety", "online"), ("raco", "summarization", "preference"),
     ("modpo", "safety", "preference"), ("ls", "safety", "preference"), ("dynamic-weighting", "math", None)],
)  # fmt: skip
def test_runs_default_to_the_algorithms_own_paradigm(algorithm, task, paradigm):
    preference = [1 / 3] * 3 if task == "math" else [0.5, 0.5]
    config = resolve_config(algorithm, task, preference)
    assert config.task_params.get("paradigm") == paradigm


def test_unsupported_pairings_are_clear_errors():
    with pytest.raises(UnsupportedPairingError, match="'modpo' does not support online training"):
        resolve_config("modpo", "math", [0.4, 0.3, 0.3])
    with pytest.raises(
        UnsupportedPairingError, match="'pama' does not support preference training"
    ):
        resolve_config("pama", "safety", [0.5, 0.5], task_params={"paradigm": "preference"})
    with pytest.raises(ConfigError, match="'math' has no preference paradigm"):
        resolve_config("ls", "math", [0.4, 0.3, 0.3], task_params={"paradigm": "preference"})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"group_size": 1}, "grpo advantage compares the responses to one prompt, so group_size"),
        ({"group_size": 1, "advantage": "rloo"}, "rloo advantage"),
        (
            {"temperature": 0},
            "temperature 0 is greedy decoding, which gives the same response 4 times",
        ),
        ({"beta": 0.3}, "beta do not apply to online training"),
    ],
)
def test_bad_online_configurations(params, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("ls", "math", [0.4, 0.3, 0.3], task_params=params)


def test_online_parameters_do_not_apply_to_preference_training():
    with pytest.raises(ConfigError, match="group_size do not apply to preference training"):
        resolve_config("ls", "safety", [0.5, 0.5], task_params={"group_size": 8})


def test_one_response_per_prompt_works_with_reinforce():
    record = execute(resolve_config("ls", "math", [0.4, 0.3, 0.3], 0, None,
                                    {"group_size": 1, "advantage": "reinforce", "steps": 3}))  # fmt: skip
    assert record.status == "ok"


class BadRewards(Math):
    name = "bad-rewards"

    def __init__(self, kind: str, **params):
        super().__init__(**params)
        self.kind = kind

    def rewards(self, prompts, responses):
        good = super().rewards(prompts, responses)
        if self.kind == "shape":
            return good[:, :2]
        if self.kind == "nan":
            good[0, 1] = np.nan
            return good
        return [["high"] * 3 for _ in responses]


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("shape", r"rewards\(\) returned shape \(8, 2\) for 8 responses; expected \(8, 3\)"),
        ("nan", r"NaN or infinite rewards for conciseness"),
        ("string", r"non-numeric values"),
    ],
)
def test_a_bad_reward_function_is_named_before_training(kind, message):
    task = BadRewards(kind, steps=2, n_eval_prompts=8)
    with pytest.raises(ConfigError, match=message):
        task.run(make_algorithm("ls", [0.4, 0.3, 0.3]), 0)


def test_checked_rewards_accepts_good_rewards():
    task = make_task("math")
    assert checked_rewards(task, ["<bos> add 1 2 <sep>"], ["answer 3"]).tolist() == [
        [1.0, 0.75, 0.5]
    ]


def test_cli_runs_gapo_online_on_safety(cli, tmp_path):
    result = cli("run", "--algo", "gapo", "--task", "safety", "--task-param", "steps=4",
                 "--results-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "online" in next(tmp_path.glob("*.json")).read_text()


# --- training improves the favoured objective -------------------------------------------------------


@cache
def online_objectives(
    algorithm: str, task: str, preference: tuple[float, ...], seed: int = 0
) -> np.ndarray:
    params = {"paradigm": "online"} if task != "math" else {}
    if (algorithm, task) == ("pama", "safety"):
        # measured: under GRPO, PAMA gets no signal on tiny safety (harmlessness is constant on
        # benign prompts, so its group-normalised advantage, hence every token's minimum, is 0,
        # and no response beats its group on both objectives on harmful ones); a batch baseline
        # gives the benign prompts a positive harmlessness advantage
        params["advantage"] = "reinforce"
    record = execute(resolve_config(algorithm, task, list(preference), seed, None, params))
    assert record.status == "ok", record.reason
    return np.array(record.objectives)


ONLINE = [
    "ls", "mgda", "gapo", "p-gapo", "cagrad", "raco", "dynamic-weighting", "upgrad", "pama", "gdpo",
]  # fmt: skip
PREFERENCE_FREE = {"mgda", "gapo", "cagrad", "dynamic-weighting", "pama"}


@pytest.mark.parametrize("task", ["safety", "math"])
@pytest.mark.parametrize("algorithm", ONLINE)
def test_every_online_algorithm_improves_its_most_weighted_objective(
    algorithm, task, reference_scores, request
):
    if (algorithm, task) == ("pama", "math"):
        # measured: since rollouts train on the sampled ids (no <eos> appended to a response cut
        # at the length limit, most of math's), PAMA on tiny math stays at the reference (0.609,
        # 0.415, 0.75 against 0.609, 0.430, 0.746; 200 steps do not help): why is issue 23's
        request.applymarker(pytest.mark.xfail(strict=True, reason="PAMA does not move on math"))
    improves_its_most_weighted_objective(algorithm, task, reference_scores)


def improves_its_most_weighted_objective(algorithm, task, reference_scores):
    reference = reference_scores(task)
    m = len(reference)
    if algorithm in PREFERENCE_FREE:
        assert np.any(online_objectives(algorithm, task, (1 / m,) * m) > reference + 0.02)
        return
    for favoured in range(m):
        preference = tuple(0.8 if j == favoured else 0.2 / (m - 1) for j in range(m))
        objectives = online_objectives(algorithm, task, preference)
        assert objectives[favoured] > reference[favoured] + 0.02, (preference, objectives)


def test_gapo_improves_both_safety_objectives_given_enough_steps(reference_scores):
    """GAPO's claim (improving helpfulness and harmlessness together) at w = (0.5, 0.5). It needs
    the policy to tell harmful prompts from benign ones, which takes longer than the default 80
    steps. Since rollouts train on the sampled ids (no <eos> appended to a truncated response),
    measured at seed 0: 160 steps (0.10, 0.82) -> (0.69, 0.61), still a trade; 240 steps
    (0.29, 0.98), 320 steps (0.30, 0.99). (Before: (0.26, 0.997) at 160 steps.)"""
    objectives = execute(
        resolve_config("gapo", "safety", [0.5, 0.5], 0, None, {"paradigm": "online", "steps": 240})
    ).objectives
    assert np.all(np.array(objectives) > reference_scores("safety") + 0.02), objectives


@pytest.mark.xfail(
    strict=True,
    reason="PAMA cannot raise harmlessness on tiny safety: its combined advantage is the minimum "
    "of the Noon (clipped at 0) advantages, and a refusal of a harmful request, the only way to "
    "more harmlessness, is the least helpful response, so its combined advantage is 0; measured "
    "w = (0.5, 0.5), advantage=reinforce, 160 steps: (0.10, 0.82) -> (0.36, 0.80)",
)
def test_pama_improves_both_safety_objectives(reference_scores):
    objectives = online_objectives("pama", "safety", (0.5, 0.5))
    assert np.all(objectives > reference_scores("safety")), objectives


# --- MORLHF against trl's GRPOTrainer ---------------------------------------------------------------


def test_morlhf_matches_trls_grpo_trainer_within_the_seed_spread(tmp_path):
    """Same tiny model, task, preference and settings, six seeds each: the mean final objectives
    of moabench's `ls` and of trl's GRPOTrainer (reward_weights) differ by no more than the larger
    seed-to-seed range of the two (plus 0.02 for the seeds' noise). Three seeds were too few:
    with the CPU code paths pinned, seeds 0-2 happened to spread by 0.008 in correctness and the
    means differed by 0.049; over seeds 0-7 by 0.015, within spreads of 0.09 (measured)."""
    from moabench.core.determinism import one_torch_thread
    from moabench.language.trl_baselines import grpo_trainer, train_and_evaluate

    preference, seeds = [0.6, 0.2, 0.2], range(6)
    ours = np.array([online_objectives("ls", "math", tuple(preference), seed) for seed in seeds])
    theirs = []
    for seed in seeds:
        task = make_task("math")
        torch.manual_seed(seed)
        with one_torch_thread():
            objectives, _ = train_and_evaluate(
                grpo_trainer(task, preference, seed, tmp_path / str(seed)), task
            )
        theirs.append(objectives)
    theirs = np.array(theirs)
    spread = np.maximum(np.ptp(ours, axis=0), np.ptp(theirs, axis=0)) + 0.02
    assert np.all(np.abs(ours.mean(axis=0) - theirs.mean(axis=0)) <= spread), (ours, theirs)


# --- rollouts from the sampled ids (issue 21, item 10) -------------------------------------------


def test_a_sampled_batch_scores_exactly_the_sampled_tokens():
    """Left-padded prompts; a response that ends with <eos> keeps it, one cut at the length limit
    gets none appended, and a special token sampled inside a response stays (decoding drops it,
    so re-tokenizing the text would not)."""
    from moabench.language.lm import sampled_batch

    eos, pad = 2, 0
    prompts = torch.tensor([[0, 5, 6], [7, 8, 9]])
    new_tokens = torch.tensor([[4, eos, pad, pad], [3, 1, 4, 4]])  # row 1: cut, with a <bos> (1)
    batch = sampled_batch(prompts, (prompts != 0).long(), new_tokens, [eos], pad)
    assert batch.input_ids.tolist() == [[5, 6, 4, eos, pad, pad, pad], [7, 8, 9, 3, 1, 4, 4]]
    assert batch.attention_mask.sum(dim=1).tolist() == [4, 7]
    assert batch.response_mask.long().tolist() == [[0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1]]


def test_online_rollouts_are_the_sampled_ids():
    """The tiny scale's samples: where every response ends with <eos> and holds no special
    token, the same batch as re-tokenizing the text; responses cut at the length limit end
    without an <eos> that was never sampled."""
    from moabench.language.lm import make_batch

    task = make_task("safety", paradigm="online")
    problem = tiny.online_problem(task)
    tokenizer = tiny.task_tokenizer(task)
    prompts = task.sample_prompts(np.random.default_rng(0), 32)
    samples = problem.sample(prompts, 0)
    retokenized = make_batch(tokenizer, prompts, samples.responses)
    for name in ("input_ids", "attention_mask", "response_mask"):
        assert torch.equal(getattr(samples.batch, name), getattr(retokenized, name))
    fresh = tiny.build_model(tokenizer, tiny.TinyModelConfig(seed=3)).eval()
    cut = tiny.sample_responses(fresh, tokenizer, prompts, 3, seed=0)
    lengths = cut.batch.response_mask.sum(dim=1)
    last = cut.batch.input_ids[torch.arange(32), cut.batch.attention_mask.sum(dim=1) - 1]
    ended = last == tokenizer.eos_token_id
    assert (~ended).any() and (lengths[~ended] == 3).all()  # cut: the 3 sampled tokens only
    assert (lengths <= 3).all()


# --- the rollout's forward reused by the update where it is the same ------------------------------


@pytest.mark.parametrize(("algorithm", "ppo_epochs", "forwards"), [
    ("upgrad", 1, 1), ("ls", 1, 1), ("upgrad", 2, 3), ("dynamic-weighting", 1, 3),
])  # fmt: skip
def test_one_update_takes_the_rollouts_forward_with_the_same_result(
    monkeypatch, algorithm, ppo_epochs, forwards
):
    """With one update (`ppo_epochs` 1, no gradients observed first) the rollout's forward of
    the policy is the update's: one forward per step instead of two, and the same parameters
    bit for bit as with a forward of its own."""
    from moabench.language import online

    task = make_task("safety", paradigm="online", steps=2, ppo_epochs=ppo_epochs)
    m = task.space.n_objectives

    def trained(reuse: bool) -> tuple[torch.Tensor, int]:
        problem = tiny.online_problem(task)
        problem.evaluate = lambda: [0.0] * m
        calls = []
        forward = online.token_log_probs

        def counted(model, batch):
            calls.append(model is problem.policy)
            return forward(model, batch)

        monkeypatch.setattr(online, "token_log_probs", counted)
        if not reuse:
            monkeypatch.setattr(online, "reuses_first_forward", lambda *args: False)
        online.train_online(problem, make_algorithm(algorithm, [0.5] * m), 0, task.params, m)
        monkeypatch.undo()
        weights = torch.cat([p.detach().flatten() for p in problem.policy.parameters()])
        return weights, sum(calls) // task.params.steps

    reused, per_step = trained(reuse=True)
    own, _ = trained(reuse=False)
    assert per_step == forwards
    assert torch.equal(reused, own)
