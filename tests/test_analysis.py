"""Study analysis by simulation with known truth: seed noise, importance above its floor, the Pareto front, pruning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from cnnlab.tuning import analysis

SPACE = OmegaConf.create(
    [
        {"key": "real", "type": "float", "min": 0.0, "max": 1.0, "sampling": "linear", "step": None},
        {"key": "dummy", "type": "choice", "values": [16, 32, 64], "sampling": "linear", "step": None},
    ]
)


def simulated_study(seed: int, effect: float, noise_sd: float, trials: int = 20):
    """Objective = 0.9 + effect * real + noise; ``dummy`` does nothing."""
    rng = np.random.default_rng(seed)
    real = rng.uniform(0, 1, trials)
    dummy = rng.choice([16, 32, 64], trials)
    objective = 0.9 + effect * real + rng.normal(0, noise_sd, trials)
    table = pd.DataFrame(
        {"trial": [str(i) for i in range(trials)], "status": "COMPLETED", "val_accuracy": objective}
    ).assign(real=real, dummy=dummy)
    return analysis.mirror(table, SPACE, "val_accuracy", maximize=True)


def test_seed_noise_pools_the_spread_of_repeated_trials():
    rng = np.random.default_rng(1)
    runs = {str(trial): list(0.8 + 0.01 * trial + rng.normal(0, 0.004, 3)) for trial in range(300)}
    noise = analysis.seed_noise(runs)
    assert noise.dof == 600
    assert noise.sd == pytest.approx(0.004, rel=0.06)  # pooled over 600 degrees of freedom: within ~3% sd
    assert analysis.seed_noise({"0": [0.9], "1": [0.8]}) is None  # nothing repeated, no spread to pool


def test_real_effect_ranks_first_and_the_dummy_is_marked_as_noise():
    marked = 0
    for seed in range(6):
        table = analysis.importance(simulated_study(seed, 0.03, 0.005), 0.005, draws=19, n_trees=16, seed=seed)
        assert list(table["hyperparameter"])[0] == "real"
        verdicts = dict(zip(table["hyperparameter"], table["verdict"], strict=True))
        assert verdicts["real"] == "above noise"
        marked += verdicts["dummy"] == "indistinguishable from noise"
    assert marked >= 5  # the floor is a 5% test: a dummy escapes it in about 1 study of 20


def test_under_pure_noise_few_hyperparameters_rise_above_the_floor():
    above = 0
    for seed in range(20):
        study = simulated_study(100 + seed, 0.0, 0.005, trials=16)
        table = analysis.importance(study, 0.005, draws=19, n_trees=8, seed=seed)
        above += int((table["verdict"] == "above noise").sum())
    # 40 tests at 5%: 2 expected; 6 or more has probability 1.4% if the floor holds its level (60 studies of 2
    # hyperparameters, simulated while writing this: 4 of 120 rose above it).
    assert above <= 5


def test_importance_without_a_noise_measurement_says_so_and_needs_enough_trials():
    table = analysis.importance(simulated_study(0, 0.03, 0.005), None, n_trees=16)
    assert set(table["verdict"]) == {"no noise measurement"}
    assert table["noise_floor"].isna().all()
    assert analysis.importance(simulated_study(0, 0.03, 0.005, trials=4), 0.005).empty
    assert analysis.importance(simulated_study(0, 0.0, 0.0), 0.005).empty  # all trials alike: nothing to attribute


def test_monte_carlo_floor_is_exceeded_by_a_null_draw_one_time_in_twenty():
    rng = np.random.default_rng(3)
    draws = rng.normal(size=(4000, 40))  # column 0 plays the observation, the other 39 its null draws
    exceeded = np.mean([row[0] > analysis.monte_carlo_floor(list(row[1:])) for row in draws])
    assert exceeded == pytest.approx(0.05, abs=0.012)  # 4000 trials: Monte-Carlo sd 0.0034
    with pytest.raises(ValueError, match="at least 19"):
        analysis.monte_carlo_floor([0.1] * 10)


def test_pareto_front_keeps_only_points_nothing_beats_on_cost_and_score():
    costs = np.array([1.0, 2.0, 3.0, 4.0, 2.5])
    scores = np.array([0.80, 0.85, 0.84, 0.90, 0.86])
    assert list(analysis.pareto_front(costs, scores, maximize=True)) == [0, 1, 4, 3]
    assert list(analysis.pareto_front(costs, scores, maximize=False)) == [0]


def test_pruned_trials_are_mirrored_as_pruned_and_left_out_of_importance():
    from optuna.trial import TrialState

    study = simulated_study(0, 0.03, 0.005)
    table = pd.DataFrame(
        [
            {"trial": t.user_attrs["trial"], "status": "COMPLETED", "val_accuracy": t.value, **t.params}
            for t in study.trials
        ]
    )
    table.loc[:4, "status"] = "PRUNED"
    mirrored = analysis.mirror(table, SPACE, "val_accuracy", maximize=True)
    assert len(mirrored.get_trials(states=(TrialState.PRUNED,))) == 5
    assert len(mirrored.get_trials(states=(TrialState.COMPLETE,))) == 15


def epoch_store(tmp_path, histories: dict[str, list[float]], pruned: tuple[str, ...] = ()):
    """A study parent run whose finished child trials logged ``val_accuracy`` per epoch (step = epoch, 1-based)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    experiment = client.create_experiment("study", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment).info.run_id
    for trial, values in histories.items():
        tags = {"mlflow.parentRunId": parent, "cnnlab.trial_id": trial}
        if trial in pruned:
            tags["cnnlab.pruned"] = "pruned after epoch 1"
        run = client.create_run(experiment, tags=tags).info.run_id
        for epoch, value in enumerate(values, start=1):
            client.log_metric(run, "val_accuracy", value, step=epoch)
        client.set_terminated(run)
    from cnnlab.tuning.study import Study

    return Study(
        name="study",
        folder=tmp_path,
        experiment_id=experiment,
        parent_run_id=parent,
        command="",
        objective="val_accuracy",
        direction="max",
        budget=None,
        resumed=False,
    )


