"""Where a claim's seed spread comes from: a factorial design over the seeds of each source of randomness (initial
weights, order of the training images, dropout masks), analysed with a random-effects model.

The design (``cnnlab reproduce design=sources``): in each of ``replicates`` replicates, every chosen source takes
``levels`` seeds, fully crossed (``levels ** sources`` runs); each replicate draws new seeds (replicate r, level l:
seed ``r * levels + l``), so each source's variance rests on ``levels * replicates`` seeds. Each run is a child of
one parent run, resumable like a reproduction (a FINISHED run of the same cell, fingerprint and machine kind is
reused).

The model: ``y = mu + a[init] + b[data_order] + c[dropout] + e``, each a normal random effect with its own variance,
crossed (statsmodels ``MixedLM``: one group, a variance component per source, REML). ``e``, the residual, holds what
no single source explains: their interactions, and the numerical noise of the kernels (no cell is run twice, so the
two are not told apart). A failed seed (no value) is left out of the fit and counted. With ``sources.within`` every
cell is trained twice (op determinism off, or float32 and bf16): a random effect of the cell, the interactions,
joins the model, ``e`` is then the spread between a cell's two runs, and bf16's mean shift is a fixed effect.

The intervals: profile likelihood. Each component's variance, and its share of the total, is held at a value while
every other parameter takes its best REML value (statsmodels' own likelihood, ``MixedLM.loglike``); the 95% interval
is every value whose likelihood ratio to the best fit stays within chi-square(1)'s 95% point. A share is a function
of the variance ratios, which the likelihood is written in, so it has a profile as a variance does. Chosen over the
parametric bootstrap this module used before: simulating from the fitted variances, a source estimated at zero was
never drawn large, and its interval came out far too narrow (two real designs of mnist_simple gave init shares of
0% [0, 3] and 62% [30, 99]); the profile's interval of such a source reaches as far as the data allow. Whether a
source adds anything at all is a test on the boundary of its variance: the likelihood ratio of zero against the best
fit is then half chi-square(0), half chi-square(1) (Self and Liang 1987), and its p stands beside the intervals. How
near 95% the intervals cover is measured by simulation (tests/test_claims_sources.py, docs/statistics.md
"Variance by source"). bf16's mean shift, a fixed effect, has no REML profile; its interval stays a basic
parametric bootstrap (``bootstrap`` draws).

Beside them, the test split's sampling error, ``sqrt(p (1 - p) / n_test)``: how far one run's accuracy sits from the
network's accuracy on all such images. It is a fixed split shared by every run, so it is no part of the spread
between runs; it says how much of a claim's difference from another test split's number no seed explains.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.claims import CELL_TAG
from cnnlab.errors import ConfigError

# The run config's key that sets each source apart (null follows ``seed``)
KEYS = {"init": "seed_init", "data_order": "seed_data_order", "dropout": "seed_dropout"}
RESIDUAL = "residual"
INTERACTIONS = "interactions"  # the cells' own effect, where each cell of seeds was trained twice


@dataclass(frozen=True)
class Within:
    """What each cell of seeds is trained under (``sources.within``), and how the section words it."""

    runs: tuple[tuple[str, tuple[str, ...]], ...]  # per run of a cell: its label's suffix, its config changes
    design: str  # appended to the design's description
    residual: str  # the residual's row in the table
    reading: str  # what the section says its components are


# Op determinism off lets the kernels' order of reductions vary run to run; trained twice, a cell's two runs
# differ by that alone. In float32 and bf16, they differ by the rounding (and its mean shift, fitted apart).
WITHIN = {
    "none": Within(
        (("", ()),),
        "",
        "residual (interactions, numerical noise)",
        "the residual is what no source explains alone (their interactions and the kernels' numerical noise).",
    ),
    "numerics": Within(
        tuple((f",repeat={r}", ("trainer.deterministic=false",)) for r in (1, 2)),
        ", each cell trained twice with op determinism off",
        "numerical noise, op determinism off (between a cell's two runs)",
        "the interactions are what no source explains alone, and the residual the spread between two runs of the "
        "same seeds with op determinism off: the kernels' numerical noise.",
    ),
    "precision": Within(
        # the float32 twin carries the plain cell's label: a within=none design's run of that cell is reused
        (("", ("trainer.precision=float32",)), (",precision=bf16", ("trainer.precision=bf16",))),
        ", each cell trained in float32 and in bf16",
        "bf16 rounding beyond its shift (half the variance of a cell's bf16-minus-float32 difference)",
        "the interactions are what no source explains alone, and the residual half the variance of the difference "
        "between the bf16 and float32 runs of the same seeds beyond bf16's mean shift (which stands below the "
        "table): as float32 is deterministic here, one bf16 run lands about 1.41x the residual's sd from its "
        "float32 twin.",
    ),
}


def cells(factors: list[str], levels: int, replicates: int) -> list[dict[str, int]]:
    """Every run of the design: each factor's seed, replicate by replicate (module docstring)."""
    return [
        {factor: replicate * levels + level for factor, level in zip(factors, combination, strict=True)}
        for replicate in range(replicates)
        for combination in itertools.product(range(levels), repeat=len(factors))
    ]


