"""The leaderboard as a static web page: `leaderboard/site/index.html`, one self-contained file
(inline CSS and JavaScript, no server, nothing fetched) that shows the plots from
`leaderboard/plots/`.

Results first: the across-task aggregates (IQM, mean of task means, mean rank, probability of
improvement, their plot), then per task its flags, the rankings by HV and by utility (sortable by
any column: click a header), cells "mean [95% interval]", each algorithm's full configuration on
demand; on language tables the models compared at the same preference; the other metrics;
partial fronts; the front plots; and the failed runs with their reasons. How to read it is one click away (collapsed on top). An empty
table says why and what to run to fill it; only the figures drawn are shown.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from moabench.core.preferences import preference_text
from moabench.evaluation import aggregates as aggregates_module
from moabench.evaluation import tables as tables_module
from moabench.evaluation.aggregates import Aggregate
from moabench.evaluation.power import LEGEND as POWER_LEGEND
from moabench.evaluation.power import POWER_HEADER, PowerRow, power_cells
from moabench.evaluation.rankings import QUESTIONS, UTILITIES, Ranking
from moabench.evaluation.stats import Interval
from moabench.evaluation.tables import (
    COLUMNS,
    COMPARISON_HEADER,
    RANK_HEADER,
    STANDING_COLUMNS,
    Row,
    TaskTable,
    comparison_cells,
    completion_command,
    coverage_text,
    flag_notes,
    gain_header,
    gain_rows,
    uncertainty_cells,
)

OTHER_COLUMNS = [metric for metric in COLUMNS if metric not in STANDING_COLUMNS]
_TRAINING = OTHER_COLUMNS.index("checkpoint_hypervolume")
#: The other metrics in two tables, each narrow enough for a laptop's window: (data attribute,
#: what it says, its columns).
OTHER_TABLES = (
    ("metrics", "Other metrics, mean [95% t] over the same complete fronts (descriptive; never "
     "used to rank)", OTHER_COLUMNS[:_TRAINING]),
    ("costs", "Training and cost over the same fronts, mean [95% t]", OTHER_COLUMNS[_TRAINING:]),
)  # fmt: skip
NAME = ' class="name"'  # left-aligned

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 90em; padding: 0 1em;
       line-height: 1.4; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.4em; text-align: right; vertical-align: top;
         white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; }
.name { text-align: left; }
th { background: #f3f3f3; }
table.sortable th { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
tr.na td, tr.unranked td { color: #888; }
tr.leader td { font-weight: 600; }
td.tie { color: #8a4b00; white-space: nowrap; }
.scroll { overflow-x: auto; }
img { max-width: min(100%, 60em); display: block; margin: 0.5em 0; }
figure { margin: 0.5em 0 1em 0; }
figcaption { font-size: 0.85em; color: #444; }
pre { text-align: left; margin: 0.3em 0; }
pre.command { background: #f6f6f6; padding: 0.4em 0.6em; overflow-x: auto; }
p.note { color: #444; }
p.question { font-weight: 600; margin-bottom: 0.2em; }
p.flags { background: #fff4e0; padding: 0.3em 0.6em; }
details.failures li { font-family: monospace; font-size: 0.85em; }
.legend li { margin: 0.3em 0; }
.ci { font-size: 0.8em; color: #666; }
nav a { margin-right: 0.8em; }
"""

SCRIPT = """
function sortTable(header) {
  const table = header.closest("table");
  const column = Array.from(header.parentNode.children).indexOf(header);
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("th").forEach((th) => th.removeAttribute("aria-sort"));
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const key = (row) => {
    const value = row.cells[column].dataset.value;
    return value === undefined || value === "" ? null : value;
  };
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null) return y === null ? 0 : 1;  // missing values last, either way
    if (y === null) return -1;
    const nx = Number(x), ny = Number(y);
    const order = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
    return ascending ? order : -order;
  });
  rows.forEach((row) => body.appendChild(row));
}
document.querySelectorAll("table.sortable th").forEach(
  (th) => th.addEventListener("click", () => sortTable(th)));
"""


def write_site(
    tables: list[TaskTable],
    aggregates: list[Aggregate],
    out_dir: Path,
    csv_files: list[str],
    figures: set[str],
    power: list[PowerRow],
) -> Path:
    """Write `out_dir/site/index.html`; plots are referenced from `out_dir/plots/` (`figures`:
    the PNG paths drawn, each with its PDF), and the CSV files from `out_dir`; `power`: the
    power analysis."""
    path = Path(out_dir) / "site" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_site(tables, aggregates, csv_files, figures, power))
    return path


