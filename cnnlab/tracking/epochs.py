"""Every epoch's metrics on the active run, step = epoch; a Keras callback, so importing it loads Keras (which
``import cnnlab.tracking`` does not)."""

from __future__ import annotations

import math

import keras
import mlflow


class MlflowEpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics with step = epoch (1-based, as Keras prints them) to the active run.

    With no active run it logs nothing: mlflow.log_metrics would otherwise open a run of its own and leave it open.
    """

    def on_epoch_end(self, epoch, logs=None):
        if mlflow.active_run() is None:
            return
        metrics = {key: float(value) for key, value in (logs or {}).items() if math.isfinite(float(value))}
        if metrics:
            mlflow.log_metrics(metrics, step=epoch + 1)
