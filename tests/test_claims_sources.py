"""The variance breakdown by seed source: the random-effects analysis recovers known components and its intervals
cover near 95% on simulated designs (skewed, bounded runs with a failed seed); the design trains, resumes and writes
its section; a design it cannot run is refused before anything is created."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from cnnlab.claims.sources import RESIDUAL, breakdown, cells

FACTORS = ["init", "data_order", "dropout"]
# Spreads of the order of mnist_simple's seeds (0.3 points in all): init dominant, dropout small
TRUE_SD = {"init": 0.0020, "data_order": 0.0015, "dropout": 0.0008, RESIDUAL: 0.0010}


def draws(rng: np.random.Generator, sd: float, size: int, noise: str = "skewed") -> np.ndarray:
    """Centred effects of this sd: normal, or skewed (a centred gamma of skewness 1, its long tail towards worse
    runs, as real seeds' accuracies lean)."""
    if noise == "normal":
        return rng.normal(0.0, sd, size)
    shape = 4.0  # skewness 2 / sqrt(shape) = 1
    return -(rng.gamma(shape, sd / math.sqrt(shape), size) - sd * math.sqrt(shape))


def simulated_design(
    rng: np.random.Generator,
    levels: int = 2,
    replicates: int = 3,
    factors: tuple[str, ...] = tuple(FACTORS),
    noise: str = "skewed",
) -> tuple[list, dict]:
    """One design's final accuracies with known components: each source's effect and the residual drawn as
    ``noise`` says (``draws``), bounded at 1, and one run failed (NaN)."""
    plan = cells(list(factors), levels, replicates)
    codes = {factor: [cell[factor] for cell in plan] for factor in factors}
    values = 0.975 + draws(rng, TRUE_SD[RESIDUAL], len(plan), noise)
    for factor in factors:
        values += draws(rng, TRUE_SD[factor], levels * replicates, noise)[np.asarray(codes[factor])]
    values = np.minimum(values, 1.0)
    values[rng.integers(len(plan))] = math.nan
    return list(values), codes


def true_shares(factors: tuple[str, ...]) -> dict[str, float]:
    sds = {name: TRUE_SD[name] for name in [*factors, RESIDUAL]}
    total = sum(sd**2 for sd in sds.values())
    return {name: sd**2 / total for name, sd in sds.items()}


def test_the_design_crosses_every_source_with_new_seeds_in_each_replicate():
    plan = cells(FACTORS, 2, 3)
    assert len(plan) == 24 and len({tuple(c.values()) for c in plan}) == 24
    assert sorted({c["init"] for c in plan}) == [0, 1, 2, 3, 4, 5]
    assert plan[8] == {"init": 2, "data_order": 2, "dropout": 2}  # replicate 1 starts with fresh seeds


def test_the_estimates_recover_known_components_on_average():
    from cnnlab.claims.sources import fit_variances

    rng = np.random.default_rng(0)
    estimates = []
    for _ in range(150):
        values, codes = simulated_design(rng)
        y = np.asarray(values)
        kept = np.isfinite(y)
        estimates.append(fit_variances(y[kept], {f: np.asarray(c)[kept] for f, c in codes.items()})[1])
    mean = np.mean(estimates, axis=0)
    for index, name in enumerate([*FACTORS, RESIDUAL]):
        print(
            f"{name}: true sd {100 * TRUE_SD[name]:.3f} pt, mean estimated variance's sd {100 * mean[index] ** 0.5:.3f}"
        )
        assert mean[index] == pytest.approx(TRUE_SD[name] ** 2, rel=0.25)


def test_the_profiles_likelihood_is_statsmodels_own():
    """The numpy REML likelihood the profiles evaluate equals statsmodels' ``MixedLM.loglike`` and its residual
    variance estimate at any variance ratios, with and without a fixed shift."""
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    from cnnlab.claims.sources import INTERACTIONS, Reml, _model

    rng = np.random.default_rng(6)
    values, codes, cell, marked = twice_design(rng, replicates=2, shift=BF16_SHIFT)
    y = np.asarray(values)
    kept = np.isfinite(y)
    grouped = {name: np.asarray(c)[kept] for name, c in {**codes, INTERACTIONS: cell}.items()}
    for shift in (None, np.asarray(marked, dtype=float)[kept]):
        model = _model(y[kept], grouped, shift)[0]
        reml = Reml(model)
        for ratios in rng.uniform(0.01, 5.0, (5, 3)):
            none = np.zeros((0, 0))
            params = MixedLMParams.from_components(fe_params=np.zeros(model.k_fe), cov_re=none, vcomp=ratios)
            fe_params, _ = model.get_fe_params(none, ratios)
            value, residual = reml.profiled(ratios)
            assert value == pytest.approx(model.loglike(params, profile_fe=True), rel=1e-9)
            assert residual == pytest.approx(model.get_scale(fe_params, none, ratios), rel=1e-9)


def test_the_estimates_are_the_likelihoods_maximum_where_statsmodels_stops_short():
    """statsmodels' optimisers can stop short of the REML maximum on small designs; the estimates (and the point a
    profile's distances are measured from) are carried to it: no start on a grid of ratios does better."""
    from cnnlab.claims.sources import _fit, _model

    rng = np.random.default_rng(8)
    short = 0
    for replicates in (1, 2, 5):
        for _ in range(4):
            values, codes = simulated_design(rng, replicates=replicates, factors=("init", "data_order"))
            y = np.asarray(values)
            kept = np.isfinite(y)
            grouped = {f: np.asarray(c)[kept] for f, c in codes.items()}
            fitted = _fit(y[kept], grouped, None)
            _, fit, _, _ = _model(y[kept], grouped, None)
            theirs = fitted.reml.profiled(np.maximum(np.asarray(fit.vcomp) / fit.scale, 0.0))[0]
            short += fitted.best > theirs + 1e-6
            grid = [
                fitted.reml.profiled(np.array([a, b]))[0] for a in (0, 0.1, 0.5, 2, 10) for b in (0, 0.1, 0.5, 2, 10)
            ]
            assert fitted.best >= theirs - 1e-9 and fitted.best >= max(grid) - 1e-9
    print(f"statsmodels short of the maximum in {short} of 12 designs")


def test_runs_that_all_agree_give_no_intervals_rather_than_an_error():
    values = [0.97] * 8
    codes = {"init": [0, 0, 1, 1, 2, 2, 3, 3], "data_order": [0, 1, 0, 1, 2, 3, 2, 3]}
    result = breakdown(values, codes)
    assert [c.name for c in result.components] == ["init", "data_order", RESIDUAL]
    assert all(math.isnan(c.share_low) and math.isnan(c.variance_high) for c in result.components)


@pytest.mark.slow
@pytest.mark.parametrize("noise", ["normal", "skewed"])
def test_the_profile_intervals_cover_near_95_percent(noise):
    """On mnist_simple's default design: init x data order, 2 seeds each, 5 replicates (20 runs)."""
    rng = np.random.default_rng(1)
    factors = ("init", "data_order")
    truth = true_shares(factors)
    datasets = 60
    covered = {name: 0 for name in truth}
    sd_covered = dict(covered)
    for _ in range(datasets):
        values, codes = simulated_design(rng, replicates=5, factors=factors, noise=noise)
        result = breakdown(values, codes)
        for component in result.components:
            covered[component.name] += component.share_low <= truth[component.name] <= component.share_high
            sd_covered[component.name] += (
                component.variance_low <= TRUE_SD[component.name] ** 2 <= component.variance_high
            )
    rates = {name: count / datasets for name, count in covered.items()}
    print("share intervals' coverage (nominal 95%):", rates)
    sd_rates = {name: count / datasets for name, count in sd_covered.items()}
    print("sd intervals' coverage (nominal 95%):", sd_rates)
    # 60 datasets: a rate of 95% is seen as 88% or more 99% of the time. Measured with normal effects: shares 95%,
    # 98%, 97% and sds 98%, 93%, 98%. Skewed ones (a gamma's tail), which no normal-theory interval allows for,
    # cover less: shares 85%, 88%, 90% and sds 82%, 97%, 92% (docs/statistics.md, "Variance by source")
    floor = 0.88 if noise == "normal" else 0.8
    assert all(rate >= floor for rate in rates.values()) and all(rate >= floor for rate in sd_rates.values())


@pytest.mark.slow
def test_a_small_but_real_source_is_covered_though_often_estimated_at_zero():
    # init 0.06 points beside data order 0.15 and a residual 0.10 (a tenth of the variance), 10 seeds a source:
    # init's estimate is often zero. The bootstrap the profile replaced simulated from that zero and never drew a
    # large variance (its intervals missed init's share in about one design of seven); the profile's reach as far
    # as the data allow: measured, 59 and 58 of these 60 cover init's share and sd
    rng = np.random.default_rng(5)
    plan = cells(["init", "data_order"], 2, 5)
    codes = {factor: [cell[factor] for cell in plan] for factor in ("init", "data_order")}
    sds = {"init": 0.0006, "data_order": 0.0015, RESIDUAL: 0.0010}
    share = sds["init"] ** 2 / sum(sd**2 for sd in sds.values())
    datasets, at_zero, shares, variances = 60, 0, 0, 0
    for _ in range(datasets):
        values = 0.975 + rng.normal(0, sds[RESIDUAL], len(plan))
        for factor in ("init", "data_order"):
            values += rng.normal(0, sds[factor], 10)[np.asarray(codes[factor])]
        init = breakdown(list(values), codes).components[0]
        assert init.share_low <= init.share <= init.share_high
        at_zero += init.share < 1e-3
        shares += init.share_low <= share <= init.share_high
        variances += init.variance_low <= sds["init"] ** 2 <= init.variance_high
    print(f"init at zero in {at_zero} of {datasets}; covered: share {shares}, sd {variances}")
    # 60 designs: a true 95% is seen as 88% or more 99% of the time
    assert at_zero >= 5 and shares >= 0.88 * datasets and variances >= 0.88 * datasets


@pytest.mark.slow
@pytest.mark.parametrize("noise", ["normal", "skewed"])
def test_the_test_that_a_source_adds_nothing_keeps_its_level_and_finds_a_real_one(noise):
    """The p beside each source (chi-bar-square at the boundary): with init's true variance nil it falls below 5%
    about 5% of the time; with init as large as in mnist_simple's runs (0.20 points), most of the time."""
    rng = np.random.default_rng(11)
    plan = cells(["init", "data_order"], 2, 5)
    codes = {factor: [cell[factor] for cell in plan] for factor in ("init", "data_order")}

    rejected = {}
    for init_sd in (0.0, 0.0020):
        count, datasets = 0, 100
        for _ in range(datasets):
            values = 0.975 + draws(rng, 0.0010, len(plan), noise)
            values += draws(rng, 0.0015, 10, noise)[np.asarray(codes["data_order"])]
            values = np.minimum(values + draws(rng, init_sd, 10, noise)[np.asarray(codes["init"])], 1.0)
            values[rng.integers(len(plan))] = math.nan
            count += breakdown(list(values), codes).components[0].zero_p < 0.05
        rejected[init_sd] = count / datasets
    print(f"{noise}: p < 0.05 with init nil {rejected[0.0]:.2f}, with init 0.20 points {rejected[0.0020]:.2f}")
    # 100 designs: a true 5% is seen as 11% or less 99% of the time; measured 7% for both noises, and 71% (normal)
    # and 77% (skewed) with init real
    assert rejected[0.0] <= 0.11 and rejected[0.0020] >= 0.5


@pytest.mark.slow
def test_a_source_with_almost_no_variance_keeps_its_interval_within_the_spread():
    # mnist_simple's design with init's true sd 0.005 points, as its real 2-thread runs read: the interval of
    # such a source must stop where the likelihood does, not run out to the search's edge (the bootstrap this
    # replaced, on the log scale, once threw it out to 3 to 2,400 points in 9 of these 12 designs)
    rng = np.random.default_rng(1)
    plan = cells(["init", "data_order"], 2, 5)
    codes = {factor: [cell[factor] for cell in plan] for factor in ("init", "data_order")}
    for _ in range(12):
        values = 0.975 + rng.normal(0, 0.0018, len(plan))
        values += rng.normal(0, 0.0019, 10)[np.asarray(codes["data_order"])]
        values += rng.normal(0, 0.00005, 10)[np.asarray(codes["init"])]
        result = breakdown(list(values), codes)
        init = result.components[0]
        assert init.variance_low <= init.variance <= init.variance_high and init.share_low <= init.share_high
        # below a point, and no upper end above 4x the total variance (2x its sd)
        assert math.sqrt(init.variance_high) < 0.01
        assert all(c.variance_high <= 4 * result.total for c in result.components), result.components


def test_the_design_trains_resumes_and_writes_its_section(tmp_path, idx_dir, pin_mnist, capsys):
    from cnnlab.claims.sources import finish_sources, run_sources
    from tests.conftest import compose_config, tiny_reproduction

    report_path = tmp_path / "REPRODUCTION.md"
    overrides = [
        "design=sources",
        "claims=[mnist_simple]",
        "sources.replicates=2",
        "sources.bootstrap=50",
        f"report_path={report_path}",
        *tiny_reproduction(idx_dir, tmp_path),
    ]
    cfg = compose_config(*overrides, config_name="reproduce_config")

    def compose(extra):
        return compose_config(*extra)

    parent_id, result, report = run_sources(cfg, overrides, compose)
    out = capsys.readouterr().out
    assert out.count("training (1 epochs)") == 8 and result.runs + result.failed == 8
    assert [c.name for c in result.components] == ["init", "data_order", RESIDUAL]
    assert "dropout: absent (the network has none)" in report["design"]
    print(finish_sources(cfg, parent_id, result, report))
    text = report_path.read_text()
    assert "## Variance by source: mnist_simple (" in text and "| init seed |" in text
    assert "test-split sampling error" in text and "<!-- section: variance by source: mnist_simple / " in text
    from cnnlab import machine

    assert f"its runs in float32, on {machine.intra_op_threads()} TensorFlow intra-op thread(s)" in text

    from mlflow.tracking import MlflowClient

    children = MlflowClient().search_runs(
        [MlflowClient().get_run(parent_id).info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert {run.data.params["seed_init"] for run in children} == {"0", "1", "2", "3"}
    assert "sources.png" in [a.path for a in MlflowClient().list_artifacts(parent_id)]

    again, _, _ = run_sources(cfg, overrides, compose)
    out = capsys.readouterr().out
    assert again == parent_id and out.count("already FINISHED") == 8 and "training" not in out

    # The design's runs travel as a seeds file: imported into another store, the same command there reuses all
    # of them and reads the same breakdown.
    from cnnlab.claims.portable import SeedsFileRefused, export_seeds, import_seeds, summary

    path = tmp_path / "sources.json"
    first = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(SeedsFileRefused, match=r"no FINISHED seed of claims \['mnist_simple'\]"):
        export_seeds(first, str(path), ["mnist_simple"], None, "seeds")  # only a design's runs are there
    assert not path.exists()
    exported = export_seeds(first, str(path), ["mnist_simple"], None, "sources")
    assert (exported.runs, exported.cells) == (8, 8)
    assert "exported   0 seed(s) and 8 variance-by-source run(s) of mnist_simple" in summary("export", exported, first)
    second = f"sqlite:///{tmp_path}/second.db"
    assert import_seeds(second, str(path)).runs == 8
    elsewhere = [o for o in overrides if not o.startswith("tracking.uri=")] + [f"tracking.uri={second}"]
    moved_id, moved, _ = run_sources(compose_config(*elsewhere, config_name="reproduce_config"), elsewhere, compose)
    out = capsys.readouterr().out
    assert moved_id != parent_id and out.count("already FINISHED") == 8 and "training" not in out
    assert [c.variance for c in moved.components] == [c.variance for c in result.components]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["claims=[mnist_simple,fashion_deep]"], "design=sources: takes exactly one claim, got 2"),
        ([], "design=sources: takes exactly one claim, got 5"),
        (
            ["claims=[mnist_simple]", "sources.factors=[init,dropout]"],
            "sources.factors: mnist_simple's network (model=simple) has no dropout block, so a dropout seed changes "
            "nothing; leave it out (sources.factors=[init])",
        ),
        (["claims=[mnist_dropout]", "sources.levels=1"], "sources.levels"),
        (
            ["claims=[mnist_simple]", "sources.within=precision", "trainer.precision=bf16"],
            "sources.within=precision: trains every cell in float32 and in bf16 itself, so trainer.precision=bf16 "
            "has no place",
        ),
        (["claims=[mnist_simple]", "sources.within=twice"], "sources.within"),
        (
            ["claims=[mnist_simple]", "sources.within=numerics", "sources.factors=[init]"],
            "sources.within=numerics: needs at least two seed sources crossed",
        ),
    ],
)
def test_a_design_it_cannot_run_is_refused_before_anything_is_created(tmp_path, overrides, message):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab.reproduce",
            "design=sources",
            *overrides,
            f"tracking.uri=sqlite:///{tmp_path}/x.db",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no store, no outputs/ folder


