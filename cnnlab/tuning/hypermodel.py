"""keras-tuner's split: the HyperModel defines the space, the Oracle searches, the Tuner runs trials and tracks them.

Both the HyperModel and the Tuner go through :mod:`cnnlab.train` to build and fit, so a trial trains exactly as
``cnnlab.run`` would with the same config.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import time
from datetime import datetime
from typing import Any

import keras
import keras_tuner as kt
import mlflow
from omegaconf import OmegaConf

from cnnlab import tracking, train
from cnnlab.config.schema import option
from cnnlab.errors import NanLossError
from cnnlab.tuning import distributed, pruning
from cnnlab.tuning import space as search_space

log = logging.getLogger(__name__)

# The study's plots are redrawn after a trial only when this long has passed since they were last drawn (and always
# when the study reports): four figures and fANOVA cost ~1 s on 2 cores, more than a whole trial of a quick study.
PLOT_REFRESH_S = 60.0

HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")


class CnnHyperModel(kt.HyperModel):
    """Maps the space in ``cfg.sweep.space`` onto the one model builder."""

    def __init__(self, cfg: Any, data: train.PreparedData) -> None:
        super().__init__(name=f"cnnlab-{cfg.sweep.name}")
        self.cfg = cfg
        self.data = data

    def trial_config(self, hp: kt.HyperParameters) -> Any:
        values = search_space.declare(hp, self.cfg.sweep.space, self.cfg)
        trial_cfg = search_space.apply(self.cfg, values)
        trial_cfg.trainer.epochs = self.cfg.sweep.max_epochs
        return trial_cfg

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        model = train.build_compiled_model(self.trial_config(hp))
        if "tuner/trial_id" in hp.values:
            # Hyperband continues this trial from an earlier round's checkpoint, which Keras 3 saves with the
            # optimizer's state. keras-tuner loads it into a model whose optimizer is not built yet, so Keras skips
            # that state ("Skipping variable loading for optimizer") and Adam's moments and step count start over;
            # built now, the optimizer takes them back and the trial continues where it stopped.
            model.optimizer.build(model.trainable_variables)
        return model

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
    """Runs every trial inside an MLflow child run of the study's parent run, reports progress per trial, and
    stops a trial early when ``sweep.pruning`` finds it behind the finished trials at the same epoch."""

    def __init__(self, *args: Any, study: Any, pruner: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._track(study, pruner)

    def _track(self, study: Any, pruner: Any) -> None:
        self.study = study
        self.pruner = pruner
        self._epochs: dict[int, float] = {}
        self._pruned: str | None = None
        self._plots_drawn_at = time.monotonic()

    def search(self, *args: Any, **kwargs: Any) -> None:
        # keras-tuner collects garbage twice before every trial (its own gc.collect and clear_session's), each a walk
        # over every object TensorFlow, MLflow and Hydra made at import: ~0.5 s a trial on 2 cores. Frozen for the
        # search, those objects are skipped; what the trials make is still collected, and all of it after the search.
        gc.freeze()
        try:
            super().search(*args, **kwargs)
        finally:
            gc.unfreeze()

    def on_epoch_end(self, trial: Any, model: Any, epoch: int, logs: Any = None) -> None:
        super().on_epoch_end(trial, model, epoch, logs=logs)
        objective = self.oracle.objective.name
        if self.pruner is None or self._pruned or not logs or objective not in logs:
            return
        if epoch == 0:
            self._epochs = {}  # a trial run more than once (executions_per_trial) is judged per execution
        self._epochs[epoch] = float(logs[objective])
        reason = self.pruner.check(self._epochs)
        if reason:
            self._pruned = reason
            model.stop_training = True
            mlflow.set_tag(pruning.PRUNED_TAG, reason)

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        self._epochs, self._pruned = {}, None
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
            log_trial_outcome(results, self.oracle.objective)
            if self._pruned:
                mlflow.set_tag("mlflow.note.content", f"{description}\n\n**Pruned**: {self._pruned}.")
        return results

    def on_trial_end(self, trial: Any) -> None:
        super().on_trial_end(trial)
        self.study.report_progress(self.oracle, trial, pruned=self._pruned)
        due = time.monotonic() - self._plots_drawn_at >= PLOT_REFRESH_S
        if due and getattr(self.oracle, "trials", None) is not None:  # a distributed worker's oracle client has none
            from cnnlab.tuning import analysis, study

            table = study.trials_table(self.oracle, self.study)
            analysis.refresh(self.study, table, self.hypermodel.cfg.sweep.space)
            self._plots_drawn_at = time.monotonic()

    def retrain(self, trial: Any, seed: int) -> float | None:
        """Trains ``trial``'s configuration again on ``seed``, as a child run of the study: its objective score."""
        cfg = copy.deepcopy(self.hypermodel.cfg)
        cfg.seed = seed
        cfg.tracking.log_model = False
        hypermodel = CnnHyperModel(cfg, self.hypermodel.data)
        tags = {"cnnlab.study": self.study.name, "cnnlab.noise_of": trial.trial_id, "cnnlab.seed": str(seed)}
        description = f"Trial {trial.trial_id} of study {self.study.name!r} retrained on seed {seed}: seed noise."
        with tracking.tracked_run(
            self.study.experiment_id,
            f"noise-trial-{trial.trial_id}-s{seed}",
            tags,
            description,
            parent_run_id=self.study.parent_run_id,
        ):
            train.seed_everything(seed, cfg.trainer.deterministic)
            mlflow.log_params({f"hp.{key}": str(value) for key, value in trial.hyperparameters.values.items()})
            model = hypermodel.build(trial.hyperparameters)
            history = hypermodel.fit(trial.hyperparameters, model)
            return log_trial_outcome(history, self.oracle.objective)


