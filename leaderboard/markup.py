"""Small HTML pieces shared by the leaderboard's pages. Every value from a run goes through
html.escape before it reaches a page."""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any


def filter_controls(table_id: str, placeholder: str, differing: bool = False) -> str:
    """Search box (and matrix checkbox); hidden until the script runs, since without it they do nothing."""
    extra = (
        f'<label hidden><input type="checkbox" data-only-differing="{table_id}"> '
        "only problems where runs differ</label>"
        if differing
        else ""
    )
    return (
        f'<div class="controls"><label hidden>{escape(placeholder)} '
        f'<input type="search" data-filter="{table_id}" placeholder="{escape(placeholder.lower())}"></label>'
        f'{extra}<span class="muted" data-count="{table_id}"></span></div>'
    )


def fmt(metric: str, value: float) -> str:
    return f"{value:.2f}" if metric == "bleu" else f"{value:.4f}"  # BLEU is 0-100, the rest 0-1


def short(text: str, most: int = 48) -> str:
    return text if len(text) <= most else "…" + text[-(most - 1) :]


def natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: sampling.temperature, packages.torch, ..."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in sorted(data.items()):
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def kv(facts: dict[str, Any]) -> str:
    items = "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(show(v))}</dd>" for k, v in facts.items())
    return f'<dl class="kv">{items}</dl>'


def show(value: Any) -> str:
    if value is None:
        return "–"
    return value if isinstance(value, str) else json.dumps(value)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "task"
