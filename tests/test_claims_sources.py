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


def simulated_design(
    rng: np.random.Generator, levels: int = 2, replicates: int = 3, factors: tuple[str, ...] = tuple(FACTORS)
) -> tuple[list, dict]:
    """One design's final accuracies with known components: each source's effect skewed (a centred gamma, long tail
    towards worse runs), the residual skewed too, bounded at 1, and one run failed (NaN)."""
    plan = cells(list(factors), levels, replicates)
    codes = {factor: [cell[factor] for cell in plan] for factor in factors}

    def skewed(sd: float, size: int) -> np.ndarray:
        shape = 4.0  # skewness 1
        return -(rng.gamma(shape, sd / math.sqrt(shape), size) - sd * math.sqrt(shape))

    values = 0.975 + skewed(TRUE_SD[RESIDUAL], len(plan))
    for factor in factors:
        values += skewed(TRUE_SD[factor], levels * replicates)[np.asarray(codes[factor])]
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


@pytest.mark.slow
def test_the_bootstrap_intervals_cover_near_95_percent():
    """On mnist_simple's default design: init x data order, 2 seeds each, 5 replicates (20 runs)."""
    rng = np.random.default_rng(1)
    factors = ("init", "data_order")
    truth = true_shares(factors)
    datasets = 60
    covered = {name: 0 for name in truth}
    sd_covered = dict(covered)
    for index in range(datasets):
        values, codes = simulated_design(rng, replicates=5, factors=factors)
        result = breakdown(values, codes, bootstrap=100, seed=index)
        for component in result.components:
            covered[component.name] += component.share_low <= truth[component.name] <= component.share_high
            sd_covered[component.name] += (
                component.variance_low <= TRUE_SD[component.name] ** 2 <= component.variance_high
            )
    rates = {name: count / datasets for name, count in covered.items()}
    print("share intervals' coverage (nominal 95%):", rates)
    sd_rates = {name: count / datasets for name, count in sd_covered.items()}
    print("sd intervals' coverage (nominal 95%):", sd_rates)
    # 60 datasets: a rate of 95% is seen as 88% or more 99% of the time; measured 85%, 90%, 93%: the intervals
    # run somewhat short for the largest share (docs/statistics.md, "Variance by source")
    assert all(rate >= 0.85 for rate in rates.values())
    # the sds' intervals run shorter (measured 67%, 85%, 83%; the log scale's, before the boundary rule, covered
    # 77%, 97%, 83% only by reaching out to thousands of points): the shares are the figures to read
    assert all(rate >= 0.6 for rate in sd_rates.values())


@pytest.mark.slow
def test_a_source_with_almost_no_variance_keeps_its_interval_within_the_spread():
    # mnist_simple's design (init x data order, 5 replicates) with init's true sd 0.005 points, as its real runs
    # read: the bootstrap draws of such a source reach zero, where the log scale's basic interval threw the upper
    # end out to 3 to 2,400 points in 9 of these 12 designs; bounded at zero, it stays inside the whole spread
    rng = np.random.default_rng(1)
    plan = cells(["init", "data_order"], 2, 5)
    codes = {factor: [cell[factor] for cell in plan] for factor in ("init", "data_order")}
    highs, inside = [], 0
    for design in range(12):
        values = 0.975 + rng.normal(0, 0.0018, len(plan))
        values += rng.normal(0, 0.0019, 10)[np.asarray(codes["data_order"])]
        values += rng.normal(0, 0.00005, 10)[np.asarray(codes["init"])]
        result = breakdown(list(values), codes, bootstrap=60, seed=design)
        init = result.components[0]
        highs.append(math.sqrt(init.variance_high))
        inside += init.variance_high <= result.total
        assert init.variance_low <= init.variance <= init.variance_high and init.share_low <= init.share_high
        # no source's upper end above the whole spread's: 4x the total variance is 2x its sd, a generous bound
        assert all(c.variance_high <= 4 * result.total for c in result.components)
    assert max(highs) < 0.01 and inside >= 10, highs  # below a point everywhere, the whole spread in most


@pytest.mark.slow
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

    assert f"its runs on {machine.intra_op_threads()} TensorFlow intra-op thread(s)" in text

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


def test_a_fit_that_ends_on_a_singular_hessian_is_fitted_another_way():
    """mnist_simple's real 20-run design (test accuracies in the design's cell order, trained on the AVX-512 kind;
    REPRODUCTION.md, "Variance by source"): the init seeds' variance sits at zero, and with 200 bootstrap draws one
    refit ends on a singular Hessian under statsmodels' default optimisers, which once ended the command after all
    its training."""
    accuracies = [0.9758, 0.9797, 0.9771, 0.9797, 0.9746, 0.9742, 0.9754, 0.9755, 0.9739, 0.9715]
    accuracies += [0.9735, 0.9746, 0.9741, 0.9747, 0.9760, 0.9688, 0.9738, 0.9757, 0.9749, 0.9787]
    plan = cells(["init", "data_order"], levels=2, replicates=5)
    codes = {factor: [cell[factor] for cell in plan] for factor in ("init", "data_order")}
    result = breakdown(accuracies, codes, bootstrap=200, seed=0)
    shares = {component.name: component.share for component in result.components}
    assert shares["init"] < 0.01 and 0.4 < shares["data_order"] < 0.65 and 0.35 < shares[RESIDUAL] < 0.6
    assert all(0 <= c.share_low <= c.share <= c.share_high <= 1 for c in result.components)


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

    def skewed(sd: float, size: int) -> np.ndarray:
        shape = 4.0
        return -(rng.gamma(shape, sd / math.sqrt(shape), size) - sd * math.sqrt(shape))

    per_cell = 0.975 + skewed(WITHIN_SD["interactions"], len(plan))
    for factor in factors:
        per_cell += skewed(WITHIN_SD[factor], 2 * replicates)[np.asarray([cell[factor] for cell in plan])]
    values = np.repeat(per_cell, 2) + skewed(WITHIN_SD[RESIDUAL], 2 * len(plan))
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
    # 60 datasets: a true 95% is seen as 88% or more 99% of the time; the seed sources' shares run short as in
    # the design trained once (docs/statistics.md, "Variance by source")
    assert all(rate >= 0.8 for rate in rates.values()) and rates["shift"] >= 0.88


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
