"""Verdicts: their error rates by simulation with known truth, then the reproduction on tiny synthetic data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cnnlab.claims.calibration import simulate
from cnnlab.claims.stats import (
    Design,
    binomial_se,
    paired_tost,
    paired_tost_power,
    prediction_interval,
    sign_error,
    t_interval,
)
from cnnlab.claims.verdict import EXCEEDS, INCONCLUSIVE, NO_CLAIM, REPRODUCED, judge
from tests.conftest import tiny_reproduction

CLAIMED, SD, TOLERANCE = 0.9, 0.003, 0.005  # the case: sd 0.3 points, tolerance 0.5 points
AUTO = Design(3, 10)


def _at_most(rate: float, bound: float, rates) -> None:
    """``rate`` may exceed ``bound`` only by Monte-Carlo error (3 standard errors at the bound)."""
    assert rate <= bound + 3 * rates.monte_carlo_se(bound), f"{rate:.4f} > {bound}"


def test_t_interval_known_numbers():
    # mean 0.98, sample sd 0.01, n=3: half width = t(0.975, 2) * 0.01 / sqrt(3) = 4.302653 * 0.0057735 = 0.0248414
    interval = t_interval([0.97, 0.98, 0.99])
    assert interval.mean == pytest.approx(0.98)
    assert interval.std == pytest.approx(0.01)
    assert interval.high - interval.mean == pytest.approx(0.0248414, abs=1e-6)


def test_binomial_standard_error():
    assert binomial_se(0.9, 10_000) == pytest.approx(0.003)


def test_design_spends_at_most_alpha_over_its_looks():
    assert sum(AUTO.alpha_at(n) for n in range(0, 20)) == pytest.approx(0.05)
    assert AUTO.alpha_at(10) == pytest.approx(0.025) and AUTO.alpha_at(2) == 0 and AUTO.alpha_at(11) == 0
    fixed = Design.fixed(5)
    assert [n for n in range(12) if fixed.alpha_at(n)] == [5] and fixed.alpha_at(5) == 0.05


@pytest.mark.parametrize("design", [AUTO, Design.fixed(3), Design.fixed(5), Design.fixed(10)], ids=str)
def test_a_mean_at_claim_minus_tolerance_is_rarely_called_reproduced(design):
    """(a) the size of the test, with every look seeds=auto takes: at most 5% plus Monte-Carlo error.

    Normal runs: the verdict's median rule and the mean's t reading beside it both hold (every other noise family:
    tests/test_claims_calibration.py)."""
    for rule in ("median", "t-exact"):
        rates = simulate(design, CLAIMED - TOLERANCE, "normal", rule, simulations=4000, seed=1)
        _at_most(rates.reproduced, 0.05, rates)
        _at_most(rates.not_reproduced, 0.05, rates)
    rates = simulate(design, CLAIMED - TOLERANCE, "normal", "t-bonferroni", simulations=4000, seed=1)
    _at_most(rates.reproduced, 0.05, rates)
    # and the other error: a protocol that is (just) good enough is rarely called not reproduced
    _at_most(rates.not_reproduced, 0.05, rates)


def test_looking_after_every_seed_without_correction_would_break_the_size():
    """The same looks at 5% each (no spending) exceed 5%: the correction is what the first test measures."""
    uncorrected = Design(3, 10, alpha=0.05 * 2 * 7)  # per-look level of about 5% at every interim look
    rates = simulate(uncorrected, CLAIMED - TOLERANCE, "normal", "t-bonferroni", simulations=4000, seed=2)
    assert rates.reproduced > 0.08


def test_a_mean_at_the_claim_is_reproduced_within_ten_seeds():
    """(b) power: at least 80% within max_seeds=10, and seeds=auto usually stops well before 10."""
    rates = simulate(AUTO, CLAIMED, "normal", simulations=4000, seed=3)
    assert rates.reproduced >= 0.80
    assert rates.mean_seeds < 8


def test_a_mean_three_sd_below_the_margin_is_not_reproduced():
    """(c) at claim - tolerance - 3 sd: 'not reproduced' in at least 80% of reproductions."""
    rates = simulate(AUTO, CLAIMED - TOLERANCE - 3 * SD, "normal", simulations=4000, seed=4)
    assert rates.not_reproduced >= 0.80


def test_fewer_seeds_do_not_make_reproduced_more_likely_for_a_bad_protocol():
    """The old rule's flaw: with a mean 1.5 sd below the margin, 3 seeds must not pass more often than 10."""
    bad = CLAIMED - TOLERANCE - 1.5 * SD
    three = simulate(Design.fixed(3), bad, "normal", "t-exact", simulations=4000, seed=5)
    ten = simulate(Design.fixed(10), bad, "normal", "t-exact", simulations=4000, seed=5)
    _at_most(three.reproduced, 0.05, three)
    assert three.reproduced <= ten.reproduced + 0.01


