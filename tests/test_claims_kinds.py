"""Seeds of a claim from several machine kinds: the exact rank interval, the equivalence test's size at the margin and
its power by simulation over skewed runs with failed seeds, the per-kind report, and resume per kind."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cnnlab.claims import kinds
from cnnlab.claims.reproduce import ClaimResult
from cnnlab.claims.stats import Design

TOLERANCE = 0.005


def test_mann_whitney_null_matches_scipy_exact_p_values():
    rng = np.random.default_rng(1)
    for n, m in ((3, 3), (4, 7), (10, 10), (6, 2)):
        a, b = rng.normal(size=n), rng.normal(0.5, size=m)
        u = int((a[:, None] > b[None, :]).sum())
        expected = stats.mannwhitneyu(a, b, alternative="greater", method="exact").pvalue
        assert kinds.mann_whitney_null(n, m)[u:].sum() == pytest.approx(expected, rel=1e-9)


def test_the_interval_needs_three_seeds_a_side():
    assert kinds.interval_rank(3, 3) == 1  # P(U = 0) = 1/20: the widest interval is exactly 90%
    assert kinds.interval_rank(2, 3) is None  # P(U = 0) = 1/10 > 5%
    assert kinds.interval_rank(10, 10) == 28  # Lehmann's table: k = 28 for n = m = 10 at 90%


def accuracies(rng: np.random.Generator, shape: tuple[int, ...], failure: float = 0.05) -> np.ndarray:
    """Runs as they come: bounded, skewed to the left (a long tail of worse runs), some seeds failing (NaN)."""
    values = 0.979 - rng.gamma(1.5, 0.0025, shape)  # mean 97.5%, sd 0.31 pt as mnist_simple's seeds, skewed left
    return np.where(rng.random(shape) < failure, math.nan, np.minimum(values, 1.0))


def equivalence_rate(shift: float, seeds: int, simulations: int = 4000, seed: int = 0) -> float:
    """How often the kinds are called equivalent when kind a's finished runs sit ``shift`` above kind b's."""
    rng = np.random.default_rng(seed)
    a = accuracies(rng, (simulations, seeds)) + shift
    b = accuracies(rng, (simulations, seeds))
    k = kinds.interval_rank(seeds, seeds)
    _, low, high = kinds._bounds(kinds._failed_low(a), kinds._failed_low(b), k)
    return float(((low > -TOLERANCE) & (high < TOLERANCE)).mean())


@pytest.mark.parametrize("seeds", [5, 10])
def test_kinds_a_tolerance_apart_are_called_equivalent_at_most_5_percent_of_the_time(seeds):
    for shift in (TOLERANCE, -TOLERANCE):
        rate = equivalence_rate(shift, seeds)
        print(f"{seeds} seeds a side, shift {shift:+.3f}: equivalent {100 * rate:.2f}%")
        assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 4000)


def test_kinds_twice_the_tolerance_apart_are_almost_never_equivalent_and_equal_kinds_usually_are():
    assert equivalence_rate(2 * TOLERANCE, 10) < 0.001
    equal = equivalence_rate(0.0, 10)
    print(f"10 seeds a side, equal kinds: equivalent {100 * equal:.1f}%")
    assert equal > 0.8
    assert equivalence_rate(0.0, 5) > 0.3  # fewer seeds, less power, but not none


def test_the_reported_power_tracks_the_true_power():
    true_power = equivalence_rate(0.0, 6, seed=3)
    rng = np.random.default_rng(4)
    reported = [
        kinds.kind_equivalence(list(accuracies(rng, (6,))), list(accuracies(rng, (6,))), TOLERANCE, seed=i).power
        for i in range(60)
    ]
    print(f"true power {true_power:.2f}, mean reported {np.mean(reported):.2f}")
    assert abs(np.mean(reported) - true_power) < 0.15


class _Run:
    def __init__(self, value: float, seed: int, kind: str | None, cap: str = "none") -> None:
        metrics = {} if math.isnan(value) else {"test_accuracy": value}
        tags = {"cnnlab.seed": str(seed)}
        if kind is not None:
            tags |= {"machine.kind": kind, "machine.isa_cap": cap}
        self.data = type("Data", (), {"metrics": metrics, "tags": tags})()


def _two_kinds(shift: float) -> ClaimResult:
    rng = np.random.default_rng(7)
    here = [_Run(v, s, "avx512_bf16") for s, v in enumerate(accuracies(rng, (10,), failure=0))]
    there = [_Run(v + shift, s, "avx2", "ONEDNN_MAX_CPU_ISA=AVX2") for s, v in enumerate(accuracies(rng, (10,), 0))]
    there[4] = _Run(math.nan, 4, "avx2", "ONEDNN_MAX_CPU_ISA=AVX2")  # a failed seed
    block = {"tolerance": TOLERANCE, "targets": [{"metric": "test_accuracy", "value": 0.975}]}
    result = ClaimResult(name="mnist_simple", claim=block, runs=here, design=Design(3, 10), kind="avx512_bf16")
    result.by_kind = kinds.group_by_kind([*there, *here], max_seeds=10)
    return result


def test_report_with_two_kinds_gives_the_pooled_verdict_only_where_they_are_equivalent():
    text = kinds.kinds_markdown([_two_kinds(0.0)])
    print(text)
    assert "| mnist_simple | float32 | test_accuracy | avx2 (ONEDNN_MAX_CPU_ISA=AVX2) | 10 | 1 |" in text
    assert "| mnist_simple | float32 | test_accuracy | avx512_bf16 | 10 | 0 |" in text
    assert "| all kinds pooled | 20 | 1 |" in text and "reproduced (kinds equivalent; 20 seeds, one look)" in text
    assert "inside +-0.50 pt: equivalent" in text and "power at these seeds if the kinds were equal" in text

    page = kinds.kinds_html([_two_kinds(0.0)])
    assert "<h2>Machine kinds</h2>" in page and "all kinds pooled" in page and "equivalent; power" in page

    text = kinds.kinds_markdown([_two_kinds(-0.01)])
    print(text)
    assert "not given: the kinds are not shown equivalent" in text
    assert "excludes 0: avx2 (ONEDNN_MAX_CPU_ISA=AVX2) differs from avx512_bf16 by -1.0" in text
    # each kind keeps its own verdict: 0.975 - 0.005 is out of reach for the kind a point lower
    rows = [line for line in text.splitlines() if line.startswith("| mnist_simple | float32 | test_accuracy | avx2")]
    assert rows and "| not reproduced |" in rows[0]


def test_a_claim_on_the_error_rate_scale_compares_within_its_own_margin():
    """With ``error_ratio`` the margin is on the error-rate scale (0.975 at 1.1x: 0.25 points below), and so is
    every equivalence test of the claim: the kinds' and the precisions'."""
    from cnnlab.claims.report import precision_table

    result = _two_kinds(0.0)
    result.claim = {**result.claim, "error_ratio": 1.1}
    assert result.allowed(0.975) == pytest.approx(0.0025)
    text = kinds.kinds_markdown([result])
    assert "+-0.25 pt" in text and "+-0.50 pt" not in text, text

    rng = np.random.default_rng(3)
    float32 = [_Run(v, s, "avx512_bf16") for s, v in enumerate(accuracies(rng, (10,), failure=0))]
    bf16 = [_Run(run.data.metrics["test_accuracy"] + 0.001, s, "avx512_bf16") for s, run in enumerate(float32)]
    claim = {"tolerance": TOLERANCE, "error_ratio": 1.1, "targets": [{"metric": "test_accuracy", "value": 0.975}]}
    results = [
        ClaimResult(name="c", claim=claim, runs=runs, design=Design(3, 10), precision=precision)
        for precision, runs in (("float32", float32), ("bf16", bf16))
    ]
    (row,) = precision_table(results).to_dict("records")
    assert row["tolerance"] == pytest.approx(0.0025)


def test_report_with_one_kind_names_it_and_old_runs_are_unrecorded():
    result = _two_kinds(0.0)
    result.by_kind = {}
    assert kinds.kinds_markdown([result]) == "Machine kind of every seed: mnist_simple: `avx512_bf16`."
    result.runs, result.kind = [_Run(0.97, 0, None)], ""  # runs from before machines were tagged
    assert "`unrecorded`" in kinds.kinds_markdown([result])


@pytest.mark.slow
def test_a_second_machine_kind_trains_its_own_seeds_against_the_same_store(tmp_path, idx_dir, pin_mnist, monkeypatch):
    from cnnlab.claims.reproduce import reproduce
    from tests.conftest import compose_config, tiny_reproduction

    overrides = ["seeds=2", "verdicts=false", "claims=[mnist_simple]", *tiny_reproduction(idx_dir, tmp_path)]
    cfg = compose_config(*overrides, config_name="reproduce_config")
    here = kinds.this_kind()
    _, first, _ = reproduce(cfg, overrides, lambda extra: compose_config(*extra))
    assert first[0].skipped == 0 and len(first[0].runs) == 2
    monkeypatch.setattr(kinds, "this_kind", lambda: "amx")
    monkeypatch.setattr(kinds, "run_kind", lambda run: "amx" if run.info.run_id not in ids else here)
    ids = {run.info.run_id for run in first[0].runs}
    _, second, report = reproduce(cfg, overrides, lambda extra: compose_config(*extra))
    assert second[0].skipped == 0 and not ids & {run.info.run_id for run in second[0].runs}
    assert set(second[0].by_kind) == {here, "amx"} and all(len(v) == 2 for v in second[0].by_kind.values())
    assert "all kinds pooled" in report["markdown"]
    _, third, _ = reproduce(cfg, overrides, lambda extra: compose_config(*extra))
    assert third[0].skipped == 2  # the second kind's seeds now count as done on it


def test_reused_runs_are_this_kind_and_thread_count_and_older_runs_count_their_cores(monkeypatch):
    """A run from before threads were recorded took TensorFlow's default, a thread per CPU (``machine.cores``): on
    as many threads it is reused, as the seeds files in the tree are; a run with neither tag is not."""
    from cnnlab import machine

    def run(run_id: str, kind: str, **tags: str) -> object:
        stored = _Run(0.97, 0, kind)
        stored.data.tags |= {key.replace("_", "."): value for key, value in tags.items()}
        stored.info = type("Info", (), {"run_id": run_id})()
        return stored

    runs = [
        run("two", "avx512_bf16", machine_threads="2", machine_cores="2"),
        run("one", "avx512_bf16", machine_threads="1", machine_cores="2"),
        run("older", "avx512_bf16", machine_cores="2"),
        run("unknown", "avx512_bf16"),
        run("elsewhere", "amx", machine_threads="2", machine_cores="2"),
    ]
    client = type("Client", (), {"search_runs": lambda self, *args, **kwargs: runs})()
    for threads, expected in ((2, ["two", "older"]), (1, ["one"])):
        monkeypatch.setattr(machine, "intra_op_threads", lambda threads=threads: threads)
        found = kinds.finished_runs(client, "0", {"cnnlab.claim": "mnist_simple"}, "avx512_bf16")
        assert [r.info.run_id for r in found] == expected
    assert len(kinds.finished_runs(client, "0", {"cnnlab.claim": "mnist_simple"})) == 5  # what a report shows


@pytest.mark.slow
def test_another_thread_count_trains_its_own_seeds_against_the_same_store(
    tmp_path, idx_dir, pin_mnist, monkeypatch, capsys
):
    """The same seed split over other intra-op threads rounds differently (docs/runs.md), so a reproduction on
    another thread count does not reuse the seeds, and one on the same count does. The count is changed after
    TensorFlow started, so the second reproduction's runs are tagged, and looked up, with it while its kernels keep
    the first count: this checks the lookup by the recorded count, not the rounding."""
    from cnnlab import machine
    from cnnlab.claims.reproduce import reproduce
    from tests.conftest import compose_config, tiny_reproduction

    overrides = ["seeds=2", "verdicts=false", "claims=[mnist_simple]", *tiny_reproduction(idx_dir, tmp_path)]
    cfg = compose_config(*overrides, config_name="reproduce_config")
    _, first, _ = reproduce(cfg, overrides, lambda extra: compose_config(*extra))
    here = machine.intra_op_threads()
    assert {run.data.tags["machine.threads"] for run in first[0].runs} == {str(here)}
    other = 1 if here != 1 else 2
    monkeypatch.setenv(machine.THREADS_ENV, str(other))
    capsys.readouterr()
    _, second, _ = reproduce(cfg, overrides, lambda extra: compose_config(*extra))
    out = capsys.readouterr().out
    assert second[0].skipped == 0 and out.count(": training (") == 2 and "already FINISHED" not in out
    assert {run.data.tags["machine.threads"] for run in second[0].runs} == {str(other)}
    _, third, _ = reproduce(cfg, overrides, lambda extra: compose_config(*extra))
    assert third[0].skipped == 2 and {run.info.run_id for run in third[0].runs} == {
        run.info.run_id for run in second[0].runs
    }
