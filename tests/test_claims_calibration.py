"""The verdict's contract by simulation with known truth, over every noise family and design (seeded, vectorised).

The median rule's error rates are exact for any distribution; these tests show it on the families a deep-learning
seed can follow (skewed, near a ceiling, heavy-tailed, with failed seeds), check that the vectorised simulator
reaches ``judge``'s verdicts, and hold the single-run intervals, planning figures and TOST to their promises.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cnnlab.claims.calibration import (
    DESIGNS,
    FAMILIES,
    SD,
    decide,
    draw_values,
    setting,
    simulate,
    single_run_coverage,
)
from cnnlab.claims.stats import (
    Design,
    _binomial_paths,
    coverage_at,
    outlying_seeds,
    prediction_coverage,
    seeds_for_median_rule,
    seeds_for_tost,
    sign_boundaries,
    sign_error,
    sign_error_of_union,
    smallest_deciding_design,
    t_critical_values,
    t_paths,
    tost_power,
    welch_tost,
)
from cnnlab.claims.verdict import (
    EXCEEDS,
    NOT_REPRODUCED,
    REPRODUCED,
    family_error,
    holm,
    judge,
    margin_of,
    smallest_p_value,
)

SIMULATIONS = 4000


def _at_most(rate: float, bound: float, simulations: int = SIMULATIONS) -> None:
    """``rate`` may exceed ``bound`` only by Monte-Carlo error (3 standard errors at the bound)."""
    assert rate <= bound + 3 * math.sqrt(bound * (1 - bound) / simulations), f"{rate:.4f} > {bound}"


@pytest.mark.parametrize("design", list(DESIGNS), ids=str)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_median_at_the_margin_is_rarely_decided_either_way(family, design):
    """False "reproduced" and false "not reproduced" at most 5% (+ MC error) with the median run at the margin."""
    claim = setting(family)
    margin, _ = margin_of(**claim)
    rates = simulate(DESIGNS[design], margin, family, "median", **claim, simulations=SIMULATIONS, seed=11)
    _at_most(rates.reproduced, 0.05)
    _at_most(rates.not_reproduced, 0.05)


def test_the_t_rule_before_breaks_under_skew_and_failed_seeds():
    """Why the verdict moved: with the *mean* at the margin the t rule passes skewed and contaminated runs."""
    for family, floor in (("left2", 0.10), ("contaminated10", 0.30)):
        rates = simulate(DESIGNS["seeds=auto (3..10)"], 0.895, family, "t-bonferroni", seed=12)
        assert rates.reproduced > floor


def test_power_at_the_claim_within_ten_seeds():
    """Normal runs of sd 0.3 points, median at the claim: reproduced at least 80% of the time within max_seeds=10."""
    rates = simulate(Design(3, 10), 0.9, "normal", "median", simulations=SIMULATIONS, seed=13)
    assert rates.reproduced >= 0.80 and rates.mean_seeds < 8


@pytest.mark.parametrize("family", ["normal", "left2", "ceiling", "contaminated10"])
@pytest.mark.parametrize("rule", ["median", "t-exact"])
def test_the_simulator_reaches_judges_verdicts(family, rule):
    """The calibration's vectorised rule is the verdict's: the same status and seeds as ``judge``, draw by draw."""
    claim = setting(family)
    margin, _ = margin_of(**claim)
    design = Design(3, 10)
    values = draw_values(FAMILIES[family], np.random.default_rng(14), (150, 10), margin + SD / 2, "median")
    status, seeds = decide(values, margin, design, rule)
    code = {REPRODUCED: 1, EXCEEDS: 1, NOT_REPRODUCED: -1}
    for row, expected, n in zip(values, status, seeds, strict=True):
        verdict = judge(list(row), claim["claimed"], design, claim["tolerance"], error_ratio=claim["error_ratio"])
        reading = verdict if rule == "median" else verdict.mean
        assert (code.get(reading.status, 0), reading.seeds) == (expected, n)


def test_sign_boundaries_are_exact_and_a_longer_design_continues_a_shorter_one():
    for design in [Design(3, 10), Design(5, 8), Design(3, 20), *(Design.fixed(n) for n in (5, 6, 10, 15))]:
        assert sign_error(design) <= design.alpha
        # exact: the same figure as the dynamic programme over all 2^n paths
        n = design.max_seeds
        if n <= 12:
            paths = np.array(np.meshgrid(*[[0, 1]] * n)).reshape(n, -1).T
            counts = np.cumsum(paths, axis=1)
            looks = sorted(sign_boundaries(design).items())
            crossed = np.zeros(len(paths), bool)
            for look, r in looks:
                crossed |= counts[:, look - 1] >= r
            assert crossed.mean() == pytest.approx(sign_error(design))
    short, long = sign_boundaries(Design(3, 10)), sign_boundaries(Design(3, 20))
    assert all(long[n] == r for n, r in short.items())
    assert sign_error_of_union([Design(3, 10), Design(3, 20)]) == pytest.approx(sign_error(Design(3, 20)))
    # a fixed design judged again under another exceeds what either promises alone
    assert sign_error_of_union([Design.fixed(5), Design.fixed(10)]) > sign_error(Design.fixed(5))


def test_looking_at_every_seed_at_five_percent_each_would_break_the_size():
    """The uncorrected sign test at each look: what the exact spending prevents."""
    naive = {n: sign_boundaries(Design.fixed(n))[n] for n in range(3, 11)}
    up, _, _ = _binomial_paths(naive, 10, 0.5)
    assert up > 0.05 >= sign_error(Design(3, 10))


def test_designs_that_can_never_decide():
    assert smallest_deciding_design(Design.fixed(3)) == 5
    assert smallest_deciding_design(Design.fixed(4)) == 5
    assert smallest_deciding_design(Design(3, 4)) == 5
    assert smallest_deciding_design(Design.fixed(5)) is None and smallest_deciding_design(Design(3, 10)) is None


def test_exact_t_boundaries_spend_the_whole_alpha_and_gain_power():
    """Calibrated once by a seeded simulation; an independent one finds their size at 5% and Bonferroni's below."""
    design = Design(3, 10)
    critical = t_critical_values(design)
    assert critical == t_critical_values.__wrapped__(design)  # seeded: the same boundaries in every process
    looks = list(critical)
    null = t_paths(np.random.default_rng(15).standard_normal((40_000, 10)), looks)
    size = (null >= np.array([critical[n] for n in looks])).any(axis=1).mean()
    assert abs(size - 0.05) < 3 * math.sqrt(0.05 * 0.95 / 40_000)
    harder = 0.895 + SD  # claim - tolerance + 1 sd
    exact = simulate(design, harder, "normal", "t-exact", simulations=20_000, seed=16)
    bonferroni = simulate(design, harder, "normal", "t-bonferroni", simulations=20_000, seed=16)
    assert exact.reproduced >= bonferroni.reproduced + 0.03