def pruning_config(method: str, **sweep):
    return OmegaConf.create(
        {
            "sweep": {
                "pruning": method,
                "pruning_percentile": 25.0,
                "pruning_warmup_trials": 3,
                "pruning_warmup_epochs": 1,
                "direction": "max",
                **sweep,
            }
        }
    )


def test_median_pruning_stops_a_trial_behind_the_median_at_the_same_epoch(tmp_path):
    from cnnlab.tuning.pruning import EpochPruner

    study = epoch_store(
        tmp_path,
        {"0": [0.80, 0.85, 0.86], "1": [0.70, 0.75, 0.80], "2": [0.82, 0.86, 0.88], "9": [0.10, 0.10, 0.10]},
        pruned=("9",),  # a pruned trial is not a yardstick: counted, the median at epoch 2 would drop
    )
    pruner = EpochPruner(pruning_config("median"), study)
    assert pruner.check({0: 0.10}) is None  # the first epoch is warm-up
    reason = pruner.check({0: 0.70, 1: 0.84})
    assert reason is not None and "epoch 2" in reason and "median 0.8500 of 3 finished trials" in reason
    assert pruner.check({0: 0.70, 1: 0.851}) is None
    # percentile 25 keeps the top quarter: the line is the 75th percentile of 0.75, 0.85, 0.86
    assert "top 25% line 0.8550" in EpochPruner(pruning_config("percentile"), study).check({0: 0.7, 1: 0.851})


def test_pruning_waits_for_its_warm_up_trials(tmp_path):
    from cnnlab.tuning.pruning import EpochPruner

    study = epoch_store(tmp_path, {"0": [0.80, 0.85], "1": [0.82, 0.86]})
    assert EpochPruner(pruning_config("median"), study).check({0: 0.1, 1: 0.1}) is None
    assert EpochPruner(pruning_config("median", pruning_warmup_trials=2), study).check({0: 0.1, 1: 0.1})


def test_slice_plot_of_numeric_choices_logs_nothing_at_info(caplog):
    """Choice values such as filters 32 and 64 are categories to matplotlib, which said so at INFO for every axis of
    every refresh: two dozen lines in a three-trial study's output."""
    import logging

    import optuna

    study = optuna.create_study(direction="maximize")
    for filters, score in (("32", 0.7), ("64", 0.8), ("32", 0.75)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"filters": filters},
                distributions={"filters": optuna.distributions.CategoricalDistribution(["32", "64"])},
                value=score,
            )
        )
    with caplog.at_level(logging.INFO):
        figure = analysis.slice_figure(study, "slice")
    analysis.plots.plt.close(figure)
    assert not [record for record in caplog.records if record.name.startswith("matplotlib")]


def test_a_study_too_small_for_importance_says_why_and_spends_no_noise_reruns():
    from types import SimpleNamespace

    import pandas as pd

    from cnnlab.tuning.analysis import MIN_TRIALS_FOR_IMPORTANCE, importance_skipped
    from cnnlab.tuning.run_study import measure_seed_noise

    line = importance_skipped(3)
    assert line.startswith("importance skipped: 3 finished trial(s)") and "no seed-noise reruns" in line
    assert f"fewer than {MIN_TRIALS_FOR_IMPORTANCE}" in line and "sweep.max_trials" in line
    table = pd.DataFrame({"trial": ["0", "1", "2"], "status": ["COMPLETED"] * 3, "val_accuracy": [0.5, 0.6, 0.7]})
    cfg = SimpleNamespace(sweep=SimpleNamespace(noise_seeds=2), seed=0)
    study = SimpleNamespace(objective="val_accuracy")
    assert measure_seed_noise(cfg, tuner=None, study=study, table=table) is None  # nothing trained, no tuner needed