def log_trial_outcome(results: Any, objective: Any) -> float | None:
    """The trial's score as keras-tuner computes it (best epoch) and its cost, on the active run."""
    best = _best_value(results, objective)
    if best is not None:
        mlflow.log_metric(f"best_{objective.name}", best)
    history = results[0] if isinstance(results, list) else results
    seconds = getattr(history, "history", {}).get("epoch_seconds", [])
    if seconds:
        mlflow.log_metric("seconds_per_epoch", sum(seconds) / len(seconds))
    model = getattr(history, "model", None)
    if model is not None:
        mlflow.log_metric("num_params", model.count_params())
    return best


def _best_value(results: Any, objective: Any) -> float | None:
    histories = results if isinstance(results, list) else [results]
    values = []
    for history in histories:
        series = getattr(history, "history", {}).get(objective.name, [])
        finite = [value for value in series if math.isfinite(value)]
        if finite:
            values.append(max(finite) if objective.direction == "max" else min(finite))
    return sum(values) / len(values) if values else None


class StudyOracle:
    """What cnnlab adds to every keras-tuner oracle: a warm start, and a chief that restarts without duplicates.

    Warm start: the first proposal is the study's base configuration (each hyperparameter's default).

    On reload keras-tuner queues every trial that was running for a retry. For a single process that is right (its
    trial died with it), but a restarted chief's workers are still training theirs: a retried trial would go to the
    next worker that asks and be trained twice. A chief therefore keeps each running trial with the tuner id it was
    given to; that worker reports it when it reconnects, and a worker lost for good is replaced by starting its tuner
    id again, on any host.
    """

    warm_start = True
    keep_running_trials = False

    def _random_values(self) -> dict[str, Any] | None:
        if self.warm_start and not self._tried_so_far:
            space = self.get_space()
            return {hp.name: hp.default for hp in space.space if space.is_active(hp)}
        return super()._random_values()

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._saved_running = dict(state.get("ongoing_trials", {}))  # reload() requeues them right after this

    def reload(self) -> None:
        super().reload()  # keras-tuner queues every trial its state file lists as running for a retry
        for tuner_id, trial_id in self._saved_running.items():
            trial = self.trials[trial_id]
            still_running = trial_id not in self.end_order and trial.status == kt.engine.trial.TrialStatus.RUNNING
            if still_running and not self.keep_running_trials:
                continue  # a single process: its trial died with it and is retried
            # The file can still list a trial that had just ended (keras-tuner saves before it forgets it); retried,
            # it would be trained twice. A chief's running trials stay with the workers training them.
            self._retry_queue.remove(trial_id)
            if still_running:
                self.ongoing_trials[tuner_id] = trial
                # keras-tuner saves its state before its display notes a trial's start, so the newest trial's start
                # is missing from the file; ending that trial would then fail with a KeyError in the chief.
                self._display.trial_start.setdefault(trial_id, datetime.now())
                self._display.trial_number.setdefault(trial_id, len(self.trials))


