"""predict(cfg): a logged model's predicted class names for test images or image files, through the path a served
model takes (raw pixels in)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.commands.source_protocol import with_source_protocol
from cnnlab.config.schema import image_shape
from cnnlab.errors import UserError


class ImageError(UserError, ValueError):
    """An image file that cannot be read or turned into an image of the dataset's shape."""


def load_images(paths: list[str], shape: tuple[int, int, int]) -> tuple[np.ndarray, list[str]]:
    """Reads image files as uint8 images of ``shape`` (height, width, channels): (N, h, w) for one channel,
    (N, h, w, 3) for three, converting colour and size with a note for each; refuses the rest."""
    from PIL import Image, UnidentifiedImageError

    height, width, channels = shape
    target = "L" if channels == 1 else "RGB"
    colour = "grayscale" if channels == 1 else "RGB"

    images, notes = [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                mode, size = image.mode, image.size
                if mode not in ("L", "RGB", "RGBA", "LA", "P", "1"):
                    raise ImageError(f"{path}: {mode} images cannot be turned into {colour}; save it as PNG (L or RGB)")
                note = []
                if mode != target:
                    note.append(f"converted {mode} to {colour}")
                    image = image.convert(target)
                if size != (width, height):
                    note.append(f"resized {size[0]}x{size[1]} to {width}x{height}")
                    image = image.resize((width, height), Image.Resampling.LANCZOS)
                images.append(np.asarray(image, dtype=np.uint8))
                notes.append("; ".join(note))
        except (FileNotFoundError, UnidentifiedImageError, OSError) as error:
            raise ImageError(f"{path}: not a readable image ({error})") from error
    return np.stack(images), notes


def predict(cfg: Any, overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """Predicted class name and probability per image (the first ``samples`` test images, or ``images``)."""
    import mlflow

    from cnnlab import train
    from cnnlab.models.loading import load_model
    from cnnlab.models.serving import as_pixels, serving_model
    from cnnlab.tracking.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(cfg.tracking))  # predicting records nothing: no store is made
    loaded = load_model(cfg.model_uri)
    cfg = with_source_protocol(cfg, loaded.source_run_id, list(overrides or []))
    names = list(cfg.dataset.classes)
    if cfg.images:
        pixels, notes = load_images(list(cfg.images), image_shape(cfg.dataset))
        sources, truth = list(cfg.images), [None] * len(pixels)
    else:
        data = train.prepare_data(cfg)
        pixels, labels = data.splits.test.x[: cfg.samples], data.splits.test.y[: cfg.samples]
        sources = [f"test[{i}]" for i in range(len(pixels))]
        truth, notes = [names[int(label)] for label in labels], [""] * len(pixels)
    # The path a served model takes: raw pixels in, the run's preprocessing inside the model.
    served = serving_model(loaded.model, cfg.dataset.scale_pixels)
    probabilities = served.predict(as_pixels(pixels, served), verbose=0)
    rows = []
    for i, source in enumerate(sources):
        best = int(probabilities[i].argmax())
        rows.append(
            {
                "image": source,
                "predicted": names[best],
                "probability": float(probabilities[i, best]),
                "true": truth[i] if truth[i] is not None else "",
                "note": notes[i],
            }
        )
    return rows


def predictions_table(rows: list[dict[str, Any]]) -> str:
    """What `python -m cnnlab.predict` prints: one row per image; the note and true columns only when used."""
    import pandas as pd

    table = pd.DataFrame(rows)
    for column in ("note", "true"):
        if not table[column].astype(bool).any():
            table = table.drop(columns=column)
    return table.to_string(index=False, formatters={"probability": "{:.4f}".format})
