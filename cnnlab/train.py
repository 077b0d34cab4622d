"""The one place cnnlab prepares data, builds, trains, evaluates and tracks a network.

``train(cfg)`` is a whole tracked run (what ``cnnlab.run`` and the reproduction call); the sweep's HyperModel uses
the same pieces (:func:`prepare_data`, :func:`build_compiled_model`, :func:`fit`). Importable and testable without
Hydra: pass any OmegaConf config with the schema of :mod:`cnnlab.config.schema`.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from cnnlab import compat
from cnnlab.config.schema import image_shape, option
from cnnlab.config.validation import validate
from cnnlab.machine import choose_precision

log = logging.getLogger(__name__)


@dataclass
class Result:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    history: dict[str, list[float]] = field(default_factory=dict)
    data_source: str = ""
    num_params: int = 0


@dataclass
class PreparedData:
    """Verified arrays split by the config's protocol; pipelines are made per config (batch size can vary)."""

    arrays: Any
    splits: Any
    class_names: list[str]

    def pipeline(self, cfg: Any, split_name: str, shuffle: bool = False) -> Any:
        from cnnlab.data.pipeline import make_dataset

        split = getattr(self.splits, split_name)
        if split is None:
            return None
        categorical = option(cfg.trainer.loss) == "categorical_crossentropy"
        return make_dataset(
            split.x,
            split.y,
            batch_size=cfg.trainer.batch_size,
            scale_pixels=cfg.dataset.scale_pixels,
            one_hot_classes=len(self.class_names) if categorical else None,
            shuffle_seed=source_seeds(cfg).data_order if shuffle else None,
        )


@dataclass(frozen=True)
class SourceSeeds:
    """The seed of each source of randomness in training, the one place a run's ``seed_*`` keys are read.

    ``init`` and ``dropout`` stay None where they follow ``seed``: those layers then take Keras' own draws, which
    ``seed`` seeds (:class:`cnnlab.models.builder.LayerSeeds`). The data order always has a number: it seeds both
    TensorFlow's global seed and the shuffle's own, the pair tf.data draws the order from."""

    init: int | None
    data_order: int
    dropout: int | None


def source_seeds(cfg: Any) -> SourceSeeds:
    data_order = cfg.seed_data_order
    return SourceSeeds(cfg.seed_init, cfg.seed if data_order is None else data_order, cfg.seed_dropout)


def seeds_apart(cfg: Any) -> dict[str, int]:
    """The sources seeded apart from ``seed``, by short name (``{"dropout": 5}``); empty when all follow it."""
    keys = {"init": cfg.seed_init, "order": cfg.seed_data_order, "dropout": cfg.seed_dropout}
    return {source: seed for source, seed in keys.items() if seed is not None}


def seed_label(cfg: Any) -> str:
    """``0``, or ``0 (init 3, dropout 5)`` when sources are seeded apart: what descriptions and titles show."""
    named = ", ".join(f"{source} {seed}" for source, seed in seeds_apart(cfg).items())
    return f"{cfg.seed} ({named})" if named else str(cfg.seed)


def seed_everything(cfg: Any) -> None:
    """Seeds Python, NumPy and TensorFlow from ``cfg.seed``, the data order from its own source, and switches on
    op determinism when ``cfg.trainer.deterministic``."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)  # Python, NumPy and TensorFlow in one call
    # TensorFlow's global seed reaches only the shuffle here (Keras' initializers and dropout draw statelessly from
    # their own seeds), so it belongs to the data order.
    tf.random.set_seed(source_seeds(cfg).data_order)
    compat.set_op_determinism(cfg.trainer.deterministic)  # off again when an earlier run of the process set it


def prepare_data(cfg: Any) -> PreparedData:
    from cnnlab.data import load_arrays
    from cnnlab.data.splits import make_splits

    arrays = load_arrays(cfg.dataset)
    splits = make_splits(arrays, option(cfg.trainer.validation), cfg.trainer.holdout_size, cfg.dataset.subset)
    return PreparedData(arrays=arrays, splits=splits, class_names=list(cfg.dataset.classes))


def build_compiled_model(cfg: Any) -> Any:
    """The network of ``cfg.model``, compiled with the config's optimizer, loss and metrics."""
    import keras

    from cnnlab.models.builder import LayerSeeds, build_model, build_optimizer

    precision, _ = choose_precision(option(cfg.trainer.precision))
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    seeds = source_seeds(cfg)
    layer_seeds = LayerSeeds(init_seed=seeds.init, dropout_seed=seeds.dropout)
    model = build_model(cfg.model, len(cfg.dataset.classes), image_shape(cfg.dataset), precision, layer_seeds)
    metrics = ["accuracy" if name == "accuracy" else keras.metrics.AUC(name="auc") for name in cfg.trainer.metrics]
    model.compile(
        optimizer=build_optimizer(cfg.optimizer),
        loss=option(cfg.trainer.loss),
        metrics=metrics,
        jit_compile=cfg.trainer.jit_compile,
        steps_per_execution=cfg.trainer.steps_per_execution,
    )
    return model


