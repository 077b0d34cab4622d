"""Statistics over seeds: intervals for the mean, the sequential design's error spending, one run's prediction.

Every value is one run's metric (e.g. test accuracy) for one seed; seeds are independent draws of the protocol's
run-to-run variation, which is assumed roughly normal. Each rule's docstring says what error it controls; the
tests check those contracts by simulation with known truth (tests/test_claims.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from scipy import stats


@dataclass(frozen=True)
class Interval:
    mean: float
    std: float  # sample standard deviation (ddof=1); nan for one value
    low: float
    high: float
    n: int


@lru_cache(maxsize=4096)
def t_quantile(probability: float, df: int) -> float:
    """Student t quantile, cached: a sequential verdict asks for the same few at every look."""
    return float(stats.t.ppf(probability, df=df))


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        raise ValueError("needs at least one value")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std


def t_interval(values: list[float], confidence: float = 0.95) -> Interval:
    """Two-sided Student-t interval for the mean; with one value the interval is unbounded (nothing is known)."""
    mean, std = _mean_std(values)
    n = len(values)
    if n == 1:
        return Interval(mean, math.nan, -math.inf, math.inf, 1)
    half = stats.t.ppf((1 + confidence) / 2, df=n - 1) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n)


def one_sided_bounds(values: list[float], alpha: float) -> Interval:
    """The mean's one-sided (1 - alpha) lower bound and, separately, its one-sided (1 - alpha) upper bound.

    Each bound alone misses the true mean with probability alpha (Student t, normal runs); unbounded below two
    values, where the spread is unknown.
    """
    mean, std = _mean_std(values)
    n = len(values)
    if n < 2 or not std > 0:
        # Two identical values say nothing about the spread either: no bound can be claimed from them.
        return Interval(mean, std, -math.inf, math.inf, n)
    half = t_quantile(1 - alpha, n - 1) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n)


@dataclass(frozen=True)
class Design:
    """When the evidence is looked at, and how much error each look may spend.

    A fixed design (``seeds=5``) looks once, at ``max_seeds``, with the whole ``alpha``. A sequential design
    (``seeds=auto``) looks after every seed from ``min_seeds`` to ``max_seeds`` and may stop at any look, so its
    looks share ``alpha``: half at the last look, the other half split evenly over the earlier ones. By the union
    bound the chance that *any* look wrongly crosses a boundary is at most ``alpha`` (Bonferroni alpha spending;
    Jennison & Turnbull, *Group Sequential Methods*, 2000, ch. 7), whatever the correlation between looks. It
    is conservative (simulated: about 3.4% for 3..10 seeds at alpha 0.05), in exchange for a guarantee that
    needs no simulation to hold. Spending half at the last look keeps most of a fixed 10-seed design's power.
    """

    min_seeds: int
    max_seeds: int
    alpha: float = 0.05
    sequential: bool = True

    @classmethod
    def fixed(cls, seeds: int, alpha: float = 0.05) -> Design:
        return cls(min_seeds=seeds, max_seeds=seeds, alpha=alpha, sequential=False)

    @property
    def looks(self) -> range:
        first = self.min_seeds if self.sequential else self.max_seeds
        return range(first, self.max_seeds + 1)

    def alpha_at(self, n: int) -> float:
        """The error this design spends at the look after ``n`` seeds (0 where it does not look)."""
        looks = self.looks
        if n not in looks:
            return 0.0
        if len(looks) == 1:
            return self.alpha
        if n == self.max_seeds:
            return self.alpha / 2
        return self.alpha / 2 / (len(looks) - 1)


def prediction_interval(values: list[float], confidence: float = 0.95) -> Interval:
    """Where one more run of the protocol falls, with probability ``confidence`` (normal runs, Student t)."""
    mean, std = _mean_std(values)
    n = len(values)
    if n < 2:
        return Interval(mean, std, -math.inf, math.inf, n)
    half = stats.t.ppf((1 + confidence) / 2, df=n - 1) * std * math.sqrt(1 + 1 / n)
    return Interval(mean, std, mean - half, mean + half, n)


def probability_one_run_reaches(values: list[float], target: float) -> float:
    """Estimated chance that a single new run scores at least ``target``: the Student-t predictive distribution.

    ``(new - mean) / (s * sqrt(1 + 1/n))`` follows t with n-1 degrees of freedom for normal runs, which carries
    the uncertainty of the estimated mean and spread into the probability. nan below two values.
    """
    mean, std = _mean_std(values)
    n = len(values)
    if n < 2:
        return math.nan
    if std == 0:
        return 1.0 if mean >= target else 0.0
    return float(stats.t.sf((target - mean) / (std * math.sqrt(1 + 1 / n)), df=n - 1))


def seeds_to_decide(mean: float, std: float, margin: float, alpha: float, cap: int = 1000) -> int | None:
    """Roughly how many seeds a look at level ``alpha`` would need to put the mean's bound clear of ``margin``.

    A planning figure, not a promise: it assumes the mean and spread stay as measured so far. None when more
    than ``cap`` seeds would be needed (the mean sits on the margin).
    """
    distance = abs(mean - margin)
    if not std > 0:
        return 2
    for n in range(2, cap + 1):
        if t_quantile(1 - alpha, n - 1) * std / math.sqrt(n) < distance:
            return n
    return None


def binomial_se(accuracy: float, test_size: int) -> float:
    """Standard error of an accuracy measured on ``test_size`` independent examples.

    Information only: every seed and the tutorial score the same test images, so this is the uncertainty of the
    split as a sample of all images, not the run-to-run noise a verdict is about.
    """
    return math.sqrt(accuracy * (1 - accuracy) / test_size)
