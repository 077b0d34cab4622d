"""A block list checked in pure Python: each kind's fields, and the shape after each block, so a bad architecture
fails before TensorFlow loads (models.builder builds what passes)."""

from __future__ import annotations

from typing import Any

from cnnlab.config.domains import KNOWN_ACTIVATIONS
from cnnlab.config.schema import option
from cnnlab.errors import ConfigError


def describe(index: int, block: Any) -> str:
    kind = option(block.type)
    detail = {
        "conv": f"filters={block.filters}, kernel_size={block.kernel_size}, padding={option(block.padding)}",
        "pool": f"pool_size={block.pool_size}",
        "dropout": f"rate={block.rate}",
        "dense": f"units={block.units}",
        "flatten": "",
    }[kind]
    return f"model.blocks[{index}] ({kind}{', ' + detail if detail else ''})"


# The fields each kind of block uses (models.builder passes exactly these to its Keras layer), and the schema's
# default of the fields some kind uses: a field another kind uses, set away from its default, changes nothing in
# the network, so it is refused (in configs, and in a search space, whose trials are checked the same way).
OWN_FIELDS = {
    "conv": {"filters", "kernel_size", "strides", "padding", "activation"},
    "pool": {"pool_size"},
    "dropout": {"rate"},
    "flatten": set(),
    "dense": {"units", "activation"},
}
FIELD_DEFAULTS = {  # name is every kind's
    "filters": None,
    "kernel_size": None,
    "strides": 1,
    "padding": "valid",
    "activation": None,
    "pool_size": 2,
    "rate": None,
    "units": None,
}


def foreign_fields(kind: str, block: Any) -> list[str]:
    """The fields set on a ``kind`` block that only other kinds use."""
    return [
        name
        for name, default in FIELD_DEFAULTS.items()
        if name not in OWN_FIELDS[kind] and option(block.get(name, default)) != default
    ]


def _conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def check_blocks(blocks: Any, input_shape: tuple[int, int, int], num_classes: int) -> list[tuple[int, ...]]:
    """Returns the output shape after each block, or raises ConfigError naming the first bad block."""
    if not blocks:
        raise ConfigError("model.blocks: empty; a model needs at least a flatten and a dense block")
    names = [block.get("name") for block in blocks if block.get("name")]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise ConfigError(f"model.blocks: block names must be unique, {repeated} repeat")
    shape: tuple[int, ...] = input_shape
    shapes = []
    for index, block in enumerate(blocks):
        kind = option(block.type)
        where = describe(index, block)

        def fail(message: str, where: str = where) -> None:
            raise ConfigError(f"{where}: {message}")

        if foreign := foreign_fields(kind, block):
            uses = ", ".join(sorted(OWN_FIELDS[kind])) or "no fields"
            fail(f"{', '.join(foreign)} has no effect on a {kind} block (it uses {uses}); remove it")
        if block.activation is not None and block.activation not in KNOWN_ACTIVATIONS:
            fail(f"unknown activation {block.activation!r}; valid: {sorted(KNOWN_ACTIVATIONS)}")
        if kind in ("conv", "pool"):
            if len(shape) != 3:
                fail(
                    f"needs an image-shaped input, but the previous block gives {shape} (a conv or pool after flatten?)"
                )
            height, width, channels = shape
            if kind == "conv":
                if block.filters is None or block.filters < 1:
                    fail(f"filters must be a positive integer, got {block.filters}")
                if block.kernel_size is None or block.kernel_size < 1:
                    fail(f"kernel_size must be a positive integer, got {block.kernel_size}")
                if block.strides < 1:
                    fail(f"strides must be >= 1, got {block.strides}")
                padding = option(block.padding)
                if padding == "valid" and block.kernel_size > min(height, width):
                    fail(f"kernel {block.kernel_size} is larger than the {height}x{width} feature map it sees")
                height = _conv_out(height, block.kernel_size, block.strides, padding)
                width = _conv_out(width, block.kernel_size, block.strides, padding)
                channels = block.filters
            else:
                if block.pool_size < 1:
                    fail(f"pool_size must be >= 1, got {block.pool_size}")
                height, width = height // block.pool_size, width // block.pool_size
            if height < 1 or width < 1:
                fail(f"shrinks the {shape[0]}x{shape[1]} feature map below 1x1; remove a pool or use padding=same")
            shape = (height, width, channels)
        elif kind == "dropout":
            if block.rate is None or not 0 <= block.rate < 1:
                fail(f"rate must be in [0, 1), got {block.rate}")
        elif kind == "flatten":
            size = 1
            for dim in shape:
                size *= dim
            shape = (size,)
        elif kind == "dense":
            if len(shape) != 1:
                fail(f"needs a flat input, but the previous block gives {shape}; add a flatten block before it")
            if block.units is None or block.units < 1:
                fail(f"units must be a positive integer, got {block.units}")
            shape = (block.units,)
        shapes.append(shape)
    last = blocks[-1]
    if option(last.type) != "dense" or last.units != num_classes or last.activation != "softmax":
        raise ConfigError(
            f"{describe(len(blocks) - 1, last)}: the last block must be dense with units={num_classes} "
            "(the dataset's class count) and activation=softmax"
        )
    return shapes