def cell_label(cell: dict[str, int]) -> str:
    return ",".join(f"{factor}={seed}" for factor, seed in cell.items())


# --- the analysis ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    name: str
    variance: float
    share: float  # of the total (every source and the residual)
    variance_low: float  # 95% profile-likelihood intervals (profile_intervals)
    variance_high: float
    share_low: float
    share_high: float
    zero_p: float  # p of "this source adds no variance" (chi-bar-square); NaN for the residual


@dataclass(frozen=True)
class Shift:
    """The other precision's fixed shift of the mean (bf16 minus float32), with its 95% bootstrap interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Breakdown:
    components: tuple[Component, ...]  # one per source, then the interactions (cells trained twice), the residual
    mean: float
    runs: int  # with a value
    failed: int  # seeds without a value, left out of the fit
    bootstrap: int  # draws behind the shift's interval (within=precision), else 0
    within: str = "none"  # what each cell was trained twice under: none, numerics, precision
    shift: Shift | None = None  # within=precision
    identical: bool = False  # within=numerics and every cell's two runs agreed to the last digit

    @property
    def total(self) -> float:
        return sum(c.variance for c in self.components)


def _indicators(codes: np.ndarray) -> np.ndarray:
    levels = np.unique(codes)
    return (codes[:, None] == levels[None, :]).astype(float)


def _model(values: np.ndarray, codes: dict[str, np.ndarray], shift: np.ndarray | None) -> tuple[Any, Any, float, float]:
    """``(model, fit, scale, centre)``: the crossed random-effects model, fitted by REML on the standardised values
    (accuracies a few hundredths of a point apart leave the optimiser nothing to grip)."""
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    scale = float(np.std(values)) or 1.0
    centre = float(np.mean(values))
    names = list(codes)
    matrices = [[_indicators(np.asarray(codes[name]))] for name in names]
    columns = [[[f"{name}{i}" for i in range(m[0].shape[1])]] for name, m in zip(names, matrices, strict=True)]
    exog = np.ones((len(values), 1)) if shift is None else np.column_stack([np.ones(len(values)), shift])
    model = MixedLM((values - centre) / scale, exog, np.ones(len(values)), exog_vc=VCSpec(names, columns, matrices))
    # statsmodels' default path (None: its own list of optimisers) can end on a singular Hessian when a variance
    # sits at zero (seen on mnist_simple's real 20-run design, where the init seeds' share is about nil); then each
    # optimiser alone, which reach the same optimum by another path.
    for method in (None, ["lbfgs"], ["cg"], ["nm"]):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # boundary fits (a variance at zero) warn; zero is a valid estimate
                fit = model.fit(reml=True) if method is None else model.fit(reml=True, method=method)
            return model, fit, scale, centre
        except np.linalg.LinAlgError:
            continue
    raise ValueError("the random-effects model could not be fitted (singular at every optimiser tried)")


def fit_variances(
    values: np.ndarray, codes: dict[str, np.ndarray], shift: np.ndarray | None = None
) -> tuple[float, np.ndarray, float]:
    """``(mean, variances, shift)``: REML estimates of each source's variance (in ``codes``' order), then the
    residual's; with ``shift`` (1 for a run in the other precision, else 0), that precision's fixed shift of the
    mean, and the mean is the float32 runs'."""
    return _fit(values, codes, shift).estimates()


@dataclass(frozen=True)
class _Fitted:
    """The REML maximum, in the standardised values' units: statsmodels' fit, carried to where its likelihood is
    highest (``_fit``)."""

    reml: Reml
    ratios: np.ndarray  # each component's variance over the residual's
    residual: float
    best: float  # the log-likelihood there
    beta: np.ndarray  # the fixed effects: the mean, then the shift
    scale: float
    centre: float

    def estimates(self) -> tuple[float, np.ndarray, float]:
        variances = np.array([*self.ratios * self.residual, self.residual]) * self.scale**2
        moved = float(self.beta[1]) * self.scale if len(self.beta) > 1 else math.nan
        return self.centre + float(self.beta[0]) * self.scale, variances, moved


