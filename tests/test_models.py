"""Every model option builds with the tutorial's exact parameter count; bad block lists fail naming the block."""

from __future__ import annotations

import pytest

from cnnlab.config import ConfigError
from cnnlab.config.blocks import check_blocks
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
    model = build_model(cfg.model, num_classes=10, input_shape=(28, 28, 1))
    assert model.count_params() == expected


def test_deep_network_has_flatten_before_dense():
    cfg = compose_config("model=deep")
    kinds = [block.type.value for block in cfg.model.blocks]
    assert kinds[kinds.index("dense") - 1] == "flatten"


def test_bf16_keeps_output_layer_float32():
    from cnnlab.models.builder import build_model

    model = build_model(compose_config("model=simple").model, 10, (28, 28, 1), precision="bf16")
    assert model.layers[0].compute_dtype == "bfloat16"
    assert model.layers[-1].compute_dtype == "float32"


def test_shape_check_matches_keras_output_shapes():
    from cnnlab.models.builder import build_model

    cfg = compose_config("model=pooled")
    shapes = check_blocks(cfg.model.blocks, (28, 28, 1), 10)
    model = build_model(cfg.model, num_classes=10, input_shape=(28, 28, 1))
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


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.3, 0.05])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cheap_dropout_mask_keeps_the_rate_and_scale(rate, dtype):
    import keras
    import numpy as np

    from cnnlab.models.dropout import mask_bits, with_cheap_mask

    layer = with_cheap_mask(keras.layers.Dropout(rate, dtype=dtype, seed=1))
    ones = np.ones((64, 3001), dtype="float32")  # an odd count per row: a draw that does not fill its last word
    out = keras.ops.convert_to_numpy(keras.ops.cast(layer(ones, training=True), "float32"))
    dropped = np.mean(out == 0)
    # 192,064 units: the dropped fraction's standard error is below 0.0012, so 5 of them is a generous margin.
    assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / out.size)
    assert np.allclose(out[out != 0], 1 / (1 - rate), rtol=1e-2 if dtype == "bfloat16" else 1e-6)
    assert mask_bits(rate) == (8 if rate in (0.25, 0.5) else 16)
    # A fresh draw per call (the seed generator advances), nothing at inference.
    assert not np.array_equal(out, keras.ops.convert_to_numpy(keras.ops.cast(layer(ones, training=True), "float32")))
    assert np.array_equal(keras.ops.convert_to_numpy(layer(ones, training=False)), ones)


def test_cheap_dropout_gradient_follows_the_mask():
    import keras
    import numpy as np
    import tensorflow as tf

    from cnnlab.models.dropout import with_cheap_mask

    layer = with_cheap_mask(keras.layers.Dropout(0.5, seed=3))
    inputs = tf.ones((8, 100))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=True)
        total = tf.reduce_sum(outputs)
    gradient = tape.gradient(total, inputs).numpy()
    assert np.array_equal(gradient, outputs.numpy())  # d(x * mask * 2)/dx = mask * 2 = the output for ones


def test_saved_dropout_network_loads_as_plain_keras(tmp_path):
    import keras
    import numpy as np

    from cnnlab.models.builder import build_model

    model = build_model(compose_config("model=dropout").model, 10, (28, 28, 1))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    dropouts = [layer for layer in loaded.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(dropouts) == 4 and all(type(layer) is keras.layers.Dropout for layer in dropouts)
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    assert np.allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model=simple", "model.blocks.0.rate=0.5"], r"model.blocks\[0\] \(conv.*\): rate has no effect on a conv"),
        (["model=deep", "model.blocks.2.units=5"], r"model.blocks\[2\] \(pool.*\): units has no effect on a pool"),
        (["model=dropout", "model.blocks.3.pool_size=3"], r"pool_size has no effect on a dropout block"),
        (["model=simple", "model.blocks.2.filters=8"], r"model.blocks\[2\] \(flatten\): filters has no effect"),
    ],
)
def test_a_block_admits_only_the_fields_its_kind_uses(overrides, message):
    from cnnlab.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose_config(*overrides))


def test_a_search_space_cannot_search_a_field_the_block_does_not_use():
    from cnnlab.tuning.space import check_space

    space = "sweep.space=[{key: model.blocks.0.rate, type: float, min: 0.1, max: 0.5}]"
    cfg = compose_config("model=simple", space, config_name="sweep_config")
    with pytest.raises(ConfigError, match="rate has no effect on a conv block"):
        check_space(cfg)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer=sgd", "optimizer.beta_1=0.5"], r"optimizer.beta_1: has no effect on sgd .*takes it: adam$"),
        (["optimizer=adam", "optimizer.rho=0.8"], r"optimizer.rho: has no effect on adam .*takes it: rmsprop$"),
        (["optimizer=rmsprop", "optimizer.nesterov=true"], r"optimizer.nesterov: has no effect on rmsprop"),
        (["optimizer=adam", "optimizer.momentum=0.9"], r"optimizer.momentum: .*takes it: sgd, rmsprop$"),
    ],
)
def test_an_optimizer_admits_only_the_fields_keras_passes_it(overrides, message):
    from cnnlab.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose_config(*overrides))
    for name in ("adam", "sgd", "rmsprop"):  # each option as shipped sets only its own fields
        validate(compose_config(f"optimizer={name}"))