def test_first_decision_is_final_and_exceeds_is_reported():
    values = [0.93, 0.931, 0.929, 0.80, 0.80, 0.80, 0.80, 0.80, 0.80, 0.80]
    verdict = judge(values, 0.90, Design(3, 10, alpha=0.5), TOLERANCE)  # a generous level decides at 3
    assert verdict.status == EXCEEDS and verdict.seeds == 3  # later, worse seeds do not overturn it
    assert judge(values[:3], 0.93, Design.fixed(3, alpha=0.2), TOLERANCE).status == REPRODUCED  # 3 of 3: 1/8


def test_undecided_at_the_last_look_says_how_many_seeds_would_decide():
    margin = CLAIMED - TOLERANCE
    above, below = margin + 0.002, margin - 0.002
    values = [above, below, above, above, above, below, above, above, above, above]  # 8 of 10 reach, never enough
    verdict = judge(values, CLAIMED, AUTO, TOLERANCE)
    assert verdict.status == INCONCLUSIVE and verdict.seeds == 10
    assert "seeds=auto max_seeds=" in verdict.why and "decides with" in verdict.why
    n, probability = verdict.planning
    assert n > 10 and probability >= 0.8  # tests/test_claims_calibration.py checks it by simulation
    assert judge(values[:2], CLAIMED, AUTO, TOLERANCE).why.startswith("2 seed(s); this design's first look is at 3")
    fixed = judge(values, CLAIMED, Design.fixed(10), TOLERANCE)
    assert "both designs together err up to" in fixed.why  # judging the same seeds again is said plainly
    nan = float("nan")
    assert judge([nan] * 3, CLAIMED, AUTO, TOLERANCE).why.endswith("the 3 seeds so far all diverged")


def test_no_claim_and_no_values():
    assert judge([0.9, 0.91, 0.92], None, AUTO).status == NO_CLAIM
    assert judge([], 0.9, AUTO).status == INCONCLUSIVE


def test_prediction_interval_covers_one_new_run_as_stated_for_any_distribution():
    """[lowest, highest] of n seeds holds one more run (n - 1)/(n + 1) of the time: normal and heavily skewed runs."""
    rng = np.random.default_rng(7)
    for draw in (lambda size: rng.normal(0.9, SD, size), lambda size: 0.9 - rng.gamma(0.5, SD, size)):
        for n in (3, 5, 10):
            runs = draw((4000, n + 1))
            intervals = [prediction_interval(list(row[:n])) for row in runs]
            hits = np.mean([i.low <= row[n] <= i.high for i, row in zip(intervals, runs, strict=True)])
            assert intervals[0].coverage == (n - 1) / (n + 1)
            assert abs(hits - (n - 1) / (n + 1)) < 3 * math.sqrt(0.25 / 4000)
    assert prediction_interval([0.9]) is None
    diverged = prediction_interval([0.91, math.nan, 0.93])
    assert math.isnan(diverged.low) and diverged.high == 0.93  # a new run may diverge too: no lower end


def test_single_run_fields_of_a_verdict():
    verdict = judge([0.90, 0.91, 0.92, 0.93], 0.915, Design.fixed(4), TOLERANCE, n_examples=10_000)
    assert verdict.seeds_reaching == 2
    assert (verdict.single_run.low, verdict.single_run.high, verdict.single_run.coverage) == (0.90, 0.93, 0.6)
    assert verdict.p_single_run_reaches == 0.5  # 2 of 4 seeds, with its exact interval
    assert (verdict.p_single_run_low, verdict.p_single_run_high) == pytest.approx((0.0676, 0.9324), abs=1e-4)
    assert verdict.sampling_se == pytest.approx(binomial_se(0.915, 10_000))
    assert verdict.single_run.n == 4  # every seed, not only those up to the look that decided


