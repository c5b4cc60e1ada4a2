"""metrics.json from the run directory: pass@k over the executed problems, similarity over every
sample that has a reference, the same again for each group of the task's breakdown (LeetCode:
difficulty), and the problems that were scored by similarity only, each with its reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from harness.config import RunConfig
from harness.metrics import similarity
from harness.metrics.bertscore import bertscore_f1
from harness.metrics.pass_at_k import mean_pass_at_k
from harness.records import METRICS, NOT_EXECUTED, RESULTS, SAMPLES, RunDirectory, completion
from tasks.base import Problem, Task

DEFAULT_KS = (1, 10, 100)  # what `evaluate` reports when --k is not given, where n allows


def score(
    config: RunConfig, task: Task, problems: list[Problem], rundir: RunDirectory, scorer: similarity.Scorer
) -> dict[str, Any]:
    per_problem, statuses, not_executed = _count(problems, rundir.read_rows(RESULTS))
    samples = _similarity_samples(task, problems, rundir, scorer, config.bertscore_model)
    ns = {c["n"] for c in per_problem.values()}
    record = {
        "task": config.task,
        "model": config.model or config.samples,
        "n": config.n if config.command == "run" else (ns.pop() if len(ns) == 1 else sorted(ns)),
        "problems": len(per_problem),
        "executed_problems": sum("correct" in c for c in per_problem.values()),
        # The problems of an executed task scored by similarity only, with the reason (never dropped).
        "not_executed": not_executed if "pass@k" in task.metrics else {},
        **_metrics(config, task, problems, per_problem, samples, scorer),
        "status_counts": dict(sorted(statuses.items())),
        "per_problem": per_problem,
    }
    if task.breakdown:
        record["breakdown"] = {task.breakdown: _breakdown(config, task, problems, per_problem, samples, scorer)}
    rundir.write_json(METRICS, record)
    return record


def _count(
    problems: list[Problem], results: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, int]], Counter[str], dict[str, str]]:
    """Per problem {"n", and "correct" where executed}, the status counts, and the reason of each
    problem scored by similarity only (in the task's order)."""
    per_problem: dict[str, dict[str, int]] = {p.task_id: {"n": 0} for p in problems}
    statuses: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    for row in results:
        counts = per_problem[row["task_id"]]
        counts["n"] += 1
        statuses[row["status"]] += 1
        if row["status"] == NOT_EXECUTED:
            reasons[row["task_id"]] = row["detail"]
        else:
            counts["correct"] = counts.get("correct", 0) + bool(row["passed"])
    return per_problem, statuses, {t: reasons[t] for t in per_problem if t in reasons}


class _Samples:
    """Every sample with a reference: its problem, similarity statistics and BERTScore F1."""

    def __init__(self) -> None:
        self.task_ids: list[str] = []
        self.stats: list[similarity.SampleStats] = []
        self.bertscore: list[float] | None = None
        self.bertscore_unavailable: str | None = None

    def select(self, task_ids: set[str]) -> tuple[list[similarity.SampleStats], list[float] | None]:
        chosen = [i for i, t in enumerate(self.task_ids) if t in task_ids]
        bert = None if self.bertscore is None else [self.bertscore[i] for i in chosen]
        return [self.stats[i] for i in chosen], bert


def _similarity_samples(
    task: Task, problems: list[Problem], rundir: RunDirectory, scorer: similarity.Scorer, bertscore_model: str | None
) -> _Samples:
    out = _Samples()
    if not set(task.metrics) & {*similarity.METRICS, "bertscore"}:
        return out
    by_id = {p.task_id: p for p in problems}
    predictions, references = [], []
    for row in rundir.read_rows(SAMPLES):
        pair = task.similarity_pair(by_id[row["task_id"]], completion(row))
        if pair is not None:
            out.task_ids.append(row["task_id"])
            predictions.append(pair[0])
            references.append(pair[1])
    if predictions and set(task.metrics) & set(similarity.METRICS):
        out.stats = scorer.sample_stats(predictions, references)
    if "bertscore" in task.metrics:
        out.bertscore, out.bertscore_unavailable = (
            bertscore_f1(predictions, references, bertscore_model) if predictions else (None, "no references")
        )
    return out


def _metrics(
    config: RunConfig,
    task: Task,
    problems: Sequence[Problem],
    per_problem: dict[str, dict[str, int]],
    samples: _Samples,
    scorer: similarity.Scorer,
) -> dict[str, Any]:
    """{"metrics": {...}} for these problems, and {"unavailable": {...}} where a metric is."""
    ids = {p.task_id for p in problems}
    executed = {t: (c["n"], c["correct"]) for t, c in per_problem.items() if t in ids and "correct" in c}
    metrics: dict[str, float] = {}
    if "pass@k" in task.metrics:
        metrics.update(mean_pass_at_k(executed, config.ks or DEFAULT_KS))
    stats, bert = samples.select(ids)
    wanted = {
        m for m in similarity.METRICS if m in task.metrics or (m.startswith("codebleu_") and "codebleu" in task.metrics)
    }
    metrics.update({m: v for m, v in scorer.corpus_scores(stats).items() if m in wanted})
    out: dict[str, Any] = {"metrics": metrics}
    if "bertscore" in task.metrics:
        if bert:
            metrics["bertscore"] = sum(bert) / len(bert)
        else:
            out["unavailable"] = {"bertscore": samples.bertscore_unavailable or "no references"}
    return out


def _breakdown(
    config: RunConfig,
    task: Task,
    problems: list[Problem],
    per_problem: dict[str, dict[str, int]],
    samples: _Samples,
    scorer: similarity.Scorer,
) -> dict[str, Any]:
    """group -> {"problems", "executed_problems", "metrics"}, in the task's order of groups."""
    groups: dict[str, list[Problem]] = {}
    for problem in problems:
        groups.setdefault(str(problem.metadata.get(task.breakdown or "", "unknown")), []).append(problem)
    order = list(task.breakdown_order)
    out = {}
    for name in sorted(groups, key=lambda g: (order.index(g) if g in order else len(order), g)):
        members = groups[name]
        scored = _metrics(config, task, members, per_problem, samples, scorer)
        out[name] = {
            "problems": len(members),
            "executed_problems": sum("correct" in per_problem[p.task_id] for p in members),
            "metrics": scored["metrics"],
        }
    return out