def render_site(
    tables: list[TaskTable],
    aggregates: list[Aggregate],
    csv_files: list[str],
    figures: set[str],
    power: list[PowerRow],
) -> str:
    e = html.escape
    files = ", ".join(f'<a href="../{e(name)}">{e(name)}</a>' for name in csv_files)
    navigation = " ".join(
        [
            f'<a href="#aggregate-{i}">across tasks: {e(a.group)}</a>'
            for i, a in enumerate(aggregates)
        ]
        + (['<a href="#power">seeds from a power analysis</a>'] if power else [])
        + [f'<a href="#task-{i}">{e(t.label)}</a>' for i, t in enumerate(tables)]
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>moabench leaderboard</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>moabench leaderboard</h1>",
        "<p>Generated by <code>moabench leaderboard</code> from the run records. The same "
        f"numbers as CSV: {files}. Click a column header to sort a table.</p>",
        f"<nav>{navigation}</nav>",
        '<details class="legend"><summary>How to read it</summary>',
        "<h3>Per task</h3><ul>",
        *(f"<li>{e(paragraph)}</li>" for paragraph in tables_module.LEGEND),
        "</ul><h3>Across tasks</h3><ul>",
        *(f"<li>{e(paragraph)}</li>" for paragraph in aggregates_module.LEGEND),
        "</ul></details>",
    ]
    parts += [_aggregate_section(a, i, tables, figures) for i, a in enumerate(aggregates)]
    parts += _power_section(power)
    parts += [_task_section(table, i, figures) for i, table in enumerate(tables)]
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _power_section(power: list[PowerRow]) -> list[str]:
    """The power analysis: its legend and one row per aggregate and difference."""
    if not power:
        return []
    e = html.escape
    return [
        '<h2 id="power">Seeds from a power analysis</h2>',
        *(f"<p>{e(paragraph)}</p>" for paragraph in POWER_LEGEND),
        '<table class="power"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in POWER_HEADER),
        "</tr></thead><tbody>",
        *("<tr>" + "".join(f"<td>{e(c)}</td>" for c in power_cells(row)) + "</tr>"
          for row in power),
        "</tbody></table>",
    ]


def _cell(interval: Interval, spec: str = ".4g") -> str:
    """A sortable cell: the estimate, and its interval (where there is one) below it in small
    type."""
    if math.isnan(interval.mean):
        return '<td data-value="">-</td>'
    below = (
        ""
        if math.isnan(interval.low)
        else f'<br><span class="ci">[{interval.low:{spec}}, {interval.high:{spec}}]</span>'
    )
    return f'<td data-value="{interval.mean:.6g}">{interval.mean:{spec}}{below}</td>'


def _figure(path: str, alt: str, caption: str, figures: set[str]) -> list[str]:
    """The figure with its caption and a link to its PDF, or nothing when it was not drawn."""
    if path not in figures:
        return []
    e = html.escape
    pdf = e(path.removesuffix(".png") + ".pdf")
    return [
        f'<figure><img src="../{e(path)}" alt="{e(alt)}"><figcaption>{caption} '
        f'<a href="../{pdf}">PDF</a></figcaption></figure>'
    ]


def _command(command: str) -> str:
    return f'<pre class="command"><code>{html.escape(command)}</code></pre>'


