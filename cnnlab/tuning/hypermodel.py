"""The HyperModel: the space in ``cfg.sweep.space`` mapped onto the one model builder.

It builds and fits through :mod:`cnnlab.train`, so a trial trains exactly as ``cnnlab.run`` would with the same
config. The search algorithms are in :mod:`cnnlab.tuning.oracles`, the tuners that run and track trials in
:mod:`cnnlab.tuning.tuners`.
"""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner as kt
import mlflow

from cnnlab import train
from cnnlab.config.schema import option
from cnnlab.errors import NanLossError
from cnnlab.tracking import records
from cnnlab.tuning import space as search_space


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
        mlflow.log_text(records.model_summary(model), "model_summary.txt")
        if trial_cfg.tracking.log_model:
            records.log_keras_model(model, trial_cfg, self.data)
        return history
