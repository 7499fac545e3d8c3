"""Front training (issue 20): the sweep's points of one front as one job (`front_jobs`,
`run_front`), each point still claimed, recorded and failed on its own, and the same records as
points run one by one; the per-process caches that the points of a front share."""

import json
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import typer

import moabench.cli
from moabench import GramRule, register_algorithm
from moabench.core.task import make_task
from moabench.language import tiny
from moabench.runs.records import load_records, record_path
from moabench.runs.runner import front_key, resolve_config, run_and_record, run_front
from moabench.runs.sweep import SweepConfig, front_jobs, plan_sweep, run_sweep
from test_sweep import start_tagged_sweep

FAST = {"zdt1": {"steps": 5}}


@register_algorithm("nan-at-first-vertex")
class NaNAtFirstVertex(GramRule):
    """Test-only: linear scalarization, except NaN coefficients at the preference e_1."""

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        w = np.asarray(self.preference, dtype=float)
        return np.full(len(w), np.nan) if w[0] == 1 else w


def zdt1_plan(seeds, algorithm="ls", partitions=2):
    config = SweepConfig(algorithms=[algorithm], tasks=["zdt1"], seeds=seeds,
                         partitions=partitions, task_params=FAST)  # fmt: skip
    return plan_sweep(config).configs


def test_front_jobs_hold_one_front_each_in_the_plan_s_order():
    plan = zdt1_plan([0, 1])  # preference-major: (w0, s0), (w0, s1), (w1, s0), ...
    jobs = front_jobs(plan, workers=1)
    assert [[c.seed for c in job] for job in jobs] == [[0, 0, 0], [1, 1, 1]]
    points = [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    assert [[c.preference for c in job] for job in jobs] == [points, points]
    assert all(len({front_key(c) for c in job}) == 1 for job in jobs)
    assert front_jobs(plan, workers=2) == jobs  # two fronts: one each


def test_fewer_fronts_than_workers_are_cut_into_chunks():
    plan = zdt1_plan([0], partitions=4)  # one front of 5 points
    jobs = front_jobs(plan, workers=2)
    assert [[c.preference[0] for c in job] for job in jobs] == [[0.0, 0.5, 1.0], [0.25, 0.75]]
    assert len(front_jobs(plan, workers=8)) == 5  # never an empty job


def test_a_point_that_diverges_fails_alone_and_the_front_goes_on(tmp_path):
    plan = zdt1_plan([0], algorithm="nan-at-first-vertex")
    records = run_front(plan, tmp_path)
    assert [r.status for r in records] == ["ok", "ok", "failed"]  # e_1 = [1, 0] comes last
    assert "non-finite coefficients" in records[2].reason
    assert {r.key for r in load_records(tmp_path).records} == {c.key() for c in plan}


def test_a_front_skips_its_points_recorded_or_claimed_elsewhere(tmp_path):
    plan = zdt1_plan([0])
    done = run_and_record(plan[0], tmp_path)
    before = record_path(tmp_path, plan[0].key()).read_bytes()
    claim = tmp_path / ".claims" / f"{plan[1].key()}.claim"
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))  # alive
    records = run_front(plan, tmp_path)
    assert records[0] is None and records[1] is None and records[2].status == "ok"
    assert done.status == "ok" and record_path(tmp_path, plan[0].key()).read_bytes() == before
    assert not record_path(tmp_path, plan[1].key()).exists()


def comparable(results_dir):
    """Each record without what depends on when and where it ran (its wall time, provenance)."""
    out = {}
    for record in load_records(results_dir).records:
        data = record.model_dump(mode="json", exclude={"provenance"})
        data["cost"].pop("wall_time_s")
        out[record.key] = data
    return out


@pytest.mark.parametrize("paradigm", ["preference", "online"])
def test_a_front_trained_together_writes_the_records_of_points_run_one_by_one(
    tmp_path, paradigm
):
    """ls on tiny safety, 3 points: each point in its own fresh worker (separate, one job per
    point on 2 workers) and the front as one job in one worker, whose later points hit the
    process's caches (the reference, its evaluation, the pairs): the same records, bit for bit."""
    params = {"safety": {"paradigm": paradigm, "steps": 4, "n_eval_prompts": 16}}
    configs = plan_sweep(SweepConfig(algorithms=["ls"], tasks=["safety"], seeds=[0],
                                     partitions=2, task_params=params)).configs  # fmt: skip
    run_sweep(configs, tmp_path / "separate", workers=2, front_training="separate")
    summary = run_sweep(configs, tmp_path / "together", workers=1, front_training="together")
    assert summary.ok == 3
    together = comparable(tmp_path / "together")
    assert together == comparable(tmp_path / "separate") and len(together) == 3


def test_the_reference_s_evaluation_is_shared_with_the_random_state_it_leaves():
    task = make_task("safety", n_eval_prompts=8)
    tokenizer = tiny.task_tokenizer(task)
    prompts = tiny.evaluation_prompts(task)
    tiny._EVALUATIONS.clear()
    first = tiny.evaluate_policy(task, tiny.task_reference(task, tokenizer), tokenizer, prompts)
    after = tiny.torch.rand(3)
    tiny.torch.manual_seed(99)  # a different state before the second evaluation
    policy = tiny.task_reference(task, tokenizer)  # a copy of the same loaded reference
    assert tiny.evaluate_policy(task, policy, tokenizer, prompts) == first
    assert tiny.torch.equal(tiny.torch.rand(3), after) and policy.training
    assert len(tiny._EVALUATIONS) == 1
    with tiny.torch.no_grad():
        next(policy.parameters()).add_(1e-3)  # other weights: evaluated again
    tiny.evaluate_policy(task, policy, tokenizer, prompts)
    assert len(tiny._EVALUATIONS) == 2


def test_the_cli_trains_fronts_together_on_local_workers_only(cli, tmp_path, monkeypatch):
    args = ("sweep", "--algo", "ls", "--task", "zdt1", "--seeds", "0", "--partitions", "1",
            "--task-param", "steps=5", "--results-dir", str(tmp_path))  # fmt: skip
    result = cli(*args, "--front-training", "together", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*.json"))) == 2

    chosen = []

    def sweep_stub(*args, front_training, **kwargs):
        chosen.append(front_training)
        raise typer.Exit(0)

    monkeypatch.setattr(moabench.cli, "run_sweep", sweep_stub)
    cli(*args)
    assert chosen == ["together"]  # the default
    refused = cli(*args, "--front-training", "together", "--executor", "ray")
    assert refused.exit_code != 0 and "Ray runs each point" in refused.output


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_ctrl_c_stops_a_sweep_of_fronts_and_leaves_only_whole_records(tmp_path):
    results, tag = tmp_path / "results", f"front-ctrl-c-{os.getpid()}"
    process = start_tagged_sweep(results, tag, options=("--front-training", "together"))
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    stopped_at = sorted(p.name for p in results.glob("*.json"))
    time.sleep(1.5)
    assert sorted(p.name for p in results.glob("*.json")) == stopped_at  # no run started after
    message = " ".join(stderr.split())
    assert f"{len(stopped_at)} runs finished in this sweep" in message
    assert load_records(results).skipped == []
    assert not list((results / ".claims").glob("*")), "the workers released their claims"
