"""compare: MLflow runs into a sorted table, CSV and Markdown output, and a metric-vs-param plot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_the_plot_goes_to_the_commands_output_folder_not_the_working_directory(store, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab.compare", f"tracking_uri={store}", "dataset=fashion"]
        + ["params=[optimizer.learning_rate]", "plot_x=optimizer.learning_rate"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    said = next(line for line in result.stderr.splitlines() if line.startswith("saved the plot to "))
    path = Path(said.removeprefix("saved the plot to "))
    assert path.name == "compare.png" and path.stat().st_size > 1000
    assert path.parent.parent.parent == tmp_path / "outputs"  # outputs/<date>/<time>/compare.png
    assert not (tmp_path / "compare.png").exists()
    repository = Path(__file__).resolve().parents[1]
    ignored = subprocess.run(["git", "check-ignore", "-q", "outputs/2026-01-01/00-00-00/compare.png"], cwd=repository)
    assert ignored.returncode == 0  # git-ignored where a user runs it, the repository's root


@pytest.mark.slow
def test_a_study_lists_its_trials_ranked_with_their_hyperparameters_and_its_noise_reruns_apart(
    tmp_path, sweep_overrides, monkeypatch
):
    import pandas as pd

    from cnnlab.commands.runs_table import render, search
    from cnnlab.tuning import analysis
    from cnnlab.tuning.run_study import run_study
    from tests.conftest import sweep_config

    # Seed-noise reruns are spent for importance, from 5 finished trials on; two stand in for five, and the forest
    # is skipped (tests/test_analysis.py tests it): what is under test is how compare lists the study's runs.
    monkeypatch.setattr(analysis, "MIN_TRIALS_FOR_IMPORTANCE", 2)
    monkeypatch.setattr(analysis, "importance", lambda *args, **kwargs: pd.DataFrame(columns=analysis.COLUMNS))
    summary = run_study(sweep_config(*sweep_overrides, "sweep.noise_seeds=1"))
    assert summary["noise"] is not None and summary["noise"].dof == 2  # both trials retrained once
    options = {
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "experiments": ["cnnlab-sweep-toy"],
        "metrics": ["val_accuracy"],
        "sort_by": "val_accuracy",
    }
    table = search(OmegaConf.merge(OmegaConf.structured(CompareConfig), options))
    assert list(table["role"]) == ["trial", "trial"] and list(table["run"].str[:6]) == ["trial-"] * 2
    assert list(table["val_accuracy"]) == sorted(table["val_accuracy"], reverse=True)
    assert table.attrs["noise_left_out"] == 2
    assert summary["study"].parent_run_id not in set(table["run_id"])  # the study's own run is not a row
    trials = summary["table"].set_index("trial")
    for row in table.to_dict("records"):
        trial = trials.loc[int(row["run"].removeprefix("trial-"))]
        assert row["run_id"] == trial["run_id"]
        # the searched keys, as the study's trials table holds them
        assert row["optimizer.learning_rate"] == pytest.approx(trial["optimizer.learning_rate"])
        assert row["model.blocks.0.filters"] == trial["model.blocks.0.filters"]
        assert row["optimizer.name"] == trial["optimizer.name"]
    with_noise = search(OmegaConf.merge(OmegaConf.structured(CompareConfig), {**options, "noise_reruns": True}))
    assert list(with_noise["role"]) == ["trial", "trial", "noise", "noise"]
    assert list(with_noise["run_id"][:2]) == list(table["run_id"])  # still ranked among the trials alone
    assert sorted(with_noise["run"][2:]) == ["noise-trial-1-s1", "noise-trial-2-s1"]
    text = render(with_noise, "table").split("seed-noise reruns (trials retrained on other seeds; not ranked):")
    assert len(text) == 2 and "noise-trial" not in text[0] and text[1].count("noise-trial") == 2


def test_the_command_says_how_many_noise_reruns_it_left_out_and_lists_them_on_request(tmp_path):
    """A store shaped as a study leaves it (parent, two trials, a seed-noise rerun scoring above both), read by the
    command as a user runs it."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("cnnlab-sweep-s")
    with mlflow.start_run(experiment_id=experiment, run_name="study-s", tags={"cnnlab.study": "s"}) as parent:
        for number, rate, accuracy in ((1, 0.001, 0.8), (2, 0.01, 0.7)):
            tags = {"cnnlab.study": "s", "cnnlab.trial_id": str(number - 1), "cnnlab.trial": str(number)}
            with mlflow.start_run(experiment_id=experiment, run_name=f"trial-{number:03d}", nested=True, tags=tags):
                mlflow.log_params({"hp.optimizer.learning_rate": rate, "optimizer.learning_rate": rate})
                mlflow.log_metric("val_accuracy", accuracy)
        noise = {"cnnlab.study": "s", "cnnlab.noise_of": "1", "cnnlab.trial": "2", "cnnlab.seed": "1"}
        with mlflow.start_run(experiment_id=experiment, run_name="noise-trial-2-s1", nested=True, tags=noise):
            mlflow.log_metric("val_accuracy", 0.9)

    def compare(*extra: str) -> subprocess.CompletedProcess:
        options = [f"tracking_uri={uri}", "metrics=[val_accuracy]", "sort_by=val_accuracy", "params=[]", "--csv"]
        command = [sys.executable, "-m", "cnnlab.compare", *options, *extra]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)

    default = compare()
    assert default.returncode == 0, default.stderr
    rows = [line.split(",") for line in default.stdout.strip().splitlines()]
    assert rows[0] == ["run", "role", "experiment", "status", "optimizer.learning_rate", "val_accuracy", "run_id"]
    assert [row[:2] for row in rows[1:]] == [["trial-001", "trial"], ["trial-002", "trial"]]
    assert parent.info.run_id not in default.stdout
    assert "1 seed-noise rerun(s) of sweep trials left out; noise_reruns=true lists them" in default.stderr
    shown = compare("noise_reruns=true")
    assert [line.split(",")[:2] for line in shown.stdout.strip().splitlines()[1:]] == [
        ["trial-001", "trial"],
        ["trial-002", "trial"],
        ["noise-trial-2-s1", "noise"],  # after the ranked trials, though it scored above them
    ]
    assert "left out" not in shown.stderr
    # The default ranks by test_accuracy, which trials never have: the study is ranked by what it searched on.
    command = [sys.executable, "-m", "cnnlab.compare", f"tracking_uri={uri}", "params=[]", "--csv"]
    ranked = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert [line.split(",")[0] for line in ranked.stdout.strip().splitlines()[1:]] == ["trial-001", "trial-002"]
    assert "ranked by val_accuracy: no run shown has test_accuracy" in ranked.stderr
