"""Verdicts on a published number: non-inferiority of the protocol's mean, looked at sequentially over seeds.

The claim is held to within ``tolerance`` (the claim block's, 0.005 = half a point by default). With ``margin =
claimed - tolerance`` and the design's one-sided bounds of the mean (see ``stats.Design``), at each look in seed
order:

- *reproduced* when the lower bound is at least the margin; *reproduced, exceeds* when it is above
  ``claimed + tolerance``;
- *not reproduced* when the upper bound is below the margin;
- otherwise the next look, and *inconclusive* when the design has no look left.

Error control (tested by simulation): a protocol whose true mean sits at the margin is called reproduced with
probability at most ``alpha``; one whose true mean is at or above the margin is called not reproduced with at
most ``alpha``. The first decision is final, so seeds run beyond it (another target of the same claim was still
open, or a fixed number was asked for) cannot overturn it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from cnnlab.claims.stats import (
    Design,
    Interval,
    binomial_se,
    one_sided_bounds,
    prediction_interval,
    probability_one_run_reaches,
    seeds_to_decide,
)

REPRODUCED = "reproduced"
EXCEEDS = "reproduced, exceeds"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NO_CLAIM = "measured (no claim)"
DEFAULT_TOLERANCE = 0.005


@dataclass(frozen=True)
class Verdict:
    status: str
    bounds: Interval | None  # mean, sd and one-sided bounds over the seeds the verdict rests on
    alpha: float  # the error spent on each bound at the look that decided (or the last look taken)
    seeds: int  # how many seeds (in seed order) the verdict rests on
    why: str
    sampling_se: float | None = None
    single_run: Interval | None = None  # 95% prediction interval for one more run
    p_single_run_reaches: float = math.nan
    seeds_reaching: int = 0

    @property
    def decided(self) -> bool:
        return self.status in (REPRODUCED, EXCEEDS, NOT_REPRODUCED)


def judge(
    values: list[float],
    claimed: float | None,
    design: Design,
    tolerance: float = DEFAULT_TOLERANCE,
    n_examples: int = 0,
) -> Verdict:
    """The verdict on ``claimed`` from per-seed ``values`` in seed order, under ``design`` (module docstring)."""
    if not values:
        return Verdict(INCONCLUSIVE, None, design.alpha, 0, "no finished seeds (data unavailable or not run)")
    if claimed is None:
        return _with_single_run(
            Verdict(NO_CLAIM, one_sided_bounds(values, design.alpha), design.alpha, len(values), "no number given"),
            values,
            None,
            n_examples,
        )
    margin = claimed - tolerance
    taken = [n for n in design.looks if n <= len(values)]
    for n in taken:
        alpha = design.alpha_at(n)
        bounds = one_sided_bounds(values[:n], alpha)
        level = f"one-sided {100 * (1 - alpha):.2f}% bound"
        if bounds.low >= margin:
            status = EXCEEDS if bounds.low > claimed + tolerance else REPRODUCED
            why = f"{level} of the mean {_pct(bounds.low)} >= claim - tolerance {_pct(margin)} at {n} seeds"
            return _with_single_run(Verdict(status, bounds, alpha, n, why), values[:n], claimed, n_examples)
        if bounds.high < margin:
            why = f"{level} of the mean {_pct(bounds.high)} < claim - tolerance {_pct(margin)} at {n} seeds"
            verdict = Verdict(NOT_REPRODUCED, bounds, alpha, n, why)
            return _with_single_run(verdict, values[:n], claimed, n_examples)
    if not taken:
        first = design.looks[0]
        why = f"{len(values)} seed(s); this design's first look is at {first}"
        verdict = Verdict(INCONCLUSIVE, one_sided_bounds(values, design.alpha), design.alpha, len(values), why)
        return _with_single_run(verdict, values, claimed, n_examples)
    n = taken[-1]
    alpha = design.alpha_at(n)
    bounds = one_sided_bounds(values[:n], alpha)
    why = f"bounds [{_pct(bounds.low)}, {_pct(bounds.high)}] straddle claim - tolerance {_pct(margin)} at {n} seeds"
    if n == design.max_seeds and math.isfinite(bounds.std):
        # Planning at the level a final look of a longer design would spend.
        needed = seeds_to_decide(bounds.mean, bounds.std, margin, design.alpha / 2 if design.sequential else alpha)
        knob = "max_seeds" if design.sequential else "seeds"
        why += (
            f"; about {needed} seeds in all would decide it at this spread ({knob}={needed})"
            if needed
            else "; the mean sits on the margin: more than 1000 seeds would be needed"
        )
    return _with_single_run(Verdict(INCONCLUSIVE, bounds, alpha, n, why), values[:n], claimed, n_examples)


def _with_single_run(verdict: Verdict, values: list[float], claimed: float | None, n_examples: int) -> Verdict:
    """Adds what a reader of the tutorial asks: where one run lands, and how often it reaches the number."""
    return replace(
        verdict,
        sampling_se=binomial_se(verdict.bounds.mean, n_examples) if n_examples else None,
        single_run=prediction_interval(values),
        p_single_run_reaches=probability_one_run_reaches(values, claimed) if claimed is not None else math.nan,
        seeds_reaching=sum(v >= claimed for v in values) if claimed is not None else 0,
    )


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%" if math.isfinite(value) else "unbounded"