@pytest.mark.parametrize("family", list(FAMILIES))
def test_single_run_intervals_cover_with_stopped_samples_included(family):
    """One run's prediction interval [lowest, highest seed] and the exact interval for P(one run reaches the
    claim), from every seed each simulated reproduction ran (it stops where the verdict decides): each covers at
    least what it states, for every design, with the median run at the margin and at the claim."""
    claim = setting(family)
    margin, _ = margin_of(**claim)
    for design in DESIGNS.values():
        for target in (margin, claim["claimed"]):
            cover = single_run_coverage(design, target, family, SIMULATIONS, seed=17, **claim)
            assert cover.prediction >= cover.stated - 3 * math.sqrt(0.25 / SIMULATIONS)
            assert cover.reaching >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / SIMULATIONS)


def test_prediction_coverage_is_exact_and_what_a_sequential_design_guarantees():
    """The coverage of [lowest, highest] under stopping is an exact function of P(one run reaches the margin):
    simulation agrees with it; its least value is what seeds=auto states (a stop at 5 seeds all on one side of
    the margin misses every run on the other), and a fixed design's is (n - 1)/(n + 1)."""
    design = Design(3, 10)
    for family, target in (("normal", 0.895), ("left2", 0.895 + SD), ("contaminated10", 0.9)):
        cover = single_run_coverage(design, target, family, 20_000, seed=23)
        q = float(
            (draw_values(FAMILIES[family], np.random.default_rng(24), (400_000, 1), target, "median") >= 0.895).mean()
        )
        assert abs(cover.prediction - coverage_at(design, q)) < 3 * math.sqrt(0.25 / 20_000)
    assert prediction_coverage(design) == pytest.approx(4 / 6) and prediction_coverage(Design.fixed(10)) == 9 / 11
    at_margin = single_run_coverage(design, 0.895, "normal", 20_000, seed=25)
    assert at_margin.earliest < 0.4  # five seeds all above the median: one more run is below it half the time


