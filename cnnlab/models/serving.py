"""The logged model serves the images users have: raw pixels, with the run's own preprocessing inside.

Training keeps its input pipeline (uint8 batches scaled by tf.data, the tutorials' math). The model MLflow logs is
that trained network behind two layers, Reshape to one channel and, when the run scaled pixels, Rescaling by 1/255,
so ``mlflow models serve``, ``mlflow.pyfunc`` and ``cnnlab.predict`` all take pixels 0-255 as they come from MNIST's
files or a PNG, shaped (N, 28, 28), and nobody has to know how the run scaled them.
"""

from __future__ import annotations

from typing import Any

WRAPPER_NAME = "raw_image_classifier"
IMAGE_SHAPE = (28, 28)


def raw_image_model(network: Any, scale_pixels: bool) -> Any:
    """``network`` (trained on (N, 28, 28, 1) inputs, scaled to [0, 1] when ``scale_pixels``) taking raw pixels."""
    import keras
    from keras import layers

    pixels = keras.Input(shape=IMAGE_SHAPE, dtype="float32", name="pixels")
    images = layers.Reshape((*IMAGE_SHAPE, 1), name="one_channel")(pixels)
    if scale_pixels:
        images = layers.Rescaling(1.0 / 255, name="scale_pixels")(images)
    return keras.Model(pixels, network(images), name=WRAPPER_NAME)


def takes_raw_pixels(model: Any) -> bool:
    return model.name == WRAPPER_NAME


def trained_network(model: Any) -> Any:
    """The network inside a logged model (which is the model itself for models logged before the wrapper)."""
    if not takes_raw_pixels(model):
        return model
    return next(layer for layer in model.layers if hasattr(layer, "layers"))


def serving_model(model: Any, scale_pixels: bool) -> Any:
    """A logged model ready for raw pixels: as it is, or (logged before the wrapper) wrapped the same way now."""
    return model if takes_raw_pixels(model) else raw_image_model(model, scale_pixels)


def as_pixels(images: Any) -> Any:
    """(N, 28, 28) float32 pixels from uint8 or float images shaped (N, 28, 28) or (N, 28, 28, 1)."""
    import numpy as np

    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim == 4 and batch.shape[-1] == 1:
        batch = batch[..., 0]
    if batch.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images must be shaped (N, 28, 28) or (N, 28, 28, 1), got {images.shape}")
    return batch
