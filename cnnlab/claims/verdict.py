"""Verdicts on a published number: is the protocol's *median run* at least the claim, less a tolerance?

The estimand (docs/statistics.md says why): the median run, the level one run of the protocol reaches at least
half of the time. "Reproduced" says more than half of all runs reach ``margin`` (claim - tolerance, or on the
error-rate scale ``1 - error_ratio * (1 - claim)``); equivalently P(one run reaches the margin) > 1/2. At each look
in seed order (``stats.sign_boundaries``):

- *reproduced* when at least ``r[n]`` of the first n seeds reach the margin; *reproduced, exceeds* when the
  median's lower bound is also above the claim plus the tolerance;
- *not reproduced* when at most ``n - r[n]`` reach it;
- otherwise the next look, and *inconclusive* when the design has no look left.

Error control, exact for any distribution of runs (normal, skewed, near a ceiling, heavy-tailed, with failed or
NaN seeds): when the median run sits at the margin the verdict is "reproduced" at most ``alpha`` of the time, and
"not reproduced" at most ``alpha``; ``Verdict.error`` is the exact figure of the design. The first decision is
final, so seeds run beyond it (another target of the same claim was still open) cannot overturn it.

Beside it, the mean run's t reading with exact sequential boundaries (valid when runs are roughly normal), the
single-run figures from every seed run, and what misbehaved: seeds far from the rest, skew, the two readings
disagreeing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cnnlab.claims.stats import (
    Design,
    Interval,
    PredictionInterval,
    SignLook,
    binomial_se,
    clip,
    first_deciding_look,
    one_sided_bounds,
    outlying_seeds,
    prediction_interval,
    share_reaching,
    sign_boundaries,
    sign_error,
    sign_error_of_union,
    sign_look,
    sign_p_value,
    skewness,
    t_critical_values,
)

REPRODUCED = "reproduced"
EXCEEDS = "reproduced, exceeds"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NO_CLAIM = "measured (no claim)"
DEFAULT_TOLERANCE = 0.005
POWER = 0.8  # planning figures: the seeds at which the decision comes with at least this probability
SKEW_FLAG = 1.0  # |sample skewness| from which the mean and the median of a handful of seeds part noticeably


def margin_of(claimed: float, tolerance: float, error_ratio: float | None = None) -> tuple[float, float]:
    """``(margin, exceeds_above)``: the lowest median that reproduces, and the level above which it exceeds.

    With ``error_ratio`` (e.g. 1.25) the tolerance is on the error-rate scale: at most 1.25x the claimed error
    rate reproduces, at most 1/1.25 of it exceeds; near 100% half a point is twice the error rate or more.
    """
    if error_ratio is not None:
        return 1 - error_ratio * (1 - claimed), 1 - (1 - claimed) / error_ratio
    return claimed - tolerance, claimed + tolerance


def distance_to_margin(claim: dict, claimed: float) -> float:
    """How far below ``claimed`` the claim block's margin sits (its tolerance, or the distance ``error_ratio`` gives
    on the error-rate scale: 0.23 points at 99.08% with 1.25x): every equivalence test of the claim (precisions,
    machine kinds) runs within +-this."""
    return claimed - margin_of(claimed, claim.get("tolerance", DEFAULT_TOLERANCE), claim.get("error_ratio"))[0]


@dataclass(frozen=True)
class MeanReading:
    """The mean run, Student t with exact sequential boundaries (normal runs): the reading beside the verdict."""

    status: str
    bounds: Interval | None  # mean, sd and the one-sided bounds (each 95% over all looks), clipped to [0, 1]
    seeds: int


@dataclass(frozen=True)
class Verdict:
    status: str
    why: str
    seeds: int  # the look the verdict rests on (in seed order); the single-run figures use every seed run
    alpha: float = 0.05
    margin: float = math.nan
    median: SignLook | None = None  # the median rule at that look: count reaching, the median's bounds
    error: float = math.nan  # exact chance of a false "reproduced" (= false "not reproduced") of the design
    mean: MeanReading | None = None
    values: tuple[float, ...] = ()  # every seed run for the claim, NaN kept
    sampling_se: float | None = None
    single_run: PredictionInterval | None = None  # [lowest, highest] of every seed: one more run, exact coverage
    p_single_run_reaches: float = math.nan  # share of seeds reaching the claimed number
    p_single_run_low: float = math.nan  # its exact 95% (Clopper-Pearson) interval
    p_single_run_high: float = math.nan
    seeds_reaching: int = 0
    outliers: tuple[int, ...] = ()  # seed positions far from the rest (NaN included)
    skew: float = math.nan
    flags: tuple[str, ...] = field(default_factory=tuple)
    design: Design | None = None
    earlier: tuple[Design, ...] = ()  # designs these same seeds were judged under before
    planning: tuple[int, float] | None = None  # (max_seeds, probability of deciding) if the estimate holds

    @property
    def decided(self) -> bool:
        return self.status in (REPRODUCED, EXCEEDS, NOT_REPRODUCED)

    @property
    def p_value(self) -> float:
        """Of the decision taken (sequential, exact; ``stats.sign_p_value``): for Holm over one reproduction."""
        if not self.decided or self.design is None or self.median is None:
            return math.nan
        direction = "down" if self.status == NOT_REPRODUCED else "up"
        return sign_p_value(list(self.values[: self.seeds]), self.margin, self.design, direction)

    @property
    def median_text(self) -> str:
        """The median's bounds as a reader should see them: ``[low, high]`` once the design can bound it; before
        its first deciding look, how many seeds that takes and the range of the seeds so far (the rule's bounds
        there are only the metric's whole range, [0%, 100%], which says nothing)."""
        if self.median is None:
            return ""
        if self.median.bounded:
            return f"[{_pct(self.median.low)}, {_pct(self.median.high)}]"
        first = first_deciding_look(self.design) if self.design is not None else None
        needs = f"needs at least {first} seeds to bound the median" if first else "this design cannot bound the median"
        seen = self.values[: self.median.n]
        finite = [v for v in seen if not math.isnan(v)]
        if not finite:
            return needs + f"; the {len(seen)} seeds so far all diverged"
        lowest = "a diverged run" if len(finite) < len(seen) else _pct(min(finite))
        return needs + f"; the {len(seen)} seeds so far range {lowest} to {_pct(max(finite))}"

    @property
    def bounds(self) -> Interval | None:
        """The mean's reading (kept for readers of the mean: the report's ``mean ± sd``)."""
        return self.mean.bounds if self.mean else None


def judge(
    values: list[float],
    claimed: float | None,
    design: Design,
    tolerance: float = DEFAULT_TOLERANCE,
    n_examples: int = 0,
    error_ratio: float | None = None,
    earlier_designs: tuple[Design, ...] = (),
) -> Verdict:
    """The verdict on ``claimed`` from per-seed ``values`` in seed order, under ``design`` (module docstring).

    ``earlier_designs``: designs these same seeds were already judged under (an earlier reproduction); the error
    reported is then that of all of them together.
    """
    values = [float(v) for v in values]
    if not values:
        return Verdict(INCONCLUSIVE, "no finished seeds (data unavailable or not run)", 0, design.alpha)
    if claimed is None:
        return _describe(Verdict(NO_CLAIM, "no number given", len(values), design.alpha), values, None, n_examples)
    margin, exceeds_above = margin_of(claimed, tolerance, error_ratio)
    boundaries = sign_boundaries(design)
    error = sign_error_of_union([*earlier_designs, design]) if earlier_designs else sign_error(design)
    taken = [n for n in design.looks if n <= len(values)]
    base = {"alpha": design.alpha, "margin": margin, "error": error, "design": design, "earlier": earlier_designs}
    for n in taken:
        look = sign_look(values[:n], margin, boundaries[n])
        if look.status == "open":
            continue
        if look.status == "up":
            status = EXCEEDS if look.low > exceeds_above else REPRODUCED
            why = f"{look.reaching} of {n} seeds reach claim - tolerance {_pct(margin)} (needed {look.needed})"
        else:
            status = NOT_REPRODUCED
            most = n - look.needed
            why = f"only {look.reaching} of {n} seeds reach claim - tolerance {_pct(margin)} (at most {most})"
        verdict = Verdict(
            status,
            why,
            n,
            median=look,
            **base,
        )
        return _describe(verdict, values, claimed, n_examples, design)
    if not taken:
        first = design.looks[0]
        verdict = Verdict(INCONCLUSIVE, f"{len(values)} seed(s); this design's first look is at {first}", len(values))
        return _describe(Verdict(**{**verdict.__dict__, **base}), values, claimed, n_examples, design)
    n = taken[-1]
    look = sign_look(values[:n], margin, boundaries[n])
    bounds = Verdict(INCONCLUSIVE, "", n, median=look, values=tuple(values), **base).median_text
    why = f"{look.reaching} of {n} seeds reach claim - tolerance {_pct(margin)}; " + (
        f"the median's bounds {bounds} straddle it" if look.bounded else bounds
    )
    planning = None
    if n == design.max_seeds:
        from cnnlab.claims.stats import seeds_for_median_rule

        share = look.reaching / n
        planning = seeds_for_median_rule(share, design, POWER)
        continued = Design(design.min_seeds, planning[0], design.alpha) if planning else None
        if planning and design.sequential:
            why += (
                f"; if {look.reaching} of {n} reaching holds, seeds=auto max_seeds={planning[0]} decides with "
                f"{100 * planning[1]:.0f}% probability (the same design continued: the seeds run count once, and the "
                f"longer design's false 'reproduced' rate is {100 * sign_error(continued):.1f}%, within 5%)"
            )
        elif planning:
            union = sign_error_of_union([design, continued])
            why += (
                f"; if {look.reaching} of {n} reaching holds, seeds=auto max_seeds={planning[0]} decides with "
                f"{100 * planning[1]:.0f}% probability (judging these seeds again, both designs together err up "
                f"to {100 * union:.1f}%"
                + (f", not the stated {100 * design.alpha:g}%)" if union > design.alpha else ")")
            )
        else:
            why += "; about half the runs reach the margin: no affordable number of seeds is likely to decide"
    verdict = Verdict(INCONCLUSIVE, why, n, median=look, planning=planning, **base)
    return _describe(verdict, values, claimed, n_examples, design)


def _mean_reading(values: list[float], margin: float, design: Design) -> MeanReading | None:
    """The t reading of the mean, first crossing over the looks taken; None while no look has two seeds."""
    critical = t_critical_values(design)
    taken = [n for n in design.looks if 2 <= n <= len(values)]
    if not taken or any(math.isnan(v) for v in values):
        return None
    for n in taken:
        bounds = one_sided_bounds(values[:n], 0.0, critical[n])
        if bounds.low >= margin:
            return MeanReading(REPRODUCED, _clipped(bounds), n)
        if bounds.high < margin:
            return MeanReading(NOT_REPRODUCED, _clipped(bounds), n)
    last = taken[-1]
    return MeanReading(INCONCLUSIVE, _clipped(one_sided_bounds(values[:last], 0.0, critical[last])), last)


def _clipped(bounds: Interval) -> Interval:
    return Interval(bounds.mean, bounds.std, clip(bounds.low), clip(bounds.high), bounds.n)


def _describe(
    verdict: Verdict, values: list[float], claimed: float | None, n_examples: int, design: Design | None = None
) -> Verdict:
    """Adds what a reader asks beside the verdict, from every seed run: one run's figures, the mean's reading and
    the seeds that misbehave."""
    from dataclasses import replace

    finite = all(math.isfinite(v) for v in values)
    mean = (
        _mean_reading(values, verdict.margin, design)
        if design is not None and math.isfinite(verdict.margin)
        else MeanReading(NO_CLAIM, _clipped(one_sided_bounds(values, 0.05)), len(values))
        if finite
        else None
    )
    reached, low, high = share_reaching(values, claimed) if claimed is not None else (0, math.nan, math.nan)
    far = tuple(outlying_seeds(values))
    skew = skewness(values)
    flags = []
    if far:
        flags.append(
            "seeds far from the rest: "
            + ", ".join(f"seed {i} ({_pct(values[i]) if math.isfinite(values[i]) else 'NaN, diverged'})" for i in far)
        )
    median = float(sorted(v if math.isfinite(v) else -math.inf for v in values)[len(values) // 2])
    average = sum(values) / len(values) if finite else math.nan
    disagree = mean is not None and verdict.status != NO_CLAIM and _side(mean.status) != _side(verdict.status)
    sides = math.isfinite(verdict.margin) and (average >= verdict.margin) != (median >= verdict.margin)
    if math.isfinite(skew) and abs(skew) >= SKEW_FLAG and len(values) >= 5 and (sides or disagree):
        # only where it matters to the verdict: the mean and the median tell different stories about the margin
        flags.append(
            f"skew {skew:+.1f}: the mean {_pct(average)} and the middle seed {_pct(median)} differ by "
            f"{100 * abs(average - median):.2f} points"
            + ("; they fall on opposite sides of the margin" if sides else "")
        )
    if verdict.earlier:
        flags.append(earlier_text(verdict.earlier, design, verdict.error))
    if disagree:
        flags.append(f"the mean's t reading says {mean.status}; the median rule says {verdict.status}")
    return replace(
        verdict,
        mean=mean,
        values=tuple(values),
        sampling_se=binomial_se(average, n_examples) if n_examples and finite else None,
        # without a claimed number no look decides, so the seeds run are not chosen by the data
        single_run=prediction_interval(values, design if claimed is not None else None),
        p_single_run_reaches=reached / len(values) if claimed is not None else math.nan,
        p_single_run_low=low,
        p_single_run_high=high,
        seeds_reaching=reached,
        outliers=far,
        skew=skew,
        flags=tuple(flags),
    )


def earlier_text(earlier: tuple[Design, ...], design: Design | None, error: float) -> str:
    """What judging seeds again does to the error: nothing when this design continues the earlier ones (each of
    their boundaries is one of its own), else the error of all the judgements together, said plainly when it is
    above the stated alpha."""
    before = ", ".join(d.describe() for d in earlier)
    if design is not None and math.isclose(error, sign_error(design), rel_tol=1e-9):
        return (
            f"these seeds were judged before under {before}; this design ({design.describe()}) continues it (each "
            f"earlier boundary is one of its own), so the seeds judged count once and a false 'reproduced' stays "
            f"at {100 * error:.1f}%"
        )
    stated = design.alpha if design is not None else 0.05
    return (
        f"these seeds were judged before under {before}; judged again under a new design, a false 'reproduced' "
        f"comes {100 * error:.1f}% of the time with both judgements counted"
        + ("" if error <= stated else f", not the stated {100 * stated:g}%")
    )


def _side(status: str) -> str:
    return REPRODUCED if status == EXCEEDS else status


def holm(verdicts: list[Verdict | None], alpha: float = 0.05) -> list[bool | None]:
    """Holm's step-down over one reproduction's family: does each decision hold at family-wise ``alpha``?

    ``verdicts``: one per claimed number the reproduction judges, None for a number outside the family (a modified
    protocol, data unavailable); the family's size counts the undecided ones too, because which numbers get decided
    is an outcome, and counting only those would let the data pick a smaller family. None for an undecided verdict.
    Holm (1979) keeps the chance of any false "reproduced" among the family at ``alpha`` under any dependence (and,
    separately, of any false "not reproduced": each p is of the direction decided), where judging each at ``alpha``
    allows up to about ``k * alpha``.
    """
    size = sum(v is not None for v in verdicts)
    decided = sorted((v.p_value, i) for i, v in enumerate(verdicts) if v is not None and v.decided)
    holds: list[bool | None] = [None] * len(verdicts)
    rejecting = True
    for rank, (p_value, index) in enumerate(decided):
        rejecting = rejecting and p_value <= alpha / (size - rank)
        holds[index] = rejecting
    return holds


def smallest_p_value(design: Design) -> float:
    """The strongest evidence ``design`` can give: the p-value of every seed reaching the margin at its first
    deciding look (the rule is symmetric, so none reaching gives the same). Holm cannot keep a decision whose design
    cannot go below its step's level, whatever the seeds."""
    n = first_deciding_look(design)
    return 1.0 if n is None else sign_p_value([1.0] * n, 0.5, design, "up")


def family_error(verdicts: list[Verdict]) -> tuple[float, float]:
    """The chance of at least one false "reproduced" in one reproduction if every claimed number sat at its
    margin: ``(if the claims are independent, at most in any case)``."""
    errors = [v.error for v in verdicts if math.isfinite(v.error)]
    return 1 - math.prod(1 - e for e in errors), min(1.0, sum(errors))


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%" if math.isfinite(value) else "unbounded"
