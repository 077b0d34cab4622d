"""Statistics over seeds: the verdict's exact sequential rules, intervals, single-run figures, planning, TOST.

Every value is one run's metric (e.g. test accuracy) for one seed; seeds are independent draws of the protocol's
run-to-run variation. Two rules read them:

- the **median run** (the verdict): a sequential sign rule on how many seeds reach a threshold. Its error rates are
  exact for *any* distribution of runs (normal, skewed, heavy-tailed, with failed seeds), because under the null
  the count of seeds reaching the threshold is Binomial(n, 1/2) whatever the runs look like (``sign_boundaries``);
- the **mean run** (beside it): Student t bounds with boundaries calibrated once by simulation so a sequential
  design spends its whole alpha under normal runs (``t_critical_values``); valid for the mean only if runs are
  roughly normal.

Each rule's docstring says what error it controls; tests/test_claims.py and tests/test_claims_calibration.py check
those contracts by simulation with known truth, and ``python -m cnnlab.claims.calibration`` prints the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from scipy import stats

# The t boundaries' simulation: enough draws that their size is within about +-0.1 point of alpha (Monte-Carlo
# error of the crossing probability at 200,000 paths: 0.05 point), seeded so every process computes the same ones.
T_BOUNDARY_SIMULATIONS = 200_000
T_BOUNDARY_SEED = 20_000_041


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


def clip(value: float, low: float = 0.0, high: float = 1.0) -> float:
    """A bound kept inside the metric's range: intersecting an interval with what is possible keeps its coverage."""
    return value if math.isnan(value) else min(max(value, low), high)


def t_interval(values: list[float], confidence: float = 0.95) -> Interval:
    """Two-sided Student-t interval for the mean; with one value the interval is unbounded (nothing is known)."""
    mean, std = _mean_std(values)
    n = len(values)
    if n == 1:
        return Interval(mean, math.nan, -math.inf, math.inf, 1)
    half = stats.t.ppf((1 + confidence) / 2, df=n - 1) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n)


