"""`harness leaderboard RUNS... --out SITE`: run directories -> a static site.

    SITE/index.html             one sortable, filterable table per task, and its charts
    SITE/matrix-<task>.html     problem-by-run matrix, and what each checkpoint gained and lost
    SITE/runs/<run id>.html     one run (run_page.py): metrics, statuses, breakdown, per problem, config
    SITE/data.json              the same numbers, for scripts

Every page is a single file: the CSS, the script and the charts (SVG) are inlined, so the site
works from the file system or any static host and makes no network request. The site is rebuilt
from the runs given each time; pages of runs no longer given are removed. A run directory that is
malformed or incomplete is reported by name (and listed on the index) and skipped.
"""

from __future__ import annotations

import json
import string
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any

import harness
from harness.errors import UsageError
from leaderboard.charts import line_chart
from leaderboard.markup import filter_controls, fmt, natural, short, slug
from leaderboard.run_page import run_body
from leaderboard.runs import BadRun, Run, find_run_dirs, read_run
from leaderboard.stats import bootstrap_mean, per_problem_pass_at_k

SIMILARITY = (("bleu", "BLEU"), ("codebleu", "CodeBLEU"), ("rouge_l", "ROUGE-L"))
MAX_SERIES = 12  # lines per chart; more would not be legible
# The site's intervals are for reading, not deciding (the gate uses 2000): 1000 resamples keep a
# build of LeetCode-sized runs (2,360 problems) to about half a second per run and k.
SITE_RESAMPLES = 1000


@dataclass
class Entry:
    """A run as the site shows it, with its pass@k intervals computed once."""

    run: Run
    suffix: str = ""  # set where two runs would have the same label: their date

    @cached_property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """pass@k -> 95% percentile bootstrap interval over problems."""
        out = {}
        for k in self.run.ks():
            values = list(per_problem_pass_at_k(self.run.per_problem, k).values())
            out[f"pass@{k}"] = bootstrap_mean(values, resamples=SITE_RESAMPLES)
        return out

    @property
    def label(self) -> str:
        step = self.run.step
        return (f"{self.run.model} @ step {step}" if step is not None else self.run.model) + self.suffix

    @property
    def page(self) -> str:
        return f"runs/{self.run.id}.html"


@dataclass
class Site:
    """What a build produced: the runs shown and the directories skipped (path, reason)."""

    out: Path
    entries: list[Entry]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def tasks(self) -> dict[str, list[Entry]]:
        grouped: dict[str, list[Entry]] = {}
        for entry in self.entries:
            grouped.setdefault(entry.run.task, []).append(entry)
        return dict(sorted(grouped.items()))


def build(paths: Sequence[str | Path], out: str | Path, warn: Callable[[str], None] = print) -> Site:
    """Read every run under `paths`, write the site into `out`, and return what it holds."""
    site = Site(Path(out), [])
    for path in find_run_dirs(list(paths)):
        try:
            site.entries.append(Entry(read_run(path)))
        except BadRun as exc:
            site.skipped.append((str(path), str(exc)))
            warn(f"skipped {path}: {exc}")
    site.entries.sort(key=lambda e: (e.run.task, e.run.model, e.run.step or 0, e.run.date, str(e.run.path)))
    _disambiguate(site.entries)
    _write_site(site)
    return site


def _disambiguate(entries: list[Entry]) -> None:
    """Runs of one task that would share a label (the same model and step) get their date added."""
    seen: dict[tuple[str, str], int] = {}
    for entry in entries:
        key = (entry.run.task, entry.label)
        seen[key] = seen.get(key, 0) + 1
    for entry in entries:
        if seen[(entry.run.task, entry.label)] > 1:
            entry.suffix = f" ({entry.run.date})"


def _write_site(site: Site) -> None:
    out = site.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the site")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    written = {out / "index.html", out / "data.json"}
    _write(out / "index.html", _page("Leaderboard", _index_body(site), root=""))
    for task, entries in site.tasks.items():
        path = out / f"matrix-{slug(task)}.html"
        _write(path, _page(f"{task}: problems by run", _matrix_body(task, entries), root="", nav=task))
        written.add(path)
    for entry in site.entries:
        path = out / entry.page
        _write(path, _page(entry.label, run_body(entry.run, entry.intervals), root="../", nav=entry.run.task))
        written.add(path)
    _write(out / "data.json", json.dumps(_data(site), indent=2, sort_keys=True) + "\n")
    _remove_stale(out, written)