@pytest.mark.parametrize("family", ["normal", "left2"])
@pytest.mark.parametrize("share", [0.85, 0.25])
def test_planning_figures_decide_with_eighty_percent_if_the_estimate_holds(family, share):
    """The seeds a verdict's hint names decide with >= 80% probability when the truth equals the estimate."""
    n, probability = seeds_for_median_rule(share, Design(3, 10))
    assert probability >= 0.8
    noise = FAMILIES[family]
    # put the margin at the (1 - share) quantile of the runs: a share `share` of runs reaches it
    runs = draw_values(noise, np.random.default_rng(18), (200_000, 1), 0.9, "median")
    margin = float(np.quantile(runs, 1 - share))
    rates = simulate(Design(3, n), 0.9, family, "median", claimed=margin + 0.005, simulations=SIMULATIONS, seed=19)
    decided = rates.reproduced if share > 0.5 else rates.not_reproduced
    assert decided >= 0.8 - 3 * math.sqrt(0.16 / SIMULATIONS)


def test_outlying_seeds_false_alarm_and_a_failed_seed():
    rng = np.random.default_rng(20)
    alarms = np.mean([bool(outlying_seeds(list(rng.normal(0.9, SD, 10)))) for _ in range(2000)])
    _at_most(alarms, 0.05, 2000)
    failed = [list(rng.normal(0.9, SD, 10)) for _ in range(500)]
    for runs in failed:
        runs[4] -= 0.03  # one seed 3 points (10 sd) low
    assert np.mean([4 in outlying_seeds(runs) for runs in failed]) >= 0.95


def test_a_nan_seed_counts_and_is_named():
    values = [0.991, 0.992, 0.990, float("nan"), 0.993, 0.991, 0.992, 0.990, 0.991, 0.992]
    verdict = judge(values, 0.99, Design(3, 10), 0.005)
    assert len(verdict.values) == 10 and verdict.outliers == (3,)
    assert verdict.median.reaching < verdict.median.n or verdict.seeds < 4  # the NaN seed did not reach
    assert any("NaN, diverged" in flag for flag in verdict.flags)
    assert verdict.seeds_reaching == 9  # of 10 seeds reach 99.00%, the NaN not among them


def test_bounds_and_intervals_stay_in_the_metrics_range():
    verdict = judge([0.999, 0.93, 0.998, 0.97, 0.999], 0.99, Design.fixed(5), 0.005)
    for low, high in (
        (verdict.single_run.low, verdict.single_run.high),
        (verdict.mean.bounds.low, verdict.mean.bounds.high),
        (verdict.median.low, verdict.median.high),
        (verdict.p_single_run_low, verdict.p_single_run_high),
    ):
        assert 0 <= low <= high <= 1


def test_error_ratio_tolerance_near_the_ceiling():
    margin, exceeds = margin_of(0.9933, 0.005, error_ratio=1.25)
    assert margin == pytest.approx(1 - 1.25 * 0.0067) and exceeds == pytest.approx(1 - 0.0067 / 1.25)
    assert margin_of(0.9757, 0.005) == pytest.approx((0.9707, 0.9807))


def test_family_wise_error_and_holm():
    reproduced = judge([0.91] * 5, 0.9, Design(3, 10), 0.005)  # 5 of 5: p = 1/32
    strong = judge([0.91] * 10, 0.9, Design.fixed(10), 0.005)  # 10 of 10: p = 1/1024
    assert reproduced.p_value == pytest.approx(1 / 32, rel=1e-3) and strong.p_value == pytest.approx(1 / 1024, rel=1e-3)
    assert holm([reproduced, strong]) == [True, True]  # 1/1024 <= 0.05 / 2, then 1/32 <= 0.05 / 1
    assert holm([reproduced, reproduced, strong]) == [False, False, True]  # 1/32 > 0.05 / 2: the step-down stops
    # the family counts its undecided numbers: one decided of two judged needs 0.05 / 2, not 0.05 / 1
    undecided = judge([0.91, 0.89, 0.91, 0.89, 0.91], 0.9, Design(3, 10), 0.005)
    assert not undecided.decided
    assert holm([reproduced, undecided]) == [False, None] and holm([strong, undecided]) == [True, None]
    assert holm([reproduced, None]) == [True, None]  # None: outside the family (a modified protocol)
    assert smallest_p_value(Design(3, 10)) == pytest.approx(1 / 32, rel=1e-3)
    # a decision at a later look keeps its p within the design's error: alone in its family, it holds
    late = judge([0.89] + [0.91] * 8, 0.9, Design(3, 10), 0.005)
    assert late.seeds == 9 and late.p_value <= sign_error(Design(3, 10)) and holm([late]) == [True]
    assert smallest_p_value(Design.fixed(10)) == pytest.approx(1 / 1024, rel=1e-3)
    independent, any_case = family_error([reproduced] * 5)
    assert independent == pytest.approx(1 - (1 - sign_error(Design(3, 10))) ** 5)
    assert any_case == pytest.approx(5 * sign_error(Design(3, 10)))


