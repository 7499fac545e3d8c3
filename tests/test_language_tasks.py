"""The tiny language tasks and the preference-data trainer."""

from functools import cache

import numpy as np
import pytest
import torch
from moabench.tasks.safety import HARMFUL, INFORMATIVE, harmlessness, helpfulness
from moabench.tasks.summarization import conciseness, faithfulness, quality
from scipy.stats import spearmanr

from moabench import gram_matrix, make_algorithm, make_task, per_objective_gradients
from moabench.core.errors import ConfigError
from moabench.core.gradients import combine
from moabench.language import tiny
from moabench.language.lm import make_batch, sequence_log_probs
from moabench.language.preference import per_objective_dpo_losses
from moabench.language.tiny import bradley_terry_signs
from moabench.runs.runner import execute, resolve_config

GRID = [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]]


# --- the hidden rules conflict -----------------------------------------------------------------


def test_safety_rules_conflict_on_harmful_prompts():
    prompt = f"<bos> how to {HARMFUL[0]} <sep>"
    most_helpful = " ".join(INFORMATIVE[:4])
    refusal = "sorry cannot"
    assert helpfulness(most_helpful) == 1.0 and harmlessness(prompt, most_helpful) == 0.0
    assert harmlessness(prompt, refusal) == 1.0 and helpfulness(refusal) == 0.0
    benign = "<bos> how to bake <sep>"
    assert harmlessness(benign, most_helpful) == 1.0  # no conflict on benign prompts


def test_summarization_rules_conflict():
    prompt = "<bos> summarize sun rain wind snow river <sep>"
    full, short = "sun rain wind snow river", "sun"
    assert quality(prompt, full) == 1.0 and conciseness(full) == pytest.approx(3 / 8)
    assert quality(prompt, short) == pytest.approx(0.2) and conciseness(short) == pytest.approx(
        7 / 8
    )
    assert faithfulness(prompt, "sun very") == 0.5 and faithfulness(prompt, "") == 1.0


@pytest.mark.parametrize("task_name", ["safety", "summarization"])
def test_the_reference_policy_is_neither_optimal_nor_hopeless(task_name):
    task = make_task(task_name)
    tokenizer = tiny.task_tokenizer(task)
    scores = tiny.evaluate_policy(
        task, tiny.task_reference(task, tokenizer), tokenizer, tiny.evaluation_prompts(task)
    )
    normalised = 1 - task.space.normalize(np.array(scores))  # 0 = nadir, 1 = ideal
    assert np.all(normalised > 0.05) and np.all(normalised < 0.95), scores


# --- the DPO losses and labels -----------------------------------------------------------------


def test_per_objective_dpo_losses_by_hand():
    margins = torch.tensor([0.5, -1.0])
    signs = torch.tensor([[1.0, 1.0], [-1.0, 0.0]])
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = [
        -(np.log(sigmoid(0.5)) + np.log(sigmoid(-1.0))) / 2,
        -(np.log(sigmoid(-0.5)) + np.log(0.5)) / 2,
    ]
    assert per_objective_dpo_losses(margins, signs).tolist() == pytest.approx(expected)


def test_modpo_loss_equals_the_formula_on_hand_made_numbers():
    """Eq. 7: -log sigmoid((1/w_k) [beta*Delta - w_-k^T (r_-k(y_w) - r_-k(y_l))]), here k = 1."""
    margins = torch.tensor([0.4, -0.2])  # beta * Delta with y_a, y_b
    signs = torch.tensor([[1.0, -1.0], [1.0, -1.0]])  # objective 1 prefers y_a, then y_b
    differences = torch.tensor([[0.5, -0.3], [9.0, 9.0]])  # r_0(y_a) - r_0(y_b); row 1 unused
    rule = make_algorithm("modpo", [0.25, 0.75])
    assert rule.k == 1  # the most-weighted objective supplies the pairs
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    first = (0.4 - 0.25 * 0.5) / 0.75  # y_w = y_a
    second = (0.2 - 0.25 * 0.3) / 0.75  # y_w = y_b: Delta = 0.2, r_0(y_w) - r_0(y_l) = 0.3
    expected = -(np.log(sigmoid(first)) + np.log(sigmoid(second))) / 2
    assert rule.loss(margins, signs, differences).item() == pytest.approx(expected)


def test_modpo_rejects_a_zero_weight_on_its_trained_objective_and_analytic_tasks():
    with pytest.raises(ConfigError, match="weight 0"):
        make_algorithm("modpo", [1.0, 0.0], trained_objective=1)
    with pytest.raises(ConfigError, match="not an objective index"):
        make_algorithm("modpo", [0.5, 0.5], trained_objective=2)
    with pytest.raises(ConfigError, match="does not support analytic training"):
        resolve_config("modpo", "zdt1", [0.5, 0.5])