def fit(
    model: Any,
    cfg: Any,
    data: PreparedData,
    callbacks: list[Any] | None = None,
    epochs: int | None = None,
    initial_epoch: int = 0,
) -> Any:
    """``model.fit`` on the config's pipelines, stopping at the first NaN loss (raises NanLossError)."""
    import keras

    from cnnlab.callbacks import EpochTimer, StopOnNaN
    from cnnlab.tracking.epochs import MlflowEpochLogger

    nan_guard = StopOnNaN()
    callbacks = [nan_guard, EpochTimer(), MlflowEpochLogger(), *(callbacks or [])]
    stop = cfg.trainer.early_stopping
    if stop.enabled:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=stop.monitor, patience=stop.patience, restore_best_weights=stop.restore_best_weights
            )
        )
    verbose = cfg.trainer.verbose
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    with compat.released_gradient_registrations():
        history = model.fit(
            data.pipeline(cfg, "train", shuffle=True),
            validation_data=data.pipeline(cfg, "validation"),
            epochs=epochs or cfg.trainer.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the tf.data pipeline already reshuffles every epoch
        )
    nan_guard.raise_if_diverged()
    return history


def default_run_name(cfg: Any) -> str:
    suffix = "".join(f"-{source}{seed}" for source, seed in seeds_apart(cfg).items())
    return cfg.tracking.run_name or f"{cfg.dataset.name}-{cfg.model.name}-s{cfg.seed}{suffix}"


def train(
    cfg: Any,
    overrides: list[str] | None = None,
    *,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
    data: PreparedData | None = None,
) -> Result:
    """Trains ``cfg`` end to end and records it as one MLflow run (a child of ``parent_run_id`` when given)."""
    validate(cfg)
    started = time.perf_counter()

    import keras
    import mlflow
    import numpy as np

    from cnnlab import plots
    from cnnlab.tracking import provenance, records, runs, store

    # Reproductions and finalists train many models in one process: start each from Keras' blank global state,
    # as keras-tuner does before every trial, and before seeding so that the seed holds. No forced garbage
    # collection: it costs ~0.2 s of every run's start-up, and Python's collector frees the last model anyway.
    keras.backend.clear_session(free_memory=False)
    seed_everything(cfg)
    data = data or prepare_data(cfg)
    model = build_compiled_model(cfg)
    num_params = model.count_params()

    experiment_id = store.configure(cfg.tracking)
    overrides = list(overrides or [])
    rerun = provenance.rerun_command("cnnlab.run", overrides)
    tags = records.training_tags(cfg, data.arrays, overrides, choose_precision(option(cfg.trainer.precision)))
    tags.update(extra_tags or {})
    description = (
        f"{cfg.model.name} network on {cfg.dataset.name}, {cfg.trainer.epochs} epochs, seed {seed_label(cfg)}.\n\n"
        f"Rerun: `{rerun}`"
    )
    run_name = default_run_name(cfg)
    with runs.tracked_run(
        experiment_id,
        run_name,
        tags,
        description,
        parent_run_id=parent_run_id,
        system_metrics_interval=runs.system_metrics_interval(cfg.tracking),
    ) as run:
        log.info("MLflow run %s (%s) in experiment %r", run.info.run_id, run_name, cfg.tracking.experiment)
        records.record_run_start(cfg, data, {"num_params": num_params}, uncommitted_diff=tags["git.dirty"] == "true")
        mlflow.log_text(records.model_summary(model), "model_summary.txt")
        validation = data.splits.validation
        log.info(
            "training %s (%s parameters) on %d images, validating on %s, for %d epochs",
            cfg.model.name,
            f"{num_params:,}",
            len(data.splits.train),
            f"{len(validation)} images" if validation else "nothing",
            cfg.trainer.epochs,
        )
        callbacks: list[Any] = []
        checkpoint_dir = tempfile.TemporaryDirectory(prefix="cnnlab-checkpoint-") if cfg.trainer.checkpoint else None
        if checkpoint_dir is not None:
            best_path = os.path.join(checkpoint_dir.name, "best.keras")
            callbacks.append(keras.callbacks.ModelCheckpoint(best_path, monitor="val_loss", save_best_only=True))
        history = fit(model, cfg, data, callbacks)
        if checkpoint_dir is not None:
            model = keras.saving.load_model(best_path, safe_mode=True)
            checkpoint_dir.cleanup()

        test_data = data.pipeline(cfg, "test")
        scores, probabilities = score(model, cfg, test_data, data.splits.test.y)
        final = {f"test_{key}": value for key, value in scores.items()}
        predicted = np.argmax(probabilities, axis=1)
        epoch_seconds = history.history.get("epoch_seconds", [])
        final["epochs_run"] = float(len(epoch_seconds))
        final["seconds_per_epoch"] = float(np.mean(epoch_seconds))
        final["train_seconds"] = float(np.sum(epoch_seconds))
        mlflow.log_metrics(final)

        title = f"{cfg.dataset.name} / {cfg.model.name} / seed {seed_label(cfg)}"
        first = data.splits.train
        preview_names = [data.class_names[int(label)] for label in first.y[:25]]
        preview_title = f"{cfg.dataset.name}: first training images"
        records.log_figures(
            (
                ("preview", plots.image_grid(first.x[:25], preview_names, preview_title)),
                ("learning_curves", plots.learning_curves(history.history, title)),
                ("confusion_matrix", plots.confusion_matrix(data.splits.test.y, predicted, data.class_names, title)),
            )
        )
        if cfg.tracking.log_model:
            records.log_keras_model(model, cfg, data)
        final["total_seconds"] = time.perf_counter() - started
        mlflow.log_metric("total_seconds", final["total_seconds"])
        return Result(
            run_id=run.info.run_id,
            experiment_id=experiment_id,
            metrics=final,
            history={key: [float(v) for v in values] for key, values in history.history.items()},
            data_source=data.arrays.provenance(),
            num_params=num_params,
        )


