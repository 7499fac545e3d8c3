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

    def sample(prompts: list[str], seed: int) -> list[str]:
        sampled.append(len(prompts))
        return [
            problem.sample([prompt], zlib.crc32(prompt.encode()) + i % task.params.group_size)[0]
            for i, prompt in enumerate(prompts)
        ]

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
