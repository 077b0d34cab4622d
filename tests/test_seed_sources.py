"""Seeds by source: ``seed`` sets initial weights, data order and dropout masks together, and ``seed_init``,
``seed_data_order`` and ``seed_dropout`` each set one apart without moving the other two."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.conftest import compose_config

SOURCES = ("init", "data_order", "dropout")


def keras_own_seeding(monkeypatch) -> None:
    """Every layer left to Keras' own seeding, as the builder made them before sources could be seeded apart."""
    from cnnlab.models.builder import LayerSeeds

    monkeypatch.setattr(LayerSeeds, "next", lambda self, source: None)


def draws(cfg, data) -> dict[str, list]:
    """What each source drew for a run of ``cfg``: the initial weights, two epochs' batches, two dropout masks per
    layer; and where Python's global generator stands once the model is built."""
    import keras

    from cnnlab.train import build_compiled_model, seed_everything

    keras.backend.clear_session(free_memory=False)
    seed_everything(cfg)
    model = build_compiled_model(cfg)
    python_state = random.getstate()
    weights = [np.array(weight) for weight in model.trainable_weights]
    masks = [
        np.array(layer(np.ones((4, 64), "float32"), training=True))
        for layer in model.layers
        if isinstance(layer, keras.layers.Dropout)
        for _ in range(2)
    ]
    train = data.pipeline(cfg, "train", shuffle=True)
    batches = [hashlib.sha256(np.asarray(x).tobytes()).hexdigest() for _ in range(2) for x, _ in train]
    return {"init": weights, "data_order": batches, "dropout": masks, "python": python_state}


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture
def dropout_run(tiny_run_overrides):
    from cnnlab.train import prepare_data

    cfg = compose_config(*tiny_run_overrides, "model=dropout", "seed=3")
    return cfg, prepare_data(cfg)


@pytest.mark.slow
def test_with_every_source_null_the_draws_are_those_of_keras_own_seeding(dropout_run, monkeypatch):
    cfg, data = dropout_run
    now = draws(cfg, data)
    keras_own_seeding(monkeypatch)
    before = draws(cfg, data)
    for key in SOURCES:
        assert same(now[key], before[key]), key
    assert now["python"] == before["python"]  # whatever draws from it later draws what it drew before
    assert len(now["dropout"]) == 8 and len(now["init"]) == 12  # 4 dropout layers, 6 kernels and biases


@pytest.mark.slow
def test_with_every_source_null_training_is_bit_for_bit_what_keras_own_seeding_trained(dropout_run, monkeypatch):
    import keras

    from cnnlab.train import build_compiled_model, fit, seed_everything

    cfg, data = dropout_run

    def history() -> dict[str, list[float]]:
        keras.backend.clear_session(free_memory=False)
        seed_everything(cfg)
        model = build_compiled_model(cfg)
        trained = fit(model, cfg, data, epochs=2).history
        return {key: trained[key] for key in ("loss", "accuracy", "val_loss", "val_accuracy")}

    now = history()
    keras_own_seeding(monkeypatch)
    assert now == history()


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
def test_a_source_seeded_apart_changes_its_own_draws_and_no_other(dropout_run, source):
    cfg, data = dropout_run
    baseline = draws(cfg, data)
    apart = OmegaConf.merge(cfg, {f"seed_{source}": 11})
    changed = draws(apart, data)
    assert not same(changed[source], baseline[source]), f"seed_{source} did not change its own draws"
    for other in SOURCES:
        if other != source:
            assert same(changed[other], baseline[other]), f"seed_{source} changed the {other} draws"
    # A source's seed equal to `seed` is the same as leaving it null.
    assert same(draws(OmegaConf.merge(cfg, {f"seed_{source}": 3}), data)[source], baseline[source])


def test_run_names_and_fingerprints_stay_as_they_were_with_every_source_null():
    pytest.importorskip("tensorflow")
    from cnnlab.claims.reproduce import fingerprint
    from cnnlab.train import default_run_name, seed_label

    cfg = compose_config("experiment=mnist_simple", "seed=2")
    assert default_run_name(cfg) == "mnist-simple-s2" and seed_label(cfg) == "2"
    before = OmegaConf.to_container(cfg)
    for source in SOURCES:
        del before[f"seed_{source}"]
    hashes = {"x_train": "a"}
    assert fingerprint(cfg, hashes) == fingerprint(OmegaConf.create(before), hashes)

    cfg.seed_dropout, cfg.seed_init = 5, 1
    assert default_run_name(cfg) == "mnist-simple-s2-init1-dropout5"
    assert seed_label(cfg) == "2 (init 1, dropout 5)"
    assert fingerprint(cfg, hashes) != fingerprint(OmegaConf.create(before), hashes)


def test_a_seed_of_another_type_fails_at_composition():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="seed_dropout"):
        compose_config("seed_dropout=half")
