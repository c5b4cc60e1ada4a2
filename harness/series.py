"""Several checkpoints and tasks in one command.

`harness run --model A --model B --task humaneval --task leetcode`, or `--model 'DIR/checkpoint-*'`
(a fine-tuning output folder, in step order): one run directory per (checkpoint, task), each an
ordinary run that resumes on its own. Checkpoints run one after another, each loaded once for all
its tasks; a backend that can (hf, vllm) swaps in the next adapter of the same base model without
loading the base again.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import RunConfig, default_out
from harness.errors import UsageError


@dataclass
class Outcome:
    """One (checkpoint, task) of a series: its metrics record, or why it is unfinished."""

    name: str  # the checkpoint's short name, as in its run directory
    config: RunConfig
    record: dict[str, Any] | None = None
    incomplete: str | None = None  # the message of an IncompleteRun (exit 3: re-run to finish)


def expand_models(values: Sequence[str]) -> list[str]:
    """--model values with globs expanded (each glob's folders in step order), duplicates dropped."""
    models: list[str] = []
    for value in values:
        if glob.has_magic(value):
            matches = [m for m in glob.glob(os.path.expanduser(value)) if os.path.isdir(m)]
            if not matches:
                raise UsageError(f"--model {value}: no checkpoint folder matches")
            models += sorted(matches, key=step_order)
        else:
            models.append(value)
    return list(dict.fromkeys(models))


def step_order(path: str) -> tuple[int, int, str]:
    """checkpoint-200 before checkpoint-1000; names without a trailing number after those with one."""
    match = re.search(r"(\d+)$", Path(os.path.normpath(path)).name)
    return (0, int(match.group(1)), path) if match else (1, 0, path)


def short_names(models: Sequence[str]) -> dict[str, str]:
    """A folder-safe name per checkpoint: its last path part, or more parts where two share one."""
    names: dict[str, str] = {}
    for depth in range(1, 64):
        names = {m: _name(m, depth) for m in models}
        if len(set(names.values())) == len(models):
            return names
    return names


def _name(model: str, depth: int) -> str:
    parts = Path(os.path.normpath(os.path.expanduser(model))).parts[-depth:]
    return re.sub(r"[^\w.-]+", "_", "_".join(p for p in parts if p != os.sep)).strip("_") or "model"


def plan(base: RunConfig, models: Sequence[str], tasks: Sequence[str]) -> list[Outcome]:
    """One config per (checkpoint, task), checkpoint by checkpoint. A single pair keeps --out as
    given; several go to --out/<checkpoint>/<task> (default runs/<checkpoint>/<task>/<time>)."""
    tasks = list(dict.fromkeys(tasks))
    if len(tasks) > 1 and base.data:
        raise UsageError("--data is one task's dataset: give it with one --task")
    names = short_names(models)
    outcomes = []
    for model in models:
        for task in tasks:
            if len(models) * len(tasks) == 1:
                out = base.out
            elif base.out:
                out = str(Path(base.out) / names[model] / task)
            else:
                out = default_out(names[model], task)
            config = dataclasses.replace(base, model=model, task=task, out=out)
            outcomes.append(Outcome(names[model], config.resolved()))
    return outcomes


class Backends:
    """The one loaded backend of a series: kept for the next task, switched to the next adapter
    of its base where the backend can, else closed and replaced."""

    def __init__(self) -> None:
        self.backend: Any = None
        self.model: str | None = None

    def __call__(self, config: RunConfig) -> Any:
        from harness.run import new_backend

        if self.backend is not None and self.model == config.model:
            return self.backend
        switch = getattr(self.backend, "switch", None)
        if switch is not None and switch(config.model):
            print(f"switched to {config.model} (base model kept in memory)", file=sys.stderr)
        else:
            self.close()
            self.backend = new_backend(config)
        self.model = config.model
        return self.backend

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()
        self.backend, self.model = None, None


def run_series(outcomes: list[Outcome]) -> list[Outcome]:
    """Carry out each run of the plan, loading each checkpoint once; fill in the outcomes."""
    from harness.execution import IncompleteRun
    from harness.run import run

    backends = Backends()
    try:
        for number, outcome in enumerate(outcomes, 1):
            if len(outcomes) > 1:
                config = outcome.config
                print(f"[{number}/{len(outcomes)}] {config.model} on {config.task}", file=sys.stderr)
            try:
                outcome.record = run(outcome.config, backends)
            except IncompleteRun as exc:
                outcome.incomplete = str(exc)
                print(f"harness: {exc}", file=sys.stderr)
    finally:
        backends.close()
    return outcomes
