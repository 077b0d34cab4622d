"""Sweeps on synthetic data: space validation, each tuner, the MLflow parent/child structure, and resume."""

from __future__ import annotations

import gc
import shlex
import sys
import warnings
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cnnlab.config import ConfigError
from cnnlab.tuning.space import check_space
from tests.conftest import sweep_config


@pytest.mark.parametrize(
    "entry,message",
    [
        ("{key: model.blocks.0.filterz, type: choice, values: [8]}", "not a key of the run config"),
        ("{key: optimizer.learning_rate, type: float, min: 0.1, max: 0.01}", "empty range"),
        (
            "{key: optimizer.learning_rate, type: float, min: 0.0, max: 0.01, sampling: log}",
            "log sampling needs min > 0",
        ),
        ("{key: model.blocks.0.filters, type: choice, values: []}", "non-empty `values`"),
        ("{key: model.blocks.0.kernel_size, type: int, min: 3, max: 40}", "larger than the 28x28"),
        (
            "{key: optimizer.momentum, type: float, min: 0, max: 0.5, parent: optimizer.name, parent_values: [sgd]}",
            "must be a choice listed before it",
        ),
    ],
)
def test_bad_space_is_rejected_before_any_trial(tmp_path, entry, message):
    cfg = sweep_config("model=simple", f"sweep.space=[{entry}]", f"sweep.directory={tmp_path}/s")
    with pytest.raises(ConfigError, match=message):
        check_space(cfg)
    assert not (tmp_path / "s").exists()


def test_shipped_studies_compose_and_validate():
    for study in ("default", "dropout_rates"):
        check_space(sweep_config(f"sweep={study}"))


def test_numpy_values_from_bayesian_optimisation_apply_to_the_typed_config():
    """keras-tuner's Gaussian process proposes np.float64 and np.int64; the typed config takes them as numbers."""
    import numpy as np

    from cnnlab.tuning.space import apply

    cfg = sweep_config("sweep=default", "optimizer=rmsprop")
    values = {
        "optimizer.rho": np.float64(0.864057430721123),
        "optimizer.learning_rate": np.float64(0.002),
        "model.blocks.dense1.units": np.int64(192),
    }
    trial = apply(cfg, values)
    assert trial.optimizer.rho == pytest.approx(0.864057430721123) and trial.optimizer.learning_rate == 0.002
    assert trial.model.blocks[10].units == 192 and type(trial.model.blocks[10].units) is int


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband", "grid"])
def test_the_study_seed_fixes_the_search_seed_zero_included(tuner):
    """keras-tuner takes seed 0 for "no seed"; a study on cnnlab's default seed must still draw the same trials."""
    from cnnlab.tuning.tuners import make_oracle

    def oracle_seed(seed: int) -> int:
        return make_oracle(sweep_config(f"tuner={tuner}", f"seed={seed}")).seed

    seeds = {seed: [oracle_seed(seed), oracle_seed(seed)] for seed in (0, 1)}
    assert seeds[0][0] == seeds[0][1] and seeds[1][0] == seeds[1][1] and seeds[0][0] != seeds[1][0]


@pytest.fixture
def plot_refreshes(monkeypatch) -> list:
    """Each redrawing of a study's plots, recorded (and still done)."""
    from cnnlab.tuning import analysis

    calls, refresh = [], analysis.refresh
    monkeypatch.setattr(analysis, "refresh", lambda *args, **kwargs: calls.append(args) or refresh(*args, **kwargs))
    return calls


