"""What a run records beyond its life: the resolved config and its params as a run starts, a trial's outcome, figures
and the trained model.

Every training run (:func:`cnnlab.train.train`) and every trial (:mod:`cnnlab.tuning.tuners`) starts with
:func:`record_run_start`; each epoch's metrics come from :class:`cnnlab.tracking.epochs.MlflowEpochLogger`.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import mlflow
from omegaconf import OmegaConf

from cnnlab import machine
from cnnlab.tracking import datasets, provenance


def flatten(node: Any, prefix: str = "") -> dict[str, str]:
    """Dotted keys for every leaf of a resolved config: ``trainer.epochs``, ``model.blocks.0.filters``, ..."""
    container = OmegaConf.to_container(node, resolve=True, enum_to_str=True) if OmegaConf.is_config(node) else node
    out: dict[str, str] = {}
    if isinstance(container, dict):
        items = container.items()
    elif isinstance(container, list) and not all(isinstance(item, str | int | float) for item in container):
        items = ((str(index), item) for index, item in enumerate(container))
    else:
        return {prefix.rstrip("."): str(container)}
    for key, value in items:
        if isinstance(value, dict | list):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def training_tags(cfg: Any, arrays: Any, overrides: list[str], precision: tuple[str, str]) -> dict[str, str]:
    """A training run's tags: what it trained (dataset, model, the data's source and hashes), from what (git commit,
    library versions, the command and its overrides), in which precision (with the reason it was chosen) and op
    determinism, and on which machine kind (:func:`cnnlab.machine.tags`)."""
    return {
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "data.source": arrays.source,
        "data.origin": arrays.origin,
        "data.digest": arrays.digest,
        "data.verified": arrays.verified or "no",
        **{f"data.sha256.{key}": value for key, value in arrays.sha256.items()},
        **provenance.git_state(),
        **provenance.versions(),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        "hydra.overrides": " ".join(overrides),
        "cnnlab.precision": precision[0],
        "cnnlab.precision_reason": precision[1],
        "cnnlab.deterministic": str(bool(cfg.trainer.deterministic)).lower(),
        **machine.tags(),
    }


def record_run_start(cfg: Any, data: Any, params: dict[str, Any] | None = None, uncommitted_diff: bool = False) -> None:
    """What a run (or trial) of ``cfg`` records as it starts, on the active run: each split of ``data`` as a dataset
    input, ``params`` and every leaf of the resolved config as params, the config itself as ``config.yaml`` (what
    ``cnnlab.verify`` reruns), and with ``uncommitted_diff`` the ``git diff`` of a dirty tree."""
    datasets.log_datasets(data, cfg.dataset.name)
    if uncommitted_diff:
        provenance.log_uncommitted_diff()
    mlflow.log_params({**{key: str(value) for key, value in (params or {}).items()}, **flatten(cfg)})
    mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")


def log_figures(figures: Any) -> None:
    """Logs each ``(name, figure)`` as ``plots/<name>.png`` on the active run and closes it."""
    from cnnlab import plots

    for name, figure in figures:
        mlflow.log_figure(figure, f"plots/{name}.png")
        plots.plt.close(figure)


def model_summary(model: Any) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    return "\n".join(lines)


def log_keras_model(network: Any, cfg: Any, data: Any) -> None:
    """Logs the trained network as an MLflow Keras model that takes raw pixels (``models.serving``).

    Its signature states the input, float32 pixels 0-255 of the dataset's shape ((N, height, width), or
    (N, height, width, 3) in colour; ``mlflow models serve`` casts a JSON of uint8 pixels to it), and the output,
    one probability per class; the class names are in its metadata.
    """
    import keras
    import mlflow
    import tensorflow as tf
    from mlflow.models import infer_signature

    from cnnlab.models.serving import as_pixels, raw_image_model

    model = raw_image_model(network, cfg.dataset.scale_pixels)
    example = as_pixels(data.splits.test.x[:4], model)
    # Called eagerly rather than through predict(), which would trace a predict function for four images: in a
    # study that is one tracing per trial, and TensorFlow warns about "retracing" from the fifth trial on.
    signature = infer_signature(example, keras.ops.convert_to_numpy(model(example, training=False)))
    metadata = {
        "class_names": list(data.class_names),
        "input": f"raw pixels 0-255 (uint8 values as float32), shape (N, {', '.join(map(str, example.shape[1:]))}); "
        "scaling happens inside",
        "preprocessing": "x / 255 inside the model" if cfg.dataset.scale_pixels else "none (trained on raw pixels)",
    }
    # Stating the requirements skips MLflow's inference of them, which reloads the model in a subprocess.
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=requirements, metadata=metadata)


def log_trial_outcome(results: Any, objective: Any) -> float | None:
    """The trial's score as keras-tuner computes it (best epoch) and its cost, on the active run."""
    best = _best_value(results, objective)
    if best is not None:
        mlflow.log_metric(f"best_{objective.name}", best)
    history = results[0] if isinstance(results, list) else results
    seconds = getattr(history, "history", {}).get("epoch_seconds", [])
    if seconds:
        mlflow.log_metric("seconds_per_epoch", sum(seconds) / len(seconds))
    model = getattr(history, "model", None)
    if model is not None:
        mlflow.log_metric("num_params", model.count_params())
    return best


def _best_value(results: Any, objective: Any) -> float | None:
    histories = results if isinstance(results, list) else [results]
    values = []
    for history in histories:
        series = getattr(history, "history", {}).get(objective.name, [])
        finite = [value for value in series if math.isfinite(value)]
        if finite:
            values.append(max(finite) if objective.direction == "max" else min(finite))
    return sum(values) / len(values) if values else None
