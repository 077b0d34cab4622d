"""keras-tuner's split: the HyperModel defines the space, the Oracle searches, the Tuner runs trials and tracks them.

Both the HyperModel and the Tuner go through :mod:`cnnlab.train` to build and fit, so a trial trains exactly as
``cnnlab.run`` would with the same config.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import keras
import keras_tuner as kt
import mlflow
from omegaconf import OmegaConf

from cnnlab import tracking, train
from cnnlab.config import option
from cnnlab.errors import NanLossError
from cnnlab.tuning import space as search_space

log = logging.getLogger(__name__)

HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")


class CnnHyperModel(kt.HyperModel):
    """Maps the space in ``cfg.sweep.space`` onto the one model builder."""

    def __init__(self, cfg: Any, data: train.PreparedData) -> None:
        super().__init__(name=f"cnnlab-{cfg.sweep.name}")
        self.cfg = cfg
        self.data = data

    def trial_config(self, hp: kt.HyperParameters) -> Any:
        values = search_space.declare(hp, self.cfg.sweep.space)
        trial_cfg = search_space.apply(self.cfg, values)
        trial_cfg.trainer.epochs = self.cfg.sweep.max_epochs
        return trial_cfg

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        return train.build_compiled_model(self.trial_config(hp))

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        trial_cfg = self.trial_config(hp)
        callbacks = list(kwargs.get("callbacks", []))
        patience = self.cfg.sweep.early_stopping_patience
        if patience is not None:
            direction = option(self.cfg.sweep.direction)
            callbacks.append(
                keras.callbacks.EarlyStopping(monitor=self.cfg.sweep.objective, mode=direction, patience=patience)
            )
        try:
            history = train.fit(
                model,
                trial_cfg,
                self.data,
                callbacks,
                epochs=kwargs.get("epochs", trial_cfg.trainer.epochs),  # Hyperband sets a trial's epochs itself
                initial_epoch=kwargs.get("initial_epoch", 0),
            )
        except NanLossError as error:
            # keras-tuner records FailedTrialError as a FAILED trial and goes on with the study.
            raise kt.errors.FailedTrialError(f"nan loss: {error}") from error
        mlflow.log_text(train.model_summary(model), "model_summary.txt")
        if trial_cfg.tracking.log_model:
            train.log_keras_model(model, trial_cfg, self.data)
        return history


class TrackedTunerMixin:
    """Runs every trial inside an MLflow child run of the study's parent run, and reports progress per trial."""

    def __init__(self, *args: Any, study: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.study = study

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        cfg = self.hypermodel.trial_config(trial.hyperparameters)
        train.seed_everything(cfg.seed, cfg.trainer.deterministic)
        hp_values = dict(trial.hyperparameters.values)
        tags = {
            "cnnlab.study": self.study.name,
            "cnnlab.trial_id": trial.trial_id,
            "cnnlab.tuner_id": str(getattr(self, "tuner_id", "tuner0")),
            "dataset": cfg.dataset.name,
            "model": cfg.model.name,
            **{f"hyperband.{key.split('/')[1]}": str(hp_values[key]) for key in HYPERBAND_KEYS if key in hp_values},
        }
        description = f"Trial {trial.trial_id} of study {self.study.name!r}.\n\nRerun the study: `{self.study.command}`"
        run_name = f"trial-{int(trial.trial_id):03d}" if trial.trial_id.isdigit() else f"trial-{trial.trial_id}"
        with tracking.tracked_run(
            self.study.experiment_id,
            run_name,
            tags,
            description,
            parent_run_id=self.study.parent_run_id,
            system_metrics_interval=tracking.system_metrics_interval(cfg.tracking),
        ):
            tracking.log_datasets(self.hypermodel.data, cfg.dataset.name)
            mlflow.log_params({f"hp.{key}": str(value) for key, value in hp_values.items()})
            mlflow.log_params(tracking.flatten(cfg))
            mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            results = super().run_trial(trial, *args, **kwargs)
            best = _best_value(results, self.oracle.objective)
            if best is not None:
                mlflow.log_metric(f"best_{self.oracle.objective.name}", best)
        return results

    def on_trial_end(self, trial: Any) -> None:
        super().on_trial_end(trial)
        self.study.report_progress(self.oracle, trial)


def _best_value(results: Any, objective: Any) -> float | None:
    histories = results if isinstance(results, list) else [results]
    values = []
    for history in histories:
        series = getattr(history, "history", {}).get(objective.name, [])
        finite = [value for value in series if math.isfinite(value)]
        if finite:
            values.append(max(finite) if objective.direction == "max" else min(finite))
    return sum(values) / len(values) if values else None


class TrackedRandomSearch(TrackedTunerMixin, kt.RandomSearch):
    pass


class TrackedBayesianOptimization(TrackedTunerMixin, kt.BayesianOptimization):
    pass


class TrackedHyperband(TrackedTunerMixin, kt.Hyperband):
    pass


def make_tuner(cfg: Any, data: train.PreparedData, study: Any) -> kt.Tuner:
    """The tuner named by ``cfg.tuner.name``; its state lives in ``<sweep.directory>/<sweep.name>/``."""
    direction = option(cfg.sweep.direction)
    common = dict(
        hypermodel=CnnHyperModel(cfg, data),
        objective=kt.Objective(cfg.sweep.objective, direction=direction),
        directory=cfg.sweep.directory,
        project_name=cfg.sweep.name,
        overwrite=False,  # Study.open starts over on sweep.overwrite; keras-tuner would delete the study state too
        seed=cfg.seed,
        study=study,
    )
    name = option(cfg.tuner.name)
    if name == "hyperband":
        return TrackedHyperband(
            max_epochs=cfg.sweep.max_epochs,
            factor=cfg.tuner.factor,
            hyperband_iterations=cfg.tuner.hyperband_iterations,
            **common,
        )
    common["executions_per_trial"] = cfg.sweep.executions_per_trial
    if name == "bayesian":
        return TrackedBayesianOptimization(
            max_trials=cfg.sweep.max_trials,
            num_initial_points=cfg.tuner.num_initial_points,
            alpha=cfg.tuner.alpha,
            beta=cfg.tuner.beta,
            **common,
        )
    return TrackedRandomSearch(max_trials=cfg.sweep.max_trials, **common)
