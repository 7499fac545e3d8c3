"""Data parallelism (`moabench.core.distributed`) on two CPU processes (gloo): the rule sees the
global batch's Gram matrix, and a launched run writes one record that says so."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from moabench import make_task
from moabench.algorithms.ls import LinearScalarization
from moabench.algorithms.mgda import MGDA
from moabench.core.determinism import one_torch_thread
from moabench.core.distributed import data_parallel, processes, rank, shard
from moabench.core.errors import ConfigError
from moabench.core.gradients import combine_micro_batches
from moabench.language import tiny
from moabench.language.lm import Samples, concatenate
from moabench.language.online import train_online
from moabench.language.preference import train_preference
from moabench.language.training import gram_modules

GLOBAL_BATCH = 8  # rows of the core problem, preference pairs, prompt groups x 2


class Recording(MGDA):
    """MGDA that keeps every Gram matrix it is given and the coefficients it returns."""

    def __init__(self, preference) -> None:
        super().__init__(preference)
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        coefficients = super().coefficients(gram, learning_rate)
        self.seen.append((gram.copy(), coefficients.copy()))
        return coefficients


def core_step(rule, gram_subset: bool) -> dict[str, np.ndarray]:
    """One `combine_micro_batches` step of 3 squared errors of a small network on this process's
    share of a global batch of 8 rows, in micro-batches of 2."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(GLOBAL_BATCH, 4, generator=generator), torch.randn(GLOBAL_BATCH, 3)
    rows = torch.arange(GLOBAL_BATCH)[shard(GLOBAL_BATCH, "rows")]
    parameters = list(model.parameters())
    coefficients = combine_micro_batches(
        [lambda part=part: ((model(x[part]) - y[part]) ** 2).mean(dim=0) for part in rows.split(2)],
        parameters,
        rule,
        gram_parameters=parameters[2:] if gram_subset else None,
    )
    gram = rule.seen[0][0] if isinstance(rule, Recording) else np.empty(0)
    return {
        "coefficients": coefficients,
        "gram": gram,
        "grad": torch.cat([p.grad.flatten() for p in parameters]).numpy(),
    }


def without_dropout(policy: torch.nn.Module) -> None:
    for module in policy.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def preference_step() -> dict[str, np.ndarray]:
    """The first step of the tiny safety task's DPO trainer (no dropout, so that the step is a
    function of the batch), and the pair rows this process forwarded in training."""
    task = make_task(
        "safety", paradigm="preference", steps=1, batch_size=GLOBAL_BATCH, micro_batch_size=2
    )
    problem = tiny.preference_problem(task)
    without_dropout(problem.policy)
    problem = dataclasses.replace(problem, evaluate=lambda policy: [0.0, 0.0])
    trained_rows = []
    problem.policy.register_forward_pre_hook(
        lambda module, args, kwargs: (
            trained_rows.append(len(kwargs["input_ids"])) if module.training else None
        ),
        with_kwargs=True,
    )
    rule = Recording([0.5, 0.5])
    train_preference(problem, rule, seed=0, params=task.params, m=2)
    return step_result(rule, problem.policy) | {"trained_rows": np.array(sum(trained_rows))}


def online_step(micro_batch_size: int | None = None) -> dict[str, np.ndarray]:
    """The first step of the tiny safety task's online trainer with responses that depend on the
    prompt and the position in its group only (not on the process), so that the global batch is
    the same on one or two processes; and the responses this process sampled."""
    task = make_task(
        "safety", paradigm="online", steps=1, prompts_per_step=GLOBAL_BATCH // 2, group_size=4,
        micro_batch_size=micro_batch_size,
    )  # fmt: skip
    problem = tiny.online_problem(task)
    sampled = []

    def sample(prompts: list[str], seed: int) -> Samples:
        sampled.append(len(prompts))
        return concatenate(
            [problem.sample([prompt], zlib.crc32(prompt.encode()) + i % task.params.group_size)
             for i, prompt in enumerate(prompts)],
            pad_token_id=0,
        )  # fmt: skip

    fixed = dataclasses.replace(problem, sample=sample, evaluate=lambda: [0.0, 0.0])
    rule = Recording([0.5, 0.5])
    train_online(fixed, rule, seed=0, params=task.params, m=2)
    return step_result(rule, problem.policy) | {"sampled": np.array(sum(sampled))}


def step_result(rule: Recording, policy: torch.nn.Module) -> dict[str, np.ndarray]:
    gram, coefficients = rule.seen[0]
    grad = torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None])
    return {"gram": gram, "coefficients": coefficients, "grad": grad.numpy()}


def scenarios() -> dict[str, dict[str, np.ndarray]]:
    """Every first step compared, on one process or as one of the launched ones."""
    with one_torch_thread():
        return {
            "jacobian": core_step(Recording(np.ones(3) / 3), gram_subset=False),
            "gram-subset": core_step(Recording(np.ones(3) / 3), gram_subset=True),
            "ls": core_step(LinearScalarization(np.ones(3) / 3), gram_subset=False),
            "preference": preference_step(),
            "online": online_step(),
            "online-micro-batches": online_step(micro_batch_size=2),
        }


