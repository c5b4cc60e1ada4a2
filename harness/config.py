"""The resolved settings of one command, validated in one place.

The CLI builds a RunConfig and passes it down; nothing below the CLI reads argv.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness.errors import UsageError


@dataclass(frozen=True)
class Sampling:
    """How completions are drawn. temperature 0 means greedy decoding."""

    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 0  # 0: no top-k filtering
    repetition_penalty: float = 1.0
    max_new_tokens: int = 512
    seed: int = 1234

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class RunConfig:
    """Everything `harness run` or `harness evaluate` needs to know."""

    command: str  # "run" (generate, then score) or "evaluate" (score a samples file)
    task: str
    data: str | None = None  # a local copy of the task's dataset (None: the upstream one)
    split: str | None = None  # the split to evaluate (None: the task's default)
    ks: tuple[int, ...] | None = None  # None: run reports pass@1; evaluate, each of 1, 10, 100 that n allows
    n: int | None = None  # samples per problem; None: the largest k (run only)
    model: str | None = None
    samples: str | None = None  # the file `evaluate` scores
    backend: str = "hf"
    sampling: Sampling = field(default_factory=Sampling)
    batch_size: int = 16
    limit: int | None = None
    task_ids: tuple[str, ...] | None = None
    device: str = "auto"
    chat: bool | None = None  # None: use the chat template when the checkpoint has one
    sandbox: str = "process"
    workers: int | None = None
    out: str | None = None
    bertscore_model: str | None = None  # a local model folder for BERTScore (None: not reported)

    def resolved(self) -> RunConfig:
        """Validate, and fill in the defaults that depend on other settings."""
        self._validate()
        ks, n = self.ks, self.n
        if self.command == "run":
            ks = ks or (1,)
            n = n or (1 if self.sampling.greedy else max(ks))
        out = self.out or default_out(self.model or Path(self.samples or "samples").stem, self.task)
        return dataclasses.replace(self, ks=ks, n=n, out=out)

    def settings(self) -> dict:
        """The settings that decide a run's results: a re-run into the same --out must match."""
        fields = dataclasses.asdict(self)
        for incidental in ("out", "workers", "sandbox"):
            fields.pop(incidental)
        return json.loads(json.dumps(fields))  # as config.json holds them: tuples become lists

    def _validate(self) -> None:
        s = self.sampling
        checks = [
            (all(k >= 1 for k in self.ks or ()), "--k takes positive integers, e.g. 1,10,100"),
            (self.n is None or self.n >= 1, "--n must be at least 1"),
            (s.temperature >= 0, "--temperature must be >= 0"),
            (0 < s.top_p <= 1, "--top-p must be in (0, 1]"),
            (s.top_k >= 0, "--top-k must be >= 0"),
            (s.repetition_penalty > 0, "--repetition-penalty must be > 0"),
            (s.max_new_tokens >= 1, "--max-new-tokens must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.limit is None or self.limit >= 1, "--limit must be at least 1"),
            (self.workers is None or self.workers >= 1, "--workers must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        if self.command == "run":
            self._validate_samples_per_problem()

    def _validate_samples_per_problem(self) -> None:
        n, k = self.n, max(self.ks or (1,))
        if self.sampling.greedy and (n or 1) > 1:
            raise UsageError("--temperature 0 is greedy decoding: all samples would be equal; use --n 1")
        if self.sampling.greedy and k > 1:
            raise UsageError(f"pass@{k} needs {k} samples, and greedy decoding (--temperature 0) gives one; use --k 1")
        if n is not None and n < k:
            raise UsageError(f"pass@{k} needs at least {k} samples per problem, but --n is {n}")


def parse_ks(text: str) -> tuple[int, ...]:
    """ "1,10,100" -> (1, 10, 100)."""
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise UsageError(f"--k takes comma-separated integers, e.g. 1,10,100, not {text!r}") from None
    if not ks:
        raise UsageError("--k needs at least one value")
    return ks


def default_out(model: str, task: str) -> str:
    """runs/<model-name>/<task>/<UTC timestamp>."""
    name = re.sub(r"[^\w.-]+", "_", Path(os.path.normpath(model)).name or model).strip("_") or "model"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return str(Path("runs", name, task, stamp))