def test_tolerance_is_checked_and_overridable():
    from cnnlab.config import ConfigError, validate
    from tests.conftest import compose_config

    assert compose_config("experiment=fashion_deep").claim.tolerance == 0.005
    assert compose_config("experiment=fashion_deep", "claim.tolerance=0.01").claim.tolerance == 0.01
    with pytest.raises(ConfigError, match="claim.tolerance: must be in"):
        validate(compose_config("experiment=fashion_deep", "claim.tolerance=0.5"))


# --- the reproduction on tiny synthetic data -------------------------------------------------------------------


class _Run:
    def __init__(self, value: float) -> None:
        self.data = type("Data", (), {"metrics": {"test_accuracy": value}, "tags": {}})()


@pytest.mark.parametrize(
    "values,more",
    [
        ([0.99, 0.99], True),  # below min_seeds
        ([0.991, 0.992, 0.990, 0.991, 0.990], False),  # decided (reproduced) at the first look that can, 5
        ([0.97, 0.99, 0.95], True),  # undecided, seeds left
        ([0.97, 0.99, 0.95] * 3 + [0.97], False),  # undecided at max_seeds: stop, inconclusive
    ],
)
def test_seeds_are_added_only_while_a_verdict_is_open(values, more):
    from cnnlab.claims.reproduce import ClaimResult

    claim = {"tolerance": 0.005, "targets": [{"metric": "test_accuracy", "value": 0.9757}]}
    result = ClaimResult(name="c", claim=claim, runs=[_Run(v) for v in values], design=Design(3, 10))
    assert result.needs_more_seeds() is more
    no_claim = ClaimResult(name="k", claim={"targets": [{"metric": "test_accuracy", "value": None}]})
    no_claim.runs = [_Run(0.9)] * 3
    assert no_claim.needs_more_seeds() is False  # nothing to decide: min_seeds measure it


