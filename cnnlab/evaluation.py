"""Using what was trained: evaluate a logged model on its protocol, predict images, register the best model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from cnnlab.config.schema import image_shape
from cnnlab.errors import UserError

log = logging.getLogger(__name__)

PROTOCOL_KEYS = ("dataset", "trainer", "seed")


class ImageError(UserError, ValueError):
    """An image file that cannot be read or turned into an image of the dataset's shape."""


def with_source_protocol(cfg: Any, run_id: str | None, overrides: list[str]) -> Any:
    """Dataset, protocol and seed from the source run's logged config, except what the user set by hand."""
    if run_id is None:
        return cfg
    import mlflow

    from cnnlab.config.compose import parse_overrides, with_dataset_description
    from cnnlab.config.schema import DatasetConfig

    try:
        source = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml"))
    except Exception:
        log.warning("run %s has no config.yaml; using the dataset and protocol given on the command line", run_id)
        return cfg
    given = parse_overrides(overrides)
    chosen_groups = {key for key, _ in given}
    taken = {key: source[key] for key in PROTOCOL_KEYS if key in source and key not in chosen_groups}
    dataset = taken.pop("dataset", None)
    merged = OmegaConf.merge(cfg, taken)  # `dataset=mnist` typed on the command line keeps that choice
    if dataset is not None:  # whole: a merge would keep the default dataset's pinned hashes and files
        merged.dataset = OmegaConf.merge(OmegaConf.structured(DatasetConfig), with_dataset_description(dataset))
    for key, value in given:  # then dotted overrides such as trainer.batch_size=128 win
        if key.split(".")[0] in PROTOCOL_KEYS and "." in key:
            OmegaConf.update(merged, key, value, merge=True)
    return merged


@dataclass
class Evaluation:
    run_id: str
    source_run_id: str | None
    metrics: dict[str, float]
    per_class: list[tuple[str, float, int]]
    confusion: np.ndarray


def evaluate(cfg: Any, overrides: list[str] | None = None) -> Evaluation:
    """Test loss and accuracy, per-class accuracy, confusion matrix and worst mistakes, logged as a linked run."""
    import mlflow

    from cnnlab import plots, tracking, train
    from cnnlab.models.loading import load_model
    from cnnlab.models.serving import trained_network

    tracking.configure(cfg.tracking)  # the store the model URI refers to
    loaded = load_model(cfg.model_uri)
    cfg = with_source_protocol(cfg, loaded.source_run_id, list(overrides or []))
    data = train.prepare_data(cfg)
    test = data.pipeline(cfg, "test")
    # The training run's own input pipeline and network: the same math as the logged test accuracy.
    scores, probabilities = train.score(trained_network(loaded.model), cfg, test, data.splits.test.y)
    metrics = {f"test_{key}": value for key, value in scores.items()}
    predicted = probabilities.argmax(axis=1)
    truth = data.splits.test.y.astype(int)
    names = data.class_names
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = [
        (names[i], float(confusion[i, i] / max(confusion[i].sum(), 1)), int(confusion[i].sum()))
        for i in range(len(names))
    ]
    wrong = np.flatnonzero(predicted != truth)
    worst = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][: cfg.worst]
    captions = [
        f"true: {names[truth[i]]}\npred: {names[predicted[i]]} ({probabilities[i, predicted[i]]:.2f})" for i in worst
    ]

    experiment_id = tracking.configure(cfg.tracking)
    tags = {
        "cnnlab.source_run_id": loaded.source_run_id or "",
        "cnnlab.model_uri": cfg.model_uri,
        "dataset": cfg.dataset.name,
    }
    rerun = tracking.rerun_command("cnnlab.evaluate", list(overrides or []))
    description = f"Evaluation of `{cfg.model_uri}` on {cfg.dataset.name}'s test split.\n\nRerun: `{rerun}`"
    with tracking.tracked_run(experiment_id, f"eval-{cfg.dataset.name}", tags, description) as run:
        mlflow.log_params({"model_uri": cfg.model_uri, **tracking.flatten(cfg.dataset, "dataset.")})
        mlflow.log_metrics(metrics)
        mlflow.log_metrics({f"class_accuracy.{i}": acc for i, (_, acc, _) in enumerate(per_class)})
        title = f"{cfg.model_uri} on {cfg.dataset.name}"
        for name, figure in (
            ("confusion_matrix", plots.confusion_matrix(truth, predicted, names, title)),
            ("worst_misclassified", plots.image_grid(data.splits.test.x[worst], captions, f"worst mistakes: {title}")),
        ):
            mlflow.log_figure(figure, f"plots/{name}.png")
            plots.plt.close(figure)
        mlflow.log_text(
            "class,accuracy,count\n" + "".join(f"{n},{a:.6f},{c}\n" for n, a, c in per_class), "per_class_accuracy.csv"
        )
    return Evaluation(run.info.run_id, loaded.source_run_id, metrics, per_class, confusion)


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
    from cnnlab import tracking, train
    from cnnlab.models.loading import load_model
    from cnnlab.models.serving import as_pixels, serving_model

    tracking.configure(cfg.tracking)
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


