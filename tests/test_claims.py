"""Verdict arithmetic on known numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cnnlab.claims.stats import binomial_se, t_interval
from cnnlab.claims.verdict import INCONCLUSIVE, NO_CLAIM, NOT_REPRODUCED, REPRODUCED, judge


def test_t_interval_known_numbers():
    # mean 0.98, sample sd 0.01, n=3: half width = t(0.975, 2) * 0.01 / sqrt(3) = 4.302653 * 0.0057735 = 0.0248414
    interval = t_interval([0.97, 0.98, 0.99])
    assert interval.mean == pytest.approx(0.98)
    assert interval.std == pytest.approx(0.01)
    assert interval.high - interval.mean == pytest.approx(0.0248414, abs=1e-6)
    assert interval.low == pytest.approx(0.98 - 0.0248414, abs=1e-6)


def test_single_value_interval_is_unbounded():
    interval = t_interval([0.5])
    assert math.isinf(interval.low) and math.isinf(interval.high) and math.isnan(interval.std)


def test_binomial_standard_error():
    assert binomial_se(0.9, 10_000) == pytest.approx(0.003)


@pytest.mark.parametrize(
    "values,claimed,n,expected",
    [
        ([0.975, 0.976, 0.977], 0.9757, 10_000, REPRODUCED),  # interval contains the claim
        ([0.990, 0.991, 0.992], 0.9757, 10_000, REPRODUCED),  # interval above the claim
        ([0.950, 0.951, 0.952], 0.9757, 10_000, NOT_REPRODUCED),  # far below
        ([0.9740, 0.9741, 0.9742], 0.9757, 10_000, INCONCLUSIVE),  # below, within 1 SE (0.0016)
        ([0.99, 0.99], 0.95, 10_000, INCONCLUSIVE),  # two seeds only
        ([], 0.95, 10_000, INCONCLUSIVE),
        ([0.9, 0.91, 0.92], None, 10_000, NO_CLAIM),
    ],
)
def test_verdicts(values, claimed, n, expected):
    assert judge(values, claimed, n).status == expected


# --- the reproduction on tiny synthetic data -------------------------------------------------------------------


@pytest.fixture
def reproduce_setup(tmp_path, idx_dir, pin_mnist):
    from tests.conftest import compose_config

    passthrough = [
        f"dataset.local_dir={idx_dir}",
        "dataset.sources=[local]",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "tracking.log_model=false",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
    ]
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

    monkeypatch.setattr(train_module, "train", real_train)
    parent_id, results, report = reproduce(cfg, overrides, compose)
    out = capsys.readouterr().out
    assert parent_id == first_parent
    assert out.count("already FINISHED") == 2
    assert [r.skipped for r in results] == [2, 0]
    assert all(len(r.runs) == 2 for r in results)
    table = report["table"]
    assert list(table["metric"]) == ["test_accuracy", "accuracy", "val_accuracy"]
    assert set(table["verdict"]) <= {"inconclusive"}  # 2 seeds: never a verdict
    assert (table["seeds"] == 2).all()
    assert "| mnist_simple | float32 | test_accuracy | 97.57% |" in report["markdown"]


@pytest.mark.slow
def test_report_renders_html_with_figures(reproduce_setup, tmp_path):
    from mlflow.tracking import MlflowClient

    from cnnlab.claims.reproduce import reproduce

    cfg, overrides, compose = reproduce_setup
    parent_id, results, report = reproduce(cfg, overrides, compose)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"claims.csv", "report.md", "report.html"} <= artifacts
    page = Path(client.download_artifacts(parent_id, "report.html")).read_text()
    assert page.count("data:image/png;base64,") == 3  # two claims' learning curves and the distribution
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
    from tests.conftest import compose_config

    _, overrides, compose = reproduce_setup
    passthrough = [o for o in overrides if not o.startswith(("seeds=", "claims="))]
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
