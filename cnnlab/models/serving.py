"""The logged model serves the images users have: raw pixels, with the run's own preprocessing inside.

Training keeps its input pipeline (uint8 batches scaled by tf.data, the tutorials' math). The model MLflow logs is
that trained network behind two layers, Reshape to the network's (height, width, channels) and, when the run scaled
pixels, Rescaling by 1/255, so ``mlflow models serve``, ``mlflow.pyfunc`` and ``cnnlab.predict`` all take pixels
0-255 as they come from the dataset's files or a PNG, shaped as the dataset's images are ((N, height, width) for
grayscale, (N, height, width, 3) for RGB), and nobody has to know how the run scaled them.
"""

from __future__ import annotations

from typing import Any

WRAPPER_NAME = "raw_image_classifier"


def pixel_shape(network: Any) -> tuple[int, ...]:
    """One raw image's shape for ``network``: (height, width) for a one-channel input, (height, width, 3) else."""
    height, width, channels = (int(dim) for dim in network.input_shape[1:])
    return (height, width) if channels == 1 else (height, width, channels)


def raw_image_model(network: Any, scale_pixels: bool) -> Any:
    """``network`` (trained on (N, h, w, c) inputs, scaled to [0, 1] when ``scale_pixels``) taking raw pixels."""
    import keras
    from keras import layers

    shape = pixel_shape(network)
    pixels = keras.Input(shape=shape, dtype="float32", name="pixels")
    images = layers.Reshape(tuple(int(dim) for dim in network.input_shape[1:]), name="image_channels")(pixels)
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


def as_pixels(images: Any, model: Any) -> Any:
    """float32 pixels shaped as ``model`` (a network, or a served model) takes them, from uint8 or float images;
    a grayscale batch may carry its one channel ((N, h, w, 1))."""
    import numpy as np

    expected = tuple(int(dim) for dim in model.input_shape[1:])
    expected = expected if takes_raw_pixels(model) else pixel_shape(model)
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim == len(expected) + 2 and batch.shape[-1] == 1:
        batch = batch[..., 0]
    if batch.shape[1:] != expected:
        raise ValueError(f"images must be shaped (N, {', '.join(map(str, expected))}), got {batch.shape}")
    return batch
