"""Sweeps: planning, failures that do not stop the sweep, resume, workers, reproducibility."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moabench.core.algorithm import Paradigm
from moabench.core.errors import ConfigError
from moabench.runs.records import load_records
from moabench.runs.sweep import SweepConfig, plan_sweep, run_sweep

FAST = {"zdt1": {"steps": 5}, "dtlz2": {"steps": 5}}


def test_plan_expands_groups_and_uses_the_lattice_per_task():
    plan = plan_sweep(
        SweepConfig(
            algorithms=["ls", "mgda"], tasks=["zdt1", "dtlz2"], seeds=[0, 1], task_params=FAST
        )
    )
    per_task = {}
    for config in plan.configs:
        per_task[config.task] = per_task.get(config.task, 0) + 1
    assert per_task == {"zdt1": 2 * 11 * 2, "dtlz2": 2 * 15 * 2}
    assert len({c.key() for c in plan.configs}) == len(plan.configs)
    analytic = plan_sweep(SweepConfig(algorithms=["ls"], tasks=["analytic"], seeds=[0]))
    assert {"zdt1", "zdt2", "fonseca", "cagrad-toy", "dtlz2"} <= {c.task for c in analytic.configs}


def test_the_standard_seeds_are_the_power_analysis_counts_per_paradigm(monkeypatch):
    """Issue 23: without --seeds a sweep takes each paradigm's seed count from the power
    analysis (38 analytic, 19 preference pairs, 23 online); a plugin task may give one count."""
    from moabench.tasks.safety import Safety

    plan = plan_sweep(SweepConfig(algorithms=["ls"], tasks=["zdt1", "safety"], partitions=1))
    seeds = {}
    for config in plan.configs:
        seeds.setdefault(config.task_params.get("paradigm", config.task), set()).add(config.seed)
    assert seeds == {"zdt1": set(range(38)), "preference": set(range(19)),
                     "online": set(range(23))}  # fmt: skip
    monkeypatch.setattr(Safety, "standard_seeds", 3)
    assert Safety.seeds(Paradigm.ONLINE) == Safety.seeds(Paradigm.PREFERENCE) == [0, 1, 2]
    monkeypatch.setattr(Safety, "standard_seeds", {"preference": 2})
    with pytest.raises(ConfigError, match="standard_seeds gives no count for online training"):
        Safety.seeds(Paradigm.ONLINE)


def test_naming_a_task_s_only_paradigm_is_the_same_run():
    """`--task online --task-param paradigm=online` once gave math runs keys of their own,
    duplicates of the standard suite's; a task's only paradigm now leaves the key as it was."""
    params = {"math": {"paradigm": "online"}, "safety": {"paradigm": "online"}}
    named = plan_sweep(SweepConfig(algorithms=["ls"], tasks=["online"], seeds=[0], partitions=1,
                                   task_params=params)).configs  # fmt: skip
    plain = plan_sweep(SweepConfig(algorithms=["ls"], tasks=["math"], seeds=[0],
                                   partitions=1)).configs  # fmt: skip
    math_keys = {c.key() for c in named if c.task == "math"}
    assert math_keys == {c.key() for c in plain} and len(math_keys) == 3


def test_a_standard_variant_is_its_own_configuration_where_it_pairs_with_the_paradigm():
    """Issue 23: hypervolume-guided dynamic weighting runs as its own row, online only, unless
    the sweep gives the algorithm parameters of its own."""
    plan = plan_sweep(
        SweepConfig(algorithms=["dynamic-weighting"], tasks=["safety", "zdt1"], seeds=[0],
                    partitions=2)
    )  # fmt: skip
    runs = {}
    for config in plan.configs:
        where = (config.task, config.task_params.get("paradigm"))
        guided = config.algorithm_params["hypervolume_guided"]
        runs[where, guided] = runs.get((where, guided), 0) + 1
    assert runs == {
        (("safety", "preference"), False): 3,
        (("safety", "online"), False): 3,
        (("safety", "online"), True): 3,
        (("zdt1", None), False): 3,
    }
    chosen = plan_sweep(
        SweepConfig(algorithms=["dynamic-weighting"], tasks=["safety"], seeds=[0], partitions=2,
                    algorithm_params={"dynamic-weighting": {"mu": 1e-5}})
    )  # fmt: skip
    assert len(chosen.configs) == 6  # preference and online, the user's parameters only
    assert not any(c.algorithm_params["hypervolume_guided"] for c in chosen.configs)


def test_a_diverging_run_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    plan = plan_sweep(
        SweepConfig(
            algorithms=["nan-rule", "ls"], tasks=["zdt1"], seeds=[0], partitions=2, task_params=FAST
        )
    )
    summary = run_sweep(plan.configs, tmp_path)
    assert summary.ok == 3 and len(summary.failed) == 3
    records = load_records(tmp_path).records
    failed = [r for r in records if r.status == "failed"]
    assert len(failed) == 3 and all(r.config.algorithm == "nan-rule" for r in failed)
    assert all("diverged: step 0: non-finite coefficients" in r.reason for r in failed)


def test_rerunning_a_sweep_skips_finished_runs(tmp_path):
    plan = plan_sweep(
        SweepConfig(algorithms=["ls"], tasks=["zdt1"], seeds=[0], partitions=2, task_params=FAST)
    )
    first = run_sweep(plan.configs, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    second = run_sweep(plan.configs, tmp_path)
    assert (first.ok, second.ok, second.already_done) == (3, 0, 3)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.json")} == before


def objectives_by_key(results_dir):
    return {r.key: r.objectives for r in load_records(results_dir).records}


def test_two_workers_give_the_same_numbers_as_one(tmp_path):
    plan = plan_sweep(
        SweepConfig(
            algorithms=["raco", "dynamic-weighting"],
            tasks=["zdt1"],
            seeds=[0, 1],
            partitions=2,
            task_params=FAST,
        )
    )
    run_sweep(plan.configs, tmp_path / "one", workers=1)
    run_sweep(plan.configs, tmp_path / "two", workers=2)
    assert objectives_by_key(tmp_path / "one") == objectives_by_key(tmp_path / "two")
    assert len(objectives_by_key(tmp_path / "one")) == 12


def test_a_killed_sweep_resumes_without_losing_or_duplicating_records(tmp_path):
    results = tmp_path / "results"
    command = [sys.executable, "-m", "moabench", "sweep", "--algo", "ls,mgda,raco,upgrad",
               "--task", "zdt1,zdt2", "--seeds", "0,1", "--results-dir", str(results)]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(results.glob("*.json"))) < 10:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    survivors = {p.name: p.read_bytes() for p in results.glob("*.json")}
    sweep = SweepConfig(
        algorithms=["ls", "mgda", "raco", "upgrad"], tasks=["zdt1", "zdt2"], seeds=[0, 1]
    )
    expected = len(plan_sweep(sweep).configs)
    assert 10 <= len(survivors) < expected, "the kill should land mid-sweep"

    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(survivors)} already done" in resumed.stdout
    files = list(results.glob("*.json"))
    assert len(files) == expected
    assert all(json.loads(p.read_text())["key"] == p.stem for p in files)
    assert {p.name: p.read_bytes() for p in files if p.name in survivors} == survivors
    assert load_records(results).skipped == []


SLOW_SWEEP = ["--algo", "ls,mgda,raco,upgrad", "--task", "zdt1,zdt2,dtlz2",
              "--seeds", "0,1,2,3", "--workers", "2"]  # fmt: skip


def tagged_processes(tag: str) -> list[int]:
    """Processes whose environment holds MOABENCH_TEST_TAG=tag (a sweep and all it started)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"MOABENCH_TEST_TAG={tag}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            pass
    return found


