"""Real datasets' known quirks: rows that every reader skips and counts (in a warning and in the
run's record), or refuses under `strict`; rows that are malformed stay errors.

The fixtures reproduce the quirks of the real files. `test_the_real_hh_rlhf_harmless_base_test_file`
reads a real copy of Anthropic/hh-rlhf when one is at $MOABENCH_HH_RLHF_DIR (default
/work/data/hh-rlhf: a folder holding `harmless-base/test.jsonl.gz`, as the GitHub repository
anthropics/hh-rlhf does), and is skipped otherwise.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from datasets import Dataset

from moabench.core.errors import ConfigError
from moabench.language.hub import read_pairs, read_problems
from moabench.language.pairs import SkippedRowsWarning, read_hh_rlhf, split_transcript
from moabench.runs.records import read_record, write_record
from moabench.runs.runner import execute, reresolve, resolve_config
from moabench.tasks.math import Math
from moabench.tasks.safety import Safety
from moabench.tasks.summarization import Summarization

HH_RLHF_DIR = Path(os.environ.get("MOABENCH_HH_RLHF_DIR", "/work/data/hh-rlhf"))
VERBS = ("bake", "steal", "cook", "poison")


def transcript(prompt: str, answer: str) -> str:
    return f"\n\nHuman: {prompt}\n\nAssistant: {answer}"


def hh_row(i: int) -> dict:
    prompt = f"how to {VERBS[i % 4]} {'ok ' * (i % 5)}".strip()
    return {"chosen": transcript(prompt, "first then"), "rejected": transcript(prompt, "ok")}


#: One row of each quirk, as the real harmless-base test file has them (file rows in brackets).
HH_QUIRKS = [
    # an empty final answer (rows 87, 517, 926, 1104, all in "chosen")
    {"chosen": transcript("how to bake", ""), "rejected": transcript("how to bake", "first")},
    {"chosen": transcript("how to cut", "first"), "rejected": transcript("how to cut", " ")},
    # an answer that goes on with a turn of its own, so the last assistant turns answer different
    # prompts (rows 1255, 1689, 1951, 1953, 2037)
    {
        "chosen": transcript("how to steal", "sorry  Human: so?\n\nAssistant: cannot"),
        "rejected": transcript("how to steal", "first then"),
    },
    # the same final answer twice: no preference
    {"chosen": transcript("how to cook", "first"), "rejected": transcript("how to cook", "first")},
]
HH_SKIPPED = {"empty final answer": 2, "prompts differ": 1, "identical responses": 1}


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def quirky_hh(tmp_path):
    """A copy of the hh-rlhf repository's layout: 12 good rows per subset, then the quirks."""
    for subset in ("helpful-base", "harmless-base"):
        rows = [hh_row(i) for i in range(12)] + HH_QUIRKS
        write_jsonl_gz(tmp_path / "hh" / subset / "train.jsonl.gz", rows)
    return str(tmp_path / "hh")


def read_safety_small(dataset: str, **params):
    task = Safety(scale="small", dataset=dataset, **params)
    return read_pairs(task.paper_setups["small"], task.params, task.tiny_space.names)


# --- hh-rlhf --------------------------------------------------------------------------------------


def test_hh_rlhf_rows_with_a_known_quirk_are_skipped_counted_and_warned_about(quirky_hh):
    with pytest.warns(SkippedRowsWarning) as warned:
        pairs, skipped = read_safety_small(quirky_hh, n_pairs=60, n_eval_prompts=4)
    sources = [f"{quirky_hh} ({subset}, train)" for subset in ("helpful-base", "harmless-base")]
    assert skipped == {source: HH_SKIPPED for source in sources}
    assert len(pairs) == 2 * 12  # every good row, no quirky one
    assert "" not in pairs.responses_a + pairs.responses_b
    assert sorted(str(w.message) for w in warned) == sorted(
        f"{source}: skipped 4 row(s) with a known quirk (2 empty final answer, 1 identical responses, "
        "1 prompts differ); strict=true makes them errors"
        for source in sources
    )