def config_errors() -> dict[str, str]:
    """What two processes refuse: an unequal share, and autogram's per-process Gram matrix."""
    errors = {}
    for name, attempt in {
        "shard": lambda: shard(GLOBAL_BATCH + 1, "batch_size"),
        "autogram": lambda: gram_modules(
            torch.nn.Linear(2, 2),
            dataclasses.make_dataclass("P", [("gram_engine", str), ("gram_parameters", str)])(
                "autogram", "all"
            ),
            MGDA([0.5, 0.5]),
            micro_batches=1,
        ),
    }.items():
        try:
            attempt()
        except ConfigError as error:
            errors[name] = str(error)
    return errors


def worker(index: int, port: int, out: str) -> None:
    os.environ.update(
        WORLD_SIZE="2", RANK=str(index), LOCAL_RANK=str(index), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )  # fmt: skip
    with data_parallel() as n:
        assert (n, processes(), rank()) == (2, 2, index)
        torch.save(
            {"steps": scenarios(), "errors": config_errors()}, os.path.join(out, f"{index}.pt")
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_see_the_global_batch(tmp_path):
    """Two processes, each on half of the global batch, compute the first step's Gram matrix,
    coefficients and gradients of one process on the whole batch (to 1e-5), for the Jacobian
    path, a Gram subset, a rule without Gram matrix, and both language trainers (online also in
    micro-batches)."""
    one = scenarios()  # also trains and caches the tiny reference policy for the workers
    torch.multiprocessing.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"{i}.pt", weights_only=False) for i in range(2)]
    for name, expected in one.items():
        for result in results:
            for what in ("gram", "coefficients", "grad"):
                np.testing.assert_allclose(
                    result["steps"][name][what], expected[what], rtol=1e-5, atol=1e-7,
                    err_msg=f"{name}: {what}",
                )  # fmt: skip
    assert not np.allclose(one["jacobian"]["coefficients"], 1 / 3, atol=1e-3)  # MGDA acted
    # each process trained on its half: pairs a and b of 4 pairs, responses of 2 prompt groups
    assert one["preference"]["trained_rows"] == 2 * GLOBAL_BATCH
    assert [r["steps"]["preference"]["trained_rows"] for r in results] == [GLOBAL_BATCH] * 2
    assert [r["steps"]["online"]["sampled"] for r in results] == [one["online"]["sampled"] // 2] * 2
    for result in results:
        assert "batch_size=9 must be divisible by the 2 processes" in result["errors"]["shard"]
        assert "gram_engine='autogram' on 2 processes" in result["errors"]["autogram"]


LAUNCH = [
    sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "moabench",
]  # fmt: skip


@pytest.mark.slow
def test_a_launched_run_writes_one_record_of_two_processes(tmp_path):
    """`accelerate launch` (its torchrun launcher, --multi_gpu, which also serves CPUs) of
    `moabench run`: process 0 alone writes and prints; the record's provenance counts 2."""
    run = [*LAUNCH, "run", "--algo", "mgda", "--task", "safety", "--results-dir", str(tmp_path)]
    task_params = ["paradigm=preference", "steps=2", "batch_size=8", "n_eval_prompts=8"]
    for assignment in task_params:
        run += ["--task-param", assignment]
    result = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok"
    assert record["provenance"]["num_processes"] == 2
    assert result.stdout.count("record:") == 1


@pytest.mark.slow
def test_a_launched_sweep_is_refused(tmp_path):
    sweep = [*LAUNCH, "sweep", "--task", "safety", "--results-dir", str(tmp_path)]
    result = subprocess.run(sweep, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "error: sweep under a launcher of 2 processes" in result.stderr + result.stdout
    assert not list(tmp_path.glob("*.json"))


def test_one_process_records_one_process(tmp_path):
    from moabench.runs.records import run_provenance

    assert processes() == 1 and rank() == 0
    assert run_provenance()["num_processes"] == 1


# --- failures, devices, initial parameters and statistics across processes (issue 21) ----------


def failing_worker(index: int, port: int, out: str) -> None:
    """Process 1's sampling fails at the first step; process 0's goes on to gather the rewards."""
    os.environ.update(
        WORLD_SIZE="2", RANK=str(index), LOCAL_RANK=str(index), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )  # fmt: skip
    from moabench.core.task import DivergedError

    with data_parallel(), one_torch_thread():
        task = make_task("safety", paradigm="online", steps=1, prompts_per_step=2, group_size=2)
        problem = tiny.online_problem(task)

        def sample(prompts: list[str], seed: int) -> Samples:
            if rank() == 1:
                raise DivergedError("sampling failed: probability tensor contains nan")
            return problem.sample(prompts, seed)

        fixed = dataclasses.replace(problem, sample=sample, evaluate=lambda: [0.0, 0.0])
        try:
            train_online(fixed, MGDA([0.5, 0.5]), seed=0, params=task.params, m=2)
            outcome = "trained"
        except DivergedError as error:
            outcome = f"diverged: {error}"
        with open(os.path.join(out, f"{index}.txt"), "w") as handle:
            handle.write(outcome)


def spawn_or_fail(worker_function, tmp_path, seconds: float) -> None:
    """Two processes of `worker_function`; a test failure (not a hang) if they do not finish."""
    context = torch.multiprocessing.spawn(
        worker_function, args=(free_port(), str(tmp_path)), nprocs=2, join=False
    )
    waited = 0.0
    while not context.join(timeout=5):
        waited += 5
        if waited >= seconds:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the processes still run after {seconds:.0f} s: one waits for the other")


@pytest.mark.slow
def test_one_process_failing_to_sample_stops_both(tmp_path):
    """Sampling fails on process 1 only: process 0 raises the same error instead of waiting for
    process 1's rewards in a collective (both would then write a failed record, process 0's
    saying why)."""
    tiny.online_problem(make_task("safety", paradigm="online"))  # caches the reference policy
    spawn_or_fail(failing_worker, tmp_path, seconds=240)
    outcomes = [(tmp_path / f"{i}.txt").read_text() for i in range(2)]
    assert outcomes == ["diverged: sampling failed: probability tensor contains nan"] * 2


def collectives_worker(index: int, port: int, out: str) -> None:
    """Each process's view of: parameters initialised differently and broadcast, gradients
    averaged in buckets, and math's conciseness scored on each process's share."""
    os.environ.update(
        WORLD_SIZE="2", RANK=str(index), LOCAL_RANK=str(index), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )  # fmt: skip
    from moabench.core import distributed
    from moabench.language.hub import ShorterThanRunningMean

    with data_parallel():
        torch.manual_seed(index)  # each process initialises its own parameters
        model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
        distributed.broadcast_from_first(list(model.parameters()))
        for parameter in model.parameters():
            parameter.grad = torch.full_like(parameter, float(index + 1))
        distributed.BUCKET = 7  # several buckets of a few tensors each
        distributed.average_gradients(list(model.parameters()))
        score = ShorterThanRunningMean(lambda texts: np.array([len(t) for t in texts], float))
        shares = (["aaa", "a" * 9], ["a", "aaa"])  # lengths 3, 9 | 1, 3: global mean 4
        torch.save(
            {
                "parameters": [p.detach().clone() for p in model.parameters()],
                "grads": [p.grad.clone() for p in model.parameters()],
                "conciseness": score([], shares[index], evaluation=False).tolist(),
            },
            os.path.join(out, f"{index}.pt"),
        )


@pytest.mark.slow
def test_processes_start_equal_average_in_buckets_and_share_the_running_mean(tmp_path):
    torch.manual_seed(0)
    first = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
    spawn_or_fail(collectives_worker, tmp_path, seconds=240)
    results = [torch.load(tmp_path / f"{i}.pt") for i in range(2)]
    for result in results:
        for parameter, expected in zip(result["parameters"], first.parameters()):
            assert torch.equal(parameter, expected.detach())  # process 0's
        assert all(torch.equal(g, torch.full_like(g, 1.5)) for g in result["grads"])
    # the bar is the global batch's mean length, 4, on both processes (not 6 and 2)
    assert [r["conciseness"] for r in results] == [[1, 0], [1, 1]]


def test_the_process_group_is_joined_with_a_timeout(monkeypatch):
    from moabench.core import distributed

    joined = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: joined.update(kw))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: None)
    with data_parallel():
        pass
    assert joined["timeout"] == distributed.TIMEOUT


