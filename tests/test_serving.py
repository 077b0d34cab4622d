"""The logged model serves raw images: `mlflow models serve` answers a POST of uint8 pixels as cnnlab.predict does."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.commands.predict_images import predict
from cnnlab.train import train
from tests.conftest import compose_config, make_mlflow, post_pixels

pytestmark = pytest.mark.slow


@pytest.fixture
def logged_run(tiny_run_overrides):
    return train(compose_config(*tiny_run_overrides, "trainer.epochs=2"))


def test_the_logged_model_takes_raw_pixels_and_says_so(logged_run, tmp_path, arrays):
    import mlflow

    uri = f"runs:/{logged_run.run_id}/model"
    info = mlflow.models.get_model_info(uri)
    (spec,) = info.signature.inputs.inputs
    assert spec.shape == (-1, 28, 28) and spec.type == np.dtype("float32")
    assert info.signature.outputs.inputs[0].shape == (-1, 10)
    assert info.metadata["class_names"] == [str(i) for i in range(10)]
    assert "raw pixels 0-255" in info.metadata["input"] and "x / 255 inside the model" in info.metadata["preprocessing"]
    # The trained network inside is untouched: raw pixels through the model equal scaled pixels through the network.
    model = mlflow.keras.load_model(uri)
    from cnnlab.models.serving import trained_network

    pixels = arrays["x_test"][:8]
    raw = model.predict(pixels.astype("float32"), verbose=0)
    scaled = trained_network(model).predict((pixels.astype("float32") / 255.0)[..., None], verbose=0)
    np.testing.assert_allclose(raw, scaled, rtol=1e-5, atol=1e-6)


@pytest.mark.system  # MLflow's scoring server, another program end to end
def test_mlflow_models_serve_answers_uint8_pixels_as_cnnlab_predict_does(logged_run, tmp_path, arrays):
    uri = f"runs:/{logged_run.run_id}/model"
    store = f"sqlite:///{tmp_path}/mlflow.db"
    pixels = arrays["x_test"][:4]
    assert pixels.dtype == np.uint8
    with make_mlflow("serve", store, tmp_path / "serve.log", f"MODEL={uri}") as (address, _):
        served = post_pixels(address, pixels)
    assert served.shape == (4, 10)
    rows = predict(
        compose_config(f"tracking.uri={store}", f"model_uri={uri}", "samples=4", config_name="use_config"), []
    )
    assert [row["predicted"] for row in rows] == [str(int(i)) for i in served.argmax(axis=1)]
    np.testing.assert_allclose([row["probability"] for row in rows], served.max(axis=1), rtol=1e-6)
