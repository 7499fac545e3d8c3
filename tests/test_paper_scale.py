"""The small and paper scales, end to end on tiny models, tokenizers, reward models and datasets
saved locally and loaded through the same Hugging Face code paths as the papers' setups."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Dataset

from moabench.core.errors import ConfigError
from moabench.language.tiny import build_tokenizer
from moabench.runs.runner import execute, resolve_config

WORDS = (
    "how to bake steal poison cook first then next mix cut heat sorry cannot ok well so "
    "Human: Assistant: BEGINNING OF CONVERSATION: USER: ASSISTANT: summarize sun rain wind snow"
).split()
TRAINING = dict(
    steps=2, batch_size=4, micro_batch_size=None, n_pairs=8, n_eval_prompts=3, max_new_tokens=4,
    max_length=32,
)  # fmt: skip


def save_models(root):
    """A causal LM, two scalar reward models, a 2-label classifier, all sharing one tokenizer."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    tokenizer = build_tokenizer(WORDS)
    config = dict(
        vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=2, n_head=2,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    models = {
        "policy": GPT2LMHeadModel(GPT2Config(**config)),
        "reward-a": GPT2ForSequenceClassification(GPT2Config(**config, num_labels=1)),
        "reward-b": GPT2ForSequenceClassification(GPT2Config(**config, num_labels=1)),
        "classifier": GPT2ForSequenceClassification(GPT2Config(**config, num_labels=2)),
    }
    for name, model in models.items():
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return {name: str(root / name) for name in models}


def prompt(i):
    return f"how to {('bake', 'steal', 'cook', 'poison')[i % 4]} {'ok ' * (i % 3)}".strip()


def pku_rows(n=20):
    return [
        dict(prompt=prompt(i), response_0="first then mix", response_1="sorry cannot",
             better_response_id=i % 2, safer_response_id=1 - i % 2)
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    paths = save_models(root)
    Dataset.from_list(pku_rows()).save_to_disk(root / "pku")
    for subset in ("helpful-base", "harmless-base"):  # a copy of the hh-rlhf repository's layout
        (root / "hh" / subset).mkdir(parents=True)
        with open(root / "hh" / subset / "train.jsonl", "w") as out:
            for i in range(12):
                t = f"\n\nHuman: {prompt(i)}\n\nAssistant:"
                out.write(json.dumps({"chosen": f"{t} first then", "rejected": f"{t} ok"}) + "\n")
    Dataset.from_list(
        [
            dict(
                prompt=f"summarize sun rain {'wind ' * (i % 4)}",
                chosen="sun rain",
                rejected="sun",
                raco_s_quality=1,
                raco_s_verbosity=-1 if i % 3 else 0,
            )
            for i in range(20)
        ]  # fmt: skip
    ).save_to_disk(root / "reddit")
    Dataset.from_list(
        [dict(problem=f"add {i} and {i + 1}", answer=str(2 * i + 1), level=1) for i in range(12)]
    ).save_to_disk(root / "math500")
    paths.update(
        pku=str(root / "pku"), hh=str(root / "hh"), reddit=str(root / "reddit"),
        math500=str(root / "math500"),
    )  # fmt: skip
    return paths


def run(algorithm, task, local, preference=(0.5, 0.5), **task_params):
    config = resolve_config(algorithm, task, list(preference), 0, None, task_params)
    return execute(config)


def safety_paper(local, **extra):
    return {
        **dict(
            scale="paper", policy=local["policy"], dataset=local["pku"], lora_rank=4,
            reward_models={"helpfulness": local["reward-a"], "harmlessness": local["reward-b"]},
        ),
        **TRAINING,
        **extra,
    }  # fmt: skip


# --- end to end -------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ls", "raco", "modpo"])
def test_safety_paper_scale_runs_on_local_copies(local, algorithm):
    record = execute(resolve_config(algorithm, "safety", [0.7, 0.3], 0, None, safety_paper(local)))
    assert record.status == "ok", record.reason
    assert len(record.objectives) == 2 and np.all(np.isfinite(record.objectives))
    space = record.objective_space
    assert space["names"] == ["helpfulness", "harmlessness"]
    assert space["nadir"] == pytest.approx(record.trajectory.objectives[0])  # the reference
    assert all(i > n for i, n in zip(space["ideal"], space["nadir"]))
    assert record.config.task_params["learning_rate"] == 5e-5  # the paper setup's default


def test_paper_scale_is_deterministic(local):
    config = resolve_config("mgda", "safety", [0.5, 0.5], 3, None, safety_paper(local))
    assert execute(config).objectives == execute(config).objectives


def test_safety_small_reads_hh_rlhf_subsets(local):
    params = dict(
        scale="small", policy=local["policy"], dataset=local["hh"],
        reward_models={"helpfulness": local["reward-a"], "harmlessness": local["reward-b"]},
        **TRAINING,
    )  # fmt: skip
    record = execute(resolve_config("gapo", "safety", [0.5, 0.5], 0, None, params))
    assert record.status == "ok", record.reason
    assert record.config.task_params["lora_rank"] == 0  # the small setup's default


def test_summarization_paper_scale_with_three_objectives(local):
    params = {
        **TRAINING,
        **dict(
            scale="paper", n_objectives=3, policy=local["policy"], dataset=local["reddit"],
            lora_rank=4, micro_batch_size=2, gram_parameters="last-block",
            reward_models={"quality": local["reward-a"], "faithfulness": local["classifier"]},
        ),
    }  # fmt: skip
    record = execute(resolve_config("raco", "summarization", [0.4, 0.3, 0.3], 0, None, params))
    assert record.status == "ok", record.reason
    quality, conciseness, faithfulness = record.objectives
    assert conciseness <= 0 and 0 <= faithfulness <= 1  # minus a length; a probability


def test_cli_runs_the_paper_scale(cli, local, tmp_path):
    params = safety_paper(local)
    args = ["run", "--algo", "ls", "--task", "safety", "--results-dir", str(tmp_path)]
    for name, value in params.items():
        args += ["--task-param", f"{name}={value if isinstance(value, str) else json.dumps(value)}"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    (record,) = tmp_path.glob("*.json")
    assert json.loads(record.read_text())["status"] == "ok"


# --- the pieces -------------------------------------------------------------------------------


def test_unlabelled_objectives_are_labelled_by_their_scorer(local):
    from moabench.language.hub import read_pairs
    from moabench.tasks.summarization import Summarization

    task = Summarization(scale="paper", n_objectives=3, dataset=local["reddit"])
    pairs, _ = read_pairs(task.paper_setups["paper"], task.params, task.tiny_space.names)
    assert pairs.signs[:2].tolist()[0][:3] == [1.0, 1.0, 1.0]
    assert torch.isnan(pairs.signs[2]).all()  # faithfulness: left to the scorer


# --- bad input --------------------------------------------------------------------------------


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


GOOD = dict(prompt="how to bake", response_a="first then", response_b="sorry cannot",
            preferred={"helpfulness": "a", "harmlessness": "b"})  # fmt: skip


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "response_b"}, r"row 2: missing field 'response_b'"),
        ({**GOOD, "preferred": {"honesty": "a"}}, r"row 2: unknown objective\(s\) 'honesty'.*helpfulness, harmlessness"),
        ({**GOOD, "response_a": 7}, r"row 2: field 'response_a' must be a string, got 7"),
        ({**GOOD, "preferred": {"helpfulness": "left"}}, r"row 2: 'preferred' values must be 'a', 'b' or 'tie'"),
    ],
)  # fmt: skip
def test_a_bad_preference_file_names_the_row_and_field(local, tmp_path, row, message):
    path = write_jsonl(tmp_path / "pairs.jsonl", [GOOD, row])
    with pytest.raises(ConfigError, match=message):
        run("ls", "safety", local, **safety_paper(local, dataset=path))


