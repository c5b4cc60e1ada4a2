"""The summary tables printed at the end of a run."""

from __future__ import annotations

from typing import Any

from harness.records import NOT_EXECUTED
from sandbox.base import STATUSES


def results_table(record: dict[str, Any]) -> str:
    """Markdown tables of one run: its metrics and verdict counts, then its breakdown if any."""
    rows = [
        ("task", record["task"]),
        ("model", str(record["model"])),
        ("problems", str(record["problems"])),
        ("samples per problem", str(record["n"])),
    ]
    executed = record.get("executed_problems", record["problems"])
    if executed == 0:
        rows.append(("executed against tests", "none (scored by similarity only)"))
    elif executed != record["problems"]:
        rows.append(("executed against tests", f"{executed} of {record['problems']} (the rest by similarity only)"))
    rows += [(name, _value(name, value)) for name, value in record["metrics"].items()]
    unavailable = record.get("unavailable", {})
    rows += [(name, "unavailable (below)") for name in unavailable]
    if executed:
        solved = sum(1 for c in record["per_problem"].values() if c.get("correct"))
        rows.append(("problems solved at least once", f"{solved}/{executed}"))
    counts = record["status_counts"]
    order = [*STATUSES, NOT_EXECUTED]
    rows.append(("verdicts", ", ".join(f"{s} {counts[s]}" for s in order if s in counts) or "none"))
    # Reasons go under the table, so that one long reason does not widen every row.
    tables = [_table(["", "result"], rows) + "".join(f"\n{name}: {why}" for name, why in unavailable.items())]
    for by, groups in record.get("breakdown", {}).items():
        tables.append(_breakdown(by, groups))
    return "\n\n".join(tables)


def comparison_table(rows: list[tuple[str, str, dict[str, Any] | None]]) -> str:
    """One Markdown row per (checkpoint, task) of a series: problems, n and the headline metrics
    side by side (CodeBLEU's components stay in each metrics.json). A run that a re-run must
    finish (exit 3) shows as incomplete."""
    records = [record for _, _, record in rows if record is not None]
    names = list(dict.fromkeys(n for r in records for n in r["metrics"] if not n.startswith("codebleu_")))
    header = ["model", "task", "problems", "n", *names]
    lines = []
    for model, task, record in rows:
        if record is None:
            lines.append((model, task, "incomplete", "-", *("-" for _ in names)))
            continue
        values = (_value(name, record["metrics"].get(name)) for name in names)
        lines.append((model, task, str(record["problems"]), str(record["n"]), *values))
    unavailable = {name: why for r in records for name, why in r.get("unavailable", {}).items()}
    return _table(header, lines) + "".join(f"\n{name}: unavailable: {why}" for name, why in unavailable.items())


def _breakdown(by: str, groups: dict[str, Any]) -> str:
    # CodeBLEU's components stay in metrics.json: the table keeps to one screen.
    names = list(dict.fromkeys(n for g in groups.values() for n in g["metrics"] if not n.startswith("codebleu_")))
    header = [by, "problems", "executed", *names]
    rows = [
        (group, str(g["problems"]), str(g["executed_problems"]), *(_value(n, g["metrics"].get(n)) for n in names))
        for group, g in groups.items()
    ]
    return _table(header, rows)


def _value(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if name == "bleu" else f"{value:.4f}"  # BLEU is 0-100, the rest 0-1


def _table(header: list[str], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [_line(header, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [_line(row, widths) for row in rows]
    return "\n".join(lines)


def _line(cells: tuple[str, ...] | list[str], widths: list[int]) -> str:
    return "| " + " | ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths)) + " |"
