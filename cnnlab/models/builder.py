"""The one model builder: ``cnnlab run``, the sweep's HyperModel and the reproduction all call :func:`build_model`."""

from __future__ import annotations

import random
from typing import Any

import keras
from keras import layers

from cnnlab import compat
from cnnlab.config.blocks import check_blocks
from cnnlab.config.schema import OPTIMIZER_FIELDS, option
from cnnlab.models.dropout import with_cheap_mask


class LayerSeeds:
    """The seed of each random layer, initial weights and dropout masks each from their own source.

    Keras gives a kernel initializer or Dropout layer made without ``seed=`` the next draw of Python's global
    generator, which ``keras.utils.set_random_seed`` seeded with the run's ``seed``: kernels and dropout layers take
    turns in one stream. Every random layer still takes that draw here, so the global generator ends where it always
    did. A source given its own seed replaces its layers' draws with the draws at the same positions of a generator
    of that seed, so the other source's layers keep theirs and a source's seed equal to ``seed`` changes nothing.
    """

    def __init__(self, init_seed: int | None = None, dropout_seed: int | None = None) -> None:
        apart = {"init": init_seed, "dropout": dropout_seed}
        self.apart = {source: random.Random(seed) for source, seed in apart.items() if seed is not None}

    def next(self, source: str) -> int:
        drawn = compat.keras_default_seed()
        own = {name: compat.keras_default_seed(generator) for name, generator in self.apart.items()}
        return own.get(source, drawn)


def build_model(
    model_cfg: Any,
    num_classes: int,
    input_shape: tuple[int, int, int],
    precision: str = "float32",
    seeds: LayerSeeds | None = None,
) -> keras.Model:
    """Builds the block list as a Sequential model on (height, width, channels) images (the dataset's shape).

    Under bf16 the output layer stays float32 for a stable softmax. ``seeds`` (default: both sources follow the
    run's seed) gives each kernel initializer and dropout layer its seed."""
    check_blocks(model_cfg.blocks, input_shape, num_classes)
    seeds = seeds or LayerSeeds()
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
                    kernel_initializer=keras.initializers.GlorotUniform(seed=seeds.next("init")),
                    dtype=dtype,
                    name=block.name,
                )
            )
        elif kind == "pool":
            stack.append(layers.MaxPooling2D(block.pool_size, dtype=dtype, name=block.name))
        elif kind == "dropout":
            # Keras seeds a Dropout layer only when it drops anything (rate > 0); so does the draw here.
            seed = seeds.next("dropout") if block.rate > 0 else None
            stack.append(with_cheap_mask(layers.Dropout(block.rate, seed=seed, dtype=dtype, name=block.name)))
        elif kind == "flatten":
            stack.append(layers.Flatten(dtype=dtype, name=block.name))
        elif kind == "dense":
            initializer = keras.initializers.GlorotUniform(seed=seeds.next("init"))
            stack.append(
                layers.Dense(
                    block.units,
                    activation=block.activation,
                    kernel_initializer=initializer,
                    dtype=dtype,
                    name=block.name,
                )
            )
    return keras.Sequential(stack, name=model_cfg.name)


def build_optimizer(optimizer_cfg: Any) -> keras.optimizers.Optimizer:
    """Keras optimizer from config; unset (null) hyperparameters keep Keras' own defaults."""
    name = option(optimizer_cfg.name)
    options = {
        key: getattr(optimizer_cfg, key) for key in OPTIMIZER_FIELDS[name] if getattr(optimizer_cfg, key) is not None
    }
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    return classes[name](**options)
