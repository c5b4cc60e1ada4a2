"""Per-problem pass@k and percentile bootstraps over problems, in plain Python.

Problems are the unit of resampling: samples of one problem are not independent (they share its
difficulty), problems are. Every bootstrap draws from its own `random.Random(seed)`, so the same
inputs give the same interval on every machine and every run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from harness.metrics.pass_at_k import pass_at_k

SEED = 0
RESAMPLES = 2000


def per_problem_pass_at_k(per_problem: Mapping[str, Mapping[str, int]], k: int) -> dict[str, float]:
    """task_id -> pass@k of that problem, over the executed problems (those with a "correct" count)."""
    return {t: pass_at_k(c["n"], c["correct"], k) for t, c in per_problem.items() if "correct" in c and c["n"] >= k}


def bootstrap_mean(
    values: Sequence[float], confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """Percentile interval of the mean of `values`, resampling them with replacement."""
    if not values:
        return (float("nan"), float("nan"))
    means = _resampled_means(list(values), resamples, seed)
    return _percentiles(means, confidence)


def _resampled_means(values: list[float], resamples: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    size = len(values)
    if len(set(values)) == 1:
        return [values[0]] * resamples  # nothing varies: every resample has the same mean
    return sorted(sum(rng.choices(values, k=size)) / size for _ in range(resamples))


def _percentiles(sorted_means: list[float], confidence: float) -> tuple[float, float]:
    """The (1 - confidence)/2 and (1 + confidence)/2 quantiles (nearest rank) of sorted means."""
    tail = (1.0 - confidence) / 2.0
    last = len(sorted_means) - 1
    low = sorted_means[max(0, min(last, int(tail * len(sorted_means))))]
    high = sorted_means[max(0, min(last, int((1.0 - tail) * len(sorted_means)) - 1))]
    return (low, high)
