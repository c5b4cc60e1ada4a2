"""Finding and reading finished run directories, for the leaderboard and the gate.

Reading never writes: a run still being written (a torn last line, no metrics.json yet) is
reported as incomplete and skipped by the leaderboard, or refused by the gate, not repaired.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import UsageError

CONFIG, RESULTS, METRICS, SAMPLES = "config.json", "results.jsonl", "metrics.json", "samples.jsonl"
RUN_FILES = (CONFIG, METRICS, RESULTS, SAMPLES)
NOT_EXECUTED = "not_executed"  # harness.records.NOT_EXECUTED, repeated so that nothing heavy is imported
# A checkpoint of a series: checkpoint-500 (transformers' Trainer), step_500, ckpt500, ...
STEP = re.compile(r"^(?:checkpoint|step|ckpt|global_step)[-_]?(\d+)$", re.IGNORECASE)
# The last checkpoint of a series under another name (finetune/ writes DIR/final): after every step.
FINAL = ("final", "last", "latest", "best")
STAMP = re.compile(r"(\d{8}T\d{6}Z)")  # harness.config.default_out's UTC time


class BadRun(Exception):
    """A run directory that cannot be read: the message says why (the caller names the path)."""


@dataclass(frozen=True)
class Run:
    """One finished run, as the leaderboard and the gate see it."""

    path: Path
    task: str
    settings: dict[str, Any]
    manifest: dict[str, Any]
    record: dict[str, Any]  # metrics.json
    statuses: dict[str, Counter[str]]  # task_id -> status -> samples (from results.jsonl)
    details: dict[str, str] = field(default_factory=dict)  # task_id -> the first failure's detail

    @property
    def id(self) -> str:
        """A file-name-safe identifier, stable for the same directory."""
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:8]
        return f"{_slug(self.model)}-{_slug(self.task)}-{digest}"

    @property
    def source(self) -> str:
        """What produced the completions: the --model given, or the samples file evaluated."""
        return str(self.settings.get("model") or self.settings.get("samples") or self.record.get("model") or "?")

    @property
    def model(self) -> str:
        """The model's name: a checkpoint's series (its parent folder), else the source's last part."""
        parts = _parts(self.source)
        for index in range(len(parts) - 1, -1, -1):
            if STEP.match(parts[index]) or (index == len(parts) - 1 and parts[index].lower() in FINAL):
                return parts[index - 1] if index else parts[index]
        return parts[-1] if parts else self.source

    @property
    def checkpoint(self) -> str:
        """The checkpoint as given (a folder, an adapter, a hub id; for `evaluate`, the samples file)."""
        return self.source

    @property
    def step(self) -> int | None:
        """The fine-tuning step, where the source names one (checkpoint-500, step_500, ...)."""
        for part in reversed(_parts(self.source)):
            match = STEP.match(part)
            if match:
                return int(match.group(1))
        return None

    @property
    def order(self) -> tuple[float, str]:
        """Position in its series: by step, a final checkpoint after every step, else by date."""
        if self.step is not None:
            return (self.step, self.date)
        parts = _parts(self.source)
        return (float("inf") if parts and parts[-1].lower() in FINAL else -1.0, self.date)

    @property
    def backend(self) -> str | None:
        generation = self.manifest.get("generation") or {}
        if self.settings.get("command") == "evaluate":
            return None  # completions came from a file: no backend ran
        return generation.get("backend") or self.settings.get("backend")

    @property
    def temperature(self) -> float | None:
        if self.settings.get("command") == "evaluate":
            return None
        return (self.settings.get("sampling") or {}).get("temperature")

    @property
    def n(self) -> int | list[int]:
        return self.record.get("n")

    @property
    def metrics(self) -> dict[str, float]:
        return self.record.get("metrics") or {}

    @property
    def per_problem(self) -> dict[str, dict[str, int]]:
        return self.record.get("per_problem") or {}

    @property
    def date(self) -> str:
        """When the run was made (UTC): the stamp in its default folder name, else metrics.json's time."""
        for part in reversed(self.path.parts):
            match = STAMP.search(part)
            if match:
                stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ")
                return stamp.strftime("%Y-%m-%d %H:%M")
        mtime = os.stat(self.path / METRICS).st_mtime
        return datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%d %H:%M")

    def ks(self) -> list[int]:
        """The k of each pass@k present, ascending."""
        return sorted(int(name.split("@")[1]) for name in self.metrics if name.startswith("pass@"))


