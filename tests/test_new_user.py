"""What a new user sees: the README's flow (one-off runs, a small sweep, the leaderboard) gives a
leaderboard without empty or broken parts; runs and sweeps show their progress; `sweep` takes
`--param` / `--task-param`; the output reads well (issue 22, "What a new user sees")."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from moabench.core.task import make_task
from moabench.evaluation.leaderboard import build_leaderboard
from moabench.runs.records import load_records
from moabench.runs.runner import execute, resolve_config


class Sources(HTMLParser):
    """The images and links of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        elif tag == "a" and not attrs["href"].startswith("#"):
            self.sources.append(attrs["href"])


def assert_nothing_broken(board: Path) -> str:
    """Every image and link of LEADERBOARD.md and the page exists, no nan is shown, and no
    single-seed cell carries "(n=1)"; returns LEADERBOARD.md."""
    markdown = (board / "LEADERBOARD.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", markdown):
        assert (board / target).is_file(), target
    page = board / "site" / "index.html"
    sources = Sources()
    sources.feed(page.read_text())
    for target in sources.sources:
        assert (page.parent / target).resolve().is_file(), target
    for text in (markdown, page.read_text()):
        assert not re.search(r"\bnan\b", text, re.IGNORECASE) and "(n=1)" not in text
    for png in (board / "plots").glob("*.png"):
        assert png.with_suffix(".pdf").is_file(), png  # vector output beside every figure
    return markdown


def commands_in(markdown: str) -> list[str]:
    return re.findall(r"^    (moabench sweep .*)$", markdown, re.MULTILINE)


def test_the_readme_flow_gives_a_leaderboard_without_empty_or_broken_parts(cli, tmp_path):
    results = str(tmp_path / "results")
    for args in (
        ("--algo", "gapo", "--task", "zdt1"),
        ("--algo", "raco", "--task", "zdt2", "--preference", "0.3,0.7", "--param", "c=0.5"),
    ):
        assert cli("run", *args, "--results-dir", results).exit_code == 0
    sweep = cli("sweep", "--algo", "ls,gapo", "--task", "zdt1", "--seeds", "0",
                "--results-dir", results)  # fmt: skip
    assert sweep.exit_code == 0, sweep.output
    shown = cli("leaderboard", "--results-dir", results)
    assert shown.exit_code == 0, shown.output
    board = tmp_path / "results" / "leaderboard"
    assert f"{board / 'site' / 'index.html'}" in shown.stdout.replace("\n", "")
    markdown = assert_nothing_broken(board)

    # the aggregate over zdt1 and zdt2 is empty: it says why and what to run, and links no plot
    aggregate = markdown.split("## Across tasks: analytic")[1].split("\n## ")[0]
    assert "Nothing is pooled yet" in aggregate and "| algorithm |" not in aggregate
    assert "aggregate-analytic" not in markdown
    assert not (board / "plots" / "aggregate-analytic.png").exists()
    # zdt2 has only raco's one-off run: shown, marked not ranked, with the sweep that completes it
    zdt2 = markdown.split("## zdt2")[1]
    assert "Nothing is ranked yet" in zdt2 and "](plots/zdt2.png)" in zdt2
    assert commands_in(zdt2) == ["moabench sweep --algo raco --task zdt2 --seeds 0 --param c=0.5"]
    # one seed per algorithm: said once, not "(n=1)" in every cell
    assert "One complete front per algorithm" in markdown.split("## zdt1")[1]

    # the command the empty aggregate names fills it
    (fill,) = commands_in(aggregate)
    assert cli(*fill.split()[1:], "--results-dir", results).exit_code == 0
    assert cli("leaderboard", "--results-dir", results).exit_code == 0
    markdown = assert_nothing_broken(board)
    aggregate = markdown.split("## Across tasks: analytic")[1].split("\n## ")[0]
    assert "| gapo |" in aggregate and "| ls |" in aggregate and "| raco c=0.5 |" in aggregate
    assert "](plots/aggregate-analytic.png)" in aggregate


def test_a_table_without_a_complete_front_shows_no_hv_nan(cli, tmp_path):
    """Without an exact front the reference is the union of the complete fronts: none yet."""
    results = tmp_path / "results"
    assert (
        cli("run", "--algo", "ls", "--task", "zdt1", "--results-dir", str(results)).exit_code == 0
    )
    build_leaderboard(results, tmp_path / "board", reference_front=lambda task, params: None)
    markdown = assert_nothing_broken(tmp_path / "board")
    assert "Reference front: none yet" in markdown


