"""Statistics over seeds: mean, standard deviation, Student-t confidence interval, binomial sampling error."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Interval:
    mean: float
    std: float  # sample standard deviation (ddof=1); nan for one value
    low: float
    high: float
    n: int


def t_interval(values: list[float], confidence: float = 0.95) -> Interval:
    """Two-sided Student-t interval for the mean; with one value the interval is unbounded (nothing is known)."""
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, math.nan, -math.inf, math.inf, 1)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf((1 + confidence) / 2, df=n - 1) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n)


def binomial_se(accuracy: float, test_size: int) -> float:
    """Standard error of an accuracy measured on ``test_size`` independent examples."""
    return math.sqrt(accuracy * (1 - accuracy) / test_size)