def test_a_trial_that_picks_another_optimizer_gets_that_optimizers_fields():
    """As `optimizer=<name>` would compose it: adam's betas do not follow into rmsprop or sgd, the chosen option's
    defaults come in (sgd's learning rate is 0.01), and what the study set itself carries where the key exists."""
    from omegaconf import OmegaConf

    from cnnlab.config import leaves, validate
    from cnnlab.tuning.space import apply

    study = compose_config("optimizer=adam", "optimizer.epsilon=1e-6", config_name="sweep_config")
    for name in ("rmsprop", "sgd"):
        trial = apply(study, {"optimizer.name": name})
        validate(trial)
        composed = compose_config(f"optimizer={name}").optimizer
        expected = {**OmegaConf.to_container(composed, enum_to_str=True)}
        if name == "rmsprop":
            expected["epsilon"] = 1e-6  # the study's own setting, which rmsprop takes too
        assert leaves(trial.optimizer) == leaves(OmegaConf.create(expected)), name
    assert apply(study, {"optimizer.name": "sgd"}).optimizer.learning_rate == 0.01
    assert apply(study, {"optimizer.name": "sgd", "optimizer.learning_rate": 0.2}).optimizer.learning_rate == 0.2
    assert apply(study, {"optimizer.name": "adam"}).optimizer.epsilon == 1e-6  # its own optimizer: untouched


@pytest.mark.parametrize(
    "entries,message",
    [
        (
            "{key: optimizer.name, type: choice, values: [adam, sgd]}, "
            "{key: optimizer.beta_1, type: float, min: 0.8, max: 0.95}",
            r"(?s)sweep.space\[1\] \(optimizer.beta_1\): the value 0.8 with optimizer.name=sgd .*no effect on sgd"
            r".*search it only where it applies: parent: optimizer.name, parent_values: \['adam'\]$",
        ),
        ("{key: optimizer.rho, type: float, min: 0.8, max: 0.95}", r"optimizer.rho: has no effect on adam"),
    ],
)
def test_a_search_space_cannot_search_a_field_the_optimizer_does_not_take(entries, message):
    from cnnlab.tuning.space import check_space

    cfg = compose_config("optimizer=adam", f"sweep.space=[{entries}]", config_name="sweep_config")
    with pytest.raises(ConfigError, match=message):
        check_space(cfg)
    # searched only under the optimizers that take it, it is accepted
    conditional = entries.replace("max: 0.95}", "max: 0.95, parent: optimizer.name, parent_values: [adam]}")
    if "optimizer.name" in entries:
        check_space(compose_config("optimizer=adam", f"sweep.space=[{conditional}]", config_name="sweep_config"))


def test_an_optimizer_field_out_of_range_is_not_told_to_move_to_another_optimizer():
    from cnnlab.tuning.space import check_space

    space = "{key: optimizer.name, type: choice, values: [adam, sgd]}, "
    space += "{key: optimizer.beta_1, type: float, min: 0.8, max: 1.5}"
    cfg = compose_config("optimizer=adam", f"sweep.space=[{space}]", config_name="sweep_config")
    with pytest.raises(ConfigError, match=r"optimizer.beta_1: must be in \[0, 1\), got 1.5") as refused:
        check_space(cfg)
    assert "search it only where it applies" not in str(refused.value)  # adam takes beta_1: the range is wrong


def test_blocks_are_named_layers_and_names_change_no_weights():
    import keras
    import numpy as np
    from omegaconf import OmegaConf

    from cnnlab.models.builder import build_model

    named = compose_config("model=dropout").model
    unnamed = OmegaConf.create(OmegaConf.to_container(named))
    for block in unnamed.blocks:
        block.name = None
    keras.utils.set_random_seed(3)
    model = build_model(named, 10, (28, 28, 1))
    keras.utils.set_random_seed(3)
    plain = build_model(unnamed, 10, (28, 28, 1))
    assert [layer.name for layer in model.layers][:4] == ["conv1", "conv2", "pool1", "dropout1"]
    assert model.layers[-1].name == "output"
    for ours, theirs in zip(model.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_sweep_keys_address_blocks_by_name_so_an_inserted_block_retargets_nothing():
    from cnnlab.tuning.space import apply, positional

    cfg = compose_config("model=dropout", config_name="sweep_config")
    assert positional(cfg, "model.blocks.dropout2.rate") == "model.blocks.6.rate"
    from cnnlab.config import Block, BlockType

    cfg.model.blocks.insert(0, Block(name="extra", type=BlockType.conv, filters=8, kernel_size=1))
    assert positional(cfg, "model.blocks.dropout2.rate") == "model.blocks.7.rate"
    trial = apply(cfg, {"model.blocks.dropout2.rate": 0.3})
    assert trial.model.blocks[7].name == "dropout2" and trial.model.blocks[7].rate == 0.3
    with pytest.raises(ConfigError, match=r"no block named 'dropout9' in model 'dropout'; its blocks: \['extra', "):
        positional(cfg, "model.blocks.dropout9.rate")


def test_block_names_must_be_unique():
    with pytest.raises(ConfigError, match=r"block names must be unique, \['conv1'\] repeat"):
        from cnnlab.config import validate

        validate(compose_config("model=simple", "model.blocks.1.name=conv1"))