def _fit(values: np.ndarray, codes: dict[str, np.ndarray], shift: np.ndarray | None) -> _Fitted:
    """statsmodels' REML fit, then the same likelihood maximised from its estimate and from no variance at all:
    statsmodels' optimisers stop short of the maximum on some of these small designs (by up to 0.2 in
    log-likelihood on 20 runs, 2.3 on 8), and a profile's distances are measured from the maximum."""
    from scipy import optimize

    model, fit, scale, centre = _model(values, codes, shift)
    reml = Reml(model)
    count = len(np.asarray(fit.vcomp))
    first = np.asarray(fit.vcomp, dtype=float) / float(fit.scale) if float(fit.scale) > 0 else np.zeros(count)
    starts = [np.maximum(np.nan_to_num(first, nan=0.0, posinf=0.0), 0.0), np.zeros(count)]
    ratios, best = starts[0], reml.profiled(starts[0])[0]

    def objective(r: np.ndarray) -> float:
        value = reml.profiled(r)[0]
        return -value if math.isfinite(value) else 1e300

    for start in starts:
        found = optimize.minimize(objective, start, method="SLSQP", bounds=[(0.0, None)] * count)
        candidate = np.maximum(found.x, 0.0)
        value = reml.profiled(candidate)[0]
        if math.isfinite(value) and (not math.isfinite(best) or value > best):
            ratios, best = candidate, value
    _, residual, beta = reml.solve(ratios)
    return _Fitted(reml, ratios, residual, best, beta, scale, centre)


# --- profile-likelihood intervals -----------------------------------------------------------------------------------

CUT = 3.841458820694124  # chi-square, 1 df, 95%: the likelihood-ratio cut of a 95% interval


class Reml:
    """The REML log-likelihood of a statsmodels ``MixedLM`` of this module's shape (one group, variance components
    only), at given variance ratios (each component's variance over the residual's), with the residual variance and
    the fixed effects profiled out, as ``MixedLM.loglike`` defines it and equal to it (tests/test_claims_sources.py).
    Written out in numpy because a profile interval takes thousands of evaluations, and statsmodels' general path
    costs about ten times as much per call at these sizes (20 to 80 runs)."""

    def __init__(self, model: Any) -> None:
        self.y, self.x = np.asarray(model.endog, dtype=float), np.asarray(model.exog, dtype=float)
        self.products = [m[0] @ m[0].T for m in model.exog_vc.mats]  # Z Z' of each component
        self.df = len(self.y) - self.x.shape[1]

    def profiled(self, ratios: np.ndarray) -> tuple[float, float]:
        """``(log-likelihood, the residual variance's REML estimate)`` at these ratios."""
        value, residual, _ = self.solve(ratios)
        return value, residual

    def solve(self, ratios: np.ndarray) -> tuple[float, float, np.ndarray]:
        """``(log-likelihood, residual variance, fixed effects)`` at these ratios; minus infinity where the
        covariance cannot be factored in floating point (a residual a ten-thousand-billionth of the rest) or the
        runs leave nothing to fit (every value the same)."""
        from scipy.linalg import cho_factor, cho_solve

        ratios = np.maximum(np.asarray(ratios, dtype=float), 0.0)
        nothing = (-math.inf, math.nan, np.full(self.x.shape[1], math.nan))
        if not np.all(np.isfinite(ratios)):
            return nothing
        # V = I + sum rho Z Z', divided by 1 + sum rho: the profiled likelihood does not change when V is scaled,
        # and this keeps V's eigenvalues within [1 / (1 + sum rho), n] however large a ratio grows
        size = 1.0 + float(np.sum(ratios))
        v = np.eye(len(self.y)) / size
        for ratio, product in zip(ratios, self.products, strict=True):
            v = v + (ratio / size) * product
        try:
            factor = cho_factor(v, lower=True)
        except (np.linalg.LinAlgError, ValueError):
            return nothing
        vx, vy = cho_solve(factor, self.x), cho_solve(factor, self.y)
        xvx = self.x.T @ vx
        beta = np.linalg.solve(xvx, self.x.T @ vy)
        resid = self.y - self.x @ beta
        quadratic = float(resid @ cho_solve(factor, resid))
        if not quadratic > 0:
            return nothing
        log_det = 2 * float(np.sum(np.log(np.diag(factor[0]))))
        df = self.df
        value = -(log_det + np.linalg.slogdet(xvx)[1] + df * math.log(quadratic)) / 2
        value += df / 2 * (math.log(df) - math.log(2 * math.pi) - 1)
        return value, quadratic / size / df, beta

    def loglike(self, residual: float, ratios: np.ndarray) -> float:
        """With the residual variance given too: the profiled one less what moving the residual variance away from
        its estimate costs, ``(n - p)/2 (log(r/r^) + r^/r - 1)``."""
        value, estimate = self.profiled(ratios)
        if not math.isfinite(value):
            return value
        return value - self.df / 2 * (math.log(residual / estimate) + estimate / residual - 1)