def _parts(source: str) -> list[str]:
    """The parts of a path or hub id, without a samples file's extension."""
    parts = [p for p in re.split(r"[\\/]+", source) if p not in ("", ".", "..")]
    if parts:
        parts[-1] = re.sub(r"\.(jsonl|json)$", "", parts[-1])
    return parts


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:40] or "run"


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run directories given, or found anywhere under the folders given, in a stable order.

    A folder counts as a run directory when it holds any of the run files, so that an incomplete
    one is found (and then reported), not silently passed over.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
        if not path.is_dir():
            raise UsageError(f"{path}: not a folder (give run directories or folders holding them)")
        for folder, subfolders, files in os.walk(path):
            subfolders.sort()
            if any(name in files for name in RUN_FILES):
                found.append(Path(folder))
                subfolders.clear()  # a run directory holds no other run
    return list(dict.fromkeys(found))


def read_run(path: Path) -> Run:
    """Read one finished run directory; BadRun says what is missing or damaged."""
    config = _json(path / CONFIG)
    record = _json(path / METRICS)
    settings, manifest = config.get("settings"), config.get("manifest")
    if not isinstance(settings, dict) or not isinstance(manifest, dict):
        raise BadRun(f"{CONFIG} lacks settings or manifest")
    for key in ("task", "metrics", "per_problem", "status_counts"):
        if key not in record:
            raise BadRun(f"{METRICS} lacks {key!r}")
    if record["task"] != settings.get("task"):
        raise BadRun(f"{METRICS} is for task {record['task']!r} but {CONFIG} for {settings.get('task')!r}")
    statuses, details = _statuses(path / RESULTS)
    for task_id, counts in record["per_problem"].items():
        if sum(statuses.get(task_id, Counter()).values()) != counts.get("n"):
            raise BadRun(
                f"{RESULTS} has {sum(statuses.get(task_id, Counter()).values())} rows for {task_id}, "
                f"{METRICS} says {counts.get('n')} (incomplete run?)"
            )
    return Run(path, record["task"], settings, manifest, record, statuses, details)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadRun(f"no {path.name} (an unfinished run?)") from None
    except (OSError, ValueError) as exc:
        raise BadRun(f"{path.name} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadRun(f"{path.name} is not a JSON object")
    return data


def _statuses(path: Path) -> tuple[dict[str, Counter[str]], dict[str, str]]:
    """task_id -> Counter of statuses, and the detail of each problem's first non-passing sample."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BadRun(f"no {path.name}") from None
    except OSError as exc:
        raise BadRun(f"{path.name} is not readable ({exc})") from None
    statuses: dict[str, Counter[str]] = {}
    details: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line)
            task_id, status = row["task_id"], row["status"]
        except (ValueError, KeyError, TypeError):
            raise BadRun(f"{path.name}:{number} is not a results row") from None
        statuses.setdefault(task_id, Counter())[status] += 1
        if status != "passed" and row.get("detail") and task_id not in details:
            details[task_id] = str(row["detail"])
    return statuses, details


def load_runs(paths: list[str | Path], warn) -> list[Run]:
    """Every readable run under `paths`; each one that is not is passed to `warn` by name and skipped."""
    runs = []
    for path in find_run_dirs(paths):
        try:
            runs.append(read_run(path))
        except BadRun as exc:
            warn(f"skipped {path}: {exc}")
    return runs