def _aggregate_section(
    aggregate: Aggregate, index: int, tables: list[TaskTable], figures: set[str]
) -> str:
    e = html.escape
    lines = [
        f'<h2 id="aggregate-{index}">Across tasks: {e(aggregate.group)}</h2>',
        f"<p>Tasks ({len(aggregate.tables)}): {e(', '.join(aggregate.tables))}.</p>",
    ]
    if not aggregate.algorithms:
        lines += [
            f'<p class="note">{e(aggregates_module.empty_note(aggregate))}</p>',
            _command(aggregates_module.fill_command(aggregate, tables)),
            *_left_out(aggregate),
        ]
        return "\n".join(lines)
    lines += [
        f'<table class="sortable" data-aggregate="{e(aggregate.group)}"><thead><tr>'
        '<th class="name">algorithm</th><th>IQM of HV / reference HV [95% stratified bootstrap CI]</th>'
        "<th>mean of task means [95% CI]</th><th>mean rank</th><th>runs</th></tr></thead><tbody>",
    ]
    for name in aggregate.algorithms:
        interval, rank = aggregate.iqm[name], aggregate.mean_rank[name]
        lines.append(
            f'<tr><td class="name" data-value="{e(name)}">{e(name)}</td>{_cell(interval)}'
            f'{_cell(aggregate.task_mean[name])}<td data-value="{rank:.6g}">{rank:.2f}</td>'
            f'<td data-value="{interval.n}">{interval.n}</td></tr>'
        )
    lines += ["</tbody></table>", f'<p class="note">{e(aggregate.winner_text())}</p>']
    lines += _left_out(aggregate)
    if aggregate.left_out:
        lines += [
            "<p>The sweep that gives them a front on each task:</p>",
            _command(aggregates_module.fill_command(aggregate, tables)),
        ]
    names = aggregate.algorithms
    if len(names) > 1:
        header = "".join(f"<th>{e(name)}</th>" for name in names)
        lines += [
            "<p>Probability of improvement, P(row &gt; column) [95% stratified bootstrap CI]:</p>",
            f'<div class="scroll"><table class="improvement"><thead><tr><th class="name">P(row &gt; '
            f"column)</th>{header}</tr></thead><tbody>",
        ]
        for x in names:
            cells = "".join(
                "<td>-</td>"
                if x == y
                else f"<td>{e(format(aggregate.improvement[(x, y)], '.2f'))}</td>"
                for y in names
            )
            lines.append(f'<tr><td class="name">{e(x)}</td>{cells}</tr>')
        lines.append("</tbody></table></div>")
    lines += _figure(
        f"plots/{aggregate.slug}.png",
        f"{aggregate.group}: IQM, performance profiles and probability of improvement",
        "Left: IQM with its 95% interval. Middle: performance profiles, the fraction of runs "
        "above each score, with 95% bands. Right: P(row &gt; column).",
        figures,
    )
    return "\n".join(lines)


def _left_out(aggregate: Aggregate) -> list[str]:
    if not aggregate.left_out:
        return []
    e = html.escape
    return [
        "<p>Left out (no complete front on every task of this aggregate):</p><ul>",
        *(
            f"<li>{e(name)}: none on {e(', '.join(missing))}</li>"
            for name, missing in sorted(aggregate.left_out.items())
        ),
        "</ul>",
    ]