class _Maximum:
    """The maximum of a log-likelihood over its free parameters under a constraint set by one value, each search
    from the best fit's parameters (a start where the last search ended was tried, and stopped short of the maximum
    on flat profiles). SLSQP: on these one to four bounded parameters it reaches the same ends as L-BFGS-B at about
    a third of the time."""

    def __init__(self, loglike: Any, start: np.ndarray, bounds: list) -> None:
        self.loglike, self.start, self.bounds = loglike, np.asarray(start, dtype=float), bounds

    def __call__(self, value: float) -> float:
        from scipy import optimize

        if len(self.start) == 0:
            return self.loglike(self.start, value)
        low = np.array([-np.inf if b[0] is None else b[0] for b in self.bounds])
        high = np.array([np.inf if b[1] is None else b[1] for b in self.bounds])

        def objective(x: np.ndarray) -> float:  # SLSQP's steps may leave the bounds by a little: clipped
            found = self.loglike(np.clip(x, low, high), value)
            return -found if math.isfinite(found) else 1e300

        found = optimize.minimize(objective, self.start, method="SLSQP", bounds=self.bounds)
        return max(-float(found.fun), self.loglike(self.start, value))


def _weights(w: np.ndarray) -> np.ndarray:
    """Weights that sum to one; all at zero, equal ones (the total must still be split for the share to hold)."""
    w = np.asarray(w, dtype=float)
    return w / w.sum() if w.sum() > 1e-12 else np.full(len(w), 1 / len(w))


def _profile(reml: Reml, ratios: np.ndarray, residual: float, what: str, index: int) -> _Maximum:
    """The profile log-likelihood of one component's variance or share (``what``), a function of its value: every
    other parameter set to its best under that constraint. Components are the ratios' order, then the residual."""
    count = len(ratios)
    others = [j for j in range(count) if j != index]
    free = [(0.0, None)] * len(others)

    def set_ratios(x: np.ndarray, value: float) -> np.ndarray:
        full = np.zeros(count)
        full[others] = x
        full[index] = value
        return full

    if what == "share" and index < count:  # rho_k / (1 + sum rho) = s
        return _Maximum(
            lambda x, s: reml.profiled(set_ratios(x, s * (1 + np.sum(x)) / (1 - s)))[0], ratios[others], free
        )
    if what == "share":  # the residual's share s: sum rho = 1/s - 1, split between the components as weights say
        start = ratios / ratios.sum() if ratios.sum() > 0 else np.full(count, 1 / count)
        return _Maximum(
            lambda w, s: reml.profiled((1 / s - 1) * _weights(w))[0],
            start,
            [(0.0, 1.0)] * count,
        )
    if index < count:  # a component's variance v: rho_k = v / residual, the residual free (on the log scale)
        return _Maximum(
            lambda x, v: reml.loglike(math.exp(x[0]), set_ratios(x[1:], v / math.exp(x[0]))),
            np.array([math.log(residual), *ratios[others]]),
            [(math.log(residual) - 20, math.log(residual) + 20), *free],  # e^20: far past any profile's reach
        )
    return _Maximum(lambda x, v: reml.loglike(v, x), ratios, [(0.0, None)] * count)  # the residual's


def _ends(
    distance: Any, estimate: float, lowest: float, highest: float, open_end: float | None = None
) -> tuple[float, float]:
    """The values whose likelihood-ratio distance from the best fit stays within the cut, between ``lowest`` and
    ``highest``: the profile is unimodal in one value, so each end is one root. An upper end not reached by
    ``highest`` is ``open_end`` if given (a variance the data do not bound: infinity), else ``highest`` (a share's
    100%). Where the profile cannot be maximised at the estimate itself (a degenerate fit), the interval is the
    estimate."""
    from scipy import optimize

    def root(a: float, b: float) -> float:
        # to a ten-thousandth of the end's value: the table prints three figures
        return float(optimize.brentq(lambda v: distance(v) - CUT, a, b, xtol=1e-4 * max(abs(b), 1e-12)))

    estimate = min(max(estimate, lowest), highest)
    if distance(estimate) > CUT:
        return estimate, estimate
    low = lowest if estimate <= lowest or distance(lowest) <= CUT else root(lowest, estimate)
    high = estimate
    step = max(estimate, 1e-3 * highest)
    while high < highest:  # outwards by doubling steps, so a narrow profile is not bracketed from far away
        nxt = min(high + step, highest)
        if distance(nxt) > CUT:
            return low, root(high, nxt)
        high, step = nxt, 2 * step
    return low, highest if open_end is None else open_end


@dataclass(frozen=True)
class _Intervals:
    variance: tuple[float, float]  # standardised units
    share: tuple[float, float]
    zero_p: float  # chi-bar-square p of "this component's variance is nil"; NaN for the residual


