"""Figures every run logs: learning curves and the test confusion matrix."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curves(history: dict[str, list[float]], title: str) -> plt.Figure:
    metrics = [name for name in ("loss", "accuracy", "auc") if name in history]
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for axis, name in zip(axes[0], metrics, strict=True):
        epochs = np.arange(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            axis.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_label(name: str) -> str:
    """Matplotlib's bundled font has no hiragana: "お (o)" is drawn as "o"; other names are kept."""
    if not name.isascii() and name.endswith(")") and "(" in name:
        return name[name.rindex("(") + 1 : -1]
    return name


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], title: str) -> plt.Figure:
    class_names = [plot_label(name) for name in class_names]
    count = len(class_names)
    matrix = np.zeros((count, count), dtype=np.int64)
    np.add.at(matrix, (y_true.astype(int), y_pred.astype(int)), 1)
    figure, axis = plt.subplots(figsize=(7.5, 6.5))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis)
    axis.set_xticks(range(count), class_names, rotation=45, ha="right")
    axis.set_yticks(range(count), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for row in range(count):
        for column in range(count):
            color = "white" if matrix[row, column] > threshold else "black"
            axis.text(column, row, matrix[row, column], ha="center", va="center", fontsize=7, color=color)
    axis.set_title(title)
    figure.tight_layout()
    return figure


def image_grid(images: np.ndarray, titles: list[str], title: str, columns: int = 5) -> plt.Figure:
    """Images (N, h, w) or in colour (N, h, w, 3) in a grid with a caption each, as the tutorials plot their first 25.

    Drawn as one mosaic in one axes: a subplot per image made every run pay ~0.5 s for its preview.
    """
    images = np.asarray([np.squeeze(image) for image in images])
    count, height, width = len(images), images.shape[1], images.shape[2]
    rows = max(1, -(-count // columns))
    gap, caption = width // 4, height // 2  # pixels between images, and above each for its caption
    cell_height, cell_width = height + caption, width + gap
    mosaic = np.zeros((rows * cell_height, columns * cell_width - gap, *images.shape[3:]), dtype=images.dtype)
    if images.ndim == 4:  # colour: white between images, as the binary colour map draws grayscale's zeros
        mosaic[:] = 255
    figure, axis = plt.subplots(figsize=(2.0 * columns, 2.25 * rows + 0.4))
    for index, (image, text) in enumerate(zip(images, titles, strict=False)):
        top, left = (index // columns) * cell_height + caption, (index % columns) * cell_width
        mosaic[top : top + height, left : left + width] = image
        axis.text(left + width / 2, top - 1.5, plot_label_text(text), ha="center", va="bottom", fontsize=8)
    # Grayscale datasets draw dark ink on white, as the tutorials do; colour images as they are.
    axis.imshow(mosaic, cmap="binary" if mosaic.ndim == 2 else None, interpolation="nearest")
    axis.axis("off")
    figure.suptitle(title)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.5 / (2.25 * rows + 0.4))
    return figure


def plot_label_text(text: str) -> str:
    """Applies :func:`plot_label` to every class name inside a caption such as "true: お (o)"."""
    import re

    return re.sub(r"\S+ \(([a-z]+)\)", r"\1", text) if not text.isascii() else text
