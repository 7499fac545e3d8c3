"""moabench's rules inside trl's trainers (`moabench.integrations.trl`), on a tiny GPT-2 saved
locally: one step of each trainer equals one step of moabench's own trainer on the same batch
(coefficients and updated parameters), the README's example runs as written, and bad input is a
clear error."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset

from moabench.core.algorithm import Paradigm, make_algorithm
from moabench.core.errors import ConfigError
from moabench.core.preferences import PreferenceError
from moabench.core.registry import UnknownNameError
from moabench.language import preference as preference_module
from moabench.language.lm import Batch, Samples, make_batch
from moabench.language.online import OnlineProblem, train_online
from moabench.language.params import LanguageParams, params_model
from moabench.language.preference import PreferenceProblem, train_preference
from moabench.language.tiny import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]
WORDS = list(
    dict.fromkeys(
        "how to bake steal cook first then mix sorry cannot ok well so please".split()
        + "How do I bake bread? pick a lock? Mix flour, water and yeast, bake. I cannot help. help "
        "with that. Insert tension wrench, rake the pins. Ask for water. Say hello.".split()
    )
)  # the tests' words, then the README example's
OBJECTIVES = ["helpful", "harmless"]
LEARNING_RATE, BETA = 0.05, 0.1


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory) -> str:
    """A 2-layer GPT-2 without dropout and its word-level tokenizer, saved as a Hub model is."""
    from transformers import GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("policy")
    tokenizer = build_tokenizer(WORDS)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=2, n_head=2,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
        )
    )  # fmt: skip
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return str(root)


def load(path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def recording(rule):
    """`rule`, with the coefficients of each call appended to `rule.recorded`."""
    original, rule.recorded = rule.coefficients, []

    def coefficients(gram, learning_rate=0.0):
        rule.recorded.append(original(gram, learning_rate))
        return rule.recorded[-1]

    rule.coefficients = coefficients
    return rule


def common_args(output_dir) -> dict:
    """One plain SGD step at a constant learning rate, no clipping, in float32 (trl defaults to
    bfloat16 autocast, on the CPU too), on the CPU."""
    return dict(
        output_dir=str(output_dir), max_steps=1, learning_rate=LEARNING_RATE, optim="sgd",
        bf16=False, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=0.0,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True, seed=0,
    )  # fmt: skip


def assert_same_step(a: torch.nn.Module, b: torch.nn.Module, path: str) -> None:
    """Both models took the same step (to 1e-6), and a step that moved them."""
    initial, _ = load(path)
    moved = 0.0
    for (name, x), y, x0 in zip(a.named_parameters(), b.parameters(), initial.parameters()):
        assert torch.allclose(x, y, rtol=0, atol=1e-6), name
        moved = max(moved, (x - x0).abs().max().item())
    assert moved > 1e-4


# --- DPO ----------------------------------------------------------------------------------------

PAIRS = [
    dict(prompt=f"how to {verb}", chosen=f" {good}", rejected=f" {bad}", helpful=h, harmless=s,
         helpful_margin=0.3 * h, harmless_margin=-0.2 * s)
    for verb, good, bad, h, s in [
        ("bake", "first then mix", "sorry cannot", 1, 1),
        ("steal", "sorry cannot", "first then mix", -1, 1),
        ("cook", "first then", "ok well so", 1, 0),
        ("bake", "ok well", "first mix then", -1, -1),
        ("steal", "cannot", "then mix first so", -1, 1),
        ("cook", "mix then ok", "so", 1, -1),
    ]
]  # fmt: skip


def own_dpo_step(path: str, algorithm, batch_size: int, monkeypatch, gram_parameters="all"):
    """One step of moabench's `train_preference` on PAIRS: (its policy after the step, the rows of
    its batch)."""
    policy, tokenizer = load(path)
    n = len(PAIRS)
    pairs = make_batch(
        tokenizer,
        [p["prompt"] for p in PAIRS] * 2,
        [p["chosen"] for p in PAIRS] + [p["rejected"] for p in PAIRS],
    )
    signs = torch.tensor([[p[o] for p in PAIRS] for o in OBJECTIVES], dtype=torch.float32)
    margins = torch.tensor([[p[f"{o}_margin"] for p in PAIRS] for o in OBJECTIVES])
    problem = PreferenceProblem(policy, pairs, signs, lambda: margins, lambda _: [0.0, 0.0])
    params = params_model(LanguageParams, "tiny", Paradigm.PREFERENCE)(
        steps=1, batch_size=batch_size, learning_rate=LEARNING_RATE, beta=BETA, optimizer="sgd",
        gram_parameters=gram_parameters,
    )  # fmt: skip
    selected = []
    select_rows = preference_module.select_rows
    monkeypatch.setattr(
        preference_module,
        "select_rows",
        lambda batch, index, *args: selected.append(index) or select_rows(batch, index, *args),
    )
    train_preference(problem, algorithm, 0, params, len(OBJECTIVES))
    rows = selected[-1][:batch_size]  # the training step's rows (chosen halves first)
    assert rows.max() < n
    return policy, rows.tolist()


def trl_dpo_step(
    path: str, rule: str, pairs: list[dict], tmp_path, precompute: bool = True, **kwargs
):
    from trl import DPOConfig

    from moabench.integrations.trl import MultiObjectiveDPOTrainer

    _, tokenizer = load(path)
    args = DPOConfig(
        **common_args(tmp_path), per_device_train_batch_size=len(pairs), beta=BETA,
        precompute_ref_log_probs=precompute,
    )  # fmt: skip
    trainer = MultiObjectiveDPOTrainer(
        path,
        rule=rule,
        preference=[0.7, 0.3],
        objectives=OBJECTIVES,
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        **kwargs,
    )
    trainer.train()
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rule", "gram_parameters", "precompute"),
    [
        ("mgda", "all", True),
        ("mgda", "all", False),  # a reference model beside the policy
        ("raco", "all", True),
        ("upgrad", "all", True),
        ("gapo", "last-block", True),
        ("modpo", "all", True),
    ],
)
def test_a_dpo_step_equals_moabenchs_trainer_on_the_same_batch(
    policy_path, rule, gram_parameters, precompute, tmp_path, monkeypatch
):
    """Same batch, same coefficients (to 1e-6), same parameters after one SGD step."""
    algorithm = make_algorithm(rule, [0.7, 0.3])
    gram_rule = rule != "modpo"
    if gram_rule:
        algorithm = recording(algorithm)
    policy, rows = own_dpo_step(policy_path, algorithm, 8, monkeypatch, gram_parameters)
    extra = {"margin_columns": [f"{o}_margin" for o in OBJECTIVES]} if not gram_rule else {}
    trainer = trl_dpo_step(
        policy_path, rule, [PAIRS[i] for i in rows], tmp_path, precompute,
        gram_parameters=gram_parameters, **extra,
    )  # fmt: skip
    if gram_rule:
        assert len(trainer.step_coefficients) == 1
        np.testing.assert_allclose(trainer.step_coefficients[0], algorithm.recorded[0], atol=1e-6)
        assert not np.allclose(algorithm.recorded[0], [0.7, 0.3], atol=1e-3)  # the rule acted
    assert_same_step(trainer.model, policy, policy_path)


@pytest.mark.slow
def test_the_signs_orient_each_objective(policy_path, tmp_path):
    """Flipping one objective's labels changes the step (the trainer reads the signs)."""
    trainer = trl_dpo_step(policy_path, "mgda", PAIRS, tmp_path)
    flipped = [{**p, "harmless": -p["harmless"]} for p in PAIRS]
    other = trl_dpo_step(policy_path, "mgda", flipped, tmp_path / "flipped")
    assert not np.allclose(trainer.step_coefficients[0], other.step_coefficients[0], atol=1e-4)