# mnist_simple's default design on the AVX-512 kind, 2 intra-op threads: test accuracies in the design's cell order
TWO_THREADS = [0.9758, 0.9797, 0.9771, 0.9797, 0.9746, 0.9742, 0.9754, 0.9755, 0.9739, 0.9715]
TWO_THREADS += [0.9735, 0.9746, 0.9741, 0.9747, 0.9760, 0.9688, 0.9738, 0.9757, 0.9749, 0.9787]


def test_a_fit_that_ends_on_a_singular_hessian_is_fitted_another_way():
    """mnist_simple's real 20-run design on 2 threads (docs/statistics.md, "Variance by source"): the init seeds'
    variance sits at zero, where a fit (a refit of the bootstrap this module once used) ended on a singular Hessian
    under statsmodels' default optimisers, which once ended the command after all its training."""
    plan = cells(["init", "data_order"], levels=2, replicates=5)
    codes = {factor: [cell[factor] for cell in plan] for factor in ("init", "data_order")}
    result = breakdown(TWO_THREADS, codes)
    shares = {component.name: component.share for component in result.components}
    assert shares["init"] < 0.01 and 0.4 < shares["data_order"] < 0.65 and 0.35 < shares[RESIDUAL] < 0.6
    assert all(0 <= c.share_low <= c.share <= c.share_high <= 1 for c in result.components)