def score(model: Any, cfg: Any, dataset: Any, labels: Any) -> tuple[dict[str, float], Any]:
    """The config's loss and metrics over ``dataset`` from one prediction pass, and the class probabilities.

    ``model.evaluate`` and then ``model.predict`` (for the confusion matrix) would pass over the data twice; the
    loss and metrics below are the ones ``compile`` uses, averaged over all examples as ``evaluate`` averages them.
    """
    import keras
    import numpy as np

    probabilities = np.asarray(model.predict(dataset, verbose=0), dtype="float32")
    labels = np.asarray(labels, dtype="int64")
    one_hot = np.eye(probabilities.shape[1], dtype="float32")[labels]
    loss_name = option(cfg.trainer.loss)
    targets = one_hot if loss_name == "categorical_crossentropy" else labels
    losses = keras.ops.convert_to_numpy(keras.losses.get(loss_name)(targets, probabilities))
    scores = {"loss": float(np.mean(losses))}
    for name in cfg.trainer.metrics:
        if name == "accuracy":
            scores["accuracy"] = float(np.mean(np.argmax(probabilities, axis=1) == labels))
        else:
            auc = keras.metrics.AUC(name=name)
            auc.update_state(one_hot, probabilities)
            scores[name] = float(auc.result())
    return scores, probabilities


def summary(result: Result, cfg: Any) -> str:
    """What `python -m cnnlab.run` prints when a run ends: its numbers, its data, and where to open it."""
    from cnnlab.tracking.store import tracking_uri

    uri = tracking_uri(cfg.tracking)
    metrics = result.metrics
    link = f"http://127.0.0.1:5000/#/experiments/{result.experiment_id}/runs/{result.run_id}"
    return "\n".join(
        [
            "",
            f"  test accuracy   {metrics.get('test_accuracy', float('nan')):.4f}   "
            f"(test loss {metrics.get('test_loss', float('nan')):.4f})",
            f"  epochs          {int(metrics['epochs_run'])} at {metrics['seconds_per_epoch']:.1f} s each",
            f"  total           {metrics['total_seconds']:.1f} s",
            f"  data            {result.data_source}",
            f"  MLflow run      {result.run_id} (experiment {cfg.tracking.experiment!r}, {uri})",
            f"  open it         make ui   (or: mlflow ui --backend-store-uri {uri}), then "
            f"{link}?workflowType=machine_learning",
            "",
        ]
    )
