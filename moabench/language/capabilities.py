"""Capability retention ("alignment tax"): lm-evaluation-harness tasks run on the trained policy,
recorded next to the objectives. Optional (`pip install "moabench[lm-eval]"`); set
`--task-param lm_eval_tasks='["arc_easy"]'` at the small/paper scales, with
`lm_eval_include_path` for a folder of your own task YAMLs and `lm_eval_limit` to cap the number
of examples per task.
"""

from __future__ import annotations

from typing import Any

from moabench.core.errors import ConfigError


def capability_scores(
    model: Any,
    tokenizer: Any,
    tasks: list[str],
    include_path: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """{"<task>/<metric>": value} for every numeric metric lm-eval reports on `tasks`."""
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError(
            "lm_eval_tasks needs lm-evaluation-harness: pip install 'moabench[lm-eval]'"
        ) from None
    manager = TaskManager(include_path=include_path)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ConfigError(
            f"lm_eval_tasks: unknown lm-eval task(s) {unknown}"
            + ("" if include_path else " (custom tasks need lm_eval_include_path)")
        )
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA: in place
    was_training = base.training
    results = simple_evaluate(
        model=HFLM(pretrained=base, tokenizer=tokenizer, batch_size=batch_size),
        tasks=tasks,
        task_manager=manager,
        limit=limit,
        log_samples=False,
        verbosity="ERROR",
    )
    base.train(was_training)
    scores = {}
    for task, metrics in sorted(results["results"].items()):
        for metric, value in sorted(metrics.items()):
            name, _, _ = metric.partition(",")  # "acc,none": a metric and its filter
            if "," in metric and "stderr" not in name and isinstance(value, int | float):
                scores[f"{task}/{name}"] = float(value)
    return scores
