"""The run directory: the contract that the leaderboard, the gate and outside scripts read.

    config.json     resolved settings + environment manifest
    samples.jsonl   one row per completion
    results.jsonl   one row per completion: its verdict (or NOT_EXECUTED) and sentence BLEU
    metrics.json    the scores

Rows are appended and flushed one at a time, so a killed run (even kill -9) keeps every
finished row; a torn last line is dropped when the file is read back, and the re-run
continues from there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from harness.errors import UsageError
from tasks.base import Completion

CONFIG = "config.json"
SAMPLES = "samples.jsonl"
RESULTS = "results.jsonl"
METRICS = "metrics.json"
# The status of a results row whose problem is scored by similarity only: it has no tests, or
# its task is not executed at all. Such a row has `detail` (the reason) and no `passed`.
NOT_EXECUTED = "not_executed"


class RunDirectory:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Refuse to mix runs: an existing config.json must hold these same settings."""
        config = self.path / CONFIG
        if not config.exists():
            return
        old = self.read_json(CONFIG).get("settings", {})
        changed = sorted(key for key in settings.keys() | old.keys() if old.get(key) != settings.get(key))
        if changed:
            what = ", ".join(f"{key}: {old.get(key)!r} -> {settings.get(key)!r}" for key in changed)
            raise UsageError(f"{self.path} holds a run with other settings ({what}); choose another --out")

    def write_config(self, settings: dict[str, Any], manifest: dict[str, Any]) -> None:
        """Write config.json once; a resumed run keeps the manifest of its first start."""
        if not (self.path / CONFIG).exists():
            self.write_json(CONFIG, {"settings": settings, "manifest": manifest})

    def read_json(self, name: str) -> dict[str, Any]:
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Write atomically: readers see the old file or the new one, never half of one."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path / name)

    def read_rows(self, name: str) -> list[dict[str, Any]]:
        """All complete rows of a JSONL file; a torn last line (from a kill) is cut off."""
        path = self.path / name
        if not path.exists():
            return []
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with open(path, "r+b") as f:
                f.truncate(len(complete))
        rows = []
        for number, line in enumerate(complete.decode().splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise UsageError(f"{path}:{number}: not a JSON row; the run directory is damaged") from None
        return rows

    @contextmanager
    def appender(self, name: str) -> Iterator[RowWriter]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / name, "a", encoding="utf-8") as f:
            yield RowWriter(f)


class RowWriter:
    def __init__(self, file: IO[str]) -> None:
        self._file = file

    def write(self, row: dict[str, Any]) -> None:
        # One write call per row, flushed at once, so a kill leaves at most one torn line.
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()


def completion(row: dict[str, Any]) -> Completion:
    """The Completion a samples.jsonl row holds."""
    full = "solution" in row
    return Completion(
        task_id=row["task_id"],
        completion_id=row["completion_id"],
        text=row["solution"] if full else row["completion"],
        full_program=full,
        raw=row.get("raw", ""),
        finish_reason=row.get("finish_reason", ""),
    )