def profile_intervals(fitted: _Fitted) -> list[_Intervals]:
    """Each component's (the sources', then the residual's) 95% profile-likelihood intervals of its variance and
    share, and the p of its variance being nil (module docstring), in the standardised units."""
    from scipy import stats

    reml, ratios, residual, best = fitted.reml, fitted.ratios, fitted.residual, fitted.best
    if not math.isfinite(best):  # nothing to fit (every run the same), or a residual too small to factor
        return [_Intervals((math.nan, math.nan), (math.nan, math.nan), math.nan) for _ in range(len(ratios) + 1)]
    variances = np.array([*ratios * residual, residual])
    shares = variances / variances.sum()

    def distance(what: str, index: int) -> Any:
        """The likelihood-ratio distance of one value of the component's ``what`` from the best fit."""
        profile = _profile(reml, ratios, residual, what, index)
        return lambda value: max(2 * (best - profile(value)), 0.0)

    found = []
    for index in range(len(variances)):
        share_distance, variance_distance = distance("share", index), distance("variance", index)
        is_residual = index == len(ratios)
        # the residual never reaches zero (a run would repeat another's value exactly): its ends search above
        share = _ends(share_distance, shares[index], 1e-4 if is_residual else 0.0, 1.0 if is_residual else 1 - 1e-6)
        lowest = variances[index] * 1e-4 if is_residual else 0.0
        variance = _ends(variance_distance, variances[index], lowest, 100.0 * variances.sum(), open_end=math.inf)
        at_zero = math.nan if is_residual else variance_distance(0.0)
        # at zero the likelihood ratio is half chi-square(0), half chi-square(1): a variance on its boundary
        zero_p = 1.0 if at_zero == 0 else 0.5 * float(stats.chi2.sf(at_zero, 1))
        found.append(_Intervals(variance, share, zero_p))
    return found


def breakdown(
    values: list[float],
    codes: dict[str, list[int]],
    bootstrap: int = 200,
    seed: int = 0,
    cell: list[int] | None = None,
    within: str = "none",
    shift: list[int] | None = None,
) -> Breakdown:
    """Each source's variance and share with 95% profile-likelihood intervals (module docstring); ``codes`` give
    each run's seed per source, ``values`` its final metric (NaN: a failed seed, left out). Where each cell of
    seeds was trained twice (``within``: numerics or precision), ``cell`` numbers each run's cell: the cells'
    own effect is then the seed sources' interactions, and the residual the spread between a cell's two runs; for
    precision, ``shift`` marks the bf16 runs, whose mean shift is fitted as a fixed effect (its interval from
    ``bootstrap`` draws, ``seed`` their generator's)."""
    y = np.asarray(values, dtype=float)
    kept = np.isfinite(y)
    names = list(codes)
    grouped = dict(codes)
    identical = False
    if cell is not None:
        cells_kept = np.asarray(cell)[kept]
        identical = within == "numerics" and all(np.ptp(y[kept][cells_kept == c]) == 0 for c in np.unique(cells_kept))
        if identical:  # no noise between repeats to estimate: fit one run a cell, the residual is the interactions
            finite = np.flatnonzero(kept)
            kept = np.zeros(len(y), dtype=bool)
            kept[finite[np.unique(cells_kept, return_index=True)[1]]] = True
        else:
            grouped[INTERACTIONS] = cell
            names.append(INTERACTIONS)
    codes_kept = {name: np.asarray(c)[kept] for name, c in grouped.items()}
    marked = None if shift is None else np.asarray(shift, dtype=float)[kept]
    fitted = _fit(y[kept], codes_kept, marked)
    mean, variances, moved = fitted.estimates()
    scale = fitted.scale
    intervals = profile_intervals(fitted)
    moved_interval = None
    if marked is not None:
        moved_interval = _shift_interval(codes_kept, marked, mean, variances, moved, bootstrap, seed)
    if identical:  # the fitted residual is the interactions (named so below); the repeats' noise is exactly nil
        names.append(INTERACTIONS)
        variances = np.append(variances, 0.0)
        intervals.append(_Intervals((0.0, 0.0), (0.0, 0.0), math.nan))  # the residual's row: no p
    total = variances.sum()
    shares = variances / total if total > 0 else np.full(len(variances), math.nan)
    components = tuple(
        Component(
            name, float(variance), float(share), *(scale**2 * np.asarray(found.variance)), *found.share, found.zero_p
        )
        for name, variance, share, found in zip([*names, RESIDUAL], variances, shares, intervals, strict=True)
    )
    finite = np.isfinite(y)
    return Breakdown(
        components,
        mean,
        int(finite.sum()),
        int((~finite).sum()),
        bootstrap if marked is not None else 0,
        within,
        moved_interval,
        identical,
    )


def _shift_interval(
    codes: dict[str, np.ndarray],
    marked: np.ndarray,
    mean: float,
    variances: np.ndarray,
    moved: float,
    bootstrap: int,
    seed: int,
) -> Shift:
    """The other precision's mean shift, a fixed effect, with its 95% basic parametric-bootstrap interval: designs
    simulated from the fitted model and refitted (REML's likelihood is not one of the fixed effects')."""
    rng = np.random.default_rng(seed)
    indicators = [_indicators(c) for c in codes.values()]
    shifts = []
    for _ in range(bootstrap):
        simulated = mean + moved * marked + rng.normal(0.0, math.sqrt(variances[-1]), len(marked))
        for matrix, variance in zip(indicators, variances, strict=False):
            simulated = simulated + matrix @ rng.normal(0.0, math.sqrt(variance), matrix.shape[1])
        shifts.append(fit_variances(simulated, codes, marked)[2])
    low, high = np.percentile(shifts, [2.5, 97.5])
    return Shift(moved, float(2 * moved - high), float(2 * moved - low))