def register(cfg: Any) -> Any:
    """Registers ``model_uri`` in the MLflow Model Registry under ``name`` and points ``alias`` at the new version."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from cnnlab import tracking
    from cnnlab.config.domains import name_problem
    from cnnlab.errors import ConfigError
    from cnnlab.models.loading import source_run_id

    if not cfg.name:
        raise ConfigError("name: give the registered model a name, e.g. name=deep-network")
    for key in ("name", "alias"):
        problem = name_problem(cfg[key])
        if problem:
            raise ConfigError(f"{key}: {problem}")
    tracking.configure(cfg.tracking)
    run_id = source_run_id(cfg.model_uri)
    client = MlflowClient()
    source_tags = client.get_run(run_id).data.tags if run_id else {}
    tags = {"cnnlab.source_run_id": run_id or ""}
    for key in ("cnnlab.study", "cnnlab.claim", "dataset", "model"):
        if key in source_tags:
            tags[key] = source_tags[key]
    version = mlflow.register_model(cfg.model_uri, cfg.name, tags=tags)
    client.set_registered_model_alias(cfg.name, cfg.alias, version.version)
    return version


def evaluation_summary(result: Evaluation, cfg: Any) -> str:
    """What `python -m cnnlab.evaluate` prints: test metrics and per-class accuracy."""
    source = f" (run {result.source_run_id})" if result.source_run_id else ""
    width = max(len(name) for name, _, _ in result.per_class)
    lines = [
        f"\n  model           {cfg.model_uri}{source}",
        f"  test accuracy   {result.metrics['test_accuracy']:.4f}   (test loss {result.metrics['test_loss']:.4f})\n",
        f"  {'class':<{width}}  accuracy  images",
        *(f"  {name:<{width}}  {accuracy:8.4f}  {count:6d}" for name, accuracy, count in result.per_class),
        f"\n  logged as run {result.run_id} (experiment {cfg.tracking.experiment!r}): plots in its artifacts\n",
    ]
    return "\n".join(lines)


def predictions_table(rows: list[dict[str, Any]]) -> str:
    """What `python -m cnnlab.predict` prints: one row per image; the note and true columns only when used."""
    import pandas as pd

    table = pd.DataFrame(rows)
    for column in ("note", "true"):
        if not table[column].astype(bool).any():
            table = table.drop(columns=column)
    return table.to_string(index=False, formatters={"probability": "{:.4f}".format})


def registration_summary(version: Any, cfg: Any) -> str:
    return (
        f"registered {cfg.model_uri} as {cfg.name} version {version.version}, alias @{cfg.alias}\n"
        f"evaluate it: python -m cnnlab.evaluate model_uri=models:/{cfg.name}@{cfg.alias}"
    )