def test_a_process_without_a_gpu_of_its_own_is_an_error(monkeypatch):
    from moabench.core import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def join(**kwargs):
        raise AssertionError("joined the group on a GPU of another process")

    monkeypatch.setattr(distributed.dist, "init_process_group", join)
    with pytest.raises(ConfigError, match="local rank 1 has no GPU of its own.*has 1 visible"):
        with data_parallel():
            pass


@pytest.mark.parametrize("option", ["device", "reward_device"])
def test_a_device_index_under_a_launcher_is_an_error(monkeypatch, option):
    from moabench.core import distributed
    from moabench.language import hub

    monkeypatch.setattr(distributed, "processes", lambda: 2)
    prefix = "reward_" if option == "reward_device" else ""
    message = f"{prefix}device='cuda:1' on 2 processes.*without an index"
    with pytest.raises(ConfigError, match=message):
        hub.placement("cuda:1", None, prefix)


def test_accelerate_cpu_launch_of_several_processes_that_starts_one_is_an_error(monkeypatch):
    """`accelerate launch --cpu --num_processes 2` runs its simple launcher: one process, no
    WORLD_SIZE (its record said num_processes 1, truly); moabench refuses it."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(ConfigError, match="--cpu with --num_processes above 1 started one"):
        with data_parallel():
            pass


def test_num_processes_is_in_the_key_above_one_only():
    from moabench.runs.records import RunConfig

    one = RunConfig(algorithm="ls", task="safety", preference=[0.5, 0.5])
    assert "num_processes" not in one.model_dump()  # the keys of one-process records stay
    two = one.model_copy(update={"num_processes": 2})
    assert two.key() != one.key() and two.model_dump()["num_processes"] == 2
