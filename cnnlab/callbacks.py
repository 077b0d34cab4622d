"""Keras callbacks every cnnlab training uses: epoch timing and a NaN stop (the per-epoch MLflow metrics are
tracking's: :mod:`cnnlab.tracking.epochs`)."""

from __future__ import annotations

import math
import time

import keras

from cnnlab.errors import NanLossError


class StopOnNaN(keras.callbacks.Callback):
    """Stops at the first non-finite loss and remembers where, so the run can fail with reason "nan loss"."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.where: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = f"epoch {self.epoch + 1}, batch {batch + 1}"
            self.model.stop_training = True

    def raise_if_diverged(self) -> None:
        if self.where is not None:
            raise NanLossError(f"nan loss at {self.where}: training diverged (try a lower optimizer.learning_rate)")


class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        if logs is not None:
            logs["epoch_seconds"] = self.seconds[-1]
