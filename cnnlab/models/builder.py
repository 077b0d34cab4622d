"""The one model builder: ``cnnlab run``, the sweep's HyperModel and the reproduction all call :func:`build_model`."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from cnnlab.config.blocks import check_blocks
from cnnlab.config.schema import OPTIMIZER_FIELDS, option
from cnnlab.models.dropout import with_cheap_mask


def build_model(
    model_cfg: Any, num_classes: int, input_shape: tuple[int, int, int], precision: str = "float32"
) -> keras.Model:
    """Builds the block list as a Sequential model on (height, width, channels) images (the dataset's shape).

    Under bf16 the output layer stays float32 for a stable softmax."""
    check_blocks(model_cfg.blocks, input_shape, num_classes)
    policy = "mixed_bfloat16" if precision == "bf16" else "float32"
    stack: list[layers.Layer] = [keras.Input(shape=input_shape)]
    last = len(model_cfg.blocks) - 1
    for index, block in enumerate(model_cfg.blocks):
        kind = option(block.type)
        dtype = "float32" if index == last else policy
        if kind == "conv":
            stack.append(
                layers.Conv2D(
                    block.filters,
                    block.kernel_size,
                    strides=block.strides,
                    padding=option(block.padding),
                    activation=block.activation,
                    dtype=dtype,
                    name=block.name,
                )
            )
        elif kind == "pool":
            stack.append(layers.MaxPooling2D(block.pool_size, dtype=dtype, name=block.name))
        elif kind == "dropout":
            stack.append(with_cheap_mask(layers.Dropout(block.rate, dtype=dtype, name=block.name)))
        elif kind == "flatten":
            stack.append(layers.Flatten(dtype=dtype, name=block.name))
        elif kind == "dense":
            stack.append(layers.Dense(block.units, activation=block.activation, dtype=dtype, name=block.name))
    return keras.Sequential(stack, name=model_cfg.name)


def build_optimizer(optimizer_cfg: Any) -> keras.optimizers.Optimizer:
    """Keras optimizer from config; unset (null) hyperparameters keep Keras' own defaults."""
    name = option(optimizer_cfg.name)
    options = {
        key: getattr(optimizer_cfg, key) for key in OPTIMIZER_FIELDS[name] if getattr(optimizer_cfg, key) is not None
    }
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    return classes[name](**options)