def test_strict_makes_a_quirky_row_an_error_naming_its_row_in_the_file(tmp_path):
    for subset in ("helpful-base", "harmless-base"):
        rows = [hh_row(i) for i in range(12)]
        rows.insert(6, HH_QUIRKS[0])  # line 7 of each file
        write_jsonl_gz(tmp_path / subset / "train.jsonl.gz", rows)
    with pytest.raises(
        ConfigError,
        match=r"base, train\), row 7: empty final answer \(strict=true makes a row with a known "
        r"quirk an error; without it the row is skipped and counted\)",
    ):
        read_safety_small(str(tmp_path), n_pairs=60, n_eval_prompts=4, strict=True)


def test_a_skipped_row_is_replaced_by_the_next_one(quirky_hh):
    """n_pairs + n_eval_prompts usable pairs are read where the dataset has them."""
    with pytest.warns(SkippedRowsWarning):
        pairs, skipped = read_safety_small(quirky_hh, n_pairs=17, n_eval_prompts=3, data_seed=4)
    assert len(pairs) == 2 * (20 // 2 + 1)  # as many pairs as without quirks
    assert len(skipped) == 2  # both subsets met quirks among the rows read (seed 4)


def test_hh_rlhf_without_quirks_reads_as_before(tmp_path):
    """The rows read are those of `Dataset.shuffle(data_seed)`: no run that loaded before
    changes."""
    rows = [hh_row(i) for i in range(30)]
    for subset in ("helpful-base", "harmless-base"):
        write_jsonl_gz(tmp_path / subset / "train.jsonl.gz", rows)
    pairs, skipped = read_safety_small(str(tmp_path), n_pairs=10, n_eval_prompts=2, data_seed=3)
    assert skipped == {}
    first = Dataset.from_list(rows).shuffle(seed=3).select(range((10 + 2) // 2 + 1))
    expected = [split_transcript(row["chosen"])[0] for row in first]
    assert sorted(pairs.prompts) == sorted(2 * expected)


def test_a_malformed_hh_rlhf_row_is_still_an_error(tmp_path):
    for subset in ("helpful-base", "harmless-base"):
        rows = [hh_row(i) for i in range(4)] + [{"chosen": "no turns", "rejected": "at all"}]
        write_jsonl_gz(tmp_path / subset / "train.jsonl.gz", rows)
    with pytest.raises(ConfigError, match="row 5: no 'Assistant:' turn in the transcript"):
        read_safety_small(str(tmp_path), n_pairs=8, n_eval_prompts=2)


# --- every other reader: the same policy ----------------------------------------------------------


def pku(prompt="how to bake", a="first then", b="sorry cannot", better=0, safer=1):
    return dict(prompt=prompt, response_0=a, response_1=b, better_response_id=better,
                safer_response_id=safer)  # fmt: skip


def signed(prompt="summarize sun rain", chosen="sun rain", rejected="sun", quality=1, verbosity=-1):
    return dict(prompt=prompt, chosen=chosen, rejected=rejected, raco_s_quality=quality,
                raco_s_verbosity=verbosity)  # fmt: skip


def moabench(prompt="how to bake", a="first then", b="sorry cannot", preferred=None):
    preferred = preferred or {"helpfulness": "a", "harmlessness": "b"}
    return dict(prompt=prompt, response_a=a, response_b=b, preferred=preferred)


def problem(text="add 1 and 2", answer="3"):
    return dict(problem=text, answer=answer)


def save(tmp_path, rows, file=False) -> str:
    if file:
        path = tmp_path / "pairs.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return str(path)
    Dataset.from_list(rows).save_to_disk(tmp_path / "data")
    return str(tmp_path / "data")


def read_safety_paper(dataset, **params):
    task = Safety(scale="paper", dataset=dataset, **params)
    return read_pairs(task.paper_setups["paper"], task.params, task.tiny_space.names)


def read_summarization(dataset, **params):
    task = Summarization(scale="paper", dataset=dataset, **params)
    return read_pairs(task.paper_setups["paper"], task.params, task.tiny_space.names)


def read_math(dataset, **params):
    task = Math(scale="paper", dataset=dataset, **params)
    return read_problems(task.paper_setups["paper"], task.params)


FORMATS = {  # format: (reader, good row, quirky rows and their quirks, a data file?)
    "pku-saferlhf": (
        read_safety_paper, pku,
        [pku(b="  "), pku(a="same", b="same"), pku(prompt="")],
        {"empty response_1": 1, "identical responses": 1, "empty prompt": 1}, False,
    ),
    "signed": (
        read_summarization, signed,
        [signed(chosen=""), signed(chosen="sun", rejected="sun")],
        {"empty chosen": 1, "identical responses": 1}, False,
    ),
    "moabench": (
        read_safety_paper, moabench,
        [moabench(a=""), moabench(b="\n"), moabench(a="x", b="x", preferred={"helpfulness": "tie"})],
        {"empty response_a": 1, "empty response_b": 1, "identical responses": 1}, True,
    ),
    "problems": (
        read_math, problem,
        [problem(answer=""), problem(text=" ")],
        {"empty answer": 1, "empty problem": 1}, False,
    ),
}  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_reader_skips_and_counts_the_same_quirks(tmp_path, fmt):
    reader, good, quirky, quirks, file = FORMATS[fmt]
    dataset = save(tmp_path, quirky + [good() for _ in range(10)], file)
    with pytest.warns(SkippedRowsWarning, match="row\\(s\\) with a known quirk"):
        read, skipped = reader(dataset, n_pairs=20, n_eval_prompts=2)
    source = dataset if file else f"{dataset} ({'test' if fmt == 'problems' else 'train'})"
    assert skipped == {source: quirks}
    assert len(read.prompts) == 10


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_reader_refuses_quirks_under_strict(tmp_path, fmt):
    reader, good, quirky, quirks, file = FORMATS[fmt]
    dataset = save(tmp_path, [good(), good(), quirky[0]], file)
    first = next(iter(quirks))
    with pytest.raises(ConfigError, match=f"row 3: {first} \\(strict=true"):
        reader(dataset, n_pairs=2, n_eval_prompts=1, strict=True)


@pytest.mark.parametrize(
    ("fmt", "row", "message"),
    [
        ("pku-saferlhf", pku(better=2), r"better_response_id, safer_response_id must be 0 or 1, got \[2, 1\]"),
        ("pku-saferlhf", pku(safer=None), r"better_response_id, safer_response_id must be 0 or 1, got \[0, None\]"),
        ("signed", signed(quality=2), r"sign columns must be -1, 0 or 1, got \[2, -1\]"),
        ("moabench", moabench(preferred="a"), r"'preferred' must map objectives to labels, got 'a'"),
        ("moabench", moabench(a=3), r"field 'response_a' must be a string, got 3"),
        ("problems", problem(answer=None), r"field 'answer' must be a string, got None"),
    ],
)  # fmt: skip
def test_a_malformed_row_is_an_error_in_every_reader(tmp_path, fmt, row, message):
    """Not a quirk: a label out of range, a value of the wrong type (before: read as -1, a
    traceback, or the answer "None")."""
    reader, good, _, _, file = FORMATS[fmt]
    dataset = save(tmp_path, [good(), row, good()], file)
    with pytest.raises(ConfigError, match="row 2: " + message):
        reader(dataset, n_pairs=2, n_eval_prompts=1)


def test_integer_answers_are_read_as_text(tmp_path):
    problems, _ = read_math(save(tmp_path, [problem(answer=i) for i in range(4)]), n_pairs=2,
                            n_eval_prompts=1)  # fmt: skip
    assert sorted(problems.answers) == ["0", "1", "2"]


def test_a_dataset_of_quirky_rows_only_says_so(tmp_path):
    dataset = save(tmp_path, [pku(b=""), pku(a="x", b="x")])
    with pytest.warns(SkippedRowsWarning), pytest.raises(ConfigError, match="no preference pairs"):
        read_safety_paper(dataset, n_pairs=2, n_eval_prompts=1)


# --- local copies ---------------------------------------------------------------------------------


def test_a_missing_local_copy_is_not_looked_for_on_the_hub(tmp_path):
    from moabench.language.loading import load_rows

    with pytest.raises(
        ConfigError, match=r"subset 'harmless-base' of dataset '.*/nope': no such file or folder"
    ):
        load_rows(str(tmp_path / "nope"), "dataset", "train", "harmless-base")


def test_a_local_copy_without_the_setups_split_says_which_it_has(tmp_path):
    from moabench.language.loading import load_rows

    write_jsonl_gz(tmp_path / "harmless-base" / "test.jsonl.gz", [hh_row(0)])
    with pytest.raises(ConfigError, match=r"\(a local path\) could not be loaded: Unknown split"):
        load_rows(str(tmp_path), "dataset", "train", "harmless-base")


@pytest.mark.parametrize(
    ("parameter", "repo_type", "hint"),
    [
        ("dataset", "dataset", "`hf download org/x --repo-type dataset --local-dir DIR`"),
        ("reward_models.helpfulness", "model", """--task-param reward_models='{"helpfulness": "DIR"}'"""),
    ],
)  # fmt: skip
def test_the_offline_hint_is_a_command_that_works(parameter, repo_type, hint):
    from moabench.language.loading import load_or_explain

    def unreachable():
        raise OSError("offline")

    with pytest.raises(ConfigError) as error:
        load_or_explain("thing", "org/x", parameter, unreachable, repo_type=repo_type)
    assert hint in str(error.value)


# --- the run's record -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """test_paper_scale's tiny models: a policy of 64 positions, far fewer than real hh-rlhf
    prompts (up to 750 words) take; evaluation keeps each prompt's end, as training does."""
    from test_paper_scale import save_models

    return save_models(tmp_path_factory.mktemp("models"))


def small_safety(models, dataset, **extra):
    return {
        **dict(
            scale="small", policy=models["policy"], dataset=dataset, steps=2, batch_size=4,
            n_pairs=8, n_eval_prompts=3, max_new_tokens=4, max_length=32,
            reward_models={"helpfulness": models["reward-a"], "harmlessness": models["reward-b"]},
        ),
        **extra,
    }  # fmt: skip


def test_a_small_scale_run_records_the_skipped_rows(models, quirky_hh, tmp_path):
    params = small_safety(models, quirky_hh, n_pairs=40)
    config = resolve_config("ls", "safety", [0.5, 0.5], 0, None, params)
    assert config.task_params["strict"] is False
    with pytest.warns(SkippedRowsWarning):
        record = execute(config)
    assert record.status == "ok", record.reason
    assert record.skipped_rows == {
        f"{quirky_hh} ({subset}, train)": HH_SKIPPED for subset in ("helpful-base", "harmless-base")
    }
    path = write_record(record, tmp_path / "results")
    assert json.loads(path.read_text())["skipped_rows"] == record.skipped_rows
    assert read_record(path).skipped_rows == record.skipped_rows


def test_a_strict_small_scale_run_stops_at_the_quirk(models, quirky_hh):
    config = resolve_config(
        "ls",
        "safety",
        [0.5, 0.5],
        0,
        None,
        small_safety(models, quirky_hh, n_pairs=40, strict=True),
    )
    with pytest.raises(ConfigError, match="strict=true makes a row with a known quirk an error"):
        execute(config)


def test_the_tiny_scale_has_no_strict_parameter_and_records_no_skipped_rows(tmp_path):
    """Tiny configs, keys and record files are as before."""
    with pytest.raises(ConfigError, match="strict: the small and paper scales only"):
        resolve_config("ls", "safety", [0.5, 0.5], 0, None, {"strict": True})
    config = resolve_config("ls", "safety", [0.5, 0.5], 0, None, {})
    assert "strict" not in config.task_params
    committed = Path(__file__).parents[1] / "leaderboard" / "results"
    record = next(
        r
        for r in map(read_record, sorted(committed.glob("*.json")))
        if (r.config.task, r.config.algorithm) == ("safety", "ls")
    )
    assert reresolve(record).key == record.key
    path = write_record(record, tmp_path)
    assert "skipped_rows" not in json.loads(path.read_text())


# --- the real file ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not (HH_RLHF_DIR / "harmless-base" / "test.jsonl.gz").is_file(),
    reason=f"no copy of Anthropic/hh-rlhf at {HH_RLHF_DIR} (set MOABENCH_HH_RLHF_DIR to a folder "
    "holding harmless-base/test.jsonl.gz, e.g. a clone of github.com/anthropics/hh-rlhf)",
)
def test_the_real_hh_rlhf_harmless_base_test_file(tmp_path, models):
    """Its 2,312 rows: 4 with an empty final answer, 5 whose prompts differ, 2,303 pairs; a small
    scale run reads it through `load_dataset` and records the counts."""
    from moabench.language.loading import load_rows

    rows = load_rows(str(HH_RLHF_DIR), "dataset", "test", "harmless-base")
    assert len(rows) == 2312
    in_file_order = enumerate(rows, start=1)
    with pytest.warns(SkippedRowsWarning, match="skipped 9 row"):
        pairs, skipped = read_hh_rlhf(in_file_order, 1, 2, "harmless-base")
    assert len(pairs) == 2303
    assert skipped == {"empty final answer": 4, "prompts differ": 5}
    with pytest.raises(ConfigError, match="harmless-base, row 87: empty final answer"):
        read_hh_rlhf(enumerate(rows, start=1), 1, 2, "harmless-base", strict=True)

    # the small setup reads split "train" of both subsets: here both are the real test file
    for subset in ("helpful-base", "harmless-base"):
        (tmp_path / subset).mkdir()
        (tmp_path / subset / "train.jsonl.gz").symlink_to(
            HH_RLHF_DIR / "harmless-base" / "test.jsonl.gz"
        )
    params = small_safety(models, str(tmp_path), n_pairs=4600, n_eval_prompts=8)
    with pytest.warns(SkippedRowsWarning):
        record = execute(resolve_config("ls", "safety", [0.5, 0.5], 0, None, params))
    assert record.status == "ok", record.reason
    assert record.skipped_rows == {
        f"{tmp_path} ({subset}, train)": {"prompts differ": 5, "empty final answer": 4}
        for subset in ("helpful-base", "harmless-base")
    }


def test_a_prompt_longer_than_the_policy_reads_keeps_its_end_at_evaluation(models):
    """Sampling a 200-word prompt from a 64-position policy: the prompt loses its beginning to
    fit max_length - max_new_tokens tokens (it used to index past the position embeddings)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moabench.language.hub import generate_text

    policy = AutoModelForCausalLM.from_pretrained(models["policy"])
    tokenizer = AutoTokenizer.from_pretrained(models["policy"])
    long_prompt = " ".join(["how to bake"] * 70)
    responses = generate_text(
        policy, tokenizer, [long_prompt, "how to cook"], max_new_tokens=4, seed=0,
        batch_size=2, device="cpu", max_length=32,
    ).responses  # fmt: skip
    assert len(responses) == 2


def test_generation_must_leave_room_for_the_prompt(models):
    with pytest.raises(ConfigError, match="max_new_tokens 32 leaves no room"):
        resolve_config(
            "ls", "safety", [0.5, 0.5], 0, None, small_safety(models, "x.jsonl", max_new_tokens=32)
        )