class RandomSearchOracle(StudyOracle, kt.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(StudyOracle, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(StudyOracle, kt.oracles.HyperbandOracle):
    pass


class GridSearchOracle(StudyOracle, kt.oracles.GridSearchOracle):
    """GridSearch starts from the defaults (the base configuration) by itself: it has no other first point."""

    warm_start = False


class TrackedTuner(TrackedTunerMixin, kt.Tuner):
    pass


class TrackedHyperband(TrackedTunerMixin, kt.Hyperband):
    """keras-tuner's Hyperband tuner (it trains a trial for its bracket's epochs) around a given oracle."""

    def __init__(self, oracle: Any, study: Any, pruner: Any = None, **kwargs: Any) -> None:
        self._track(study, pruner)
        kt.Tuner.__init__(self, oracle=oracle, **kwargs)  # kt.Hyperband.__init__ would make its own oracle


def make_oracle(cfg: Any) -> kt.Oracle:
    """The search algorithm named by ``cfg.tuner.name``; random, Bayesian and Hyperband warm-start on request."""
    name = option(cfg.tuner.name)
    # keras-tuner reads seed 0, cnnlab's default, as no seed at all (`seed or random.randint(1, 10000)`), which left
    # a default study's draws to chance; one more than the study's seed keeps every seed its own search.
    objective = kt.Objective(cfg.sweep.objective, direction=option(cfg.sweep.direction))
    common = dict(objective=objective, seed=cfg.seed + 1)
    if name == "hyperband":
        oracle = HyperbandOracle(
            max_epochs=cfg.sweep.max_epochs,
            factor=cfg.tuner.factor,
            hyperband_iterations=cfg.tuner.hyperband_iterations,
            **common,
        )
    elif name == "bayesian":
        oracle = BayesianOptimizationOracle(
            max_trials=cfg.sweep.max_trials,
            num_initial_points=cfg.tuner.num_initial_points,
            alpha=cfg.tuner.alpha,
            beta=cfg.tuner.beta,
            **common,
        )
    elif name == "grid":
        return GridSearchOracle(max_trials=cfg.sweep.max_trials, **common)
    else:
        oracle = RandomSearchOracle(max_trials=cfg.sweep.max_trials, **common)
    oracle.warm_start = cfg.sweep.warm_start
    oracle.keep_running_trials = distributed.role() == "chief"
    return oracle


def make_tuner(cfg: Any, data: train.PreparedData, study: Any) -> kt.Tuner:
    """The tuner for ``cfg.tuner.name``; its state lives in ``<sweep.directory>/<sweep.name>/``."""
    pruner = pruning.EpochPruner(cfg, study) if option(cfg.sweep.pruning) != "none" else None
    common = dict(
        oracle=make_oracle(cfg),
        hypermodel=CnnHyperModel(cfg, data),
        directory=cfg.sweep.directory,
        project_name=cfg.sweep.name,
        overwrite=False,  # Study.open starts over on sweep.overwrite; keras-tuner would delete the study state too
        study=study,
        pruner=pruner,
    )
    if option(cfg.tuner.name) == "hyperband":
        return TrackedHyperband(**common)
    return TrackedTuner(executions_per_trial=cfg.sweep.executions_per_trial, **common)
