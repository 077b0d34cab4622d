"""Validation protocols as the tutorials use them, applied to verified arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.errors import ConfigError


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Splits:
    train: Split
    validation: Split | None
    test: Split


def make_splits(arrays: Any, protocol: str, holdout_size: int, subset: int | None) -> Splits:
    """Applies the validation protocol, then trims the training images to ``subset`` (smoke runs)."""
    train = Split(arrays.x_train, arrays.y_train)
    test = Split(arrays.x_test, arrays.y_test)
    validation: Split | None
    if protocol == "test":
        validation = test
    elif protocol == "test_halves":
        half = len(test) // 2
        validation = Split(test.x[half:], test.y[half:])
        test = Split(test.x[:half], test.y[:half])
    elif protocol == "holdout":
        if holdout_size >= len(train):
            raise ConfigError(
                f"trainer.holdout_size={holdout_size} leaves no training images (the training set has {len(train)})"
            )
        cut = len(train) - holdout_size
        validation = Split(train.x[cut:], train.y[cut:])
        train = Split(train.x[:cut], train.y[:cut])
    elif protocol == "none":
        validation = None
    else:
        raise ConfigError(f"trainer.validation={protocol!r}; valid: test, test_halves, holdout, none")
    if subset is not None:
        train = Split(train.x[:subset], train.y[:subset])
    return Splits(train=train, validation=validation, test=test)