@pytest.mark.slow
def test_the_two_real_designs_of_mnist_simple_read_as_the_docs_say():
    """The same 20 cells trained on 2 threads (the accuracies above) and on 1 (the seeds file in the tree): the
    profile intervals of each source overlap between the two, where the bootstrap's init intervals did not, and
    docs/statistics.md quotes these figures."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    runs = json.loads((root / "results/seeds/mnist_simple-sources-avx512_bf16.json").read_text())["runs"]
    one = {(int(r["params"]["seed_init"]), int(r["params"]["seed_data_order"])): r["metrics"] for r in runs}
    plan = cells(["init", "data_order"], levels=2, replicates=5)
    codes = {factor: [cell[factor] for cell in plan] for factor in ("init", "data_order")}
    designs = {
        2: breakdown(TWO_THREADS, codes),
        1: breakdown([one[(cell["init"], cell["data_order"])]["test_accuracy"] for cell in plan], codes),
    }
    docs = " ".join((root / "docs/statistics.md").read_text().split())
    for threads, result in designs.items():
        for c in result.components[:2]:
            label = c.name.replace("_", " ")
            quoted = (
                f"{label} {100 * c.share:.0f}% [{100 * c.share_low:.0f}, {100 * c.share_high:.0f}] (p {c.zero_p:.2g}"
            )
            print(threads, "threads:", quoted)
            assert quoted in docs
    totals = [f"{100 * math.sqrt(designs[threads].total):.2f}" for threads in (2, 1)]
    assert f"an sd of {totals[0]} points on 2 threads and {totals[1]} on 1" in docs, totals
    for first, second in zip(designs[1].components, designs[2].components, strict=True):
        assert first.share_low <= second.share_high and second.share_low <= first.share_high, (first, second)
    assert designs[1].components[0].zero_p < 0.05  # on 1 thread init is told from nothing


# --- each cell trained twice: op determinism off, or float32 and bf16 -----------------------------------------------

# A cell's own effect (the seed sources' interactions) and the noise between a cell's two runs, each skewed
WITHIN_SD = {"init": 0.0020, "data_order": 0.0015, "interactions": 0.0010, RESIDUAL: 0.0007}
BF16_SHIFT = -0.0004  # bf16 a twenty-fifth of a point below float32 on average


def twice_design(rng: np.random.Generator, replicates: int = 3, shift: float | None = None) -> tuple:
    """init x data order, 2 seeds each a replicate, every cell trained twice; known components as in
    ``simulated_design`` (skewed, bounded at 1, one failed run); with ``shift``, the second run of each cell is bf16
    and moved by it."""
    factors = ["init", "data_order"]
    plan = cells(factors, 2, replicates)

    per_cell = 0.975 + draws(rng, WITHIN_SD["interactions"], len(plan))
    for factor in factors:
        per_cell += draws(rng, WITHIN_SD[factor], 2 * replicates)[np.asarray([cell[factor] for cell in plan])]
    values = np.repeat(per_cell, 2) + draws(rng, WITHIN_SD[RESIDUAL], 2 * len(plan))
    marked = np.tile([0, 1], len(plan))
    if shift is not None:
        values = values + shift * marked
    values = np.minimum(values, 1.0)
    values[rng.integers(len(values))] = math.nan
    codes = {factor: list(np.repeat([cell[factor] for cell in plan], 2)) for factor in factors}
    return list(values), codes, list(np.repeat(np.arange(len(plan)), 2)), list(marked)


def test_cells_trained_twice_split_the_residual_into_interactions_and_the_noise_between_runs():
    from cnnlab.claims.sources import INTERACTIONS, fit_variances

    rng = np.random.default_rng(2)
    estimates, shifts = [], []
    for _ in range(120):
        values, codes, cell, marked = twice_design(rng, replicates=3, shift=BF16_SHIFT)
        y = np.asarray(values)
        kept = np.isfinite(y)
        grouped = {**codes, INTERACTIONS: cell}
        _, variances, shift = fit_variances(
            y[kept], {f: np.asarray(c)[kept] for f, c in grouped.items()}, np.asarray(marked, dtype=float)[kept]
        )
        estimates.append(variances)
        shifts.append(shift)
    mean = np.mean(estimates, axis=0)
    for index, name in enumerate(["init", "data_order", INTERACTIONS, RESIDUAL]):
        print(f"{name}: true sd {100 * WITHIN_SD[name]:.3f} pt, estimated {100 * mean[index] ** 0.5:.3f} on average")
        assert mean[index] == pytest.approx(WITHIN_SD[name] ** 2, rel=0.25)
    assert np.mean(shifts) == pytest.approx(BF16_SHIFT, abs=0.00005)


@pytest.mark.slow
def test_the_intervals_of_a_design_trained_twice_cover_near_95_percent():
    """Shares of init, data order, interactions and the noise between runs, and the bf16 shift's interval, on
    init x data order x 3 replicates, each cell in float32 and bf16 (24 runs, one failed)."""
    from cnnlab.claims.sources import INTERACTIONS

    rng = np.random.default_rng(3)
    total = sum(sd**2 for sd in WITHIN_SD.values())
    truth = {name: sd**2 / total for name, sd in WITHIN_SD.items()}
    datasets = 60
    covered = {name: 0 for name in [*truth, "shift"]}
    for index in range(datasets):
        values, codes, cell, marked = twice_design(rng, replicates=3, shift=BF16_SHIFT)
        result = breakdown(values, codes, bootstrap=100, seed=index, cell=cell, within="precision", shift=marked)
        assert [c.name for c in result.components] == ["init", "data_order", INTERACTIONS, RESIDUAL]
        for component in result.components:
            covered[component.name] += component.share_low <= truth[component.name] <= component.share_high
        covered["shift"] += result.shift.low <= BF16_SHIFT <= result.shift.high
    rates = {name: count / datasets for name, count in covered.items()}
    print("coverage (nominal 95%):", rates)
    # 60 datasets: a true 95% is seen as 88% or more 99% of the time; measured 97%, 98%, 98%, 92% and the shift's
    # 92% (docs/statistics.md, "Variance by source")
    assert all(rate >= 0.88 for rate in rates.values())


def test_repeats_that_agree_to_the_last_digit_report_no_numerical_noise_and_fit_the_interactions():
    from cnnlab.claims.sources import INTERACTIONS, breakdown_table

    rng = np.random.default_rng(4)
    values, codes, cell, _ = twice_design(rng, replicates=3)
    values = [values[2 * (i // 2)] for i in range(len(values))]  # each cell's second run equals its first
    values[5] = math.nan  # and one run failed: its cell's other run still counts
    result = breakdown(values, codes, bootstrap=30, cell=cell, within="numerics")
    assert result.identical and result.runs + result.failed == len(values)
    noise = result.components[-1]
    assert noise.name == RESIDUAL and (noise.variance, noise.share_low, noise.share_high) == (0.0, 0.0, 0.0)
    interactions = next(c for c in result.components if c.name == INTERACTIONS)
    assert interactions.variance > 0 and interactions.share_high > interactions.share_low
    table = breakdown_table(result, 0.0015)
    assert "numerical noise, op determinism off (between a cell's two runs): a cell's two runs agreed" in table

    different = list(twice_design(np.random.default_rng(4), replicates=3)[0])
    assert not breakdown(different, codes, bootstrap=10, cell=cell, within="numerics").identical


@pytest.mark.slow
def test_a_design_trained_twice_with_op_determinism_off_trains_labels_and_resumes(tmp_path, idx_dir, pin_mnist, capsys):
    from mlflow.tracking import MlflowClient

    from cnnlab.claims.sources import INTERACTIONS, run_sources
    from tests.conftest import compose_config, tiny_reproduction

    overrides = [
        "design=sources",
        "claims=[mnist_simple]",
        "sources.replicates=2",
        "sources.within=numerics",
        "sources.bootstrap=20",
        *tiny_reproduction(idx_dir, tmp_path),
    ]
    cfg = compose_config(*overrides, config_name="reproduce_config")
    parent_id, result, report = run_sources(cfg, overrides, lambda extra: compose_config(*extra))
    assert capsys.readouterr().out.count("training (1 epochs)") == 16  # 8 cells of seeds, each trained twice
    assert [c.name for c in result.components] == ["init", "data_order", INTERACTIONS, RESIDUAL]
    assert "each cell trained twice with op determinism off" in report["design"]
    client = MlflowClient()
    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    cell_names = [f"init={i},data_order={d}" for r in (0, 1) for i in (2 * r, 2 * r + 1) for d in (2 * r, 2 * r + 1)]
    assert sorted(run.data.tags["cnnlab.sources_cell"] for run in children) == sorted(
        f"{cell},repeat={r}" for cell in cell_names for r in (1, 2)
    )
    assert {run.data.params["trainer.deterministic"] for run in children} == {"False"}
    again, _, _ = run_sources(cfg, overrides, lambda extra: compose_config(*extra))
    out = capsys.readouterr().out
    assert again == parent_id and out.count("already FINISHED") == 16 and "training" not in out


def test_precision_within_cells_is_refused_where_bf16_would_be_emulated(tmp_path, monkeypatch):
    from cnnlab import machine
    from cnnlab.claims.sources import check_design
    from cnnlab.errors import ConfigError
    from tests.conftest import compose_config

    monkeypatch.setattr(machine, "native_bf16", lambda: None)
    overrides = [
        "design=sources",
        "claims=[mnist_simple]",
        "sources.within=precision",
        f"tracking.uri=sqlite:///{tmp_path}/x.db",
    ]
    cfg = compose_config(*overrides, config_name="reproduce_config")
    with pytest.raises(
        ConfigError,
        match="sources.within=precision: bfloat16 is not native here .* use sources.within=numerics or none",
    ):
        check_design(cfg, {"mnist_simple": compose_config("experiment=mnist_simple")})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_precision_design_reuses_the_plain_designs_runs_as_its_float32_twins(
    tmp_path, idx_dir, pin_mnist, capsys, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from cnnlab import machine
    from cnnlab.claims.sources import run_sources
    from tests.conftest import compose_config, tiny_reproduction

    monkeypatch.setattr(machine, "native_bf16", lambda: "avx512_bf16")  # the design is refused where bf16 is not
    plain = ["design=sources", "claims=[mnist_simple]", "sources.replicates=1", "sources.bootstrap=10"]
    plain += tiny_reproduction(idx_dir, tmp_path)
    compose = lambda extra: compose_config(*extra)  # noqa: E731
    run_sources(compose_config(*plain, config_name="reproduce_config"), plain, compose)
    assert capsys.readouterr().out.count("training (1 epochs)") == 4  # 4 cells of seeds

    twice = [*plain, "sources.within=precision"]
    parent_id, result, report = run_sources(compose_config(*twice, config_name="reproduce_config"), twice, compose)
    out = capsys.readouterr().out
    assert out.count("already FINISHED") == 4 and out.count("training (1 epochs)") == 4  # only the bf16 twins
    assert result.runs == 8 and result.shift is not None and "in float32 and in bf16" in report["design"]
    client = MlflowClient()
    trained = client.search_runs(
        [client.get_run(parent_id).info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert sorted(run.data.params["trainer.precision"] for run in trained) == ["bf16"] * 4
