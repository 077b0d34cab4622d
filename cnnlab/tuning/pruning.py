"""Cross-trial pruning: Optuna's percentile rule applied to a keras-tuner study's epochs, read from MLflow.

keras-tuner's oracle keeps only a trial's final score, so the epochs of the other trials come from the study's
MLflow child runs (every epoch's metrics are logged with step = epoch). That is also what lets a distributed worker
prune: every worker reads the same store. The rule itself is Optuna's ``PercentilePruner`` (``MedianPruner`` is its
50th percentile), applied to those epochs mirrored into an in-memory Optuna study.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient

from cnnlab.config.schema import option

PRUNED_TAG = "cnnlab.pruned"


class EpochPruner:
    """Decides, at the end of an epoch, whether a trial is worse than the study's finished trials were then."""

    def __init__(self, cfg: Any, study: Any) -> None:
        import optuna

        method = option(cfg.sweep.pruning)
        self.percentile = 50.0 if method == "median" else float(cfg.sweep.pruning_percentile)
        self.method = method
        # Optuna counts steps from 0 here: an epoch index below warmup_epochs is never pruned.
        self.rule = optuna.pruners.PercentilePruner(
            self.percentile,
            n_startup_trials=cfg.sweep.pruning_warmup_trials,
            n_warmup_steps=cfg.sweep.pruning_warmup_epochs,
        )
        self.study = study
        self.maximize = option(cfg.sweep.direction) == "max"
        self._histories: dict[str, dict[int, float]] = {}  # run id -> epoch index -> objective, finished trials

    def finished_histories(self) -> dict[str, dict[int, float]]:
        """Each finished, unpruned trial's objective per epoch; a finished run's history is fetched once."""
        client = MlflowClient()
        for run in self.study.finished_runs():
            tags = run.data.tags
            if "cnnlab.trial_id" not in tags or PRUNED_TAG in tags or run.info.run_id in self._histories:
                continue
            history = client.get_metric_history(run.info.run_id, self.study.objective)
            self._histories[run.info.run_id] = {point.step - 1: point.value for point in history}
        return self._histories

    def check(self, epochs: dict[int, float]) -> str | None:
        """A reason to stop the trial whose objective so far is ``epochs`` (epoch index -> value), or None."""
        import optuna
        from optuna.trial import TrialState, create_trial

        finished = self.finished_histories()
        mirrored = optuna.create_study(direction="maximize" if self.maximize else "minimize")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna warns that create_trial's API is experimental
            for history in finished.values():
                if history:
                    best = max(history.values()) if self.maximize else min(history.values())
                    mirrored.add_trial(create_trial(value=best, intermediate_values=history, state=TrialState.COMPLETE))
            current = create_trial(state=TrialState.RUNNING, intermediate_values=epochs)
        if not self.rule.prune(mirrored, current):
            return None
        epoch = max(epochs)
        others = [history[epoch] for history in finished.values() if epoch in history]
        # Optuna's comparison value: for a maximised objective, the (100 - p)th percentile of the others.
        threshold = np.percentile(others, 100 - self.percentile if self.maximize else self.percentile)
        best_so_far = max(epochs.values()) if self.maximize else min(epochs.values())
        rule = "median" if self.method == "median" else f"top {self.percentile:g}% line"
        return (
            f"pruned after epoch {epoch + 1}: {self.study.objective} {best_so_far:.4f} so far, "
            f"{'below' if self.maximize else 'above'} the {rule} {threshold:.4f} of {len(others)} finished trials "
            "at that epoch"
        )
