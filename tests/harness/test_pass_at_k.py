from fractions import Fraction
from math import comb

import pytest

from harness.metrics.pass_at_k import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # c / n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 0, 3, 0.0),
        (5, 5, 1, 1.0),
        (10, 1, 10, 1.0),  # all samples drawn: the one correct one is among them
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    ],
)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_stable_where_binomials_are_huge():
    exact = 1 - Fraction(comb(200 - 3, 100), comb(200, 100))
    assert pass_at_k(200, 3, 100) == pytest.approx(float(exact), rel=1e-12)
    assert 0.0 < pass_at_k(1000, 1, 1) < 0.0011


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_over_problems_skips_k_larger_than_the_smallest_n():
    counts = {"a": (10, 5), "b": (10, 0), "c": (4, 4)}
    metrics = mean_pass_at_k(counts, [1, 4, 10])
    assert set(metrics) == {"pass@1", "pass@4"}
    assert metrics["pass@1"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert metrics["pass@4"] == pytest.approx((pass_at_k(10, 5, 4) + 0 + 1) / 3)