def test_seeds_option_is_checked_before_anything_runs(tmp_path):
    import subprocess
    import sys

    for bad, message in (
        ("seeds=many", "seeds: must be 'auto' or a whole number >= 1, got 'many'"),
        ("max_seeds=2", "max_seeds: must be >= min_seeds (3), got 2"),
        ("claim.tolerance=0.5", "claim.tolerance: must be in (0, 0.1)"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "cnnlab.reproduce", bad, f"tracking.uri=sqlite:///{tmp_path}/x.db"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
        assert list(tmp_path.iterdir()) == []  # no store, no outputs/ folder


@pytest.fixture
def reproduce_setup(tmp_path, idx_dir, pin_mnist):
    from tests.conftest import compose_config

    passthrough = [*tiny_reproduction(idx_dir, tmp_path), "claim.tolerance=0.01"]
    overrides = ["seeds=2", "claims=[mnist_simple,mnist_pooled]", *passthrough]
    cfg = compose_config(*overrides, config_name="reproduce_config")
    return cfg, overrides, lambda extra: compose_config(*extra)


@pytest.mark.slow
def test_interrupted_reproduction_resumes_and_skips_finished_pairs(reproduce_setup, monkeypatch, capsys):
    from cnnlab import train as train_module
    from cnnlab.claims.reproduce import reproduce

    cfg, overrides, compose = reproduce_setup
    real_train = train_module.train
    calls = {"n": 0}

    def interrupt_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train_module, "train", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        reproduce(cfg, overrides, compose)
    first_parent = capsys.readouterr().out.split("new parent run ")[1].split()[0]

    # What kill -9 leaves behind: a child still RUNNING under the parent (Ctrl-C above closed its own as KILLED).
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    parent = client.get_run(first_parent)
    orphan = client.create_run(
        parent.info.experiment_id, run_name="mnist_pooled-s0", tags={"mlflow.parentRunId": first_parent}
    )

    monkeypatch.setattr(train_module, "train", real_train)
    parent_id, results, report = reproduce(cfg, overrides, compose)
    out = capsys.readouterr().out
    assert parent_id == first_parent
    orphan = client.get_run(orphan.info.run_id)
    assert orphan.info.status == "KILLED"
    assert orphan.data.tags["cnnlab.status_reason"] == "process died mid-seed; the seed is trained again"
    assert out.count("already FINISHED") == 2
    assert [r.skipped for r in results] == [1, 1]  # seed 0 of every claim comes first; seed 1 was interrupted
    assert all(len(r.runs) == 2 for r in results)
    table = report["table"]
    assert list(table["metric"]) == ["test_accuracy", "accuracy", "val_accuracy"]
    # one epoch is a modified protocol: measured against the claim, never a verdict on it
    assert set(table["verdict"]) == {"modified protocol (no verdict)"}
    assert all("trainer.epochs=1 changes the claim's protocol" in why for why in table["why"])
    assert (table["seeds"] == 2).all()
    assert "| mnist_simple | float32 | test_accuracy | 97.57% | 96.57% (1 pt) |" in report["markdown"]
    assert "P(one run >= claimed)" in report["markdown"]
    assert (table["tolerance"] == 0.01).all()  # claim.tolerance=0.01 on the command line reached every claim


@pytest.mark.slow
def test_a_second_reproduction_of_judged_seeds_continues_the_design_or_says_its_error(
    tmp_path, idx_dir, pin_mnist, capsys
):
    """Three reproductions of one claim in one store: the first trains and judges 5 seeds; the second, the same
    sequential design extended, reuses them, trains none (its verdict is decided) and says it continues the design;
    the third, a fixed design, reuses them and counts both earlier judgements in its error. Each one first prints
    its design and time, then a progress line after every seed."""
    from mlflow.tracking import MlflowClient

    from cnnlab.claims import DESIGN_TAG
    from cnnlab.claims.reproduce import JUDGED_TAG, reproduce
    from tests.conftest import compose_config

    # a claim of 0.6% (margin 0.1%): every seed reaches it whatever one epoch gives, so 5 seeds decide
    passthrough = [*tiny_reproduction(idx_dir, tmp_path), "claim.targets=[{metric:test_accuracy,value:0.006}]"]

    def run(*design):
        overrides = [*design, "claims=[mnist_simple]", *passthrough]
        cfg = compose_config(*overrides, config_name="reproduce_config")
        parent_id, results, report = reproduce(cfg, overrides, lambda extra: compose_config(*extra))
        return parent_id, results[0], report["table"].iloc[0].to_dict(), capsys.readouterr().out

    first_id, first, row, out = run("seeds=auto", "min_seeds=3", "max_seeds=5")
    assert (
        "mnist_simple: seeds=auto: 3 to 5 seeds, 3 looks (after each seed from 3; the first that can decide is" in out
    )
    assert "5 seed(s) to train of 1 epoch each: time unknown until the first seed finishes" in out
    assert "1 of at most 5 seeds done (trained in" in out and "elapsed; at most about" in out
    # 3 and 4 seeds cannot bound the median; 5 of 5 reaching decides
    assert "needs at least 5 seeds to bound the median; the 3 seeds so far range" in out
    assert out.count(": training (1 epochs)") == 5 and row["verdict"] == "modified protocol (no verdict)"
    assert row["flags"] == "" and row["error"] == pytest.approx(1 / 32)

    second_id, second, row, out = run("seeds=auto", "min_seeds=3", "max_seeds=10")
    assert second_id != first_id and "5 seed(s) already finished are reused" in out
    assert "1 epoch x " in out and "stored runs of mnist_simple on this machine kind" in out  # known from the first
    assert out.count("already FINISHED") == 5 and "training (" not in out and second.skipped == 5
    assert second.earlier_designs == [Design(3, 5)]
    assert "this design (seeds=auto min_seeds=3 max_seeds=10) continues it" in row["flags"]
    assert "stays at 4.1%" in row["flags"] and "not the stated" not in row["flags"]

    third_id, third, row, out = run("seeds=5")
    assert out.count("already FINISHED") == 5 and "training (" not in out
    assert set(third.earlier_designs) == {Design(3, 5), Design(3, 10)}  # the second's judgement counts too
    assert "judged again under a new design, a false 'reproduced' comes 4.1% of the time" in row["flags"]
    assert row["error"] == pytest.approx(sign_error(Design(3, 10)))  # 5 of 5 was already a boundary of both
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_run(third_id).data.tags[DESIGN_TAG] == "[5, 5, false]"
    reused = client.get_run(first.runs[0].info.run_id).data.tags
    assert reused[JUDGED_TAG + second_id] == "[3, 10, true]" and reused[JUDGED_TAG + third_id] == "[5, 5, false]"


def test_judging_seeds_again_under_a_design_with_new_boundaries_says_the_error_is_not_the_stated_one():
    values = [0.90] * 8
    verdict = judge(values, CLAIMED, Design.fixed(8), TOLERANCE, earlier_designs=(Design(3, 5), Design(3, 10)))
    # 7 of 8 reaching decides seeds=8 but neither sequential design: together they err 5.08%
    assert verdict.error == pytest.approx(0.05078125)
    assert any(
        "judged before under seeds=auto min_seeds=3 max_seeds=5, seeds=auto min_seeds=3 max_seeds=10" in flag
        and "comes 5.1% of the time with both judgements counted, not the stated 5%" in flag
        for flag in verdict.flags
    )


@pytest.mark.slow
def test_report_renders_html_with_figures(reproduce_setup, tmp_path):
    from mlflow.tracking import MlflowClient

    from cnnlab.claims.report import write_reproduction_md
    from cnnlab.claims.reproduce import reproduce

    cfg, overrides, compose = reproduce_setup
    document = tmp_path / "REPRODUCTION.md"
    document.write_text("# Reproduction\n\n<!-- section: fidelity -->\nkept\n<!-- end of section: fidelity -->\n")
    rounds = []

    def on_report(report, results, parent_id):
        rounds.append(len(results[0].runs))
        write_reproduction_md(document, report, parent_id, results, ["mnist_simple", "mnist_pooled", "kmnist"])

    parent_id, results, report = reproduce(cfg, overrides, compose, on_report)
    assert rounds == [1, 2]  # the report is refreshed after every round of seeds
    text = document.read_text()
    assert "kept" in text and "<!-- section: claims -->" in text  # another command's section stays
    assert "Machine: " in text and "flags:" in text and "Complete:" in text
    assert "- **kmnist**: not run yet." in text
    print(text)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"claims.csv", "report.md", "report.html"} <= artifacts
    page = Path(client.download_artifacts(parent_id, "report.html")).read_text()
    # two claims' learning curves, the distribution, and each claim's looks of the verdict
    assert page.count("data:image/png;base64,") == 5
    assert "mnist_simple: the verdict&#x27;s looks" in page or "mnist_simple: the verdict's looks" in page
    assert "mnist_pooled" in page
    children = client.search_runs([results[0].runs[0].info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 4


def test_unknown_claim_fails_fast(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "cnnlab.reproduce", "claims=[nope]", f"tracking.uri=sqlite:///{tmp_path}/x.db"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "nope" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_bf16_variant_pairs_with_float32_runs_of_the_same_seeds(reproduce_setup, capsys):
    """precisions=[float32,bf16] reuses float32 runs made without it and pairs bf16 with them seed by seed."""
    from cnnlab.claims.reproduce import reproduce
    from cnnlab.machine import bf16_impossible
    from tests.conftest import compose_config

    if reason := bf16_impossible():
        pytest.skip(reason)
    _, overrides, compose = reproduce_setup
    passthrough = [o for o in overrides if not o.startswith(("seeds=", "claims="))]
    # On a CPU without native bf16 (the AVX2 kind) TensorFlow emulates it, which a user must ask for; the pairing
    # under test is the same either way.
    passthrough.append("trainer.allow_emulated_bf16=true")
    plain = ["seeds=2", "claims=[mnist_simple]", *passthrough]
    reproduce(compose_config(*plain, config_name="reproduce_config"), plain, compose)
    both = [*plain, "precisions=[float32,bf16]"]
    capsys.readouterr()
    _, results, report = reproduce(compose_config(*both, config_name="reproduce_config"), both, compose)

    out = capsys.readouterr().out
    assert out.count("already FINISHED") == 2 and "mnist_simple-bf16 seed 1: training" in out
    assert [(r.name, r.precision, len(r.runs)) for r in results] == [
        ("mnist_simple", "float32", 2),
        ("mnist_simple", "bf16", 2),
    ]
    assert {run.data.tags["cnnlab.precision"] for run in results[1].runs} == {"bf16"}
    (pair,) = report["pairs"].to_dict("records")
    by_seed = {
        r.precision: {run.data.tags["cnnlab.seed"]: run.data.metrics["test_accuracy"] for run in r.runs}
        for r in results
    }
    expected = sum(by_seed["bf16"][s] - by_seed["float32"][s] for s in ("0", "1")) / 2
    assert pair["seeds"] == 2 and pair["difference"] == pytest.approx(expected)
    assert "bf16:" in report["precision_markdown"]
    assert "power if equal" in report["precision_markdown"] and pair["tolerance"] == pytest.approx(0.01)
    # two seeds are too few to bound a median difference at 95% a side: never shown equivalent
    assert (pair["median_difference_low"], pair["median_difference_high"], pair["equivalent"]) == (
        -math.inf,
        math.inf,
        False,
    )
    assert "not inside +-1.00: not shown equivalent" in report["precision_markdown"]
    assert list(report["table"]["precision"]) == ["float32", "bf16"]


def test_precision_given_twice_is_refused(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab.reproduce",
            "precisions=[float32,bf16]",
            "trainer.precision=bf16",
            f"tracking.uri=sqlite:///{tmp_path}/x.db",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "precisions" in result.stderr and "Traceback" not in result.stderr


def test_a_reproduction_refuses_to_pool_seeds_trained_on_different_data():
    """Two seeds of one claim on different digests of its dataset (a swapped local folder): refused, both named."""
    from types import SimpleNamespace

    from cnnlab.claims.reproduce import ClaimResult, MixedData, check_one_digest

    def seed(digest, source):
        return SimpleNamespace(data=SimpleNamespace(tags={"data.digest": digest, "data.source": source}))

    result = ClaimResult(name="kmnist", claim=None, runs=[seed("aaaa", "local /a"), seed("aaaa", "local /a")])
    check_one_digest(result)  # one dataset: fine
    result.runs.append(seed("bbbb", "local /b"))
    with pytest.raises(MixedData, match=r"different data \(aaaa \(local /a\), bbbb \(local /b\)\)"):
        check_one_digest(result)


def test_a_claim_is_one_file_found_in_the_repository_or_a_config_folder_of_ones_own(tmp_path):
    """Without claims=, reproduce takes every experiment with a claim block: the shipped ones, and one in a folder
    outside the repository (hydra.searchpath, as --config-dir adds it); claims=[...] still picks."""
    from hydra import compose, initialize_config_dir

    from cnnlab.config.compose import claim_names
    from tests.conftest import CONF_DIR

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "my_claim.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: simple\n"
        "claim:\n  source: my post\n  targets:\n    - {metric: test_accuracy, value: 0.9, split: test}\n"
    )
    (tmp_path / "experiment" / "no_claim.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 1\n")
    searchpath = [f"hydra.searchpath=[file://{tmp_path}]"]
    shipped = sorted(path.stem for path in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("reproduce_config", overrides=searchpath)
        assert cfg.claims is None
        names = claim_names(cfg, lambda extra: compose("config", overrides=extra), searchpath)
        assert names == sorted([*shipped, "my_claim"])
        cfg.claims = ["my_claim"]
        assert claim_names(cfg, lambda extra: compose("config", overrides=extra), searchpath) == ["my_claim"]


@pytest.mark.parametrize("family", ["normal", "right_skewed", "left_skewed", "heavy", "failing"])
@pytest.mark.parametrize("seeds", [5, 10])
def test_paired_tost_rarely_calls_precisions_equivalent_at_the_margin_and_its_power_is_what_it_says(family, seeds):
    """Per-seed differences of two precisions with their true median at +-tolerance: "equivalent" at most ~5% (plus
    Monte-Carlo error), for normal, right-skewed (lognormal, skew +1), left-skewed (skew about -2), heavy-tailed (t,
    3 df) and failing (10% of seeds diverge to NaN) noise; with the precisions truly equal and normal, it shows
    equivalence about as often as paired_tost_power says."""
    rng = np.random.default_rng(7)
    tolerance, sd, draws = 0.005, 0.002, 2000

    def noise(size):
        if family in ("normal", "failing"):
            values = rng.normal(0, sd, size)
            if family == "failing":
                values[rng.random(size) < 0.1] = math.nan
            return values
        if family == "right_skewed":
            return (rng.lognormal(0, 0.31, size) - 1) * sd / 0.33  # a lognormal's median is exp(0) = 1
        if family == "left_skewed":
            return -(rng.lognormal(0, 0.55, size) - 1) * sd / 0.65
        return rng.standard_t(3, size) * sd / math.sqrt(3)

    for margin in (tolerance, -tolerance):
        called = np.mean([paired_tost(list(margin + noise(seeds)), tolerance).equivalent for _ in range(draws)])
        assert called <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws), (family, margin, called)
    if family == "normal":
        shown = np.mean([paired_tost(list(noise(seeds)), tolerance).equivalent for _ in range(draws)])
        assert shown == pytest.approx(paired_tost_power(0.0, sd, seeds, tolerance), abs=0.03)
        assert shown > 0.5  # a real difference from the margin case, so the size check above can fail