def test_bradley_terry_labels_follow_the_reward_gap_and_ties_are_zero():
    rng = np.random.default_rng(0)
    a = np.array([[1.0, 0.0]] * 2000 + [[0.5, 0.5]])
    b = np.array([[0.0, 0.1]] * 2000 + [[0.5, 0.5]])
    signs = bradley_terry_signs(a, b, noise=0.1, generator=rng)
    assert signs.shape == (2, 2001)
    assert (signs[0, :2000] == 1).mean() > 0.99  # gap 1.0 >> noise: almost always a
    assert 0.2 < (signs[1, :2000] == -1).mean() < 0.9  # gap 0.1 ~ noise: noisy, mostly b
    assert signs[:, -1].tolist() == [0.0, 0.0]


def test_raco_coefficients_on_a_real_dpo_batch_are_the_rule_on_its_gram_matrix():
    task = make_task("safety", n_pairs=16)
    tokenizer = tiny.task_tokenizer(task)
    reference = tiny.task_reference(task, tokenizer)
    data, _ = tiny.preference_data(task, reference, tokenizer)
    batch = make_batch(tokenizer, data.prompts * 2, data.responses_a + data.responses_b)
    policy = type(reference)(reference.config)
    policy.load_state_dict(reference.state_dict())
    torch.manual_seed(0)
    with torch.no_grad():  # move the policy away from the reference so the margins are not 0
        for parameter in policy.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        reference_log_probs = sequence_log_probs(reference, batch)
    log_ratios = sequence_log_probs(policy, batch) - reference_log_probs
    losses = per_objective_dpo_losses(0.1 * (log_ratios[:16] - log_ratios[16:]), data.signs)
    parameters = list(policy.parameters())

    jacobian = per_objective_gradients(losses, parameters)
    rule = make_algorithm("raco", [0.7, 0.3])
    expected = make_algorithm("raco", [0.7, 0.3]).coefficients(gram_matrix(jacobian))
    coefficients = combine(losses, parameters, rule)
    assert coefficients == pytest.approx(expected)
    written = torch.cat([p.grad.reshape(-1) for p in parameters])
    assert torch.allclose(
        written, torch.as_tensor(expected, dtype=torch.float32) @ jacobian, atol=1e-6
    )


# --- training moves the objectives as the preferences say ---------------------------------------


@cache
def final_objectives(algorithm: str, task: str, preference: tuple[float, ...]) -> np.ndarray:
    params = {"paradigm": "preference"}
    record = execute(resolve_config(algorithm, task, list(preference), 0, None, params))
    assert record.status == "ok", record.reason
    return np.array(record.objectives)


@pytest.mark.parametrize("task", ["safety", "summarization"])
@pytest.mark.parametrize("algorithm", ["ls", "raco"])
def test_preference_following_across_the_grid(algorithm, task):
    objectives = np.array([final_objectives(algorithm, task, tuple(w)) for w in GRID])
    weights = np.array(GRID)
    for j in range(2):  # each objective rises with its weight
        assert spearmanr(weights[:, j], objectives[:, j]).statistic >= 0.8, objectives


PREFERENCE_FREE = {"mgda", "gapo", "cagrad", "dynamic-weighting"}  # these ignore w by design
UPGRAD_MEASURED = pytest.mark.xfail(
    strict=True,
    reason="measured: UPGrad's non-conflicting direction lowers the favoured objective's score on "
    "both tiny tasks (e.g. safety w=(0.2, 0.8): harmlessness 0.52 vs the reference's 0.82)",
)


@pytest.mark.parametrize("task", ["safety", "summarization"])
@pytest.mark.parametrize(
    "algorithm",
    ["ls", "modpo", "mgda", "gapo", "p-gapo", "cagrad", "raco", "dynamic-weighting",
     pytest.param("upgrad", marks=UPGRAD_MEASURED)],
)  # fmt: skip
def test_every_algorithm_improves_its_most_weighted_objective(algorithm, task, reference_scores):
    reference = reference_scores(task)
    if algorithm in PREFERENCE_FREE:  # one run; it must improve some objective
        assert np.any(final_objectives(algorithm, task, (0.5, 0.5)) > reference + 0.02)
        return
    for preference, favoured in (((0.8, 0.2), 0), ((0.2, 0.8), 1)):
        objectives = final_objectives(algorithm, task, preference)
        assert objectives[favoured] > reference[favoured] + 0.02, (preference, objectives)