def _task_section(table: TaskTable, index: int, figures: set[str]) -> str:
    e = html.escape
    objectives = ", ".join(
        f"{n} ({'max' if up else 'min'})" for n, up in zip(table.space.names, table.space.maximize)
    )
    ranked = table.ranked
    headers = [
        "rank", "algorithm", "HV [95% t]", *RANK_HEADER, *COMPARISON_HEADER,
        *(COLUMNS[m] for m in STANDING_COLUMNS[1:]), "seeds", "failed",
    ]  # fmt: skip
    lines = [
        f'<h2 id="task-{index}">{e(table.label)}</h2>',
        f"<p>Paradigm: {e(table.paradigm)}. Objectives: {e(objectives)}. Normalisation: ideal "
        f"{e(str(list(table.space.ideal)))}, nadir {e(str(list(table.space.nadir)))}.<br>"
        f"{e(tables_module.reference_text(table.reference))} Fronts: {table.grid} preferences "
        f"each; {sum(row.seeds for row in ranked)} complete fronts ranked, {len(table.partial)} "
        "partial." + "".join(f" {e(note)}" for note in tables_module.table_notes(table)) + "</p>",
        *([_command(command)] if (command := completion_command(table)) else []),
        *(
            [f'<p class="flags"><strong>Flags.</strong> {e(" ".join(flags))}</p>']
            if (flags := flag_notes(table))
            else []
        ),
        f'<p class="question">By hypervolume. {e(QUESTIONS["hypervolume"])}</p>',
        f'<div class="scroll"><table class="sortable" data-task="{e(table.label)}"><thead><tr>'
        + "".join(f"<th{NAME if h == 'algorithm' else ''}>{e(h)}</th>" for h in headers)
        + "</tr></thead><tbody>",
    ]
    lines += [_standing(row, len(headers), table.rankings["hypervolume"]) for row in table.rows]
    lines.append("</tbody></table></div>")
    if ranked:
        lines += _utility(table) + _pointwise(table)
    for kind, what, columns in OTHER_TABLES if ranked else ():
        lines += [
            f"<p>{what}:</p>",
            f'<div class="scroll"><table class="sortable" data-{kind}="{e(table.label)}">'
            f"<thead><tr><th>rank</th><th{NAME}>algorithm</th>"
            + "".join(f"<th>{e(COLUMNS[m])}</th>" for m in columns)
            + "</tr></thead><tbody>",
        ]
        for row in ranked:
            cells = "".join(_cell(row.summary[m]) for m in columns)
            lines.append(
                f'<tr><td data-value="{row.rank}">{row.rank}</td>'
                f'<td class="name" data-value="{e(row.algorithm)}">{e(row.algorithm)}</td>{cells}</tr>'
            )
        lines.append("</tbody></table></div>")
    if table.partial:
        lines += [
            f"<p>Partial fronts (not ranked; the grid has {table.grid} preferences):</p>",
            f"<table><thead><tr><th{NAME}>algorithm</th><th>seed</th><th>missing preferences</th>"
            "<th>records off the grid</th></tr></thead><tbody>",
        ]
        lines += [
            f'<tr><td class="name">{e(f.algorithm)}</td><td>{f.seed}</td><td>{f.missing}</td>'
            f"<td>{f.off_grid}</td></tr>"
            for f in table.partial
        ]
        lines.append("</tbody></table>")
    lines += _figure(
        table.overlay,
        f"{table.label}: fronts on shared axes",
        "Every algorithm's front of its median seed by hypervolume (its non-dominated points) on "
        "shared axes, over the reference front in grey.",
        figures,
    )
    lines += _figure(
        table.plot,
        f"{table.label}: every seed, one panel per algorithm",
        "Every seed's final points, one panel per algorithm on shared axes, coloured by "
        "preference; filled: non-dominated in its seed's front, hollow: dominated. Panels marked "
        "partial show fronts that are not ranked.",
        figures,
    )
    lines += _figure(
        table.compute,
        f"{table.label}: hypervolume against compute",
        "Each algorithm's mean hypervolume (95% interval over seeds) against the gradient "
        "evaluations of the trainings behind its front, each distinct training counted once: 11 "
        "runs for a front of 11 per-preference points, 2 experts for Rewarded Soups and MOD, one "
        "training for a conditioned policy or RiC.",
        figures,
    )
    failures = sorted(
        (f for row in table.rows for f in row.failed), key=lambda f: (f.algorithm, f.key)
    )
    if failures:
        lines.append(
            f'<details class="failures"><summary>failed runs ({len(failures)})</summary><ul>'
        )
        lines += [
            f"<li>{e(f.key)} {e(f.algorithm)} w=({preference_text(f.preference)}) "
            f"seed={f.seed}: "
            f"{e(f.reason)}</li>"
            for f in failures
        ]
        lines.append("</ul></details>")
    return "\n".join(lines)


def _text(text: str, value: str | float | None = None) -> str:
    """A sortable cell of `text`, sorted by `value` (by the text itself when None)."""
    if value is None:
        key = text
    elif isinstance(value, float):
        key = "" if math.isnan(value) else f"{value:.6g}"
    else:
        key = str(value)
    return f'<td data-value="{html.escape(key)}">{html.escape(text)}</td>'


def _uncertainty(ranking: Ranking, algorithm: str) -> str:
    """P(best), the rank interval and the best-set mark as sortable cells."""
    p_best, ranks, best = uncertainty_cells(ranking, algorithm)
    return (
        _text(p_best, ranking.p_best[algorithm])
        + _text(ranks, float(ranking.rank_interval[algorithm][0]))
        + _text(best)
    )


def _utility(table: TaskTable) -> list[str]:
    """The ranking by utility, sortable, with its uncertainty."""
    e = html.escape
    by_utility = table.rankings["weighted_sum_utility"]
    tchebycheff = table.rankings["tchebycheff_utility"]
    hv_rank = {row.algorithm: row.rank for row in table.ranked}
    headers = [
        "rank", "algorithm", f"{UTILITIES['weighted_sum_utility'][0]} [95% t]", *RANK_HEADER,
        f"{UTILITIES['tchebycheff_utility'][0]} [95% t]", "HV rank",
    ]  # fmt: skip
    lines = [
        f'<p class="question">By utility. {e(QUESTIONS["weighted_sum_utility"])}</p>',
        f'<div class="scroll"><table class="sortable" data-utility="{e(table.label)}"><thead><tr>'
        + "".join(f"<th{NAME if h == 'algorithm' else ''}>{e(h)}</th>" for h in headers)
        + "</tr></thead><tbody>",
    ]
    for rank, name in enumerate(by_utility.order, start=1):
        lines.append(
            f'<tr><td data-value="{rank}">{rank}</td>'
            f'<td class="name" data-value="{e(name)}">{e(name)}</td>'
            + _cell(by_utility.estimate[name])
            + _uncertainty(by_utility, name)
            + _cell(tchebycheff.estimate[name])
            + _text(str(hv_rank[name]), float(hv_rank[name]))
            + "</tr>"
        )
    lines.append("</tbody></table></div>")
    return lines