def _remove_stale(out: Path, written: set[Path]) -> None:
    """Pages from an earlier build whose run or task is gone (only the names this module writes)."""
    stale = [*out.glob("runs/*.html"), *out.glob("matrix-*.html")]
    for path in stale:
        if path not in written:
            path.unlink()


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _asset(name: str) -> str:
    return files("leaderboard").joinpath("templates", name).read_text(encoding="utf-8")


def _page(title: str, body: str, root: str, nav: str = "") -> str:
    crumb = f"<span>{escape(nav)}</span>" if nav else ""
    return string.Template(_asset("page.html")).substitute(
        title=escape(title),
        body=body,
        root=root,
        nav=crumb,
        version=escape(harness.__version__),
        style=_asset("style.css"),
        script=_asset("app.js"),
    )


# --- index ---------------------------------------------------------------------------------


def _index_body(site: Site) -> str:
    parts = []
    if not site.entries:
        parts.append("<p>No readable run directories were given.</p>")
    for task, entries in site.tasks.items():
        parts.append(_task_section(task, entries))
    if site.skipped:
        items = "".join(f"<li><code>{escape(p)}</code>: {escape(why)}</li>" for p, why in site.skipped)
        parts.append(f'<h2 id="skipped">Skipped run directories</h2><ul class="skipped">{items}</ul>')
    return "\n".join(parts)


def _task_section(task: str, entries: list[Entry]) -> str:
    table_id = f"table-{slug(task)}"
    matrix = f"matrix-{slug(task)}.html"
    return "\n".join(
        [
            f'<section id="task-{slug(task)}"><h2>{escape(task)}</h2>',
            f'<p class="muted">{len(entries)} run{"s" if len(entries) != 1 else ""} · '
            f'<a href="{matrix}">which problems each run solves</a> · pass@k with its 95% interval '
            "(bootstrap over problems) · ★ the best value in each column</p>",
            filter_controls(table_id, "Filter by model"),
            f'<div class="table-wrap">{_leaderboard_table(table_id, entries)}</div>',
            f'<div class="charts">{_charts(task, entries)}</div>',
            "</section>",
        ]
    )


def _metric_columns(entries: list[Entry]) -> list[tuple[str, str]]:
    """(metric, heading) for each pass@k present in any run, then the similarity metrics present."""
    ks = sorted({k for e in entries for k in e.run.ks()})
    columns = [(f"pass@{k}", f"pass@{k}") for k in ks]
    return columns + [(m, title) for m, title in SIMILARITY if any(m in e.run.metrics for e in entries)]


