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


DTYPES = ("auto", "float16", "bfloat16", "float32")
EXECUTORS = ("local", "ray")


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
    backend: str = "auto"  # resolved to vllm (installed, and a GPU present) or hf
    sampling: Sampling = field(default_factory=Sampling)
    batch_size: int | None = None  # None: the backend's default (16; vllm 4096)
    limit: int | None = None
    task_ids: tuple[str, ...] | None = None
    device: str = "auto"
    chat: bool | None = None  # None: use the chat template when the checkpoint has one
    sandbox: str = "process"
    workers: int | None = None
    out: str | None = None
    bertscore_model: str | None = None  # a local model folder for BERTScore (None: not reported)
    # Backend options (harness.backends.ONLY_FOR says which backend reads each). New fields
    # default to None, so that config.json files written before them still match on resume.
    dtype: str | None = None  # hf, vllm: None or "auto" is the backend's choice
    load_in_bits: int | None = None  # hf: 4 or 8 (bitsandbytes)
    quantization: str | None = None  # vllm: its --quantization (awq, gptq, fp8, ...)
    tensor_parallel_size: int | None = None  # vllm (None: 1)
    gpu_memory_utilization: float | None = None  # vllm (None: vLLM's default)
    max_model_len: int | None = None  # vllm (None: the model's own)
    base_url: str | None = None  # openai: the server, e.g. http://localhost:8000/v1
    api_key: str | None = None  # openai: the NAME of the environment variable holding the key
    concurrency: int | None = None  # openai: requests in flight (None: 8)
    request_timeout: float | None = None  # openai: seconds per request (None: 600)
    # Scale-out on a Ray cluster (harness/cluster/): where programs run and generation replicas.
    executor: str = "local"  # "local" (this machine) or "ray" (sandbox actors on every node)
    ray_address: str | None = None  # None: the cluster ray.init() finds, or a local one it starts
    data_parallel: int = 1  # backend replicas as Ray actors (1: the backend in this process)

    def resolved(self) -> RunConfig:
        """Validate, and fill in the defaults that depend on other settings."""
        self._validate()
        ks, n, backend, batch_size = self.ks, self.n, self.backend, self.batch_size
        if self.command == "run":
            ks = ks or (1,)
            n = n or (1 if self.sampling.greedy else max(ks))
            backend, batch_size = self._resolved_backend()
        out = self.out or default_out(self.model or Path(self.samples or "samples").stem, self.task)
        return dataclasses.replace(self, ks=ks, n=n, out=out, backend=backend, batch_size=batch_size)

    def _resolved_backend(self) -> tuple[str, int]:
        """`auto` made concrete (so that config.json says which ran), and its batch size."""
        from harness import backends

        backend = backends.choose(self.backend)
        for name, only in backends.ONLY_FOR.items():
            if getattr(self, name) is not None and backend != only:
                flag = "--load-in-4bit/--load-in-8bit" if name == "load_in_bits" else "--" + name.replace("_", "-")
                chosen = f" (--backend auto chose {backend})" if self.backend == "auto" else ""
                raise UsageError(f"{flag} applies to --backend {only} only, not {backend}{chosen}")
        if backend == "openai" and not self.base_url:
            raise UsageError("--backend openai needs --base-url, e.g. http://localhost:8000/v1")
        return backend, self.batch_size or backends.default_batch_size(backend)

    def settings(self) -> dict:
        """The settings that decide a run's results: a re-run into the same --out must match."""
        fields = dataclasses.asdict(self)
        where = ("executor", "ray_address", "data_parallel")  # where the work runs, not what it gives
        for incidental in ("out", "workers", "sandbox", "api_key", "concurrency", "request_timeout", *where):
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
            (self.batch_size is None or self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.dtype in (None, *DTYPES), f"--dtype takes {', '.join(DTYPES)}"),
            (self.load_in_bits in (None, 4, 8), "load_in_bits must be 4 or 8"),
            (
                self.tensor_parallel_size is None or self.tensor_parallel_size >= 1,
                "--tensor-parallel-size must be at least 1",
            ),
            (
                self.gpu_memory_utilization is None or 0 < self.gpu_memory_utilization <= 1,
                "--gpu-memory-utilization must be in (0, 1]",
            ),
            (self.max_model_len is None or self.max_model_len >= 1, "--max-model-len must be at least 1"),
            (self.concurrency is None or self.concurrency >= 1, "--concurrency must be at least 1"),
            (self.request_timeout is None or self.request_timeout > 0, "--request-timeout must be > 0"),
            (self.limit is None or self.limit >= 1, "--limit must be at least 1"),
            (self.workers is None or self.workers >= 1, "--workers must be at least 1"),
            (self.executor in EXECUTORS, f"--executor takes {' or '.join(EXECUTORS)}, not {self.executor!r}"),
            (self.data_parallel >= 1, "--data-parallel must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        self._validate_cluster()
        if self.command == "run":
            self._validate_samples_per_problem()

    def _validate_cluster(self) -> None:
        from harness.cluster import INSTALL_HINT, ray_installed, uses_ray

        if self.ray_address and not uses_ray(self):
            raise UsageError("--ray-address applies with --executor ray or --data-parallel N only")
        if uses_ray(self) and not ray_installed():
            flag = "--executor ray" if self.executor == "ray" else "--data-parallel"
            raise UsageError(f"{flag} needs Ray, which is not installed: {INSTALL_HINT}")

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