def test_tost_size_at_the_tolerance_and_power_of_its_planning_figure():
    at_tolerance = tost_power(0.005, 0.004, 0.004, 10, 0.005, simulations=20_000, seed=21)
    _at_most(at_tolerance, 0.05, 20_000)
    n, probability = seeds_for_tost(0.001, 0.0044, 0.0041, 0.005)
    assert probability >= 0.8
    assert tost_power(0.001, 0.0044, 0.0041, n, 0.005, simulations=20_000, seed=22) >= 0.8 - 0.01
    result = welch_tost([0.9134, 0.9120, 0.9150, 0.9110], [0.9131, 0.9125, 0.9140, 0.9118], 0.005)
    interval = stats.ttest_ind(
        [0.9134, 0.9120, 0.9150, 0.9110], [0.9131, 0.9125, 0.9140, 0.9118], equal_var=False
    ).confidence_interval(0.90)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high))
    assert result.equivalent == (interval.low > -0.005 and interval.high < 0.005)


def test_skew_is_flagged_where_it_matters_to_the_verdict():
    """Named when the mean and the middle seed fall on opposite sides of the margin (or the readings disagree):
    rarely for normal runs at the claim, often for left-skewed runs whose mean sits at the margin."""
    values = [0.897] * 7 + [0.880, 0.885, 0.890]  # mean 89.34% below the margin 89.5%, the middle seed above
    flags = judge(values, 0.9, Design.fixed(10), 0.005).flags
    assert any(f.startswith("skew -") and "they fall on opposite sides of the margin" in f for f in flags)
    far = judge([v + 0.02 for v in values], 0.9, Design.fixed(10), 0.005).flags  # as skewed, far above the margin
    assert not any(f.startswith("skew") for f in far)
    rng = np.random.default_rng(30)

    def rate(family, target, estimand):
        runs = draw_values(FAMILIES[family], rng, (1000, 10), target, estimand)
        return np.mean([any(f.startswith("skew") for f in judge(list(r), 0.9, Design.fixed(10)).flags) for r in runs])

    assert rate("normal", 0.9, "median") < 0.02
    assert rate("left2", 0.895, "mean") > 0.15


@pytest.mark.parametrize("design", [Design(3, 10), Design(5, 12), Design.fixed(10), Design(7, 10)])
def test_the_sequential_p_value_is_valid_and_within_the_error_of_every_decision_exactly(design):
    """Every path of seeds reaching (1) or not (0) with the median run at the margin, each of chance 2^-n: each
    direction's p-value is at most a with chance at most a, and a decision the design took has p within its error.
    (The former p, the smallest alpha still deciding, failed the first: 8 of 9 reaching gave p = 0.13.)"""
    import itertools

    n = design.max_seeds
    p_values: dict[str, list[float]] = {"up": [], "down": []}
    for path in itertools.product([0.91, 0.89], repeat=n):
        verdict = judge(list(path), 0.9, design, 0.005)
        direction = "down" if verdict.status == NOT_REPRODUCED else "up"
        for side in p_values:
            p_values[side].append(verdict.p_value if verdict.decided and side == direction else 1.0)
        if verdict.decided:
            assert verdict.p_value <= sign_error(design) + 1e-12
    for side, found in p_values.items():
        for a in (0.001, 0.005, 0.01, 0.02, 1 / 32, 0.04, 0.05, 0.2):
            assert sum(p <= a for p in found) / 2**n <= a + 1e-12, (side, a)
