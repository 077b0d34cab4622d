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