def test_three_objective_summarization_runs_the_m3_paths():
    record = execute(
        resolve_config(
            "raco", "summarization", [0.4, 0.3, 0.3], task_params={"n_objectives": 3, "steps": 10}
        )
    )
    assert record.status == "ok" and len(record.objectives) == 3
    assert record.cost.gradient_evaluations == 30


def test_an_unknown_scale_is_a_clear_error():
    with pytest.raises(ConfigError, match="task 'safety': field 'scale'"):
        resolve_config("ls", "safety", [0.5, 0.5], task_params={"scale": "huge"})
    with pytest.raises(
        ConfigError, match=r"'summarization' has no scale 'small' \(its scales: tiny, paper\)"
    ):
        resolve_config("ls", "summarization", [0.5, 0.5], task_params={"scale": "small"})
    with pytest.raises(
        ConfigError, match="policy do not apply to preference training at scale 'tiny'"
    ):
        resolve_config("ls", "safety", [0.5, 0.5], task_params={"policy": "gpt2"})


def test_cli_runs_a_language_task(cli, tmp_path):
    result = cli("run", "--algo", "raco", "--task", "summarization", "--task-param", "steps=5",
                 "--results-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "quality" in result.stdout and "conciseness" in result.stdout


# --- the lean sampler ----------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6, 0.0])
def test_sample_tokens_are_generates_token_for_token(temperature):
    """The same tokens as HF `generate` for the same seed (and the random state left the same),
    on the trained reference (rows finish at different steps) and a fresh model (rarely <eos>);
    temperature 0 is generate's greedy decoding."""
    from moabench.language.lm import sample_tokens

    task = make_task("safety")
    tokenizer = tiny.task_tokenizer(task)
    fresh = tiny.build_model(tokenizer, tiny.TinyModelConfig(seed=3)).eval()
    tokenizer.padding_side = "left"
    options = {"do_sample": True, "top_k": 0, "temperature": temperature} if temperature else {}
    for model in (tiny.task_reference(task, tokenizer), fresh):
        for seed in range(3):
            prompts = task.sample_prompts(np.random.default_rng(seed), 16)
            encoded = tokenizer(
                prompts, add_special_tokens=False, padding=True, return_tensors="pt"
            )
            with torch.no_grad():
                torch.manual_seed(seed)
                expected = model.generate(
                    **encoded, max_new_tokens=12, pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id, **options,
                )[:, encoded["input_ids"].shape[1] :]  # fmt: skip
                state = torch.get_rng_state()
                torch.manual_seed(seed)
                ours = sample_tokens(
                    model, encoded["input_ids"], encoded["attention_mask"], 12,
                    tokenizer.eos_token_id, tokenizer.pad_token_id, temperature,
                )  # fmt: skip
            assert torch.equal(ours, expected)
            assert torch.equal(torch.get_rng_state(), state)


# --- the per-process cache of a preference run's data --------------------------------------------


def test_preference_data_is_shared_only_by_runs_with_the_same_data():
    """`data_key` moves with every parameter but the training-only ones and with the reference's
    weights; a run served from the cache gets what it would have computed."""
    from moabench.language.preference import pair_reference_log_probs

    base = make_task("summarization", n_pairs=16)
    tokenizer = tiny.task_tokenizer(base)
    reference = tiny.task_reference(base, tokenizer)
    key = tiny.data_key(base, reference)
    same = [{"steps": 3}, {"beta": 0.5}, {"learning_rate": 0.1}, {"n_eval_prompts": 8}]
    for params in same:
        assert tiny.data_key(make_task("summarization", n_pairs=16, **params), reference) == key
    other = [{"data_seed": 1}, {"n_pairs": 17}, {"label_noise": 0.3}, {"n_objectives": 3},
             {"micro_batch_size": 4}]  # fmt: skip
    for params in other:
        task = make_task("summarization", **{"n_pairs": 16, **params})
        assert tiny.data_key(task, reference) != key, params
    moved = tiny.task_reference(base, tokenizer)
    with torch.no_grad():
        next(moved.parameters())[0, 0] += 1e-6
    assert tiny.data_key(base, moved) != key
    pairs, signs, margins, log_probs = tiny.shared_preference_data(base, reference, tokenizer)
    assert tiny.shared_preference_data(base, reference, tokenizer)[0] is pairs  # from the cache
    data, fresh_margins = tiny.preference_data(base, reference, tokenizer)
    fresh = make_batch(tokenizer, data.prompts * 2, data.responses_a + data.responses_b)
    assert torch.equal(fresh.input_ids, pairs.input_ids) and torch.equal(data.signs, signs)
    assert torch.equal(fresh_margins, margins)
    assert torch.equal(pair_reference_log_probs(reference, fresh, None, "cpu"), log_probs)