def test_a_preference_file_in_the_moabench_format_trains(local, tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [dict(GOOD, prompt=prompt(i)) for i in range(12)])
    assert run("ls", "safety", local, **safety_paper(local, dataset=path)).status == "ok"


def test_a_dataset_without_the_formats_columns(local, tmp_path):
    Dataset.from_list([{"prompt": "x", "response_0": "a", "response_1": "b"}]).save_to_disk(
        tmp_path / "d"
    )
    with pytest.raises(ConfigError, match="missing field.*'better_response_id'.*'pku-saferlhf'"):
        run("ls", "safety", local, **safety_paper(local, dataset=str(tmp_path / "d")))


def test_a_model_that_is_not_a_causal_lm(local):
    with pytest.raises(
        ConfigError,
        match="is not a causal language model: its architecture is GPT2ForSequenceClassification",
    ):
        run("ls", "safety", local, **safety_paper(local, policy=local["reward-a"]))


def test_a_reward_model_for_an_unknown_objective(local):
    params = safety_paper(local)
    params["reward_models"] = {"honesty": local["reward-a"]}
    with pytest.raises(ConfigError, match=r"reward_models: unknown objective\(s\) \['honesty'\]"):
        run("ls", "safety", local, **params)


def test_an_unreachable_hub_says_how_to_use_a_local_copy(local, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as error:
        run("ls", "safety", local, **safety_paper(local, policy="no-such-org/no-such-model"))
    message = str(error.value)
    assert (
        "model 'no-such-org/no-such-model' could not be loaded from the Hugging Face Hub" in message
    )
    assert "--task-param policy=DIR" in message and "HF_HUB_OFFLINE=1" in message


# --- online training at the paper scale ---------------------------------------------------------

ONLINE = dict(paradigm="online", steps=2, prompts_per_step=2, group_size=2, max_new_tokens=4)


@pytest.mark.parametrize(("algorithm", "lora_rank"), [("gapo", 4), ("pama", 4), ("ls", 0)])
def test_online_training_at_the_paper_scale(local, algorithm, lora_rank):
    params = safety_paper(local, lora_rank=lora_rank, **ONLINE)
    params.pop("batch_size")
    params["micro_batch_size"] = 2 if algorithm == "gapo" else None  # responses per pass
    record = execute(resolve_config(algorithm, "safety", [0.5, 0.5], 0, None, params))
    assert record.status == "ok", record.reason
    assert record.config.task_params["paradigm"] == "online"
    assert record.objective_space["nadir"] == pytest.approx(record.trajectory.objectives[0])


def test_preference_parameters_are_rejected_online_at_the_paper_scale(local):
    params = safety_paper(local, beta=0.5, **ONLINE)
    with pytest.raises(ConfigError, match="beta do not apply to online training at scale 'paper'"):
        resolve_config("gapo", "safety", [0.5, 0.5], 0, None, params)


def test_a_safe_rlhf_score_model_loads_as_beaver_does(tmp_path):
    """beaver-7b-v1.0-reward/-cost are safe-rlhf `LlamaForScore` checkpoints: a Llama backbone and
    a `score_head` read at the last token. A tiny one, saved the same way, must give the score of
    its head at the last non-padding token, not a randomly initialised head."""
    import json as json_

    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from moabench.language.loading import load_sequence_classifier

    tokenizer = build_tokenizer(WORDS)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    original = LlamaForSequenceClassification(config).eval()
    original.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["score_head.weight"] = weights.pop("score.weight")  # safe-rlhf's names
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    saved = json_.loads((tmp_path / "config.json").read_text())
    saved.update(architectures=["LlamaForScore"], score_dim=1, bias=False)
    (tmp_path / "config.json").write_text(json_.dumps(saved))

    model, _ = load_sequence_classifier(str(tmp_path), "reward_models.helpfulness")
    batch = tokenizer(["how to bake first then", "sorry"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, original(**batch).logits, atol=1e-6)

    weights.pop("score_head.weight")  # no head at all: refused, never random
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="lacks weights for"):
        load_sequence_classifier(str(tmp_path), "reward_models.helpfulness")


# --- capability retention with lm-evaluation-harness ----------------------------------------------


def test_lm_eval_scores_are_recorded_next_to_the_objectives(local, tmp_path):
    """A custom lm-eval task (multiple choice over a local JSON file) run on the trained policy."""
    pytest.importorskip("lm_eval")
    data = tmp_path / "choices.jsonl"
    rows = [
        {"question": f"how to {verb}", "choices": ["first then", "sorry cannot"], "answer": i % 2}
        for i, verb in enumerate(["bake", "steal", "cook", "poison"])
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_choice.yaml").write_text(
        "task: moabench_tiny_choice\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n"
    )
    params = safety_paper(
        local, lm_eval_tasks=["moabench_tiny_choice"], lm_eval_include_path=str(tasks)
    )
    record = execute(resolve_config("ls", "safety", [0.5, 0.5], 0, None, params))
    assert record.status == "ok", record.reason
    assert set(record.capabilities) == {"moabench_tiny_choice/acc"}
    assert 0.0 <= record.capabilities["moabench_tiny_choice/acc"] <= 1.0

    params["lm_eval_tasks"] = ["no_such_task"]
    with pytest.raises(ConfigError, match=r"unknown lm-eval task\(s\) \['no_such_task'\]"):
        execute(resolve_config("ls", "safety", [0.5, 0.5], 0, None, params))


# --- math at the paper scale: MATH-500 problems and the paper's three rule rewards ---------------


def math_paper(local, **extra):
    return {
        **dict(
            scale="paper", policy=local["policy"], dataset=local["math500"], lora_rank=4, steps=2,
            n_pairs=8, n_eval_prompts=3, prompts_per_step=2, group_size=2, max_new_tokens=4,
            max_length=32,
        ),
        **extra,
    }  # fmt: skip


@pytest.mark.parametrize("algorithm", ["ls", "dynamic-weighting"])
def test_math_paper_scale_runs_on_local_copies(local, algorithm):
    record = execute(resolve_config(algorithm, "math", [0.4, 0.3, 0.3], 0, None, math_paper(local)))
    assert record.status == "ok", record.reason
    assert record.paradigm == "online"
    assert record.config.task_params["kl_coef"] == 0.001  # the paper setup's default
    assert len(record.objectives) == 3 and all(0 <= v <= 1 for v in record.objectives)
    assert record.objective_space["names"] == ["accuracy", "conciseness", "clarity"]


def test_a_math_dataset_without_answers(local, tmp_path):
    Dataset.from_list([{"problem": "add 1 and 2"}]).save_to_disk(tmp_path / "d")
    with pytest.raises(ConfigError, match="missing field.*'answer'.*'problems'"):
        run("ls", "math", local, (0.4, 0.3, 0.3), **math_paper(local, dataset=str(tmp_path / "d")))


def test_a_math_dataset_too_small_to_hold_out_its_evaluation_problems(local):
    with pytest.raises(ConfigError, match="no problems left for training after holding out 20"):
        run("ls", "math", local, (0.4, 0.3, 0.3), **math_paper(local, n_eval_prompts=20))


@pytest.mark.parametrize(
    ("response", "reference", "accuracy", "clarity"),
    [
        ("Step 1: add.\nStep 2: simplify.\n\\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}", 1, 1),
        ("First add, then halve: \\boxed{0.5}", "\\frac{1}{2}", 1, 1),
        ("\\boxed{4} or rather \\boxed{5}", "5", 1, 0),  # the last boxed answer counts
        ("1. add\n2. carry\nso the answer is 7", "7", 0, 0),  # no boxed answer
        ("First, then: \\boxed{x^{2} + 1}", "x^2+1", 1, 1),  # nested braces
        ("\\boxed{}", "3", 0, 0),
    ],
)
def test_math_rules_by_hand(response, reference, accuracy, clarity):
    from moabench.tasks.math import boxed_answer_accuracy, boxed_answer_and_steps

    assert boxed_answer_accuracy(response, reference) == accuracy
    assert boxed_answer_and_steps(response, reference) == clarity


def test_conciseness_is_shorter_than_the_running_mean_and_the_reference_at_evaluation():
    from moabench.language.hub import ShorterThanRunningMean

    score = ShorterThanRunningMean(lambda responses: np.array([len(r) for r in responses], float))
    assert score([], ["aa", "aaaa"], evaluation=True).tolist() == [1, 0]  # bar: 3 (the reference)
    assert score([], ["a", "aaa"], evaluation=False).tolist() == [1, 0]  # running mean 2
    assert score([], ["aaaaaaa"], evaluation=False).tolist() == [0]  # running mean 11/3
    assert score([], ["aaa"], evaluation=False).tolist() == [1]  # 14/4 = 3.5
    assert score([], ["aa", "aaaa"], evaluation=True).tolist() == [1, 0]  # bar stays 3


# --- generation at the papers' scale (issue 21) -------------------------------------------------


def test_generation_takes_its_own_batch_size(local, monkeypatch):
    from moabench.language import hub

    sizes = []
    generate = hub.generate_text

    def spied(*args, **kwargs):
        sizes.append(args[5])  # batch_size
        return generate(*args, **kwargs)

    monkeypatch.setattr(hub, "generate_text", spied)
    params = safety_paper(local, generation_batch_size=1, **ONLINE)
    params.pop("batch_size")
    assert execute(resolve_config("ls", "safety", [0.5, 0.5], 0, None, params)).status == "ok"
    assert sizes and set(sizes) == {1}


def test_rollouts_sample_at_the_online_temperature_and_keep_the_sampled_ids(local, monkeypatch):
    """Training rollouts at `temperature` (evaluations at 1), scored on the ids generate
    sampled: each response up to its first <eos>, none appended to one cut at max_new_tokens."""
    from moabench.language import hub

    calls = []
    generate = hub.generate_text

    def spied(*args, **kwargs):
        samples = generate(*args, **kwargs)
        calls.append((args[-1] if len(args) > 8 else kwargs.get("temperature", 1.0), samples))
        return samples

    monkeypatch.setattr(hub, "generate_text", spied)
    params = safety_paper(local, temperature=0.5, **ONLINE)
    params.pop("batch_size")
    assert execute(resolve_config("ls", "safety", [0.5, 0.5], 0, None, params)).status == "ok"
    assert {temperature for temperature, _ in calls} == {0.5, 1.0}
    eos = build_tokenizer(WORDS).eos_token_id
    for _, samples in calls:
        batch = samples.batch
        lengths = batch.response_mask.sum(dim=1)
        last = batch.input_ids[torch.arange(len(lengths)), batch.attention_mask.sum(dim=1) - 1]
        assert (lengths <= ONLINE["max_new_tokens"]).all()
        assert (lengths[last != eos] == ONLINE["max_new_tokens"]).all()  # cut: no <eos> added


def test_adapters_are_merged_while_generating_and_the_base_weights_restored(local):
    from moabench.core.algorithm import Paradigm
    from moabench.language import hub
    from moabench.language.params import LanguageParams, params_model

    params = params_model(LanguageParams, "paper", Paradigm.ONLINE)(scale="paper", lora_rank=2)
    policy, _ = hub.load_policy(local["policy"], params, hub.placement("cpu", None))
    for name, parameter in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)  # adapters that change the outputs
    policy.eval()
    ids = torch.randint(5, 30, (2, 6))
    with torch.no_grad():
        unmerged = policy(input_ids=ids).logits
        before = {n: p.clone() for n, p in policy.named_parameters()}
        with hub.merged_adapters(policy):
            assert all(m.merged for m in policy.modules() if hasattr(m, "merged_adapters"))
            merged = policy(input_ids=ids).logits
        after = dict(policy.named_parameters())
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)
    assert not any(m.merged for m in policy.modules() if hasattr(m, "merged_adapters"))
    assert all(torch.equal(before[n], after[n]) for n in before)  # bit for bit


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (dict(ONLINE), "needs vLLM, which is not installed"),
        (dict(ONLINE, lora_rank=0), r"full fine-tuning \(lora_rank=0\)"),
        (dict(paradigm="preference"), "samples online rollouts: use paradigm=online"),
    ],
)
def test_the_vllm_engine_is_refused_where_it_cannot_run(local, extra, message):
    """vLLM installs only with CUDA; where it is not installed (as here) it is a clear error
    before anything loads."""
    params = {**safety_paper(local), **extra, "generation_engine": "vllm"}
    if params["paradigm"] == "online":
        params.pop("batch_size")
    with pytest.raises(ConfigError, match=message):
        resolve_config("ls", "safety", [0.5, 0.5], 0, None, params)
