"""The leaderboard's web page: its structure, and in a real browser (Debian's chromium driven
headless by Playwright): no console errors, sorting reorders rows, every plot loads."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser

import pytest

from moabench.evaluation.leaderboard import build_leaderboard
from moabench.runs.sweep import SweepConfig, plan_sweep, run_sweep


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    plan = plan_sweep(
        SweepConfig(
            algorithms=["ls", "mgda", "gapo"], tasks=["zdt1", "fonseca"], seeds=[0, 1], partitions=3
        )
    )
    run_sweep(plan.configs, root / "results", workers=1)
    build_leaderboard(root / "results", root / "leaderboard")
    return root / "leaderboard"


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.images, self.headers = [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append(attrs.get("data-task", attrs.get("id")))
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "th":
            self.headers += 1


def test_the_page_has_an_overall_view_a_table_per_task_and_its_plots(board):
    page = board / "site" / "index.html"
    collector = Collector()
    collector.feed(page.read_text())
    assert collector.tables == ["overall-table", "fonseca", "zdt1"]
    assert len(collector.images) == 2
    for source in collector.images:
        assert (page.parent / source).resolve().is_file(), source
    text = page.read_text()
    assert "<details><summary>config</summary>" in text and "&quot;p&quot;: 1" in text  # gapo's


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

        def column(index):
            return table.locator(f"tbody tr td:nth-child({index})").evaluate_all(
                "cells => cells.map(c => c.dataset.value)"
            )

        names_before = column(2)
        table.locator("th", has_text="IGD+").click()  # ascending IGD+
        igd = [float(v) for v in column(4) if v]
        assert igd == sorted(igd)
        table.locator("th", has_text="IGD+").click()  # descending
        igd_descending = [float(v) for v in column(4) if v]
        assert igd_descending == sorted(igd, reverse=True)
        assert sorted(column(2)) == sorted(names_before)  # the same rows, reordered
        assert column(2) != names_before or len(set(igd)) == 1

        widths = page.locator("img").evaluate_all(
            "images => images.map(i => i.complete ? i.naturalWidth : 0)"
        )
        assert widths and all(w > 0 for w in widths)
        browser.close()
