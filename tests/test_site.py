"""The leaderboard's web page: its structure, and in a real browser (Debian's chromium driven
headless by Playwright): no console errors, sorting reorders rows, every plot loads."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser

import pytest

from moabench.core.task import make_task
from moabench.evaluation.leaderboard import build_leaderboard
from moabench.runs.records import RunRecord, write_record
from moabench.runs.runner import resolve_config
from moabench.runs.sweep import SweepConfig, plan_sweep, run_sweep

REASON = "diverged: step 7: objectives are not finite"


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    plan = plan_sweep(
        SweepConfig(
            algorithms=["ls", "mgda", "gapo"], tasks=["zdt1", "fonseca"], seeds=[0, 1], partitions=3
        )
    )
    run_sweep(plan.configs, root / "results", workers=1)
    config = resolve_config("ls", "zdt1", [0.0, 1.0], seed=2)  # a failed run: a partial front
    failed = RunRecord(
        key=config.key(), config=config, paradigm="analytic", status="failed", reason=REASON,
        objective_space=make_task("zdt1").space.to_record(),
    )  # fmt: skip
    write_record(failed, root / "results")
    build_leaderboard(root / "results", root / "leaderboard", partitions=3)
    return root / "leaderboard"


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.images, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            kind = next(
                (
                    k
                    for k in (
                        "data-aggregate", "data-task", "data-utility", "data-metrics",
                        "data-costs",
                    )  # fmt: skip
                    if k in attrs
                ),
                "",
            )
            self.tables.append(f"{kind}={attrs.get(kind, '')}" if kind else attrs.get("class"))
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a" and not attrs["href"].startswith("#"):
            self.links.append(attrs["href"])


def test_the_page_has_the_aggregates_a_table_per_task_and_its_plots(board):
    page = board / "site" / "index.html"
    collector = Collector()
    collector.feed(page.read_text())
    assert collector.tables == [
        "data-aggregate=analytic", "improvement", "power",
        "data-task=fonseca", "data-utility=fonseca", "data-metrics=fonseca",
        "data-costs=fonseca", "data-task=zdt1", "data-utility=zdt1", "data-metrics=zdt1",
        "data-costs=zdt1", None,  # zdt1's partial fronts
    ]  # fmt: skip
    assert len(collector.images) == 7  # the aggregate; per task the overlay, panels and compute
    for source in collector.images + collector.links:
        assert (page.parent / source).resolve().is_file(), source
    text = page.read_text()
    assert "<details><summary>config</summary>" in text and "&quot;p&quot;: 1" in text  # gapo's


def test_the_page_shows_failed_runs_with_their_reasons_and_partial_fronts(board):
    text = (board / "site" / "index.html").read_text()
    assert "failed runs (1)" in text and REASON in text
    assert "Partial fronts (not ranked; the grid has 4 preferences)" in text
    assert "0 (+1 partial)" not in text and "2 (+1 partial)" in text  # ls on zdt1: seeds 0, 1
    assert "How to read it" in text and "Holm" in text and "never used to rank" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_the_page_in_a_real_browser(board):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        errors = []
        page.on(
            "console",
            lambda message: errors.append(message.text) if message.type == "error" else None,
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((board / "site" / "index.html").as_uri())
        page.wait_for_load_state("load")
        assert errors == []

        table = page.locator('table[data-task="zdt1"]')
        headers = table.locator("th").all_inner_texts()
        score = headers.index("HV / reference HV") + 1

        def column(index):
            return table.locator(f"tbody tr td:nth-child({index})").evaluate_all(
                "cells => cells.map(c => c.dataset.value)"
            )

        names_before = column(2)
        table.locator("th", has_text="HV / reference HV").click()  # ascending score
        values = [float(v) for v in column(score) if v]
        assert values == sorted(values)
        ascending_names = column(2)
        assert sorted(ascending_names) == sorted(names_before)  # the same rows, reordered
        assert ascending_names != names_before or len(set(values)) == 1  # rows are by HV, down
        table.locator("th", has_text="HV / reference HV").click()  # descending
        descending = [float(v) for v in column(score) if v]
        assert descending == sorted(values, reverse=True)

        widths = page.locator("img").evaluate_all(
            "images => images.map(i => i.complete ? i.naturalWidth : 0)"
        )
        assert len(widths) == 7 and all(w > 0 for w in widths)
        assert page.locator("details.failures summary").inner_text() == "failed runs (1)"
        browser.close()


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_results_come_first_and_tables_fit_a_1400_pixel_window(board):
    """The first screen shows a standings table (how to read it is one click away), and the
    standings and the other metrics fit the width of a 1,400 px window without scrolling
    sideways."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto((board / "site" / "index.html").as_uri())
        page.wait_for_load_state("load")
        first = page.locator("table.sortable").first.bounding_box()
        assert first is not None and first["y"] + 60 < 900  # its header and a row on screen
        overflow = page.locator(
            "table[data-task], table[data-metrics], table[data-costs]"
        ).evaluate_all(
            "tables => tables.map(t => t.parentElement.scrollWidth - t.parentElement.clientWidth)"
        )
        assert overflow and all(extra <= 0 for extra in overflow), overflow
        browser.close()
