"""The summary table printed at the end of a run."""

from __future__ import annotations

from typing import Any

from sandbox.base import STATUSES


def results_table(record: dict[str, Any]) -> str:
    """A small Markdown table of one run's metrics and verdict counts."""
    solved = sum(1 for c in record["per_problem"].values() if c["correct"])
    rows = [
        ("task", record["task"]),
        ("model", str(record["model"])),
        ("problems", str(record["problems"])),
        ("samples per problem", str(record["n"])),
    ]
    rows += [(name, f"{value:.4f}") for name, value in record["metrics"].items()]
    rows.append(("problems solved at least once", f"{solved}/{record['problems']}"))
    counts = record["status_counts"]
    rows.append(("verdicts", ", ".join(f"{s} {counts[s]}" for s in STATUSES if s in counts) or "none"))
    width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    lines = [f"| {'':<{width}} | {'result':<{value_width}} |", f"|{'-' * (width + 2)}|{'-' * (value_width + 2)}|"]
    lines += [f"| {name:<{width}} | {value:<{value_width}} |" for name, value in rows]
    return "\n".join(lines)
