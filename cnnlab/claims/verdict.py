"""Verdicts on a published number from a metric measured over several seeds (defined in the README)."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.claims.stats import Interval, binomial_se, t_interval

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NO_CLAIM = "measured (no claim)"
MIN_SEEDS = 3


@dataclass(frozen=True)
class Verdict:
    status: str
    interval: Interval | None
    sampling_se: float | None
    why: str


def judge(values: list[float], claimed: float | None, n_examples: int) -> Verdict:
    """reproduced: the 95% t-interval of the mean reaches the claim or lies above it.
    not reproduced: the whole interval lies below the claim by more than the split's binomial sampling error.
    inconclusive: fewer than 3 seeds, or the interval is below the claim but within that sampling error.
    """
    if not values:
        return Verdict(INCONCLUSIVE, None, None, "no finished seeds (data unavailable or not run)")
    interval = t_interval(values)
    se = binomial_se(interval.mean, n_examples) if n_examples else None
    if claimed is None:
        return Verdict(NO_CLAIM, interval, se, "the source gives no number")
    if len(values) < MIN_SEEDS:
        return Verdict(INCONCLUSIVE, interval, se, f"{len(values)} seed(s); a verdict needs {MIN_SEEDS}")
    if interval.high >= claimed:
        return Verdict(REPRODUCED, interval, se, "the interval reaches the claim")
    if se is not None and interval.high < claimed - se:
        return Verdict(
            NOT_REPRODUCED, interval, se, "the whole interval is below the claim by more than the sampling error"
        )
    return Verdict(INCONCLUSIVE, interval, se, "below the claim, but within the split's sampling error")