NIL = "p, if it added nothing"  # the table's column of each component's zero_p


def breakdown_table(result: Breakdown, sampling_se: float) -> str:
    """The section's table: each source's variance, sd and share with intervals, the test split's error beside."""
    import pandas as pd

    from cnnlab.claims.report import to_markdown

    def points(variance: float) -> str:
        return f"{100 * math.sqrt(max(variance, 0.0)):.3f}"

    names = {
        INTERACTIONS: "interactions of the seed sources (a cell's own effect)",
        RESIDUAL: WITHIN[result.within].residual
        + (": a cell's two runs agreed to the last digit" if result.identical else ""),
    }
    rows = [
        {
            "source": names.get(c.name, f"{c.name} seed"),
            "sd, points (95% interval)": f"{points(c.variance)} [{points(c.variance_low)}, {points(c.variance_high)}]",
            "share of the run-to-run variance (95% interval)": (
                f"{100 * c.share:.0f}% [{100 * c.share_low:.0f}, {100 * c.share_high:.0f}]"
            ),
            NIL: "" if math.isnan(c.zero_p) else ("< 0.001" if c.zero_p < 0.001 else f"{c.zero_p:.3f}"),
        }
        for c in result.components
    ]
    rows.append({"source": "every source and the residual together", "sd, points (95% interval)": points(result.total)})
    if result.shift is not None:
        shift = result.shift
        rows.append(
            {
                "source": "beside: bf16 minus float32, the shift of the mean (a fixed effect, not a spread)",
                "sd, points (95% interval)": (
                    f"{100 * shift.estimate:+.3f} [{100 * shift.low:+.3f}, {100 * shift.high:+.3f}]"
                ),
                "share of the run-to-run variance (95% interval)": "moves every run alike",
            }
        )
    rows.append(
        {
            "source": "beside: test-split sampling error, sqrt(p (1 - p) / n_test)",
            "sd, points (95% interval)": f"{100 * sampling_se:.3f}",
            "share of the run-to-run variance (95% interval)": "no part of it: one split for every run",
        }
    )
    return to_markdown(pd.DataFrame(rows).fillna(""))


def breakdown_figure(result: Breakdown, title: str) -> Any:
    """Each source's share of the run-to-run variance, a bar with its 95% interval."""
    from cnnlab import plots

    figure, axis = plots.plt.subplots(figsize=(6, 3.6))
    names = [c.name for c in result.components]
    shares = np.array([100 * c.share for c in result.components])
    low = shares - np.array([100 * c.share_low for c in result.components])
    high = np.array([100 * c.share_high for c in result.components]) - shares
    axis.bar(names, shares, color="tab:blue", yerr=[np.maximum(low, 0), np.maximum(high, 0)], capsize=6)
    axis.set_ylabel("share of the run-to-run variance, %")
    axis.set_ylim(0, 100)
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return figure


# --- refusals, before anything is created -------------------------------------------------------------------------


def check_design(cfg: Any, claim_cfgs: dict[str, Any]) -> None:
    """``design=sources`` takes one claim, a run config that sets the sources apart, and a dropout seed only for a
    network with dropout."""
    from cnnlab.config.schema import option

    if option(cfg.design) != "sources":
        return
    if len(claim_cfgs) != 1:
        named = ", ".join(claim_cfgs) or "none"
        raise ConfigError(
            f"design=sources: takes exactly one claim, got {len(claim_cfgs)} ({named}); name one, e.g. "
            "claims=[mnist_simple]"
        )
    ((name, claim_cfg),) = claim_cfgs.items()
    factors = factors_of(cfg, claim_cfg)
    if not factors or len(set(factors)) != len(factors):
        raise ConfigError(f"sources.factors: one or more distinct sources of {list(KEYS)}, got {factors}")
    if option(cfg.sources.within) != "none" and len(factors) < 2:
        raise ConfigError(
            f"sources.within={option(cfg.sources.within)}: needs at least two seed sources crossed, so that a "
            f"cell's own effect (their interactions) is told apart from each source's; got sources.factors={factors}, "
            "e.g. sources.factors=[init,data_order] or leave it unset"
        )
    if option(cfg.sources.within) == "precision":
        from cnnlab.machine import native_bf16

        if option(claim_cfg.trainer.precision) not in ("float32", "auto"):
            raise ConfigError(
                f"sources.within=precision: trains every cell in float32 and in bf16 itself, so "
                f"trainer.precision={option(claim_cfg.trainer.precision)} has no place; leave trainer.precision unset"
            )
        if not native_bf16():
            raise ConfigError(
                "sources.within=precision: bfloat16 is not native here (no avx512_bf16 or amx_bf16, no GPU), and "
                "emulated bf16 is other arithmetic at about 10x the time; run it on a machine with native bf16, or "
                "use sources.within=numerics or none"
            )
    if "dropout" in factors and not has_dropout(claim_cfg):
        rest = ",".join(f for f in factors if f != "dropout")
        raise ConfigError(
            f"sources.factors: {name}'s network (model={claim_cfg.model.name}) has no dropout block, so a dropout "
            f"seed changes nothing; leave it out (sources.factors=[{rest}]) or leave sources.factors unset"
        )