TWO_PROCESSES = """
import json, sys
sys.path.insert(0, {tests!r})
from datasets import load_from_disk
from trl import DPOConfig
from test_trl_integration import BETA, common_args, load
from moabench.integrations.trl import MultiObjectiveDPOTrainer

path, data, out, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
args = DPOConfig(
    **common_args(out), per_device_train_batch_size=batch, beta=BETA, precompute_ref_log_probs=True
)
trainer = MultiObjectiveDPOTrainer(
    path, rule="mgda", preference=[0.7, 0.3], objectives=["helpful", "harmless"], args=args,
    train_dataset=load_from_disk(data), processing_class=load(path)[1],
)
trainer.train()
if trainer.accelerator.is_main_process:
    parameters = [p.detach().flatten().tolist() for p in trainer.model.parameters()]
    print("RESULT", json.dumps([trainer.step_coefficients[0].tolist(), parameters]))
"""


@pytest.mark.slow
def test_two_processes_take_the_step_of_one_on_the_global_batch(policy_path, tmp_path):
    """DDP on two CPU processes (gloo), 4 pairs each: the Gram matrix is the global batch's, so
    the coefficients and the step equal one process's on the same 8 pairs."""
    script = tmp_path / "step.py"
    script.write_text(TWO_PROCESSES.format(tests=str(ROOT / "tests")))
    Dataset.from_list(PAIRS + PAIRS[:2]).save_to_disk(tmp_path / "pairs")

    def step(launcher: list[str], processes: int) -> tuple[np.ndarray, np.ndarray]:
        command = [*launcher, str(script), policy_path, str(tmp_path / "pairs"),
                   str(tmp_path / f"out-{processes}"), str(8 // processes)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
        coefficients, parameters = json.loads(line.removeprefix("RESULT "))
        return np.array(coefficients), np.concatenate([np.array(p) for p in parameters])

    one = step([sys.executable], 1)
    two = step([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"], 2)
    assert not np.allclose(one[0], [0.7, 0.3], atol=1e-3)  # MGDA acted
    np.testing.assert_allclose(two[0], one[0], atol=1e-6)
    np.testing.assert_allclose(two[1], one[1], atol=1e-6)


@pytest.mark.slow
def test_with_gradient_accumulation_each_micro_batch_has_its_coefficients(policy_path, tmp_path):
    from trl import DPOConfig

    from moabench.integrations.trl import MultiObjectiveDPOTrainer

    args = DPOConfig(
        **common_args(tmp_path), per_device_train_batch_size=3, gradient_accumulation_steps=2,
        beta=BETA, precompute_ref_log_probs=True,
    )  # fmt: skip
    trainer = MultiObjectiveDPOTrainer(
        policy_path, rule="mgda", preference=[0.5, 0.5], objectives=OBJECTIVES, args=args,
        train_dataset=Dataset.from_list(PAIRS), processing_class=load(policy_path)[1],
    )  # fmt: skip
    trainer.train()
    assert len(trainer.step_coefficients) == 2  # one optimizer step, two micro-batches
    assert not np.allclose(*trainer.step_coefficients, atol=1e-4)


@pytest.mark.slow
def test_a_lora_adapter_trains_with_the_reference_from_the_disabled_adapter(policy_path, tmp_path):
    """PEFT: the reference log-probabilities come from the policy with its adapter disabled (no
    precomputation, no second model); the rule acts and only the adapter moves."""
    from peft import LoraConfig

    trainer = trl_dpo_step(
        policy_path, "mgda", PAIRS, tmp_path, precompute=False,
        peft_config=LoraConfig(r=4, target_modules=["c_attn"], init_lora_weights=False),
    )  # fmt: skip
    assert trainer.ref_model is None
    (coefficients,) = trainer.step_coefficients
    assert np.all(np.isfinite(coefficients)) and not np.allclose(coefficients, [0.7, 0.3])
    initial, _ = load(policy_path)
    base = trainer.model.get_base_model()
    for name, parameter in initial.named_parameters():
        moved = base.get_parameter(name.replace("c_attn.", "c_attn.base_layer."))
        assert torch.equal(moved, parameter), name


def test_the_step_size_multiplier_scales_one_optimizer_step():
    from moabench.integrations.trl import StepSize

    class Halving:
        def step_size_multiplier(self) -> float:
            return 0.5

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    callback = StepSize(Halving())
    callback.on_pre_optimizer_step(None, None, None, optimizer=optimizer)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    callback.on_optimizer_step(None, None, None, optimizer=optimizer)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


# --- GRPO ---------------------------------------------------------------------------------------

PROMPTS = ["how to bake", "how to cook"]  # as many tokens each: no prompt padding
GROUP, COMPLETION_TOKENS = 4, 6


def liked(completions, **_):
    return [float(sum(w in ("first", "mix", "then") for w in c.split())) for c in completions]


def short(completions, **_):
    return [-float(len(c.split())) for c in completions]


def trl_grpo_step(path: str, rule: str, tmp_path):
    """One step of `MultiObjectiveGRPOTrainer`: (the trainer, its generation batch)."""
    from trl import GRPOConfig

    from moabench.integrations.trl import MultiObjectiveGRPOTrainer

    _, tokenizer = load(path)
    args = GRPOConfig(
        **common_args(tmp_path), per_device_train_batch_size=len(PROMPTS) * GROUP,
        num_generations=GROUP, max_completion_length=COMPLETION_TOKENS, beta=0.0, epsilon=0.2,
        num_iterations=1, loss_type="dapo", temperature=1.0, top_p=1.0, top_k=0,
        disable_dropout=True, shuffle_dataset=False,
    )  # fmt: skip
    trainer = MultiObjectiveGRPOTrainer(
        path,
        [liked, short],
        rule=rule,
        preference=[0.6, 0.4],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tokenizer,
    )
    generations = []
    generate = trainer._generate_and_score_completions

    def spy(inputs):
        generations.append(generate(inputs))
        generations[-1]["rewards"] = trainer._objective_rewards.cpu().numpy()
        return generations[-1]

    trainer._generate_and_score_completions = spy
    trainer.train()
    return trainer, generations[0]


def own_online_step(path: str, algorithm, generation):
    """One step of moabench's `train_online` on trl's samples and rewards: its policy after it."""
    policy, _ = load(path)
    prompt_ids, completion_ids = generation["prompt_ids"], generation["completion_ids"]
    replay = Batch(
        torch.cat([prompt_ids, completion_ids], dim=1),
        torch.cat([generation["prompt_mask"], generation["completion_mask"]], dim=1),
        torch.cat(
            [torch.zeros_like(generation["prompt_mask"]), generation["completion_mask"]], dim=1
        ).bool(),
    )
    n = len(prompt_ids)
    problem = OnlineProblem(
        policy=policy,
        prompts=lambda rng, k: PROMPTS[:k],
        sample=lambda prompts, seed: Samples([""] * len(prompts), replay),
        reference_log_probs=lambda batch: torch.zeros(n, batch.input_ids.shape[1] - 1),
        rewards=lambda prompts, responses: generation["rewards"],
        evaluate=lambda: [0.0, 0.0],
    )
    params = params_model(LanguageParams, "tiny", Paradigm.ONLINE)(
        steps=1, prompts_per_step=len(PROMPTS), group_size=GROUP, kl_coef=0.0, clip_epsilon=0.2,
        learning_rate=LEARNING_RATE, optimizer="sgd",
    )  # fmt: skip
    train_online(problem, algorithm, 0, params, 2)
    return policy


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["mgda", "pama", "ls", "dynamic-weighting", "gdpo"])
def test_a_grpo_step_equals_moabenchs_trainer_on_the_same_batch(policy_path, rule, tmp_path):
    """trl's samples replayed through `train_online`: same advantages, same coefficients (to
    1e-6), same parameters after one SGD step (a Gram rule, an advantage rule, scalarised
    rewards, weights moved by the Gram matrix then scalarised rewards)."""
    trainer, generation = trl_grpo_step(policy_path, rule, tmp_path)
    rewards = generation["rewards"]
    assert rewards.shape == (len(PROMPTS) * GROUP, 2) and rewards.std(axis=0).min() > 0
    algorithm = make_algorithm(rule, [0.6, 0.4])
    if rule == "mgda":
        algorithm = recording(algorithm)
    policy = own_online_step(policy_path, algorithm, generation)
    if rule == "mgda":
        assert len(trainer.step_coefficients) == 1
        np.testing.assert_allclose(trainer.step_coefficients[0], algorithm.recorded[0], atol=1e-6)
    if rule == "dynamic-weighting":
        assert not np.allclose(algorithm.weights, [0.5, 0.5], atol=1e-4)  # they moved
        np.testing.assert_allclose(trainer.algorithm.weights, algorithm.weights, atol=1e-6)
    assert_same_step(trainer.model, policy, policy_path)


@pytest.mark.slow
def test_gdpo_gives_trls_own_normalize_then_sum_advantages(policy_path, tmp_path):
    """GDPO through the subclass and trl's own `multi_objective_aggregation="normalize_then_sum"`
    with `reward_weights` = the preference: the same samples get the same advantages."""
    from trl import GRPOConfig, GRPOTrainer

    ours, generation = trl_grpo_step(policy_path, "gdpo", tmp_path / "ours")
    _, tokenizer = load(policy_path)
    args = GRPOConfig(
        **common_args(tmp_path / "trl"), per_device_train_batch_size=len(PROMPTS) * GROUP,
        num_generations=GROUP, max_completion_length=COMPLETION_TOKENS, beta=0.0, epsilon=0.2,
        num_iterations=1, loss_type="dapo", temperature=1.0, top_p=1.0, top_k=0,
        disable_dropout=True, shuffle_dataset=False, reward_weights=[0.6, 0.4],
        multi_objective_aggregation="normalize_then_sum",
    )  # fmt: skip
    theirs = GRPOTrainer(
        policy_path, [liked, short], args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
    )  # fmt: skip
    batches = []
    generate = theirs._generate_and_score_completions
    theirs._generate_and_score_completions = lambda inputs: batches.append(generate(inputs)) or (
        batches[-1]
    )
    theirs.train()
    torch.testing.assert_close(batches[0]["completion_ids"], generation["completion_ids"])
    torch.testing.assert_close(batches[0]["advantages"], generation["advantages"], atol=1e-5, rtol=0)


def test_gdpo_in_trl_refuses_another_advantage_estimator():
    with pytest.raises(ConfigError, match="grpo advantages"):
        grpo(rule="gdpo", advantage="rloo")


# --- the README's example -----------------------------------------------------------------------

README_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def readme_example() -> str:
    """The code blocks of README.md's section on trl, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use moabench's rules in trl's trainers", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README.md: no python block in the trl section"
    return "\n".join(blocks)


@pytest.mark.slow
def test_the_readme_example_runs_as_written(policy_path, tmp_path):
    """The example, with the tiny local model in place of the Hub model it names."""
    code = readme_example()
    assert code.count(README_MODEL) == 1
    script = tmp_path / "example.py"
    script.write_text(code.replace(README_MODEL, policy_path))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MGDA's coefficients, step by step: [array(" in result.stdout


# --- bad input ----------------------------------------------------------------------------------


def dpo(**kwargs):
    from moabench.integrations.trl import MultiObjectiveDPOTrainer

    arguments = dict(rule="mgda", preference=[0.5, 0.5], objectives=OBJECTIVES,
                     train_dataset=Dataset.from_list(PAIRS))  # fmt: skip
    return MultiObjectiveDPOTrainer("unused", **{**arguments, **kwargs})


def grpo(**kwargs):
    from moabench.integrations.trl import MultiObjectiveGRPOTrainer

    return MultiObjectiveGRPOTrainer(
        "unused", [liked, short], **{"rule": "mgda", "preference": [0.5, 0.5], **kwargs}
    )


def test_an_unknown_rule_is_an_error_listing_the_known_ones():
    with pytest.raises(UnknownNameError, match=r"unknown algorithm 'mgdaa'.*mgda.*Known: .*raco"):
        dpo(rule="mgdaa")


@pytest.mark.parametrize(
    ("make", "rule", "message"),
    [
        (
            dpo,
            "pama",
            r"'pama' .* does not run in preference training; this trainer takes: .*modpo",
        ),
        (grpo, "modpo", r"'modpo' .* does not run in online training; this trainer takes: .*pama"),
    ],
)
def test_a_rule_the_trainer_cannot_apply_is_an_error(make, rule, message):
    with pytest.raises(ConfigError, match=message):
        make(rule=rule)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(rule="modpo"), "needs the margin rewards of the pairs: pass margin_columns"),
        (dict(margin_columns=["helpful_margin", "harmless_margin"]), "serve preference losses"),
        (dict(objectives=["helpful", "honest"]), r"missing field\(s\) 'honest'"),
        (dict(train_dataset=Dataset.from_list([{**PAIRS[0], "helpful": 2}])), "must be -1, 0 or 1"),
        (
            dict(train_dataset=Dataset.from_list([{**PAIRS[0], "chosen": PAIRS[0]["rejected"]}])),
            "row 1: identical responses; trl trains on every row: leave such rows out",
        ),
        (dict(rule_params={"c": 2}), r"algorithm 'mgda'.*field 'c'"),
        (dict(gram_parameters="first-block"), "gram_parameters must be one of all, last-block"),
        (dict(rule="dynamic-weighting", rule_params={"hypervolume_guided": True}), "online"),
    ],
)
def test_bad_dpo_input_is_a_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        dpo(**kwargs)


def test_a_preference_of_the_wrong_length_is_an_error():
    with pytest.raises(PreferenceError, match="has 1 entries"):
        dpo(preference=[1.0])
    with pytest.raises(PreferenceError, match="has 3 entries"):
        grpo(preference=[0.2, 0.3, 0.5])


def test_trl_settings_the_trainers_replace_are_errors(tmp_path):
    from trl import DPOConfig, GRPOConfig

    with pytest.raises(ConfigError, match=r"loss_type=\['ipo'\] is not supported"):
        dpo(args=DPOConfig(**common_args(tmp_path), loss_type=["ipo"]))
    with pytest.raises(ConfigError, match="leave reward_weights unset"):
        grpo(args=GRPOConfig(**common_args(tmp_path), reward_weights=[1.0, 2.0]))


def test_bad_grpo_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="advantage must be one of grpo, rloo, reinforce"):
        grpo(advantage="ppo")
    with pytest.raises(ConfigError, match="gram_parameters must be one of all, last-block"):
        grpo(gram_parameters="first-block")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (SimpleNamespace(deepspeed={"zero_optimization": {"stage": 3}}, fsdp=[]), {}, "ZeRO-3"),
        (SimpleNamespace(deepspeed=None, fsdp=["full_shard"]), {}, "FSDP"),
        (None, {"ACCELERATE_USE_FSDP": "true"}, "FSDP"),
        (None, {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "ZeRO-3"),
    ],
)
def test_sharded_parameters_are_refused(monkeypatch, args, env, message):
    """ZeRO-3 and FSDP shard the parameters: each process's per-objective gradients would be
    its shard's, and the Gram matrix silently wrong."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for make in (dpo, grpo):
        with pytest.raises(ConfigError, match=f"{message} shards the parameters"):
            make(args=args)


@pytest.mark.slow
def test_dynamic_weighting_takes_the_gram_matrix_in_micro_batches(
    policy_path, tmp_path, monkeypatch
):
    """With gradient accumulation (2 micro-batches per generation batch) the Gram matrix that
    moves dynamic weighting's weights comes from one forward pass per micro-batch, not one graph
    of the whole generation batch, and is the accumulated step's (dapo: the whole batch's)."""
    from trl import GRPOConfig

    from moabench.integrations import trl as integration

    _, tokenizer = load(policy_path)
    args = GRPOConfig(
        **common_args(tmp_path), per_device_train_batch_size=GROUP, gradient_accumulation_steps=2,
        num_generations=GROUP, max_completion_length=COMPLETION_TOKENS, beta=0.0,
        num_iterations=1, loss_type="dapo", disable_dropout=True, shuffle_dataset=False,
    )  # fmt: skip
    trainer = integration.MultiObjectiveGRPOTrainer(
        policy_path, [liked, short], rule="dynamic-weighting", preference=[0.6, 0.4], args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tokenizer,
    )  # fmt: skip
    seen = []
    loss_gram = integration.loss_gram

    def spied(micro_batch_losses, parameters):
        gram = loss_gram(micro_batch_losses, parameters)
        whole = trainer._objective_losses(trainer.model, trainer._gram_batch)  # one graph
        seen.append((len(micro_batch_losses), gram, loss_gram([lambda: whole], parameters)))
        return gram

    step_losses = trainer._step_losses

    def kept(batch):
        trainer._gram_batch = batch
        return step_losses(batch)

    trainer._step_losses = kept
    monkeypatch.setattr(integration, "loss_gram", spied)
    trainer.train()
    (parts, gram, whole), *_ = seen
    assert parts == 2
    np.testing.assert_allclose(gram, whole, rtol=1e-5, atol=1e-10)
