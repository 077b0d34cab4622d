"""The reproduction report's new tables on a synthetic reproduction (no training): verdicts on the median run with
the mean beside them, flagged seeds, the family-wise error with Holm, a modified protocol, single-run intervals."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd

from cnnlab.claims.report import claims_table, report_markdown, to_html
from cnnlab.claims.reproduce import ClaimResult, protocol_changes
from cnnlab.claims.stats import Design

# cnnlab's float32 test accuracies per seed for two claims, as REPRODUCTION.md's fidelity section lists them
MNIST_SIMPLE = [0.9758, 0.9797, 0.9746, 0.9755, 0.9739, 0.9746, 0.9741, 0.9688, 0.9738, 0.9787]
FASHION_DEEP = [0.9182, 0.9121, 0.9071, 0.9193, 0.9162, 0.9126, 0.9108, 0.9076, 0.9118, 0.9179]


class _Run:
    def __init__(self, value: float, seed: int) -> None:
        metrics = {"total_seconds": 60.0} if math.isnan(value) else {"test_accuracy": value, "total_seconds": 60.0}
        self.data = type("Data", (), {"metrics": metrics, "tags": {"cnnlab.seed": str(seed)}})()


def _result(name: str, claimed: float, values: list[float], **claim) -> ClaimResult:
    block = {"tolerance": 0.005, "targets": [{"metric": "test_accuracy", "value": claimed}], **claim}
    return ClaimResult(name=name, claim=block, runs=[_Run(v, s) for s, v in enumerate(values)], design=Design(3, 10))


def synthetic_results() -> list[ClaimResult]:
    diverged = [0.9951, 0.9948, 0.9953, math.nan, 0.9950, 0.9949, 0.9952, 0.9950, 0.9947, 0.9951]
    subset = _result("subset_claim", 0.97, [0.90, 0.91, 0.905])
    subset.modified = ["dataset.subset=5000"]
    return [
        _result("mnist_simple", 0.9757, MNIST_SIMPLE[:5]),  # seeds=auto stops where the verdict is decided
        _result("fashion_deep", 0.9137, FASHION_DEEP),
        _result("ceiling_claim", 0.9952, diverged, error_ratio=1.25),
        subset,
    ]


def test_report_tables_on_a_synthetic_reproduction():
    table = claims_table(synthetic_results())
    text = report_markdown(table)
    print(text)
    rows = {row.claim: row for row in table.itertuples()}
    assert rows["mnist_simple"].verdict == "reproduced" and "5 of 5 seeds reach" in rows["mnist_simple"].why
    # fashion_deep: 8 of 10 seeds reach 90.87%, so the median rule stays open where the mean's t reading decides
    assert rows["fashion_deep"].verdict == "inconclusive" and rows["fashion_deep"].mean_reading == "reproduced"
    assert "the mean's t reading says reproduced; the median rule says inconclusive" in rows["fashion_deep"].flags
    assert "max_seeds=" in rows["fashion_deep"].why and "decides with" in rows["fashion_deep"].why
    # a NaN seed is kept, counted as not reaching, and named
    assert rows["ceiling_claim"].seeds_run == 10 and "seed 3 (NaN, diverged)" in rows["ceiling_claim"].flags
    assert rows["ceiling_claim"].margin == 1 - 1.25 * (1 - 0.9952)
    assert "99.40% (1.25x the error rate)" in text
    # a modified protocol is measured, not judged
    assert rows["subset_claim"].verdict == "modified protocol (no verdict)"
    assert "dataset.subset=5000 changes the claim's protocol" in rows["subset_claim"].why
    # 3 seeds cannot bound the median: the report says what it takes and what the seeds show, not [0%, 100%]
    assert "needs at least 5 seeds to bound the median; the 3 seeds so far range 90.00% to 91.00%" in text
    assert "0.00%, 100.00%" not in text and math.isnan(rows["subset_claim"].median_low)
    page = to_html(table, pd.DataFrame(), {}, "")  # report.html: the same words
    assert "needs at least 5 seeds to bound the median" in page and "0.00%, 100.00%" not in page
    # single-run figures carry their exact interval and use every seed run; every bound stays in [0, 1]
    # seeds=auto selects the seeds it keeps: its 67% holds over reproductions, also where it stopped at 5 seeds
    assert (
        "| mnist_simple | float32 | test_accuracy | 97.57% | [97.39%, 97.97%]: at least 67% over reproductions "
        "from 5 seeds (the design stops early) |"
    ) in text
    # the NaN seed is the interval's lower end; seeds=auto's early stops make 10 seeds guarantee 67%, not 9/11
    assert "[a diverged run, 99.53%]: at least 67% over reproductions from 10 seeds (the design stops early)" in text
    assert "40% [5, 85]" in text  # 2 of 5 seeds reach 97.57%: Clopper-Pearson [5.3%, 85.3%]
    for column in ("median_low", "median_high", "mean_low", "mean_high", "single_run_low", "single_run_high"):
        finite = table[column].dropna()
        assert ((finite >= 0) & (finite <= 1)).all()
    assert "Holm's step-down over all 3 keeps the family-wise rate at 5%" in text and "judges 3 claimed" in text
    # two of three decided, each at best p = 1/32 under seeds=auto 3..10: above Holm's 5%/3, whatever the seeds
    assert "0 of 2 decided verdicts hold" in text and "p = 3.1%, above Holm's first step, 5% / 3 = 1.67%" in text
    assert "min_seeds=6 can (all 6 of 6 reaching has p = 1.56%)" in text


def test_protocol_changes_are_told_from_where_runs_are_read_and_logged():
    overrides = ["dataset.local_dir=/x", "tracking.uri=sqlite:///a.db", "trainer.verbose=0", "claim.tolerance=0.01"]
    assert protocol_changes(overrides) == []
    changed = ["dataset.subset=5000", "trainer.epochs=1", "optimizer.learning_rate=0.1", "trainer.precision=bf16"]
    assert protocol_changes([*overrides, *changed]) == changed


def test_a_design_that_can_never_decide_is_refused_before_anything_is_created(tmp_path):
    for bad, message in (
        ("seeds=3", "seeds: 3 seeds can never decide a verdict: the median rule needs at least 5"),
        ("max_seeds=4", "max_seeds: 4 seeds can never decide a verdict: the median rule needs at least 5"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "cnnlab.reproduce", bad, f"tracking.uri=sqlite:///{tmp_path}/x.db"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
        assert "use " in result.stderr and "=5 or more" in result.stderr
        assert list(tmp_path.iterdir()) == []  # no store, no outputs/ folder


def test_measuring_seeds_without_verdicts_allows_a_short_design():
    from cnnlab.claims.reproduce import never_decides
    from tests.conftest import compose_config

    never_decides(compose_config("seeds=2", "verdicts=false", config_name="reproduce_config"))  # no error


class _Client:
    """search_runs over stored runs, matched on the tags a filter names (what the timing queries ask)."""

    def __init__(self, runs: list) -> None:
        self.runs = runs

    def search_runs(self, experiment_ids, filter_string, max_results=1000, order_by=None):
        import re

        wanted = dict(re.findall(r"tags\.`([^`]+)` = '([^']*)'", filter_string))
        return [run for run in self.runs if all(run.data.tags.get(k) == v for k, v in wanted.items())]


def _stored(seed: int, per_epoch: float, kind: str, fingerprint: str = "f1") -> object:
    from cnnlab.machine import intra_op_threads

    tags = {
        "cnnlab.claim": "mnist_simple",
        "cnnlab.precision": "float32",
        "machine.kind": kind,
        "machine.threads": str(intra_op_threads()),  # as this process splits its kernels: a run it would reuse
        "cnnlab.seed": str(seed),
        "cnnlab.fingerprint": fingerprint,
    }
    metrics = {"seconds_per_epoch": per_epoch, "train_seconds": 3 * per_epoch, "total_seconds": 3 * per_epoch + 6}
    return type("Run", (), {"data": type("Data", (), {"metrics": metrics, "tags": tags})()})()


def test_a_reproduction_says_its_design_and_time_before_training_and_its_progress_after_each_seed():
    from cnnlab.claims import timing

    claim = _result("mnist_simple", 0.9757, [])
    claim.kind = "avx512"  # the machine kind this reproduction trains on
    # two seeds of this protocol on this machine kind, one on another kind (its speed says nothing here, and this
    # kind trains its own seed 2)
    client = _Client([_stored(0, 10.0, "avx512"), _stored(1, 14.0, "avx512"), _stored(2, 100.0, "amx")])
    clock = timing.Clock()
    line = clock.plan(claim, 3, "f1", client, "0")
    assert "seeds=auto: 3 to 10 seeds, 8 looks (after each seed from 3; the first that can decide is at 5)" in line
    assert "2 seed(s) already finished are reused" in line  # seeds 0 and 1: this kind's, with the fingerprint
    # a seed: 3 epochs x 12 s (the median on avx512) + 6 s around training = 42 s; 1 to 8 seeds left to train
    assert "about 42 s to 5.6 min for 1 to 8 seed(s) to train, 42 s each (3 epochs x 12.0 s" in line
    assert "median of 2 stored runs of mnist_simple on this machine kind (avx512), and 6 s around training" in line

    unknown = timing.Clock().plan(claim, 3, "f2", _Client([]), "0")
    assert "; 3 to 10 seed(s) to train of 3 epochs each: time unknown until the first seed finishes" in unknown
    assert "(no stored run of mnist_simple on this machine kind, avx512)" in unknown

    claim.runs = [_Run(0.97, 0)]
    fresh = timing.Clock()
    fresh.stored["mnist_simple"] = None
    progress = fresh.after_seed(claim, 30.0, [claim])
    assert "mnist_simple: 1 of at most 10 seeds done (trained in 30 s)" in progress
    assert "at most about 4.5 min left" in progress  # 9 seeds left at the 30 s the first one took
    # two workers train two seeds at once: half the wait, each seed as long
    pair = timing.Clock(workers=2)
    pair.stored["mnist_simple"] = None
    assert "at most about 2.2 min left" in pair.after_seed(claim, 30.0, [claim])
    two = timing.Clock(workers=2).plan(claim, 3, "f1", client, "0")
    assert "about 21 s to 2.8 min for 1 to 8 seed(s) to train, 42 s each, 2 at once (3 epochs x 12.0 s" in two
    assert "time left unknown" in timing.Clock().after_seed(claim, 30.0, [claim, _result("other", 0.9, [])])


def test_a_bound_at_the_tolerance_gets_the_digit_that_tells_it_from_the_tolerance():
    from cnnlab.claims.report import bounds_points

    assert bounds_points(-0.004, 0.002, 0.005) == "[-0.40, +0.20]"
    assert bounds_points(-0.00503, 0.0021, 0.005) == "[-0.503, +0.210]"  # two digits would read -0.50, "inside"
    assert bounds_points(-0.004996, 0.0021, 0.005) == "[-0.4996, +0.2100]"  # still -0.500 at three
    assert bounds_points(-0.005, float("nan"), 0.005) == "[-0.50, unbounded]"  # at the tolerance itself: as it is
    tolerance = 0.9137 - (0.9137 - 0.005)  # 0.0050000000000000044, as a claim's margin computes it
    assert bounds_points(0.9071 - 0.9121, 0.0021, tolerance) == "[-0.50, +0.21]"  # a tie in float noise too


def test_a_number_scored_on_another_split_than_the_test_set_says_which():
    def on(split: str) -> str:
        result = _result("pooled", 0.97, MNIST_SIMPLE[:5])
        result.claim["targets"] = [{"metric": "test_accuracy", "value": 0.97, "split": split}]
        return report_markdown(claims_table([result]))

    assert "| pooled | float32 | test_accuracy (train (final epoch)) | 97.00% |" in on("train (final epoch)")
    assert "| pooled | float32 | test_accuracy | 97.00% |" in on("test (= validation)")


def test_holm_names_the_design_that_could_hold_in_the_knob_the_design_uses():
    def family_text(design: Design, claims: int) -> str:
        results = []
        for i in range(claims):
            result = _result(f"claim{i}", 0.9757, MNIST_SIMPLE[:5])  # 5 of 5 reach 97.07%: decided at 5
            result.design = design
            results.append(result)
        return report_markdown(claims_table(results))

    fixed = family_text(Design.fixed(5), 3)  # p 1/32 > 5% / 3: a fixed design's knob is seeds=
    assert "0 of 3 decided verdicts hold" in fixed and "seeds=6 can (all 6 of 6 reaching has p = 1.56%)" in fixed
    assert "min_seeds" not in fixed
    short = family_text(Design(3, 5), 4)  # 7 seeds are needed, more than max_seeds=5 allows
    assert "min_seeds=7 max_seeds=7 can (all 7 of 7 reaching has p = 0.78%)" in short
    alone = family_text(Design(3, 10), 1)  # a family of one: 1/32 <= 5%, it holds and no advice is given
    assert "1 of 1 decided verdicts hold" in alone and "none could" not in alone