def has_dropout(claim_cfg: Any) -> bool:
    from cnnlab.config.schema import option

    return any(option(block.type) == "dropout" for block in claim_cfg.model.blocks)


def factors_of(cfg: Any, claim_cfg: Any) -> list[str]:
    """The sources the design crosses: ``sources.factors``, or every one the claim's network has."""
    from cnnlab.config.schema import option

    if cfg.sources.factors is not None:
        return [option(factor) for factor in cfg.sources.factors]
    return [factor for factor in KEYS if factor != "dropout" or has_dropout(claim_cfg)]


# --- the design's runs ----------------------------------------------------------------------------------------------


def run_sources(cfg: Any, overrides: list[str], compose: Any) -> tuple[str, Breakdown, dict[str, Any]]:
    """Trains (or resumes) the design for the one claim of ``cfg.claims`` and analyses its first target's metric."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from cnnlab import train
    from cnnlab.allocator import pin_mmap_threshold
    from cnnlab.claims import EXPERIMENT, kinds
    from cnnlab.claims.reproduce import claim_overrides, fingerprint, open_parent, split_sizes
    from cnnlab.claims.stats import binomial_se
    from cnnlab.config.schema import option
    from cnnlab.machine import choose_precision
    from cnnlab.tracking.provenance import rerun_command
    from cnnlab.tracking.runs import tracked_run
    from cnnlab.tracking.store import configure

    pin_mmap_threshold()
    (name,) = cfg.claims
    passthrough = claim_overrides(overrides)
    claim_cfg = compose([f"experiment={name}", *passthrough])
    check_design(cfg, {name: claim_cfg})
    factors = factors_of(cfg, claim_cfg)
    within = option(cfg.sources.within)
    plan = cells(factors, cfg.sources.levels, cfg.sources.replicates)
    experiment_id = configure(OmegaConf.merge(cfg.tracking, {"experiment": EXPERIMENT}))
    client = MlflowClient()
    claim_cfg.tracking.experiment = EXPERIMENT
    claim_cfg.trainer.precision = choose_precision(option(claim_cfg.trainer.precision))[0]
    data = train.prepare_data(claim_cfg)
    kind = kinds.this_kind()
    identity = ["sources", name, factors, cfg.sources.levels, cfg.sources.replicates, passthrough]
    if within != "none":  # designs from before ``within`` existed keep their key, and so resume
        identity.append(within)
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    command = rerun_command("cnnlab.reproduce", overrides)
    variants = [
        (suffix, variant_cfg, fingerprint(variant_cfg, data.arrays.sha256), changes)
        for suffix, changes in WITHIN[within].runs
        for variant_cfg in [OmegaConf.merge(claim_cfg, OmegaConf.from_dotlist(changes))]
    ]
    runs_planned = len(plan) * len(variants)
    described = f"Variance by source of {name}: {runs_planned} runs over {', '.join(factors)}.\n\nRerun: `{command}`"
    parent_id = open_parent(client, experiment_id, key, described)
    metric = next((t["metric"] for t in (claim_cfg.claim or {}).get("targets", [])), "test_accuracy")
    where = _Where(client, experiment_id, parent_id, [f"experiment={name}", *passthrough], kind)
    with tracked_run(experiment_id, "", {}, "", run_id=parent_id):
        runs = [_cell_run(where, name, cell, data, variant) for cell in plan for variant in variants]
        values = [run.data.metrics.get(metric, math.nan) for run in runs]
        twice = len(variants) > 1
        result = breakdown(
            values,
            {f: [cell[f] for cell in plan for _ in variants] for f in factors},
            cfg.sources.bootstrap,
            cell=[index for index in range(len(plan)) for _ in variants] if twice else None,
            within=within,
            shift=[position for _ in plan for position in range(len(variants))] if within == "precision" else None,
        )
        sampling_se = binomial_se(result.mean, split_sizes(data).get(metric, 0)) if result.runs else math.nan
        table = breakdown_table(result, sampling_se)
        mlflow.log_figure(breakdown_figure(result, f"{name} {metric} on {kind}: variance by source"), "sources.png")
        mlflow.log_text(table, "sources.md")
    # the runs' intra-op threads: their number changes a run's arithmetic (docs/runs.md), so the section names it
    threads = sorted({kinds.run_threads(run) or "an unrecorded number of" for run in runs}, key=lambda t: (len(t), t))
    precisions = sorted({run.data.tags.get("cnnlab.precision", "an unrecorded precision") for run in runs})
    report = {"table": table, "command": command, "claim": name, "metric": metric, "kind": kind, "threads": threads}
    report |= {"precisions": precisions}
    absent = "" if "dropout" in factors or has_dropout(claim_cfg) else "; dropout: absent (the network has none)"
    design = f"{cfg.sources.levels} seeds a source x {cfg.sources.replicates} replicates over {', '.join(factors)}"
    design += WITHIN[within].design
    report |= {"design": design + absent}
    return parent_id, result, report


@dataclass(frozen=True)
class _Where:
    """What every run of one design shares: where it is logged, and what it is reused by."""

    client: Any
    experiment_id: str
    parent_id: str
    run_overrides: list[str]
    kind: str


def _cell_run(where: _Where, name: str, cell: dict[str, int], data: Any, variant: tuple) -> Any:
    """One run of the design: reused when FINISHED with this cell and fingerprint on this machine kind and thread
    count, else trained.
    ``variant``: what the cell is trained under this time (``WITHIN``), with its config and fingerprint."""
    from omegaconf import OmegaConf

    from cnnlab import train
    from cnnlab.claims.kinds import finished_runs

    suffix, claim_cfg, print_, changes = variant
    label, kind = cell_label(cell) + suffix, where.kind
    tags = {"cnnlab.claim": name, CELL_TAG: label, "cnnlab.fingerprint": print_}
    done = finished_runs(where.client, where.experiment_id, tags, kind)
    if done:
        print(f"[sources] {name} {label}: already FINISHED on {kind} ({done[0].info.run_id}), skipped", flush=True)
        return done[0]
    print(f"[sources] {name} {label}: training ({claim_cfg.trainer.epochs} epochs)", flush=True)
    seeds = {KEYS[factor]: seed for factor, seed in cell.items()}
    cell_cfg = OmegaConf.merge(claim_cfg, {**seeds, "tracking": {"run_name": f"{name}-{label}"}})
    outcome = train.train(
        cell_cfg,
        [*where.run_overrides, *changes, *(f"{key}={value}" for key, value in seeds.items())],
        parent_run_id=where.parent_id,
        extra_tags={"cnnlab.claim": name, CELL_TAG: label, "cnnlab.fingerprint": print_},
        data=data,
    )
    return where.client.get_run(outcome.run_id)


def write_sources_md(path: Any, report: dict[str, Any], parent_id: str, result: Breakdown) -> None:
    """The "Variance by source" section of REPRODUCTION.md for this claim and machine kind."""
    from pathlib import Path

    from cnnlab import documents
    from cnnlab.claims.report import REPRODUCTION_HEADER
    from cnnlab.machine import cpu_description

    runs_on = f"its runs in {' and '.join(report['precisions'])}, on {' and '.join(report['threads'])} TensorFlow "
    runs_on += "intra-op thread(s)"
    body = f"""## Variance by source: {report["claim"]} ({report["kind"]})

