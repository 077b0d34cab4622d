"""Using a trained model: evaluate reproduces the logged accuracy, predict, registry aliases, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from cnnlab.commands.predict_images import ImageError, load_images, predict
from cnnlab.commands.register_model import register
from cnnlab.commands.score_model import evaluate
from cnnlab.models.loading import ModelLoadError, load_model
from cnnlab.train import train
from tests.conftest import (
    compose_config,
    copy_store,
    isolate,
    pin_mnist_hashes,
    synthetic_arrays,
    tiny_run,
    write_idx_folder,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory, store_template) -> str:
    """One MLflow store for this file: the logged run, and the runs its tests add beside it (evaluations, a
    registered version)."""
    return copy_store(store_template, tmp_path_factory.mktemp("store") / "mlflow.db")


@pytest.fixture(scope="module")
def logged_run(store, tmp_path_factory):
    """A tiny run whose model is logged, trained once for this file; the synthetic MNIST stays pinned while the
    file's tests run. The test split halves protocol checks that evaluate follows the source."""
    folder = tmp_path_factory.mktemp("logged")
    arrays = synthetic_arrays()
    with pytest.MonkeyPatch.context() as patch:
        isolate(patch, folder)  # set up before each test's own isolation
        pin_mnist_hashes(patch, arrays)
        overrides = tiny_run(write_idx_folder(folder / "idx", arrays), store)
        yield train(compose_config(*overrides, "trainer.validation=test_halves", "trainer.epochs=2"))


@pytest.fixture
def use_config(store):
    """``use_config(*overrides)``: the use commands' config, tracked in this file's store."""
    return lambda *overrides: compose_config(f"tracking.uri={store}", *overrides, config_name="use_config")


def test_evaluate_reproduces_the_logged_test_accuracy_exactly(store, use_config, logged_run):
    uri = f"runs:/{logged_run.run_id}/model"
    result = evaluate(use_config(f"model_uri={uri}"), [f"model_uri={uri}"])
    assert result.metrics["test_accuracy"] == logged_run.metrics["test_accuracy"]
    assert result.metrics["test_loss"] == logged_run.metrics["test_loss"]
    assert result.confusion.sum() == 40  # the first half of the 80 synthetic test images: the source's protocol
    assert len(result.per_class) == 10
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(result.run_id)
    assert run.data.tags["cnnlab.source_run_id"] == logged_run.run_id
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/worst_misclassified.png"} <= plots


def test_predict_first_test_images_with_true_labels(use_config, logged_run, arrays):
    uri = f"runs:/{logged_run.run_id}/model"
    rows = predict(use_config(f"model_uri={uri}", "samples=4"), [])
    assert [row["image"] for row in rows] == ["test[0]", "test[1]", "test[2]", "test[3]"]
    assert [row["true"] for row in rows] == [str(label) for label in arrays["y_test"][:4]]
    assert all(0 < row["probability"] <= 1 for row in rows)


def test_registry_alias_resolves_to_the_source_run(use_config, logged_run):
    uri = f"runs:/{logged_run.run_id}/model"
    version = register(use_config(f"model_uri={uri}", "name=toy", "alias=champion"))
    assert int(version.version) == 1
    result = evaluate(use_config("model_uri=models:/toy@champion"), [])
    assert result.source_run_id == logged_run.run_id
    assert result.metrics["test_accuracy"] == logged_run.metrics["test_accuracy"]


def test_predict_images_converts_colour_and_size(tmp_path, use_config, logged_run):
    from PIL import Image

    path = tmp_path / "digit.png"
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(path)
    uri = f"runs:/{logged_run.run_id}/model"
    (row,) = predict(use_config(f"model_uri={uri}", f"images=[{path}]"), [])
    assert "converted RGB to grayscale" in row["note"] and "resized 32x32 to 28x28" in row["note"]


def test_unreadable_image_is_refused(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        load_images([str(path)], (28, 28, 1))


def test_h5_and_lambda_models_are_refused(tmp_path):
    import keras

    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(ModelLoadError, match="HDF5"):
        load_model(str(tmp_path / "model.h5"))
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelLoadError, match="safe mode"):
        load_model(str(path))
