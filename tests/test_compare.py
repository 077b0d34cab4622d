"""compare: MLflow runs into a sorted table, CSV and Markdown output, and a metric-vs-param plot."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest
from omegaconf import OmegaConf

from cnnlab.config import CompareConfig


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("cnnlab-fashion")
    for index, (rate, accuracy) in enumerate([(1e-4, 0.85), (1e-3, 0.91), (1e-2, 0.88)]):
        with mlflow.start_run(experiment_id=experiment, run_name=f"fashion-deep-s{index}", tags={"dataset": "fashion"}):
            mlflow.log_params({"optimizer.learning_rate": rate, "model.name": "deep"})
            mlflow.log_metric("test_accuracy", accuracy)
    with mlflow.start_run(experiment_id=experiment, run_name="mnist-simple-s0", tags={"dataset": "mnist"}):
        mlflow.log_metric("test_accuracy", 0.99)
    return uri


def test_table_filters_and_sorts_best_first(store, tmp_path):
    from cnnlab.commands.runs_table import plot, render, search

    cfg = OmegaConf.merge(
        OmegaConf.structured(CompareConfig),
        {"tracking_uri": store, "dataset": "fashion", "params": ["optimizer.learning_rate", "model.name"]},
    )
    table = search(cfg)
    assert list(table["run"]) == ["fashion-deep-s1", "fashion-deep-s2", "fashion-deep-s0"]
    assert table["optimizer.learning_rate"].dtype.kind == "f"
    assert render(table, "csv").splitlines()[0].startswith("run,experiment,status,optimizer.learning_rate")
    assert render(table, "markdown").splitlines()[1].startswith("|---")
    path = plot(table, "optimizer.learning_rate", "test_accuracy", str(tmp_path / "lr.png"))
    assert (tmp_path / "lr.png").stat().st_size > 1000 and path.endswith("lr.png")


def test_cli_csv_flag(store, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab.compare", "--csv", f"tracking_uri={store}", "dataset=mnist"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("run,") and lines[1].startswith("mnist-simple-s0,")


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"sort_by": "nope"}, "sort_by: 'nope' is not a shown column"),
        ({"plot_x": "optimizer.beta_1"}, "plot_x: 'optimizer.beta_1' is not a shown column"),
        ({"experiments": ["cnnlab-nope"]}, "experiments: no experiment named ['cnnlab-nope']"),
        ({"filter": "metrics.test_accuracy >> 3"}, "filter: MLflow cannot read"),
    ],
)
def test_bad_columns_experiments_and_filters_are_refused_by_name(store, overrides, message):
    from cnnlab.checks import check_compare
    from cnnlab.commands.runs_table import search
    from cnnlab.config import ConfigError

    cfg = OmegaConf.merge(OmegaConf.structured(CompareConfig), {"tracking_uri": store, **overrides})
    with pytest.raises(ConfigError) as refused:
        check_compare(cfg, [])
        search(cfg)
    assert message in str(refused.value)