def children(client: MlflowClient, summary) -> list:
    study = summary["study"]
    return client.search_runs([study.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{study.parent_run_id}'")


@pytest.mark.slow
@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband", "grid"])
def test_two_trial_study_per_tuner(tmp_path, sweep_overrides, tuner, monkeypatch):
    from cnnlab.tuning import hypermodel
    from cnnlab.tuning.run_study import run_study

    continued_at_step = []  # a continued Hyperband trial's optimizer step count when its fit starts
    fit = hypermodel.CnnHyperModel.fit

    def recording_fit(self, hp, model, *args, **kwargs):
        if "tuner/trial_id" in hp.values:
            continued_at_step.append(int(model.optimizer.iterations))
        return fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(hypermodel.CnnHyperModel, "fit", recording_fit)
    extra = ["sweep.max_epochs=2", "tuner.factor=2"] if tuner == "hyperband" else []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_study(sweep_config(*sweep_overrides, f"tuner={tuner}", *extra))
    # A Hyperband trial continued from a checkpoint takes back its optimizer's state with its weights: it goes on
    # from the earlier round's steps instead of starting Adam over (Keras skipped that state, with a warning).
    assert not [w for w in caught if "Skipping variable loading for optimizer" in str(w.message)]
    if tuner == "hyperband":
        assert continued_at_step and all(step > 0 for step in continued_at_step), continued_at_step
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.get_run(summary["study"].parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "study-toy"
    runs = children(client, summary)
    trials = summary["table"]
    assert len(runs) == len(trials) >= 2  # sweep.noise_seeds=0: no retrained trials beside them
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert sorted(run.info.run_name for run in runs)[0] == "trial-001"  # numbered as keras-tuner prints it
    for run in runs:
        assert "hp.optimizer.learning_rate" in run.data.params
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")][0] >= 1
        if tuner == "hyperband":
            assert "hyperband.bracket" in run.data.tags
    if tuner == "hyperband":  # a continued trial names the one it continues by the number that trial's run bears
        continued = [r.data.tags.get("hyperband.continues_trial") for r in runs]
        continued = [number for number in continued if number is not None]
        names = {r.info.run_name for r in runs}
        assert continued and all(f"trial-{int(number):03d}" in names for number in continued)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_trials.csv", "best_trials.md", "best.yaml"} <= artifacts
    assert {"parallel_coordinates.png", "optimization_history.png", "slice.png", "pareto_front.png"} <= {
        a.path.split("/")[-1] for a in client.list_artifacts(parent.info.run_id, "plots")
    }
    assert trials["val_accuracy"].notna().all()
    assert trials["num_params"].notna().all() and (trials["seconds_per_epoch"] > 0).all()
    # Warm start: the first trial trains the base configuration where the space can hold it (Adam at 1e-3;
    # the base's 64 filters are not among the choices [8, 16]).
    first = trials.sort_values("trial").iloc[0]
    assert first["optimizer.name"] == "adam" and first["optimizer.learning_rate"] == pytest.approx(1e-3)


def test_warm_start_off_leaves_the_first_trial_to_the_search(tmp_path, sweep_overrides):
    import keras_tuner as kt

    from cnnlab.tuning.space import declare
    from cnnlab.tuning.tuners import make_oracle

    def first_values(*overrides):
        cfg = sweep_config(*sweep_overrides, *overrides)
        oracle = make_oracle(cfg)
        hp = kt.HyperParameters()
        declare(hp, cfg.sweep.space, cfg)
        oracle.update_space(hp)
        return oracle._random_values()

    assert first_values()["optimizer.learning_rate"] == pytest.approx(1e-3)
    assert first_values("sweep.warm_start=false")["optimizer.learning_rate"] != pytest.approx(1e-3)


@pytest.mark.slow
def test_pruned_trial_stops_early_and_says_so(tmp_path, sweep_overrides, monkeypatch, plot_refreshes):
    from cnnlab.tuning import pruning, tuners
    from cnnlab.tuning.run_study import run_study

    monkeypatch.setattr(tuners, "PLOT_REFRESH_S", 0.0)  # plots due after every trial

    # The rule is tested on its own (tests/test_analysis.py); here: what pruning does to a trial, wherever it hits.
    def prune_once_a_trial_has_finished(self, epochs):
        return "pruned after epoch 1: behind the median (test)" if self.finished_histories() else None

    monkeypatch.setattr(pruning.EpochPruner, "check", prune_once_a_trial_has_finished)
    summary = run_study(sweep_config(*sweep_overrides, "sweep.pruning=median", "sweep.max_epochs=2"))
    table = summary["table"].set_index("trial")
    assert list(table["status"].sort_index()) == ["COMPLETED", "PRUNED"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = {run.data.tags["cnnlab.trial_id"]: run for run in children(client, summary)}
    assert runs["1"].data.tags["cnnlab.pruned"] == "pruned after epoch 1: behind the median (test)"
    assert "**Pruned**: pruned after epoch 1" in runs["1"].data.tags["mlflow.note.content"]
    assert "cnnlab.pruned" not in runs["0"].data.tags
    epochs = {trial: len(client.get_metric_history(run.info.run_id, "val_accuracy")) for trial, run in runs.items()}
    assert epochs == {"0": 2, "1": 1}
    assert len(plot_refreshes) == 3  # after each trial, the pruned one included, and the report


def test_pruning_is_refused_where_it_cannot_work(sweep_overrides):
    from cnnlab.config import validate

    with pytest.raises(ConfigError, match="Hyperband already stops trials"):
        validate(sweep_config(*sweep_overrides, "tuner=hyperband", "sweep.pruning=median"))


@pytest.mark.slow
def test_study_measures_seed_noise_and_ranks_importance_above_it(tmp_path, sweep_overrides, capsys, caplog):
    from cnnlab.tuning.run_study import run_study, summary_text

    overrides = [*sweep_overrides, "sweep.max_trials=5", "sweep.noise_seeds=1"]
    summary = run_study(sweep_config(*overrides))
    # Every trial logs its model, whose signature needs one prediction: a predict function traced per trial made
    # TensorFlow warn about retracing from the fifth trial on, in real studies too. (Its warning about each new
    # model's train function needs trials as tiny as these: a real epoch calls that function many times untraced.)
    retracing = [r.getMessage() for r in caplog.records if "tf.function retracing" in r.getMessage()]
    assert not [message[:120] for message in retracing if "predict_function" in message]
    noise = summary["noise"]
    assert noise.dof == 2 and len(noise.runs) == 2  # the best and the median trial, one extra seed each
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    retrained = [run for run in children(client, summary) if "cnnlab.noise_of" in run.data.tags]
    assert sorted(run.data.tags["cnnlab.trial"] for run in retrained) == sorted(noise.runs)  # by trial number
    assert {int(run.data.tags["cnnlab.noise_of"]) + 1 for run in retrained} == {int(t) for t in noise.runs}
    assert {run.data.tags["cnnlab.seed"] for run in retrained} == {"1"}
    parent = client.get_run(summary["study"].parent_run_id)
    assert parent.data.metrics["seed_noise_sd_val_accuracy"] == pytest.approx(noise.sd)
    importance = summary["importance"]
    assert not importance.empty and set(importance["verdict"]) <= {"above noise", "indistinguishable from noise"}
    assert "importance.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "importance.png" in {a.path.split("/")[-1] for a in client.list_artifacts(parent.info.run_id, "plots")}
    text = summary_text(summary)
    assert "Seed noise: sd" in text
    # The retrain line names this interpreter, which finds cnnlab: a bare `python` outside .venv would not.
    retrain = next(line for line in text.splitlines() if "retrain it" in line).split("retrain it", 1)[1]
    assert Path(shlex.split(retrain)[0]).resolve() == Path(sys.executable).resolve()
    # On demand: the same command over the finished study trains nothing and reports again.
    again = run_study(sweep_config(*overrides))
    assert len(children(client, again)) == len(children(client, summary))
    assert again["noise"].sd == pytest.approx(noise.sd)


@pytest.mark.slow
def test_exported_best_is_a_delta_that_retrains_the_best_trial(tmp_path, sweep_overrides, monkeypatch, plot_refreshes):
    from omegaconf import OmegaConf

    from cnnlab.config import leaves
    from cnnlab.tuning import tuners
    from cnnlab.tuning.run_study import run_study

    monkeypatch.setattr(tuners, "PLOT_REFRESH_S", 3600.0)
    summary = run_study(sweep_config(*sweep_overrides))
    assert len(plot_refreshes) == 1  # no trial ended an hour after the last drawing: drawn once, by the report
    exported = summary["exported"]
    assert exported == tmp_path / "exported" / "experiment" / "best.yaml"
    text = exported.read_text()
    assert text.startswith("# @package _global_")
    assert "  - override /dataset: mnist\n  - override /model: simple\n" in text
    delta = OmegaConf.load(exported)
    assert set(delta) <= {"defaults", "seed", "dataset", "model", "optimizer", "trainer"}  # no tracking, no sweep
    best_row = summary["table"].iloc[0]
    # A key the best trial left at its base value (the warm start's trial 0 may win) is not repeated.
    learning_rate = OmegaConf.select(delta, "optimizer.learning_rate", default=1e-3)
    assert learning_rate == pytest.approx(best_row["optimizer.learning_rate"])
    assert delta.model.blocks[0].filters == best_row["model.blocks.0.filters"]
    # each block holds only what is set: a conv block no null rate or units, a flatten block nothing but its kind
    assert "rate" not in delta.model.blocks[0] and "units" not in delta.model.blocks[0]
    assert [dict(b) for b in delta.model.blocks if b.type == "flatten"] == [{"type": "flatten", "name": "flatten"}]
    assert delta.trainer.epochs == 1  # the study's own setting is kept ...
    assert "batch_size" not in delta.trainer and "loss" not in delta.trainer  # ... defaults are not repeated
    # Hydra composes it from the export folder, as `python -m cnnlab.run --config-dir <folder> experiment=best` does.
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "config", overrides=["hydra.searchpath=[file://" + str(exported.parent.parent) + "]", "experiment=best"]
        )
    trial = summary["best_config"]
    for key, value in leaves(trial).items():
        if key.split(".")[0] in ("seed", "dataset", "model", "optimizer", "trainer"):
            assert leaves(cfg).get(key) == value, key


@pytest.mark.slow
def test_interrupted_study_resumes_toward_the_same_budget(tmp_path, sweep_overrides, monkeypatch):
    from cnnlab.tuning import hypermodel
    from cnnlab.tuning.run_study import run_study

    original_fit = hypermodel.CnnHyperModel.fit
    calls = {"n": 0}

    def interrupt_second_trial(self, hp, model, *args, **kwargs):
        calls["n"] += 1
        calls["frozen"] = gc.get_freeze_count()
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original_fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(hypermodel.CnnHyperModel, "fit", interrupt_second_trial)
    cfg = sweep_config(*sweep_overrides, "sweep.max_trials=3")
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg)
    # what existed before the search was frozen while trials ran (keras-tuner's collections skip it), and is
    # collectable again once the search is interrupted
    assert calls["frozen"] > 100_000 and gc.get_freeze_count() == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("cnnlab-sweep-toy")
    (parent,) = client.search_runs([experiment.experiment_id], filter_string="tags.mlflow.runName = 'study-toy'")
    assert parent.info.status == "KILLED"

    # A process killed with -9 leaves its trial RUNNING; simulate one beside the interrupted trial.
    orphan = client.create_run(
        experiment.experiment_id, run_name="trial-999", tags={"mlflow.parentRunId": parent.info.run_id}
    )

    monkeypatch.setattr(hypermodel.CnnHyperModel, "fit", original_fit)
    summary = run_study(cfg)
    assert summary["study"].parent_run_id == parent.info.run_id
    assert summary["finished_before"] == 1
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"
    runs = children(client, summary)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["cnnlab.trial_id"] for r in finished) == ["0", "1", "2"]
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert {r.info.run_name for r in killed} == {"trial-002", "trial-999"}
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_changed_study_refuses_to_resume(tmp_path, sweep_overrides):
    from cnnlab.tuning.study import Study, write_state

    cfg = sweep_config(*sweep_overrides)
    folder = tmp_path / "sweeps" / "toy"
    folder.mkdir(parents=True)
    write_state(folder / "cnnlab_study.json", {"parent_run_id": "x", "fingerprint": "something else"})
    with pytest.raises(ConfigError, match="sweep.overwrite=true"):
        Study.open(cfg, "python -m cnnlab.sweep")


@pytest.mark.slow
def test_finalists_retrained_over_seeds_and_ranked(tmp_path, sweep_overrides):
    from cnnlab.tuning.run_study import run_study

    summary = run_study(sweep_config(*sweep_overrides, "sweep.finalists.top_k=2", "sweep.finalists.seeds=2"))
    finalists = summary["finalists"]
    assert len(finalists) == 2 and (finalists["seeds"] == 2).all()
    assert list(finalists["ci95_low"]) == sorted(finalists["ci95_low"], reverse=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = children(client, summary)
    retrained = [r for r in runs if r.info.run_name.startswith("finalist-")]
    assert len(retrained) == 4
    assert all("test_accuracy" in r.data.metrics for r in retrained)
    trials = [r for r in runs if r.info.run_name.startswith("trial-")]
    assert all("test_accuracy" not in r.data.metrics for r in trials)  # tuning never touches the test set


@pytest.mark.slow
def test_overwrite_starts_the_study_over_and_then_resumes_it(tmp_path, sweep_overrides):
    from cnnlab.tuning.run_study import run_study

    first = run_study(sweep_config(*sweep_overrides))
    second = run_study(sweep_config(*sweep_overrides, "sweep.overwrite=true"))
    assert second["study"].parent_run_id != first["study"].parent_run_id
    assert second["finished_before"] == 0 and len(second["table"]) == 2
    assert (tmp_path / "sweeps" / "toy" / "cnnlab_study.json").exists()
    third = run_study(sweep_config(*sweep_overrides))
    assert third["study"].parent_run_id == second["study"].parent_run_id
    assert third["finished_before"] == 2


@pytest.mark.parametrize("chief", [False, True])
def test_reloaded_oracle_retrains_only_what_was_really_running(tmp_path, sweep_overrides, chief):
    import json

    import keras_tuner as kt

    from cnnlab.tuning.space import declare
    from cnnlab.tuning.tuners import make_oracle

    cfg = sweep_config(*sweep_overrides, "sweep.max_trials=5")

    def oracle():
        made = make_oracle(cfg)
        made.keep_running_trials = chief
        made._set_project_dir(tmp_path, "study")
        hp = kt.HyperParameters()
        declare(hp, cfg.sweep.space, cfg)
        made.update_space(hp)
        return made

    first = oracle()
    ended, running = first.create_trial("tuner1"), first.create_trial("tuner2")
    first.update_trial(ended.trial_id, {"val_accuracy": 0.5})
    ended.status = "COMPLETED"
    first.end_trial(ended)
    # keras-tuner saves its state before it forgets an ended trial: a process killed in between leaves a file that
    # still lists the ended trial as running.
    state_file = tmp_path / "study" / "oracle.json"
    state = json.loads(state_file.read_text())
    state["ongoing_trials"] = {"tuner1": ended.trial_id, "tuner2": running.trial_id}
    state_file.write_text(json.dumps(state))

    reloaded = oracle()
    reloaded.reload()
    assert ended.trial_id not in reloaded._retry_queue  # never trained twice
    if chief:  # the worker training it reports it when it reconnects
        assert reloaded._retry_queue == [] and reloaded.ongoing_trials["tuner2"].trial_id == running.trial_id
    else:  # a single process's running trial died with it: retried
        assert reloaded._retry_queue == [running.trial_id] and not reloaded.ongoing_trials


def test_progress_line_shows_stepped_floats_as_written(tmp_path, capsys):
    from types import SimpleNamespace

    import keras_tuner

    from cnnlab.tuning.study import Study

    hp = keras_tuner.HyperParameters()
    hp.Float("model.blocks.dropout2.rate", 0.0, 0.5, step=0.05)
    hp.values["model.blocks.dropout2.rate"] = 0.1 + 0.2  # what keras-tuner's stepped draws can hold
    trial = SimpleNamespace(trial_id="0003", hyperparameters=hp, score=0.5, status="COMPLETED")
    oracle = SimpleNamespace(trials={"0003": trial}, get_best_trials=lambda count: [])
    study = Study("s", tmp_path, "0", "run", "sweep", "val_accuracy", "max", 4, resumed=False)
    study.report_progress(oracle, trial)
    line = capsys.readouterr().out
    assert "{'model.blocks.dropout2.rate': 0.3}" in line and "trial 4 completed (1/4 done)" in line


@pytest.mark.slow
def test_a_trial_has_one_number_on_the_console_in_mlflow_and_in_the_summary(tmp_path, sweep_overrides, capsys):
    """keras-tuner's console says "Running Trial #1"; the run, its tags, the progress lines, the trials table and the
    summary call that trial 1 too. Two trials are too few for importance: it says so and retrains nothing for noise."""
    import re

    from cnnlab.tuning.run_study import run_study, summary_text

    summary = run_study(sweep_config(*sweep_overrides, "sweep.noise_seeds=2"))
    text = summary_text({**summary, "minutes": 0.0})
    console = capsys.readouterr().out + text
    assert re.findall(r"Running Trial #(\d+)", console) == ["1", "2"]
    assert sorted(re.findall(r"^Trial (\d+) Complete", console, re.M)) == ["1", "2"]
    assert sorted(re.findall(r"\[study toy\] trial (\d+) completed", console)) == ["1", "2"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = children(client, summary)
    assert len(runs) == 2  # no seed-noise reruns for a study too small for importance
    assert {(r.info.run_name, r.data.tags["cnnlab.trial"], r.data.tags["cnnlab.trial_id"]) for r in runs} == {
        ("trial-001", "1", "0"),
        ("trial-002", "2", "1"),
    }
    for run in runs:
        assert run.data.tags["mlflow.note.content"].startswith(f"Trial {run.data.tags['cnnlab.trial']} of study")
    assert sorted(summary["table"]["trial"]) == [1, 2]
    best = summary["table"].iloc[0]
    assert summary["best_trial"] == best["trial"]
    assert f"(trial {best['trial']})" in text
    assert f"trial {best['trial']}, val_accuracy=" in summary["exported"].read_text()
    assert "importance skipped: 2 finished trial(s)" in text and "no seed-noise reruns spent" in text
    assert "seed noise: trial" not in console