def test_an_empty_results_folder_is_a_clear_error(cli, tmp_path):
    (tmp_path / "results").mkdir()
    result = cli("leaderboard", "--results-dir", str(tmp_path / "results"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no run records in") and "plots" not in result.output
    assert not (tmp_path / "results" / "leaderboard").exists()


def test_run_shows_its_progress_and_prints_compactly(cli, tmp_path):
    results = tmp_path / ("a-long-folder-name-so-that-the-record-path-is-long" * 2)
    result = cli("run", "--algo", "ls", "--task", "zdt1", "--preference", "0.25,0.75",
                 "--results-dir", str(results))  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = load_records(results).records
    assert "w = 0.25, 0.75" in result.stdout
    assert f"record: {results / record.key}.json" in result.stdout.splitlines()[-1]  # unwrapped
    progress = [line for line in result.stderr.splitlines() if line.startswith("progress:")]
    assert progress[0].startswith("progress: step 0/100, objectives ")
    assert progress[-1].startswith("progress: step 100/100, objectives ")  # the final point


@pytest.mark.parametrize("paradigm", ["preference", "online"])
def test_the_language_trainers_report_at_their_evaluations(paradigm):
    from moabench.core.progress import Progress, listening

    config = resolve_config("ls", "safety", None, 0, {}, {"steps": 4, "paradigm": paradigm})
    events: list = []
    with listening(events.append):
        record = execute(config)
    reports = [event for event in events if isinstance(event, Progress)]
    assert [report.done for report in reports] == record.trajectory.steps == [0, 1, 2, 3, 4]
    assert {report.total for report in reports} == {4}
    assert [list(report.objectives) for report in reports] == record.trajectory.objectives


def test_the_tiny_reference_build_says_what_it_does(monkeypatch, tmp_path):
    from moabench.core.progress import listening
    from moabench.language import tiny

    monkeypatch.setenv("MOABENCH_CACHE", str(tmp_path))
    task = make_task("safety")
    config = dataclasses.replace(task.model_config, sft_steps=2)
    events: list = []
    with listening(events.append):
        tiny.reference_policy("announced", tiny.task_tokenizer(task), config, task.demonstrations)
        tiny.reference_policy("announced", tiny.task_tokenizer(task), config, task.demonstrations)
    (message,) = events  # once: the second call finds it cached
    assert message.startswith("building the announced task's tiny reference policy")
    assert str(tmp_path) in message


def test_sweep_logs_done_failed_time_left_and_the_current_run(cli, tmp_path):
    result = cli("sweep", "--algo", "ls", "--task", "zdt1", "--seeds", "0", "--partitions", "2",
                 "--results-dir", str(tmp_path), "--log-every", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("sweep:")]
    assert lines[0].startswith("sweep: 0/3 done, 0 failed") and "running: ls on zdt1" in lines[0]
    assert "1/3 done, 0 failed, about " in lines[1] and " left; running: ls on zdt1" in lines[1]
    assert lines[-1] == "sweep: 3/3 done, 0 failed"


def test_sweep_takes_param_and_task_param_for_every_algorithm_and_task_that_has_them(cli, tmp_path):
    result = cli("sweep", "--algo", "ls,raco", "--task", "zdt1,fonseca", "--seeds", "0",
                 "--partitions", "1", "--param", "c=0.5", "--task-param", "steps=20",
                 "--results-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    records = load_records(tmp_path).records
    assert len(records) == 8 and {r.config.task_params["steps"] for r in records} == {20}
    assert {r.config.algorithm_params.get("c") for r in records} == {None, 0.5}
    assert all(
        r.config.algorithm_params["c"] == 0.5 for r in records if r.config.algorithm == "raco"
    )


@pytest.mark.parametrize(
    ("option", "assignment", "message"),
    [
        ("--param", "cc=0.5", "error: --param cc: no algorithm of this sweep has this parameter"),
        ("--param", "p=2", "error: --param p: no algorithm of this sweep has"),  # gapo's, not here
        ("--task-param", "beta=0.1", "error: --task-param beta: no task of this sweep has"),
        ("--param", "c", "error: --param 'c': expected NAME=VALUE"),
    ],
)
def test_sweep_refuses_a_parameter_that_no_algorithm_or_task_of_it_has(
    cli, tmp_path, option, assignment, message
):
    result = cli("sweep", "--algo", "raco", "--task", "zdt1", "--seeds", "0", option, assignment,
                 "--results-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 2 and result.stderr.startswith(message), result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.glob("*.json"))
