"""Tuners run trials: each inside an MLflow child run of the study's parent run, pruned when behind, reported.

:data:`ALGORITHMS` is the one table from a tuner name (``conf/tuner/<name>.yaml``) to its oracle and its tuner.
"""

from __future__ import annotations

import copy
import gc
import logging
import time
from typing import Any

import keras_tuner as kt
import mlflow

from cnnlab import train
from cnnlab.config.schema import option
from cnnlab.tracking import records, runs
from cnnlab.tuning import oracles, pruning
from cnnlab.tuning.hypermodel import CnnHyperModel
from cnnlab.tuning.study import trial_number

log = logging.getLogger(__name__)

# The study's plots are redrawn after a trial only when this long has passed since they were last drawn (and always
# when the study reports): four figures and fANOVA cost ~1 s on 2 cores, more than a whole trial of a quick study.
PLOT_REFRESH_S = 60.0

HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round")
CONTINUED_KEY = "tuner/trial_id"  # the earlier trial a Hyperband trial continues from, by keras-tuner's id


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
        train.seed_everything(cfg)
        hp_values = dict(trial.hyperparameters.values)
        number = trial_number(trial.trial_id)
        tags = {
            "cnnlab.study": self.study.name,
            "cnnlab.trial_id": trial.trial_id,  # keras-tuner's key, what a resumed study matches runs by
            "cnnlab.trial": str(number),  # the number its console shows
            "cnnlab.tuner_id": str(getattr(self, "tuner_id", "tuner0")),
            "dataset": cfg.dataset.name,
            "model": cfg.model.name,
            **{f"hyperband.{key.split('/')[1]}": str(hp_values[key]) for key in HYPERBAND_KEYS if key in hp_values},
        }
        if CONTINUED_KEY in hp_values:
            tags["hyperband.continues_trial"] = str(trial_number(hp_values[CONTINUED_KEY]))
        description = f"Trial {number} of study {self.study.name!r}.\n\nRerun the study: `{self.study.command}`"
        with runs.tracked_run(
            self.study.experiment_id,
            f"trial-{number:03d}",
            tags,
            description,
            parent_run_id=self.study.parent_run_id,
            system_metrics_interval=runs.system_metrics_interval(cfg.tracking),
        ):
            records.record_run_start(
                cfg, self.hypermodel.data, {f"hp.{key}": value for key, value in hp_values.items()}
            )
            results = super().run_trial(trial, *args, **kwargs)
            records.log_trial_outcome(results, self.oracle.objective)
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
        number = trial_number(trial.trial_id)
        tags = {
            "cnnlab.study": self.study.name,
            "cnnlab.noise_of": trial.trial_id,
            "cnnlab.trial": str(number),
            "cnnlab.seed": str(seed),
        }
        description = f"Trial {number} of study {self.study.name!r} retrained on seed {seed}: seed noise."
        with runs.tracked_run(
            self.study.experiment_id,
            f"noise-trial-{number}-s{seed}",
            tags,
            description,
            parent_run_id=self.study.parent_run_id,
        ):
            train.seed_everything(cfg)
            mlflow.log_params({f"hp.{key}": str(value) for key, value in trial.hyperparameters.values.items()})
            model = hypermodel.build(trial.hyperparameters)
            history = hypermodel.fit(trial.hyperparameters, model)
            return records.log_trial_outcome(history, self.oracle.objective)


class TrackedTuner(TrackedTunerMixin, kt.Tuner):
    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        return {"executions_per_trial": cfg.sweep.executions_per_trial}


class TrackedHyperband(TrackedTunerMixin, kt.Hyperband):
    """keras-tuner's Hyperband tuner (it trains a trial for its bracket's epochs) around a given oracle."""

    def __init__(self, oracle: Any, study: Any, pruner: Any = None, **kwargs: Any) -> None:
        self._track(study, pruner)
        kt.Tuner.__init__(self, oracle=oracle, **kwargs)  # kt.Hyperband.__init__ would make its own oracle

    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        return {}  # a trial's executions and epochs are the bracket's


# One row per tuner name: the oracle that searches and the tuner that runs its trials.
ALGORITHMS: dict[str, tuple[type[oracles.StudyOracle], type[TrackedTunerMixin]]] = {
    "random": (oracles.RandomSearchOracle, TrackedTuner),
    "bayesian": (oracles.BayesianOptimizationOracle, TrackedTuner),
    "hyperband": (oracles.HyperbandOracle, TrackedHyperband),
    "grid": (oracles.GridSearchOracle, TrackedTuner),
}


def make_oracle(cfg: Any) -> kt.Oracle:
    """The search algorithm named by ``cfg.tuner.name``."""
    oracle_class, _ = ALGORITHMS[option(cfg.tuner.name)]
    return oracles.create(oracle_class, cfg)


def make_tuner(cfg: Any, data: train.PreparedData, study: Any) -> kt.Tuner:
    """The tuner for ``cfg.tuner.name``; its state lives in ``<sweep.directory>/<sweep.name>/``."""
    _, tuner_class = ALGORITHMS[option(cfg.tuner.name)]
    pruner = pruning.EpochPruner(cfg, study) if option(cfg.sweep.pruning) != "none" else None
    return tuner_class(
        oracle=make_oracle(cfg),
        hypermodel=CnnHyperModel(cfg, data),
        directory=cfg.sweep.directory,
        project_name=cfg.sweep.name,
        overwrite=False,  # Study.open starts over on sweep.overwrite; keras-tuner would delete the study state too
        study=study,
        pruner=pruner,
        **tuner_class.options(cfg),
    )