def _pointwise(table: TaskTable) -> list[str]:
    """Language tables: C(row, column) and the dominance share at the same preference."""
    pairs = table.pointwise
    if table.paradigm == "analytic" or pairs.empty:
        return []
    e = html.escape
    names = table.rankings["weighted_sum_utility"].order
    cells = {(r.a, r.b): r for r in pairs.itertuples(index=False)}
    header = "".join(f"<th>{e(name)}</th>" for name in names)
    lines = [
        "<p>At the same preference: C(row, column), the share of the column's models weakly "
        "dominated by one of the row's on the same seed, and (in parentheses) the share of "
        "(w, seed) where the row's model dominates the column's:</p>",
        f'<div class="scroll"><table class="coverage" data-coverage="{e(table.label)}"><thead>'
        f'<tr><th class="name">C(row, column)</th>{header}</tr></thead><tbody>',
    ]
    for a in names:
        row = "".join(
            f"<td>{e(coverage_text(cells[(a, b)]))}</td>" if (a, b) in cells else "<td>-</td>"
            for b in names
        )
        lines.append(f'<tr><td class="name">{e(a)}</td>{row}</tr>')
    lines.append("</tbody></table></div>")
    header = "".join(
        f"<th{NAME if h == 'algorithm' else ''}>{e(h)}</th>" for h in gain_header(table)
    )
    lines += [
        f"<p>Against the utility leader's model ({e(names[0])}) at the same preference and "
        "seed: per objective the mean gain in the normalised space (positive: better) [95% t "
        "over seeds], and at how many (w, seed) one model dominates the other:</p>",
        f'<div class="scroll"><table data-gains="{e(table.label)}"><thead><tr>{header}</tr>'
        "</thead><tbody>",
        *(
            f'<tr><td class="name">{e(cells[0])}</td>'
            + "".join(f"<td>{e(cell)}</td>" for cell in cells[1:])
            + "</tr>"
            for cells in gain_rows(table)
        ),
        "</tbody></table></div>",
    ]
    return lines


def _standing(row: Row, width: int, ranking: Ranking) -> str:
    e = html.escape
    config = e(json.dumps(row.config, indent=1, sort_keys=True))
    name = f"{e(row.algorithm)}<details><summary>config</summary><pre>{config}</pre></details>"
    name_cell = f'<td class="name" data-value="{e(row.algorithm)}">{name}</td>'
    if not row.supported:
        cells = "".join('<td data-value="">n/a</td>' for _ in range(width - 2))
        return f'<tr class="na"><td data-value="">-</td>{name_cell}{cells}</tr>'
    failed = f'<td data-value="{len(row.failed)}">{len(row.failed)}/{row.runs}</td>'
    if row.rank is None:
        blanks = "".join('<td data-value=""></td>' for _ in range(width - 5))
        return (
            f'<tr class="unranked"><td data-value="">-</td>{name_cell}'
            f'<td data-value="">no complete front</td>{blanks}'
            f'<td data-value="0">0 (+{row.partial} partial)</td>{failed}</tr>'
        )
    comparison = row.comparison
    if comparison is None:
        versus = '<td data-value="0">leader</td>' + '<td data-value=""></td>' * 4
    else:
        _, hodges_lehmann, p_holm, p_holm_t, marks = comparison_cells(comparison)
        versus = (
            _cell(comparison.difference)
            + _text(hodges_lehmann, comparison.test.hodges_lehmann)
            + _text(p_holm, comparison.p_holm)
            + _text(p_holm_t, comparison.p_holm_t)
            + f'<td class="tie" data-value="{e(marks)}">{e(marks)}</td>'
        )
    seeds = f"{row.seeds}" + (f" (+{row.partial} partial)" if row.partial else "")
    return (
        f'<tr class="{"leader" if comparison is None else "ranked"}">'
        f'<td data-value="{row.rank}">{row.rank}</td>{name_cell}'
        + _cell(row.summary["hypervolume"])
        + _uncertainty(ranking, row.algorithm)
        + versus
        + "".join(_cell(row.summary[m]) for m in STANDING_COLUMNS[1:])
        + f'<td data-value="{row.seeds}">{e(seeds)}</td>{failed}</tr>'
    )