def start_tagged_sweep(
    results: Path, tag: str, stderr=subprocess.PIPE, options: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`SLOW_SWEEP` (and `options`) in a new session, once it has written 20 records."""
    command = [
        sys.executable,
        "-m",
        "moabench",
        "sweep",
        *SLOW_SWEEP,
        *options,
        "--results-dir",
        str(results),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        start_new_session=True, env=os.environ | {"MOABENCH_TEST_TAG": tag},
        # a terminal's foreground job: a shell's background job (`.ci/run &`) ignores SIGINT,
        # and the sweep would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(results.glob("*.json"))) < 20:
        time.sleep(0.05)
    return process


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_ctrl_c_stops_a_sweep_and_its_workers_and_says_how_to_resume(tmp_path):
    results, tag = tmp_path / "results", f"ctrl-c-{os.getpid()}"
    process = start_tagged_sweep(results, tag)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # a second one, impatient
    # under 1 s on an idle machine; 60 s leaves room for a loaded one (the old code went on for
    # minutes, through the whole queue)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    message = " ".join(stderr.split())
    assert "interrupted:" in message and "run the same command again to resume" in message
    assert wait_until(lambda: not tagged_processes(tag), 10), "workers outlived the sweep"
    stopped_at = sorted(p.name for p in results.glob("*.json"))
    time.sleep(1.5)
    assert sorted(p.name for p in results.glob("*.json")) == stopped_at  # no run started after
    assert f"{len(stopped_at)} runs finished in this sweep" in message
    assert load_records(results).skipped == []


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_a_sweep_killed_with_sigkill_leaves_no_process_behind(tmp_path):
    tag = f"sigkill-{os.getpid()}"
    process = start_tagged_sweep(tmp_path / "results", tag, stderr=subprocess.DEVNULL)
    os.kill(process.pid, signal.SIGKILL)  # the main process only
    process.wait(timeout=20)
    left = wait_until(lambda: not tagged_processes(tag), 15)
    for pid in tagged_processes(tag):  # clean up after a failure
        os.kill(pid, signal.SIGKILL)
    assert left, "workers, forkserver or resource tracker outlived the killed sweep"


def test_two_sweeps_on_one_folder_never_run_a_run_twice(tmp_path):
    results = tmp_path / "results"
    command = [sys.executable, "-m", "moabench", "sweep", "--algo", "ls,mgda,raco,upgrad",
               "--task", "zdt1,zdt2", "--seeds", "0,1", "--workers", "1",
               "--results-dir", str(results)]  # fmt: skip
    sweeps = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [" ".join(sweep.communicate(timeout=300)[0].split()) for sweep in sweeps]
    assert all(sweep.returncode == 0 for sweep in sweeps), outputs
    expected = len(
        plan_sweep(
            SweepConfig(
                algorithms=["ls", "mgda", "raco", "upgrad"], tasks=["zdt1", "zdt2"], seeds=[0, 1]
            )  # fmt: skip
        ).configs
    )
    ran = [int(re.search(r"already done, (\d+) ok", out).group(1)) for out in outputs]
    assert sum(ran) == expected, outputs  # each run ran once, in one of the two sweeps
    assert len(list(results.glob("*.json"))) == expected
    assert not list((results / ".claims").glob("*")), "claims are released"


def test_an_expired_claim_is_taken_over_and_a_live_one_is_respected(tmp_path):
    from moabench.runs import claims

    path = claims.claim_path(tmp_path, "k")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    assert not claims.try_claim(tmp_path, "k")  # alive: this very process
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    assert claims.try_claim(tmp_path, "k")  # its owner is gone
    path.write_text(json.dumps({"host": "another-host", "pid": 1}))
    assert not claims.try_claim(tmp_path, "k")  # fresh, on another host
    stale = time.time() - claims.EXPIRY_S - 1
    os.utime(path, (stale, stale))
    assert claims.try_claim(tmp_path, "k")  # not touched for longer than the expiry


# --- issue 22: nothing lost, nothing hung -------------------------------------------------------

TINY_SWEEP = ("sweep", "--algo", "ls", "--task", "zdt1", "--seeds", "0", "--partitions", "1",
              "--task-param", "steps=5")  # fmt: skip


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda r: r.update(schema_version=2), "schema_version 2, this moabench reads 1"),
        (lambda r: r.update(written_by_a_newer_version=True), "written_by_a_newer_version"),
        (lambda r: r["config"].update(new_parameter=1), "new_parameter"),
    ],
)
def test_a_record_this_version_cannot_read_is_kept_and_not_run_again(cli, tmp_path, tamper, reason):
    first = cli(*TINY_SWEEP, "--results-dir", str(tmp_path))
    assert first.exit_code == 0, first.output
    newer, _ = sorted(tmp_path.glob("*.json"))
    record = json.loads(newer.read_text())
    tamper(record)
    newer.write_text(json.dumps(record))
    before = {p: p.read_bytes() for p in tmp_path.glob("*.json")}
    again = cli(*TINY_SWEEP, "--results-dir", str(tmp_path))
    assert again.exit_code == 0, again.output
    output = " ".join(again.output.split())
    assert "2 runs: 1 already done, 0 ok, 0 failed, 1 kept unread" in output
    assert f"warning: kept {newer} as it is, and did not run it again" in output
    assert reason in output
    assert {p: p.read_bytes() for p in tmp_path.glob("*.json")} == before
    preference = ",".join(map(str, json.loads(before[newer])["config"]["preference"]))
    single = cli("run", "--algo", "ls", "--task", "zdt1", "--preference", preference,
                 "--task-param", "steps=5", "--results-dir", str(tmp_path))  # fmt: skip
    assert single.exit_code == 2, single.output
    assert f"{newer} holds a record this version cannot read" in " ".join(single.output.split())
    assert newer.read_bytes() == before[newer]


def test_a_run_that_fails_for_its_setup_stops_the_sweep_and_writes_no_record(
    cli, tmp_path, monkeypatch
):
    """A full disk, a corrupt cache, an unreadable dataset are not the algorithm failing: no
    failed record (which the leaderboard would rank), the sweep stops, `run` says it in a line."""
    import errno

    from moabench.core.task import tasks

    def no_space(self, algorithm, seed):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tasks.get("zdt2"), "run", no_space)
    sweep = ("sweep", "--algo", "ls", "--task", "zdt1,zdt2,fonseca", "--seeds", "0",
             "--partitions", "1", "--results-dir", str(tmp_path))  # fmt: skip
    result = cli(*sweep)
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    assert "error: ls on zdt2, w=[0, 1], seed 0: OSError: [Errno 28] No space left on device; no " \
        "record written" in output  # fmt: skip
    assert "stopped: 2 runs finished in this sweep" in output
    records = load_records(tmp_path).records
    assert [r.config.task for r in records] == ["zdt1", "zdt1"]  # fonseca never started
    assert all(r.status == "ok" for r in records)
    run = cli("run", "--algo", "ls", "--task", "zdt2", "--results-dir", str(tmp_path / "one"))
    assert run.exit_code == 1
    assert "error: ls on zdt2, w=[0.5, 0.5], seed 0: OSError: [Errno 28] No space left on " \
        "device; no record written" in " ".join(run.output.split())  # fmt: skip
    assert not list((tmp_path / "one").glob("*.json"))


def test_a_diverging_run_is_still_a_failed_record_that_the_sweep_goes_past(cli, tmp_path):
    result = cli("sweep", "--algo", "nan-rule,ls", "--task", "zdt1", "--seeds", "0",
                 "--partitions", "1", "--results-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 runs: 0 already done, 2 ok, 2 failed" in " ".join(result.output.split())


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_a_record_that_cannot_be_written_stops_a_sweep_of_workers_at_once(tmp_path):
    results, tag = tmp_path / "results", f"write-error-{os.getpid()}"
    configs = plan_sweep(
        SweepConfig(
            algorithms=["ls", "mgda", "raco", "upgrad"], tasks=["zdt1", "zdt2", "dtlz2"],
            seeds=[0, 1, 2, 3],
        )  # fmt: skip
    ).configs
    # the first front's (ls, zdt1, seed 0) third point: configs go preference by preference,
    # each with its 4 seeds; fronts are trained together, so this is early in the first job
    blocked = results / f"{configs[2 * 4].key()}.json"
    blocked.mkdir(parents=True)  # a folder where a record should go
    process = subprocess.Popen(
        [sys.executable, "-m", "moabench", "sweep", *SLOW_SWEEP, "--results-dir", str(results)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"MOABENCH_TEST_TAG": tag},
    )  # fmt: skip
    # the old code trained on through the whole queue (592 runs) after the error
    _, stderr = process.communicate(timeout=120)
    message = " ".join(stderr.split())
    assert process.returncode == 1, stderr
    assert f"error: cannot write the record {blocked}: Is a directory" in message
    assert "Traceback" not in stderr and "stopped:" in message
    assert wait_until(lambda: not tagged_processes(tag), 10), "workers outlived the sweep"
    written = sorted(p.name for p in results.glob("*.json") if p.is_file())
    time.sleep(1.5)
    assert sorted(p.name for p in results.glob("*.json") if p.is_file()) == written
    assert len(written) < 20, "the queue went on after the error"
    assert not list((results / ".claims").glob("*")), "claims are released"


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("to", ["process group", "main process"])
def test_sigterm_stops_a_sweep_like_ctrl_c(tmp_path, to):
    """What a scheduler sends (to the job's process group, or to its main process) and what
    `kill PID` sends from a terminal: the summary line, every process gone, claims released."""
    results, tag = tmp_path / "results", f"sigterm-{to.split()[0]}-{os.getpid()}"
    process = start_tagged_sweep(results, tag)
    if to == "process group":
        os.killpg(process.pid, signal.SIGTERM)
    else:
        os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    message = " ".join(stderr.split())
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted:" in message and "run the same command again to resume" in message
    assert "Traceback" not in stderr and "leaked" not in stderr
    assert wait_until(lambda: not tagged_processes(tag), 10), "processes outlived the sweep"
    stopped_at = sorted(p.name for p in results.glob("*.json"))
    time.sleep(1.5)
    assert sorted(p.name for p in results.glob("*.json")) == stopped_at  # no run started after
    assert f"{len(stopped_at)} runs finished in this sweep" in message
    assert not list((results / ".claims").glob("*")), "claims are released"
    assert load_records(results).skipped == []


def test_seeds_are_bounded_where_they_are_parsed(cli, tmp_path):
    too_big = str(2**32)
    run = cli("run", "--algo", "ls", "--task", "zdt1", "--seed", too_big,
              "--results-dir", str(tmp_path))  # fmt: skip
    assert run.exit_code == 2 and "--seed" in run.output
    for seeds in (f"0,{too_big}", "-1", str(2**70)):
        sweep = cli(*TINY_SWEEP[:5], "--seeds", seeds, "--results-dir", str(tmp_path))
        assert sweep.exit_code == 2, sweep.output
        assert "a seed is 0 <= seed < 2**32" in " ".join(sweep.output.split())
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"algorithms": ["ls"], "tasks": ["zdt1"], "seeds": [2**70]}))
    from_file = cli("sweep", "--config", str(config), "--results-dir", str(tmp_path / "results"))
    assert from_file.exit_code == 2 and "field 'seeds.0'" in from_file.output
    assert not (tmp_path / "results").exists()


def test_workers_are_capped_at_what_the_machine_has(cli, tmp_path):
    from moabench.runs.sweep import usable_workers

    cap = usable_workers(10_000)
    assert 1 <= cap <= (os.cpu_count() or 1)
    result = cli(*TINY_SWEEP, "--workers", "10000", "--results-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"notice: --workers 10000 capped at {cap}" in " ".join(result.output.split())


def test_the_plan_s_size_comes_first_and_a_huge_grid_needs_confirming(cli, tmp_path, monkeypatch):
    from moabench.runs import sweep

    small = cli(*TINY_SWEEP, "--results-dir", str(tmp_path))
    assert "plan: 2 runs" in " ".join(small.output.split())

    def never(*args, **kwargs):
        raise AssertionError("a run config was built for a refused plan")

    monkeypatch.setattr(sweep, "resolve_config", never)
    huge = SweepConfig(algorithms=["ls"], tasks=["dtlz2"], seeds=[0], partitions=1_000_000)
    with pytest.raises(sweep.PlanTooLargeError, match="500,001,500,001 runs, more than 20,000"):
        sweep.plan_sweep(huge, limit=sweep.CONFIRM_ABOVE_RUNS)
    refused = cli("sweep", "--algo", "ls", "--task", "zdt1,dtlz2", "--seeds", "0",
                  "--partitions", "1000000", "--results-dir", str(tmp_path / "huge"))  # fmt: skip
    assert refused.exit_code == 2
    message = " ".join(refused.output.split())
    assert "the sweep plans 500,002,500,002 runs, more than 20,000" in message
    assert "--yes" in message
    assert not (tmp_path / "huge").exists()
