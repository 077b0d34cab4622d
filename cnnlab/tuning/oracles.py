"""The search algorithms: keras-tuner's oracles with what cnnlab adds to each (a warm start, a chief that
restarts without duplicates), and each one's own arguments read from the config (``options``).

A tuner name picks its oracle (and the tuner that runs its trials) in :data:`cnnlab.tuning.tuners.ALGORITHMS`.
"""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from cnnlab import compat
from cnnlab.config.schema import option
from cnnlab.tuning.role import role


class StudyOracle(compat.OracleHooks):
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

    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        """This algorithm's own arguments, from the config."""
        return {"max_trials": cfg.sweep.max_trials}

    def configure(self, cfg: Any) -> None:
        self.warm_start = cfg.sweep.warm_start
        self.keep_running_trials = role() == "chief"

    def first_values(self) -> dict[str, Any] | None:
        if self.warm_start and compat.nothing_tried(self):
            space = self.get_space()
            return {hp.name: hp.default for hp in space.space if space.is_active(hp)}
        return None

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
            compat.forget_retry(self, trial_id)
            if still_running:
                self.ongoing_trials[tuner_id] = trial
                # keras-tuner saves its state before its display notes a trial's start, so the newest trial's start
                # is missing from the file; ending that trial would then fail with a KeyError in the chief.
                compat.note_running_trial(self, trial_id)


class RandomSearchOracle(StudyOracle, kt.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(StudyOracle, kt.oracles.BayesianOptimizationOracle):
    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        return {
            "max_trials": cfg.sweep.max_trials,
            "num_initial_points": cfg.tuner.num_initial_points,
            "alpha": cfg.tuner.alpha,
            "beta": cfg.tuner.beta,
        }


class HyperbandOracle(StudyOracle, kt.oracles.HyperbandOracle):
    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        return {
            "max_epochs": cfg.sweep.max_epochs,
            "factor": cfg.tuner.factor,
            "hyperband_iterations": cfg.tuner.hyperband_iterations,
        }


class GridSearchOracle(StudyOracle, kt.oracles.GridSearchOracle):
    """GridSearch starts from the defaults (the base configuration) by itself: it has no other first point."""

    warm_start = False

    def configure(self, cfg: Any) -> None:
        """The grid starts from the defaults by itself, so sweep.warm_start does not apply; keep_running_trials is
        left False here, unlike the other oracles' chiefs."""


def create(oracle_class: type[StudyOracle], cfg: Any) -> kt.Oracle:
    """``oracle_class`` with the study's objective and seed and its own options from ``cfg``."""
    # keras-tuner reads seed 0, cnnlab's default, as no seed at all (`seed or random.randint(1, 10000)`), which left
    # a default study's draws to chance; one more than the study's seed keeps every seed its own search.
    objective = kt.Objective(cfg.sweep.objective, direction=option(cfg.sweep.direction))
    oracle = oracle_class(objective=objective, seed=cfg.seed + 1, **oracle_class.options(cfg))
    oracle.configure(cfg)
    return oracle
