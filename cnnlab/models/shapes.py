"""Shape arithmetic for a block list: the check itself is config's (:mod:`cnnlab.config.blocks`, pure Python so it
runs before TensorFlow loads); the cost of training a network is counted here from the shapes it gives."""

from __future__ import annotations

from typing import Any

from cnnlab.config.blocks import check_blocks
from cnnlab.config.schema import option


def training_flops_per_sample(blocks: Any, input_shape: tuple[int, int, int], num_classes: int) -> int:
    """Multiply-adds x 2 of conv and dense layers, x 3 for training (forward, and backward for inputs and weights)."""
    shapes = check_blocks(blocks, input_shape, num_classes)
    previous: tuple[int, ...] = input_shape
    forward = 0
    for block, shape in zip(blocks, shapes, strict=True):
        kind = option(block.type)
        if kind == "conv":
            forward += 2 * shape[0] * shape[1] * shape[2] * block.kernel_size**2 * previous[2]
        elif kind == "dense":
            forward += 2 * previous[0] * shape[0]
        previous = shape
    return 3 * forward