def one_sided_bounds(values: list[float], alpha: float, critical: float | None = None) -> Interval:
    """The mean's one-sided (1 - alpha) lower bound and, separately, its one-sided (1 - alpha) upper bound.

    Each bound alone misses the true mean with probability alpha (Student t, normal runs); ``critical`` replaces
    the t quantile (a sequential design's calibrated boundary). Unbounded below two values, where the spread is
    unknown.
    """
    mean, std = _mean_std(values)
    n = len(values)
    if n < 2 or not std > 0:
        # Two identical values say nothing about the spread either: no bound can be claimed from them.
        return Interval(mean, std, -math.inf, math.inf, n)
    half = (critical if critical is not None else t_quantile(1 - alpha, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n)


@dataclass(frozen=True)
class Design:
    """When the evidence is looked at, and how much error the looks may spend together.

    A fixed design (``seeds=5``) looks once, at ``max_seeds``, with the whole ``alpha``. A sequential design
    (``seeds=auto``) looks after every seed from ``min_seeds`` to ``max_seeds`` and may stop at any look; its
    looks share ``alpha``. ``alpha_at`` is the Bonferroni split (half at the last look, half spread over the
    earlier ones; Jennison & Turnbull, *Group Sequential Methods*, 2000, ch. 7): by the union bound at most
    ``alpha`` over all looks, and about 3.4% in fact for 3..10 seeds under normal runs. It is the shape the exact
    t boundaries scale (``t_critical_values``); the median rule has its own exact boundaries (``sign_boundaries``).
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
        """The error the Bonferroni split spends at the look after ``n`` seeds (0 where it does not look)."""
        looks = self.looks
        if n not in looks:
            return 0.0
        if len(looks) == 1:
            return self.alpha
        if n == self.max_seeds:
            return self.alpha / 2
        return self.alpha / 2 / (len(looks) - 1)

    def describe(self) -> str:
        return (
            f"seeds={self.max_seeds}"
            if not self.sequential
            else f"seeds=auto min_seeds={self.min_seeds} max_seeds={self.max_seeds}"
        )


# --- the median run: an exact sequential sign rule ------------------------------------------------------------


def _binomial_paths(boundaries: dict[int, int], last: int, p: float) -> tuple[float, float, np.ndarray]:
    """P(the upper boundary is crossed first), P(the lower one is), and the open paths' count distribution.

    ``boundaries[n] = r``: at the look after n seeds, "up" when at least r reach, "down" when at most n - r do.
    Exact dynamic programming over the count of seeds reaching, each reaching with probability ``p``.
    """
    open_paths = np.array([1.0])
    up = down = 0.0
    for n in range(1, last + 1):
        step = np.zeros(n + 1)
        step[:-1] += open_paths * (1 - p)
        step[1:] += open_paths * p
        open_paths = step
        r = boundaries.get(n)
        if r is not None and r <= n:
            up += open_paths[r:].sum()
            down += open_paths[: n - r + 1].sum()
            open_paths[r:] = 0
            open_paths[: n - r + 1] = 0
    return float(up), float(down), open_paths


@lru_cache(maxsize=256)
def sign_boundaries(design: Design) -> dict[int, int]:
    """The median rule's boundaries: at the look after n seeds, reproduced when at least ``r[n]`` seeds reach the
    margin (``r[n] = n + 1``: this look cannot decide).

    Error controlled, exactly and for any distribution of runs: when P(one run reaches the margin) is 1/2 (the
    median run sits at the margin) the count reaching it after n seeds is Binomial(n, 1/2), so the chance that any
    look of the design crosses ``r`` is computed exactly (no simulation, no normality); each ``r[n]`` is the
    smallest count that keeps the total spent so far within a spending function of n alone (``allowed``). The
    lower boundary mirrors it (not reproduced when at most ``n - r[n]`` reach), with the same exact error. Each
    side is computed alone, so each also gives a one-sided confidence sequence for the median over all looks.

    A spending function of n alone makes the boundaries of a longer design extend a shorter one's: ``max_seeds=20``
    keeps every boundary of ``max_seeds=10`` and adds looks, so raising ``max_seeds`` continues the same design.
    """
    looks = set(design.looks)
    first = seeds_for_level(design.alpha)  # the first look where n of n reaching can decide
    opening = 0.5**first / design.alpha  # the share of alpha that takes

    def allowed(n: int) -> float:
        # cumulative share of alpha by look n: what n of n needs at the first look, then the rest approached as
        # 1 / n^2, so later looks keep alpha to spend (a design extended to 30 seeds still gains power) and the
        # share by look n does not depend on max_seeds
        return design.alpha * (1 - (1 - opening) * min(1.0, (first / n) ** 2))

    boundaries: dict[int, int] = {}
    open_paths = np.array([1.0])
    spent = 0.0
    for n in range(1, design.max_seeds + 1):
        step = np.zeros(n + 1)
        step[:-1] += open_paths * 0.5
        step[1:] += open_paths * 0.5
        open_paths = step
        if n not in looks:
            continue
        tails = np.cumsum(open_paths[::-1])[::-1]  # tails[r] = P(count >= r, still open)
        r = next(
            (r for r in range(n // 2 + 1, n + 1) if spent + tails[r] <= allowed(n) * (1 + 1e-12)),
            n + 1,
        )
        boundaries[n] = r
        if r <= n:
            spent += tails[r]
            open_paths[r:] = 0
    return boundaries


@lru_cache(maxsize=256)
def sign_error(design: Design) -> float:
    """The median rule's exact chance of a false "reproduced" (and, by symmetry, of a false "not reproduced")."""
    boundaries = sign_boundaries(design)
    up, _, _ = _binomial_paths({n: r for n, r in boundaries.items()}, design.max_seeds, 0.5)
    # the two sides were spent alone; crossing one first removes some paths from the other, so this is <= alpha
    return up


def sign_error_of_union(designs: list[Design]) -> float:
    """The exact false-"reproduced" rate when the same seeds were judged under every one of ``designs`` in turn.

    A second reproduction that reuses judged seeds under a new design adds its looks to the first one's: the
    union crosses wherever either did (the lower of the two boundaries at each look).
    """
    union: dict[int, int] = {}
    for design in designs:
        for n, r in sign_boundaries(design).items():
            union[n] = min(r, union.get(n, n + 1))
    lowest = {n: r for n, r in union.items()}
    up = 0.0
    open_paths = np.array([1.0])
    for n in range(1, max(d.max_seeds for d in designs) + 1):
        step = np.zeros(n + 1)
        step[:-1] += open_paths * 0.5
        step[1:] += open_paths * 0.5
        open_paths = step
        r = lowest.get(n)
        if r is not None and r <= n:
            up += open_paths[r:].sum()
            open_paths[r:] = 0
    return float(up)


def first_deciding_look(design: Design) -> int | None:
    """The first look of ``design`` at which the median rule can decide (None: no look can).

    Before it the rule's bounds for the median are the metric's whole range: no count of seeds can exclude
    anything, so the report says how many seeds it takes instead of printing [0%, 100%].
    """
    return min((n for n, r in sign_boundaries(design).items() if r <= n), default=None)


def seeds_for_level(level: float) -> int:
    """The fewest seeds whose all reaching the margin is evidence at ``level``: chance alone gives it 1/2**n of the
    time, so at 5% no look before 5 seeds can decide, and a p-value of 1.25% (Holm's first step of four) takes 7."""
    return math.ceil(math.log2(1 / level) - 1e-12)


def smallest_deciding_design(design: Design) -> int | None:
    """None when some look of ``design`` can decide; else the smallest ``max_seeds`` (or ``seeds``) that can."""
    if first_deciding_look(design) is not None:
        return None
    return seeds_for_level(design.alpha)


@dataclass(frozen=True)
class SignLook:
    """The median rule at one look: the count reaching the margin and the median's bounds from order statistics."""

    n: int
    reaching: int
    needed: int  # r[n]: reproduced at this many reaching; n + 1 when the look cannot decide
    low: float  # one-sided 95% (over all looks) lower bound of the median; 0 (the metric's floor) when none
    high: float  # the same upper bound; 1 (the ceiling) when none
    status: str  # "up", "down" or "open"

    @property
    def bounded(self) -> bool:
        """False before the design's first deciding look, where ``low`` and ``high`` are only the metric's range."""
        return self.needed <= self.n


def sign_look(values: list[float], margin: float, needed: int, floor: float = 0.0, ceiling: float = 1.0) -> SignLook:
    """Reads one look: a NaN run (diverged) counts as a seed that did not reach the margin and sorts lowest."""
    n = len(values)
    reaching = sum(1 for v in values if v >= margin)  # NaN >= margin is False
    ordered = sorted((v if not math.isnan(v) else -math.inf) for v in values)
    if needed <= n:
        # at least r seeds reach m  <=>  the r-th largest value >= m; at most n - r reach  <=>  the r-th smallest < m
        low, high = clip(ordered[n - needed], floor, ceiling), clip(ordered[needed - 1], floor, ceiling)
    else:
        low, high = floor, ceiling
    status = "up" if reaching >= needed else "down" if reaching <= n - needed else "open"
    return SignLook(n, reaching, needed, low, high, status)


def sign_p_value(values: list[float], margin: float, design: Design, direction: str) -> float:
    """The stage-wise p-value of the decision ``design``'s median rule took on these seeds in ``direction``.

    Ordered by stage (Armitage, McPherson and Rowe 1969; Jennison and Turnbull 2000, 8.4): a decision at an earlier
    look is stronger than any at a later one, and at the same look more seeds reaching is stronger. So p is the
    chance, with the median run at the margin, of deciding this way at an earlier look, plus that of reaching the
    decisive look still open with at least the count seen: exact, valid (P(p <= a) <= a) and, for a decision the
    design took, never above the error it spent. (The smallest alpha at which the rule would still have decided is
    not a p-value here: the spending's boundaries do not all tighten as alpha falls.) 1 when the seeds never cross.
    """
    indicator = [v >= margin for v in values] if direction == "up" else [not (v >= margin) for v in values]
    boundaries = sign_boundaries(design)
    open_paths = np.array([1.0])
    earlier = 0.0
    count = 0
    for n, hit in enumerate(indicator, start=1):
        step = np.zeros(n + 1)
        step[:-1] += open_paths * 0.5
        step[1:] += open_paths * 0.5
        open_paths = step
        count += hit
        r = boundaries.get(n)
        if r is None or r > n:
            continue
        if count >= r:
            return float(earlier + open_paths[count:].sum())
        if count <= n - r:  # decided the other way first
            return 1.0
        earlier += open_paths[r:].sum()  # decided this way earlier: more extreme; the other way: less
        open_paths[r:] = 0
        open_paths[: n - r + 1] = 0
    return 1.0


def probability_sign_decides(q: float, design: Design) -> float:
    """Exact chance that the median rule decides the right way within ``design`` when P(one run reaches) = q."""
    up, down, _ = _binomial_paths(sign_boundaries(design), design.max_seeds, q)
    return up if q > 0.5 else down if q < 0.5 else 0.0


@lru_cache(maxsize=512)
def seeds_for_median_rule(q: float, design: Design, power: float = 0.8, cap: int = 200) -> tuple[int, float] | None:
    """The smallest ``max_seeds`` at which the median rule decides with probability >= ``power`` if a share ``q``
    of runs reaches the margin, and that probability; None when ``q`` is 1/2 or more than ``cap`` would be needed.

    Because longer designs extend shorter ones (``sign_boundaries``), the answer continues the design already run.
    """
    if q == 0.5:
        return None
    for n in range(max(design.min_seeds, 2), cap + 1):
        candidate = Design(design.min_seeds, n, design.alpha, True)
        probability = probability_sign_decides(q, candidate)
        if probability >= power:
            return n, probability
    return None


# --- the mean run: Student t with exact sequential boundaries --------------------------------------------------


@lru_cache(maxsize=64)
def t_critical_values(design: Design) -> dict[int, float]:
    """The t statistic's critical value at each look so the whole design's false "reproduced" is ``alpha``.

    Under normal runs with the mean at the margin, the looks' t statistics have a joint distribution that does not
    depend on the spread, so one seeded simulation (``T_BOUNDARY_SIMULATIONS`` standard-normal paths) fixes the
    boundaries for every claim. They keep the Bonferroni split's shape (``Design.alpha_at``) and scale every
    look's level by one factor, found by bisection, until the simulated chance that any look crosses is
    ``alpha``: the design spends its whole 5% instead of about 3.4%. A fixed design keeps the t quantile.
    """
    looks = [n for n in design.looks if n >= 2]
    if len(looks) <= 1:
        return {n: t_quantile(1 - design.alpha, n - 1) for n in looks}
    rng = np.random.default_rng(T_BOUNDARY_SEED)
    statistics = t_paths(rng.standard_normal((T_BOUNDARY_SIMULATIONS, design.max_seeds)), looks)

    def crossing(scale: float) -> float:
        critical = np.array([stats.t.ppf(1 - scale * design.alpha_at(n), n - 1) for n in looks])
        return float((statistics >= critical).any(axis=1).mean())

    low, high = 1.0, 1.0 / max(design.alpha_at(n) for n in looks) * 0.5
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if crossing(middle) <= design.alpha else (low, middle)
    return {n: float(stats.t.ppf(1 - low * design.alpha_at(n), n - 1)) for n in looks}


def t_paths(deviations: np.ndarray, looks: list[int]) -> np.ndarray:
    """t statistics of the mean against 0 after each look's seeds, for every row of ``deviations``."""
    sums, squares = np.cumsum(deviations, axis=1), np.cumsum(deviations**2, axis=1)
    columns = []
    for n in looks:
        mean = sums[:, n - 1] / n
        variance = np.maximum(squares[:, n - 1] - n * mean**2, 0) / (n - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            columns.append(mean / np.sqrt(variance / n))
    return np.stack(columns, axis=1)


def bonferroni_critical_values(design: Design) -> dict[int, float]:
    """The previous rule's boundaries: each look's t quantile at its Bonferroni share of alpha (conservative)."""
    return {n: t_quantile(1 - design.alpha_at(n), n - 1) for n in design.looks if n >= 2}


# --- one run ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictionInterval:
    """Where one more run of the protocol falls: between the lowest and the highest of n seeds.

    ``low`` is NaN when the lowest seed diverged (a new run may diverge too). ``coverage`` is the exact chance
    (n - 1) / (n + 1) that one more run falls inside, for any distribution of runs.
    """

    low: float
    high: float
    n: int
    coverage: float
    # the seeds were chosen by a sequential design's stops: ``coverage`` holds over reproductions, not for one
    selected: bool = False


def _covered_after(n: int, k: int, q: float) -> float:
    """P(one more run falls in [lowest, highest] of n seeds) given that k of them reach the margin, when a run
    reaches it with probability q: the k reaching are independent draws of the runs above the margin, the others
    of those below, so one more run above (probability q) falls under the highest with probability k / (k + 1)
    and one below over the lowest with probability (n - k) / (n - k + 1); with every seed on one side, it must
    also land on that side."""
    if k == n:
        return q * (n - 1) / (n + 1)
    if k == 0:
        return (1 - q) * (n - 1) / (n + 1)
    return q * k / (k + 1) + (1 - q) * (n - k) / (n - k + 1)


def coverage_at(design: Design, q: float) -> float:
    """The chance the prediction interval of a reproduction under ``design`` (stopping where the median rule
    decides) holds one more run, when a run reaches the margin with probability ``q``; exact, any distribution."""
    boundaries = sign_boundaries(design)
    open_paths, covered = np.array([1.0]), 0.0
    for n in range(1, design.max_seeds + 1):
        step = np.zeros(n + 1)
        step[:-1] += open_paths * (1 - q)
        step[1:] += open_paths * q
        open_paths = step
        r = boundaries.get(n, n + 1)
        stopping = [k for k in range(n + 1) if (k >= r or k <= n - r)] if n < design.max_seeds else range(n + 1)
        for k in stopping:
            covered += open_paths[k] * _covered_after(n, k, q)
            open_paths[k] = 0
    return float(covered)


@lru_cache(maxsize=256)
def prediction_coverage(design: Design) -> float:
    """The least chance, over every distribution of runs, that [lowest, highest seed] of a reproduction under
    ``design`` holds one more run, early stops included: (n - 1)/(n + 1) for a fixed design of n seeds.

    A sequential design stops on which seeds reach the margin, so a reproduction that stopped early holds a
    selected sample: five seeds all above the margin miss every run below it. Given the pattern of seeds reaching
    the margin, the coverage depends on the runs only through q = P(one run reaches the margin)
    (``_covered_after``), so the design's coverage is an exact function of q (``coverage_at``) and its least
    value over q (a grid of 201 values, the ends included) is what the design guarantees.
    """
    if not design.sequential:
        return (design.max_seeds - 1) / (design.max_seeds + 1)
    return min(coverage_at(design, q) for q in np.linspace(0, 1, 201))


def prediction_interval(values: list[float], design: Design | None = None) -> PredictionInterval | None:
    """The distribution-free prediction interval for one more run: [lowest seed, highest seed] of n seeds.

    Coverage, exact for any distribution (normal or not, skewed, bounded, with failures): n runs and one more are
    exchangeable, so the new run's rank among the n + 1 is uniform and it falls between the extremes with
    probability (n - 1) / (n + 1) (Wilks, *Mathematical Statistics*, 1962, ch. 11); ties and a diverged run (NaN,
    ranked lowest) only widen it. No interval of n seeds reaches 95% without a model of the runs before n = 39;
    the stated coverage is the honest one. It stays inside the metric's range because its ends are runs. None
    below two seeds.

    With the sequential ``design`` that chose how many seeds ran, the coverage stated is what that design
    guarantees with its early stops (``prediction_coverage`` of the design up to the seeds run): lower, because
    stopping selects the sample.
    """
    n = len(values)
    if n < 2:
        return None
    finite = [v for v in values if not math.isnan(v)]
    low = min(finite) if len(finite) == n else math.nan
    high = max(finite) if finite else math.nan
    selected = design is not None and design.sequential and n >= min(design.looks)
    return PredictionInterval(low, high, n, prediction_level(n, design), selected)


def prediction_level(n: int, design: Design | None = None) -> float:
    """The coverage ``prediction_interval`` states for n seeds, run under ``design`` (None: a fixed sample)."""
    if design is not None and design.sequential and n >= min(design.looks):
        return min((n - 1) / (n + 1), prediction_coverage(Design(design.min_seeds, n, design.alpha)))
    return (n - 1) / (n + 1)


def share_reaching(values: list[float], target: float, confidence: float = 0.95) -> tuple[int, float, float]:
    """How many seeds reach ``target`` and the exact (Clopper-Pearson) interval for P(one run reaches it).

    Distribution-free: each run reaches or not, independently, so the count is binomial; a NaN run did not reach.
    """
    reached = sum(1 for v in values if v >= target)
    interval = stats.binomtest(reached, len(values)).proportion_ci(confidence_level=confidence, method="exact")
    return reached, float(interval.low), float(interval.high)


def binomial_se(accuracy: float, test_size: int) -> float:
    """Standard error of an accuracy measured on ``test_size`` independent examples.

    Information only: every seed and the tutorial score the same test images, so this is the uncertainty of the
    split as a sample of all images, not the run-to-run noise a verdict is about.
    """
    return math.sqrt(accuracy * (1 - accuracy) / test_size)


# --- seeds that misbehave -------------------------------------------------------------------------------------

OUTLIER_FALSE_ALARM = 0.05  # under normal runs, a reproduction names some seed as outlying this often


@lru_cache(maxsize=64)
def outlier_threshold(n: int, simulations: int = 20_000) -> float:
    """The modified z-score (median and MAD) beyond which a seed of ``n`` is named as far from the rest.

    Iglewicz & Hoaglin's fixed 3.5 names some seed in about a fifth of ten normal seeds; this threshold is the
    95th percentile of the largest modified z-score of ``n`` normal seeds (seeded simulation), so a reproduction
    with nothing wrong names a seed at most ``OUTLIER_FALSE_ALARM`` of the time, whatever ``n``.
    """
    rng = np.random.default_rng(n)
    draws = rng.standard_normal((simulations, n))
    center = np.median(draws, axis=1, keepdims=True)
    spread = stats.median_abs_deviation(draws, axis=1, scale="normal")[:, None]
    largest = (np.abs(draws - center) / spread).max(axis=1)
    return float(np.quantile(largest, 1 - OUTLIER_FALSE_ALARM))


def outlying_seeds(values: list[float]) -> list[int]:
    """Positions of seeds far from the rest: NaN (diverged), or a modified z-score beyond ``outlier_threshold``.

    Median and MAD, not mean and sd: one failed seed inflates the sd enough to hide itself.
    """
    finite = [v for v in values if math.isfinite(v)]
    far = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if len(finite) >= 4:
        center = float(np.median(finite))
        spread = float(stats.median_abs_deviation(finite, scale="normal"))
        if spread > 0:
            limit = outlier_threshold(len(finite))
            far += [i for i, v in enumerate(values) if math.isfinite(v) and abs(v - center) / spread > limit]
    return sorted(far)


def skewness(values: list[float]) -> float:
    """Adjusted sample skewness (nan below 3 finite values)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(stats.skew(finite, bias=False)) if len(finite) >= 3 and np.ptp(finite) > 0 else math.nan


# --- two programs' means: equivalence by TOST --------------------------------------------------------------------


@dataclass(frozen=True)
class Equivalence:
    difference: float  # mean of a minus mean of b
    low: float  # the (1 - 2 alpha) Welch interval: 90% for TOST at 5% per side
    high: float
    p_value: float  # TOST's: the larger of the two one-sided Welch p-values
    equivalent: bool


def welch_tost(a: list[float], b: list[float], tolerance: float, alpha: float = 0.05) -> Equivalence:
    """Two one-sided Welch tests (Schuirmann 1987): equivalent within +-tolerance at level ``alpha``.

    Error controlled: when the true difference is exactly +-tolerance, "equivalent" comes out at most ``alpha``
    of the time; it is the same as the (1 - 2 alpha) interval lying inside +-tolerance.
    """
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(1 - 2 * alpha)
    lower = stats.ttest_ind(np.asarray(a) + tolerance, b, equal_var=False, alternative="greater").pvalue
    upper = stats.ttest_ind(np.asarray(a) - tolerance, b, equal_var=False, alternative="less").pvalue
    p_value = float(max(lower, upper))
    difference = float(np.mean(a) - np.mean(b))
    return Equivalence(difference, float(interval.low), float(interval.high), p_value, p_value < alpha)


def _sign_rank(n: int, alpha: float) -> int:
    """The largest k with P(Binomial(n, 1/2) <= k - 1) <= alpha (0 when none): the k-th smallest of n paired
    differences is a lower bound of their median at level 1 - alpha whatever their distribution, and the k-th
    largest an upper bound."""
    k = 0
    while k < n and _at_most(k, n) <= alpha:
        k += 1
    return k


@cache
def _at_most(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k), exact; cached, since every simulated verdict asks the same few."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def paired_tost(differences: list[float], tolerance: float, alpha: float = 0.05) -> Equivalence:
    """TOST on per-seed differences (one program minus another on the same seeds), on their median and free of
    any distribution: equivalent within +-tolerance when the order-statistic bounds of the median difference, each
    at level 1 - alpha, lie inside it, so that at a median difference of exactly +-tolerance "equivalent" comes out
    at most ``alpha`` of the time (sign test; 1/32 = 3.1% with 5 seeds, whose bounds are the lowest and highest
    difference). A seed where either program failed (NaN) widens both bounds rather than being dropped. Pairing by
    seed removes the seed's own share of the spread, which is most of it when both train the same weights."""
    values = [float(v) for v in differences]
    k = _sign_rank(len(values), alpha)
    finite = [v for v in values if math.isfinite(v)]
    middle = float(np.median(finite)) if finite else math.nan
    if k == 0:  # too few seeds for any bound at this level
        return Equivalence(middle, -math.inf, math.inf, 1.0, False)
    lows = sorted(v if math.isfinite(v) else -math.inf for v in values)
    highs = sorted(v if math.isfinite(v) else math.inf for v in values)
    low, high = lows[k - 1], highs[len(values) - k]
    above = sum(v > -tolerance for v in lows)  # sign test of median <= -tolerance, and of median >= +tolerance
    below = sum(v < tolerance for v in highs)
    n = len(values)  # each one-sided sign test's p: P(Binomial(n, 1/2) >= the count on the far side of its margin)
    p_value = max(1 - _at_most(above - 1, n) if above else 1.0, 1 - _at_most(below - 1, n) if below else 1.0)
    return Equivalence(middle, low, high, p_value, low > -tolerance and high < tolerance)


def paired_tost_power(
    difference: float, sd: float, seeds: int, tolerance: float, alpha: float = 0.05, simulations: int = 20_000
) -> float:
    """Simulated chance that :func:`paired_tost` shows equivalence with ``seeds`` pairs whose differences are
    normal with this mean and sd."""
    k = _sign_rank(seeds, alpha)
    if k == 0:
        return 0.0
    rng = np.random.default_rng(0)
    d = np.sort(rng.normal(difference, max(sd, 1e-12), (simulations, seeds)), axis=1)
    return float(((d[:, k - 1] > -tolerance) & (d[:, seeds - k] < tolerance)).mean())


def tost_power(
    difference: float,
    sd_a: float,
    sd_b: float,
    seeds: int,
    tolerance: float,
    alpha: float = 0.05,
    simulations: int = 20_000,
    seed: int = 0,
) -> float:
    """Simulated chance that Welch's TOST shows equivalence with ``seeds`` a side, for normal runs of these sds."""
    rng = np.random.default_rng(seed)
    a = rng.normal(difference, sd_a, (simulations, seeds))
    b = rng.normal(0.0, sd_b, (simulations, seeds))
    va, vb = a.var(axis=1, ddof=1) / seeds, b.var(axis=1, ddof=1) / seeds
    se = np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (seeds - 1) + vb**2 / (seeds - 1))
    half = stats.t.ppf(1 - alpha, df) * se
    delta = a.mean(axis=1) - b.mean(axis=1)
    return float(((delta - half > -tolerance) & (delta + half < tolerance)).mean())


def seeds_for_tost(
    difference: float, sd_a: float, sd_b: float, tolerance: float, power: float = 0.8, cap: int = 200
) -> tuple[int, float] | None:
    """The smallest seeds a side at which TOST shows equivalence with probability >= ``power`` if the measured
    difference and spreads hold, and that probability; None when the difference is at or past the tolerance."""
    if abs(difference) >= tolerance:
        return None
    low, high = 2, cap
    if tost_power(difference, sd_a, sd_b, high, tolerance) < power:
        return None
    while low < high:  # power rises with seeds (for a difference inside the tolerance)
        middle = (low + high) // 2
        if tost_power(difference, sd_a, sd_b, middle, tolerance) >= power:
            high = middle
        else:
            low = middle + 1
    return low, tost_power(difference, sd_a, sd_b, low, tolerance)
