"""Every model option builds with the tutorial's exact parameter count; bad block lists fail naming the block."""

from __future__ import annotations

import pytest

from cnnlab.config import ConfigError
from cnnlab.models.shapes import check_blocks
from tests.conftest import compose_config

TUTORIAL_PARAMS = {
    "simple": 203_434,
    "pooled": 160_138,
    "dropout": 511_306,
    "deep": 47_090,
    "kmnist": 1_199_882,
}


@pytest.mark.parametrize("name,expected", sorted(TUTORIAL_PARAMS.items()))
def test_tutorial_network_parameter_counts(name, expected):
    from cnnlab.models.builder import build_model

    cfg = compose_config(f"model={name}")
    model = build_model(cfg.model, num_classes=10)
    assert model.count_params() == expected


def test_deep_network_has_flatten_before_dense():
    cfg = compose_config("model=deep")
    kinds = [block.type.value for block in cfg.model.blocks]
    assert kinds[kinds.index("dense") - 1] == "flatten"


def test_bf16_keeps_output_layer_float32():
    from cnnlab.models.builder import build_model

    model = build_model(compose_config("model=simple").model, num_classes=10, precision="bf16")
    assert model.layers[0].compute_dtype == "bfloat16"
    assert model.layers[-1].compute_dtype == "float32"


def test_shape_check_matches_keras_output_shapes():
    from cnnlab.models.builder import build_model

    cfg = compose_config("model=pooled")
    shapes = check_blocks(cfg.model.blocks, (28, 28, 1), 10)
    model = build_model(cfg.model, num_classes=10)
    assert [tuple(layer.output.shape[1:]) for layer in model.layers] == shapes


@pytest.mark.parametrize(
    "blocks,message",
    [
        ([{"type": "dense", "units": 10, "activation": "softmax"}], r"blocks\[0\].*flat input"),
        (
            [{"type": "flatten"}, {"type": "conv", "filters": 8, "kernel_size": 3}],
            r"blocks\[1\].*image-shaped",
        ),
        ([{"type": "pool", "pool_size": 2}] * 5 + [{"type": "flatten"}], r"blocks\[4\].*below 1x1"),
        ([{"type": "conv", "filters": -1, "kernel_size": 3}], r"blocks\[0\].*filters"),
        ([{"type": "flatten"}, {"type": "dense", "units": 10, "activation": "relu"}], "activation=softmax"),
    ],
)
def test_bad_block_lists(blocks, message):
    from omegaconf import OmegaConf

    from cnnlab.config import Block

    typed = [OmegaConf.merge(OmegaConf.structured(Block), block) for block in blocks]
    with pytest.raises(ConfigError, match=message):
        check_blocks(typed, (28, 28, 1), 10)