Command: `{report["command"]}`

Machine: {cpu_description()}; {runs_on}. MLflow
parent run `{parent_id}` (its sources.png). Design: {report["design"]},
{result.runs + result.failed} runs ({result.failed} failed, left out); {report["metric"]}, mean
{100 * result.mean:.2f}%. Random-effects model (statsmodels MixedLM, REML), nominal 95% profile-likelihood
intervals (how near 95% they cover in simulation: docs/statistics.md); p, if it added nothing: the boundary test that
the source's variance is nil. With a few seeds a source the split between sources is loose: read the total and the
residual first, and a source as mattering where its p is small in more than one design (docs/statistics.md shows
two designs of mnist_simple's same seeds that disagree).

{report["table"]}

How to read it (docs/statistics.md, "Variance by source"): each source's share of the whole run-to-run variance
(every source and the residual together); {WITHIN[result.within].reading}
The test split's sampling error is the same for every run, so it stands beside the spread, not in it.
"""
    documents.write_section(
        Path(path), f"variance by source: {report['claim']} / {report['kind']}", body, REPRODUCTION_HEADER
    )


def sources_summary(report: dict[str, Any], parent_id: str, report_path: str | None) -> str:
    """What the command prints at the end."""
    lines = ["\n" + report["table"] + "\n", f"  parent run {parent_id} (experiment cnnlab-reproductions): sources.png"]
    if report_path:
        lines.append(f"  wrote {report_path}")
    return "\n".join(lines)


def finish_sources(cfg: Any, parent_id: str, result: Breakdown, report: dict[str, Any]) -> str:
    """Writes the design's section to ``cfg.report_path`` (if set) and returns what the command prints."""
    if cfg.report_path:
        write_sources_md(cfg.report_path, report, parent_id, result)
    return sources_summary(report, parent_id, cfg.report_path)