def _leaderboard_table(table_id: str, entries: list[Entry]) -> str:
    metrics = _metric_columns(entries)
    best = {m: max((e.run.metrics[m] for e in entries if m in e.run.metrics), default=None) for m, _ in metrics}
    head = ["Model", "Checkpoint", "Backend", "Date", '<th class="num">n', '<th class="num">Temperature']
    head += ['<th class="num">Problems'] + [f'<th class="num">{escape(title)}' for _, title in metrics]
    header = "".join(h if h.startswith("<th") else f"<th>{h}" for h in head)
    primary = metrics[0][0] if metrics else None
    ordered = sorted(entries, key=lambda e: -e.run.metrics.get(primary, -1.0)) if primary else entries
    rows = [_leaderboard_row(e, metrics, best) for e in ordered]
    return (
        f'<table class="sortable" id="{table_id}"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _leaderboard_row(entry: Entry, metrics: list[tuple[str, str]], best: dict[str, float | None]) -> str:
    run = entry.run
    cells = [
        f'<td><a href="{entry.page}">{escape(run.model)}</a></td>',
        f'<td class="checkpoint" title="{escape(run.checkpoint)}">{escape(short(run.checkpoint))}</td>',
        _text_cell(run.backend),
        f'<td class="date" data-v="{escape(run.date)}">{escape(run.date)}</td>',
        _num_cell(run.n if isinstance(run.n, int) else None, str(run.n) if run.n is not None else "–"),
        _num_cell(run.temperature, "–" if run.temperature is None else f"{run.temperature:g}"),
        _num_cell(run.record.get("problems"), str(run.record.get("problems", "–"))),
    ]
    for metric, _ in metrics:
        cells.append(_metric_cell(entry, metric, best.get(metric)))
    return f'<tr data-key="{escape(run.model)} {escape(run.checkpoint)}">{"".join(cells)}</tr>'


def _metric_cell(entry: Entry, metric: str, best: float | None) -> str:
    value = entry.run.metrics.get(metric)
    if value is None:
        return f'<td class="num" data-metric="{metric}" data-v="">–</td>'
    marked = " best" if best is not None and value >= best - 1e-12 else ""
    interval = entry.intervals.get(metric)
    ci = f'<span class="ci">[{interval[0]:.3f}, {interval[1]:.3f}]</span>' if interval else ""
    title = ' title="best in this column"' if marked else ""
    attributes = f'class="num{marked}" data-metric="{metric}" data-v="{value!r}"{title}'
    return f"<td {attributes}>{fmt(metric, value)}{ci}</td>"


def _text_cell(value: str | None) -> str:
    return '<td data-v="">–</td>' if value is None else f"<td>{escape(value)}</td>"


def _num_cell(value: float | int | None, text: str) -> str:
    return f'<td class="num" data-v="{"" if value is None else value}">{escape(text)}</td>'


# --- charts --------------------------------------------------------------------------------


def _charts(task: str, entries: list[Entry]) -> str:
    figures = []
    with_ks = [e for e in entries if len(e.run.ks()) > 1]
    if with_ks:
        top = sorted(with_ks, key=lambda e: -max(e.run.metrics.values(), default=0))[:MAX_SERIES]
        series = [(e.label, [(k, e.run.metrics[f"pass@{k}"]) for k in e.run.ks()]) for e in top]
        svg = line_chart(f"{task}: pass@k against k", series, "k", "pass@k", log_x=True)
        note = f" ({len(top)} of {len(with_ks)} runs with several k)" if len(top) < len(with_ks) else ""
        figures.append(f"<figure>{svg}<figcaption>pass@k against k, per run{note}</figcaption></figure>")
    step_chart = _step_chart(task, entries)
    if step_chart:
        figures.append(step_chart)
    return "\n".join(figures)


def _step_chart(task: str, entries: list[Entry]) -> str:
    """The primary metric against fine-tuning step, one line per checkpoint series (model)."""
    columns = _metric_columns(entries)
    if not columns:
        return ""
    metric, title = columns[0]
    series: dict[str, dict[int, float]] = {}
    for entry in sorted(entries, key=lambda e: e.run.date):  # a later run of a step replaces an earlier one
        run = entry.run
        if run.step is not None and metric in run.metrics:
            series.setdefault(run.model, {})[run.step] = run.metrics[metric]
    lines = [(model, sorted(points.items())) for model, points in sorted(series.items()) if len(points) > 1]
    if not lines:
        return ""
    svg = line_chart(f"{task}: {title} against fine-tuning step", lines[:MAX_SERIES], "step", title)
    caption = f"{escape(title)} against fine-tuning step, per checkpoint series"
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


# --- the problem-by-run matrix ------------------------------------------------------------


def _matrix_body(task: str, entries: list[Entry]) -> str:
    table_id = f"matrix-{slug(task)}"
    problems = sorted({t for e in entries for t in e.run.per_problem}, key=natural)
    head = "".join(
        f'<th class="run" title="{escape(e.run.checkpoint)}"><a href="{e.page}">{escape(e.label)}</a></th>'
        for e in entries
    )
    rows = [_matrix_row(task_id, entries) for task_id in problems]
    table = (
        f'<table class="sortable matrix" id="{table_id}"><thead><tr><th>Problem</th><th class="num">Solved by</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    legend = (
        '<p class="muted">Each cell: samples correct / samples, for one run. '
        "Green: all correct; light green: some; red: none; a grey cell: the problem was not executed "
        "in that run (scored by similarity only) or not part of it.</p>"
    )
    return "\n".join(
        [
            _changes(entries),
            f"<h2>{len(problems)} problems × {len(entries)} runs</h2>",
            legend,
            filter_controls(table_id, "Filter by problem", differing=True),
            f'<div class="table-wrap">{table}</div>',
        ]
    )


def _matrix_row(task_id: str, entries: list[Entry]) -> str:
    cells, outcomes = [], set()
    for entry in entries:
        counts = entry.run.per_problem.get(task_id)
        if not counts or "correct" not in counts:
            cells.append('<td class="na" data-v="">–</td>')
            continue
        correct, n = counts["correct"], counts["n"]
        kind = "all" if correct == n else "some" if correct else "none"
        outcomes.add(correct > 0)
        cells.append(f'<td class="{kind}" data-v="{correct / n if n else 0}">{correct}/{n}</td>')
    solved = sum(1 for e in entries if e.run.per_problem.get(task_id, {}).get("correct", 0) > 0)
    differs = "1" if len(outcomes) > 1 else "0"
    return (
        f'<tr data-key="{escape(task_id)}" data-differs="{differs}"><th>{escape(task_id)}</th>'
        f'<td class="num" data-v="{solved}">{solved}/{len(entries)}</td>{"".join(cells)}</tr>'
    )


def _changes(entries: list[Entry]) -> str:
    """For each model with several runs (by step, else by date): what each run gained and lost."""
    by_model: dict[str, list[Entry]] = {}
    for entry in entries:
        by_model.setdefault(entry.run.model, []).append(entry)
    parts = []
    for model, runs in sorted(by_model.items()):
        runs.sort(key=lambda e: e.run.order)
        for before, after in zip(runs, runs[1:]):
            parts.append(_change_item(before, after))
    if not parts:
        return '<p class="muted">Gained and lost problems are listed here when a model has several runs.</p>'
    return "<h2>Gained and lost, run to run</h2><ul>" + "".join(parts) + "</ul>"


def _change_item(before: Entry, after: Entry) -> str:
    solved_before = _solved(before.run)
    solved_after = _solved(after.run)
    common = set(before.run.per_problem) & set(after.run.per_problem)
    gained = sorted((solved_after - solved_before) & common, key=natural)
    lost = sorted((solved_before - solved_after) & common, key=natural)
    return (
        f'<li><a href="{after.page}">{escape(after.label)}</a> against <a href="{before.page}">'
        f"{escape(before.label)}</a>: gained {len(gained)} {_ids(gained)}; lost {len(lost)} {_ids(lost)}</li>"
    )


def _solved(run: Run) -> set[str]:
    return {t for t, c in run.per_problem.items() if c.get("correct", 0) > 0}


def _ids(task_ids: list[str], most: int = 30) -> str:
    if not task_ids:
        return ""
    shown = ", ".join(escape(t) for t in task_ids[:most])
    return f"<small>({shown}{' …' if len(task_ids) > most else ''})</small>"


# --- data.json and helpers -----------------------------------------------------------------


def _data(site: Site) -> dict[str, Any]:
    runs = [
        {
            "id": e.run.id,
            "page": e.page,
            "path": str(e.run.path),
            "task": e.run.task,
            "model": e.run.model,
            "checkpoint": e.run.checkpoint,
            "step": e.run.step,
            "backend": e.run.backend,
            "date": e.run.date,
            "n": e.run.n,
            "temperature": e.run.temperature,
            "metrics": e.run.metrics,
            "intervals": {m: list(i) for m, i in e.intervals.items()},
        }
        for e in site.entries
    ]
    skipped = [{"path": p, "reason": r} for p, r in site.skipped]
    return {"harness": harness.__version__, "runs": runs, "skipped": skipped}


def main(paths: Iterable[str], out: str) -> int:
    """The `harness leaderboard` command: build, then say where the site is and what was skipped."""
    site = build(list(paths), out, warn=lambda line: print(f"harness leaderboard: {line}", file=sys.stderr))
    tasks = len(site.tasks)
    print(
        f"wrote {site.out / 'index.html'}: {len(site.entries)} runs, {tasks} task{'s' if tasks != 1 else ''}"
        + (f", {len(site.skipped)} skipped" if site.skipped else "")
    )
    return 0
