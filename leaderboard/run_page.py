"""The page of one run: its metrics with intervals, verdicts, breakdown by difficulty,
per-problem results, configuration and manifest."""

from __future__ import annotations

from html import escape

from leaderboard.markup import filter_controls, flatten, fmt, kv, natural
from leaderboard.runs import Run

STATUS_COLUMNS = ("failed", "error", "timeout", "syntax_error")
LEVELS = ("easy", "medium", "hard")  # breakdown groups in this order, any others after them


def run_body(run: Run, intervals: dict[str, tuple[float, float]]) -> str:
    """The body of a run's page; `intervals` maps pass@k to its bootstrap interval."""
    parts = [
        _summary(run),
        _metrics_table(run, intervals),
        _statuses_line(run),
        _breakdown(run),
        _per_problem(run),
        "<h2>Configuration</h2>",
        kv(flatten(run.settings)),
        "<h2>Manifest</h2>",
        kv(flatten(run.manifest)),
    ]
    return "\n".join(p for p in parts if p)


def _summary(run: Run) -> str:
    facts = {
        "task": run.task,
        "model": run.model,
        "checkpoint": run.checkpoint,
        "step": run.step,
        "backend": run.backend,
        "date (UTC)": run.date,
        "samples per problem": run.n,
        "temperature": run.temperature,
        "problems": run.record.get("problems"),
        "executed against tests": run.record.get("executed_problems"),
        "run directory": str(run.path),
    }
    return kv({k: v for k, v in facts.items() if v is not None})


def _metrics_table(run: Run, intervals: dict[str, tuple[float, float]]) -> str:
    rows = []
    for name, value in run.metrics.items():
        interval = intervals.get(name)
        ci = f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
        cells = f'<td class="num">{fmt(name, value)}</td><td class="num">{ci}</td>'
        rows.append(f"<tr><th>{escape(name)}</th>{cells}</tr>")
    for name, why in (run.record.get("unavailable") or {}).items():
        rows.append(f'<tr><th>{escape(name)}</th><td colspan="2" class="muted">unavailable: {escape(why)}</td></tr>')
    head = '<thead><tr><th>metric</th><th class="num">value</th><th class="num">95% interval</th></tr></thead>'
    return f"<h2>Metrics</h2><table>{head}<tbody>{''.join(rows)}</tbody></table>"


def _statuses_line(run: Run) -> str:
    counts = run.record.get("status_counts") or {}
    items = ", ".join(f"{escape(s)} {c}" for s, c in sorted(counts.items(), key=lambda i: -i[1]))
    return f"<h2>Verdicts</h2><p>{items or 'none'} <small>(samples)</small></p>"


def _breakdown(run: Run) -> str:
    parts = []
    for by, groups in (run.record.get("breakdown") or {}).items():
        # pass@k first, then the rest; CodeBLEU's components stay on the metrics table above.
        found = {n for g in groups.values() for n in g.get("metrics", {}) if not n.startswith("codebleu_")}
        names = sorted(found, key=lambda n: (not n.startswith("pass@"), natural(n)))
        head = "".join(f'<th class="num">{escape(n)}</th>' for n in names)
        rows = []
        for group, g in sorted(groups.items(), key=lambda item: _level(item[0])):
            values = "".join(
                f'<td class="num">{fmt(n, g["metrics"][n]) if n in g.get("metrics", {}) else "–"}</td>' for n in names
            )
            rows.append(
                f'<tr><th>{escape(group)}</th><td class="num">{g.get("problems")}</td>'
                f'<td class="num">{g.get("executed_problems")}</td>{values}</tr>'
            )
        parts.append(
            f'<h2>By {escape(by)}</h2><table><thead><tr><th>{escape(by)}</th><th class="num">problems</th>'
            f'<th class="num">executed</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        )
    return "\n".join(parts)


def _level(group: str) -> tuple[int, str]:
    """metrics.json keeps its keys sorted, so the natural order of difficulty levels is restored here."""
    return (LEVELS.index(group.lower()) if group.lower() in LEVELS else len(LEVELS), group)


def _per_problem(run: Run) -> str:
    table_id = "problems"
    reasons = run.record.get("not_executed") or {}
    head = '<th>Problem</th><th class="num">Solved</th>' + "".join(f'<th class="num">{s}</th>' for s in STATUS_COLUMNS)
    head += '<th class="num">other</th><th>first failure</th>'
    rows = []
    for task_id in sorted(run.per_problem, key=natural):
        rows.append(_problem_row(task_id, run, reasons.get(task_id)))
    return (
        f"<h2>Per problem</h2>{filter_controls(table_id, 'Filter by problem')}"
        f'<div class="table-wrap"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _problem_row(task_id: str, run: Run, reason: str | None) -> str:
    counts = run.per_problem[task_id]
    statuses = run.statuses.get(task_id, {})
    if "correct" in counts:
        fraction = counts["correct"] / counts["n"] if counts["n"] else 0
        solved = f'<td class="num" data-v="{fraction}">{counts["correct"]}/{counts["n"]}</td>'
    else:
        solved = '<td class="num" data-v="">not executed</td>'
    cells = "".join(f'<td class="num">{statuses.get(s, 0)}</td>' for s in STATUS_COLUMNS)
    other = sum(c for s, c in statuses.items() if s not in (*STATUS_COLUMNS, "passed"))
    detail = reason or run.details.get(task_id, "")
    return (
        f'<tr data-key="{escape(task_id)}"><th>{escape(task_id)}</th>{solved}{cells}'
        f'<td class="num">{other}</td><td class="detail">{escape(detail)}</td></tr>'
    )
