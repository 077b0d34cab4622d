"""train(cfg) -> result: the one place cnnlab builds, trains, evaluates and tracks a network.

Importable and testable without Hydra: pass any OmegaConf config with the schema of :mod:`cnnlab.config`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from cnnlab.config import validate

log = logging.getLogger(__name__)


@dataclass
class Result:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    epoch_seconds: list[float] = field(default_factory=list)
    data_source: str = ""
    num_params: int = 0


def _value(option: Any) -> Any:
    return getattr(option, "value", option)


def seed_everything(seed: int, deterministic: bool) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow in one call
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def compile_model(model: Any, cfg: Any) -> None:
    import keras

    from cnnlab.models.builder import build_optimizer

    metrics: list[Any] = []
    for name in cfg.trainer.metrics:
        metrics.append("accuracy" if name == "accuracy" else keras.metrics.AUC(name="auc"))
    model.compile(
        optimizer=build_optimizer(cfg.optimizer),
        loss=_value(cfg.trainer.loss),
        metrics=metrics,
        jit_compile=cfg.trainer.jit_compile,
    )


def model_summary(model: Any) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    return "\n".join(lines)


def train(cfg: Any, overrides: list[str] | None = None) -> Result:
    """Trains ``cfg`` end to end and records it as one MLflow run; returns the run id and final metrics."""
    validate(cfg)
    started = time.perf_counter()

    import keras
    import mlflow
    import numpy as np

    from cnnlab import plots, tracking
    from cnnlab.callbacks import EpochTimer, MlflowEpochLogger, StopOnNaN
    from cnnlab.data import load_arrays
    from cnnlab.data.pipeline import make_dataset
    from cnnlab.data.splits import make_splits
    from cnnlab.models.builder import build_model

    seed_everything(cfg.seed, cfg.trainer.deterministic)
    if _value(cfg.trainer.precision) == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    arrays = load_arrays(cfg.dataset)
    splits = make_splits(arrays, _value(cfg.trainer.validation), cfg.trainer.holdout_size, cfg.dataset.subset)
    class_names = list(cfg.dataset.classes)
    num_classes = len(class_names)
    one_hot = num_classes if _value(cfg.trainer.loss) == "categorical_crossentropy" else None

    def pipeline(split: Any, shuffle: bool) -> Any:
        return make_dataset(
            split.x,
            split.y,
            batch_size=cfg.trainer.batch_size,
            scale_pixels=cfg.dataset.scale_pixels,
            one_hot_classes=one_hot,
            shuffle_seed=cfg.seed if shuffle else None,
        )

    model = build_model(cfg.model, num_classes, _value(cfg.trainer.precision))
    compile_model(model, cfg)
    num_params = model.count_params()

    experiment_id = tracking.configure(cfg.tracking)
    overrides = list(overrides or [])
    run_name = cfg.tracking.run_name or f"{cfg.dataset.name}-{cfg.model.name}-s{cfg.seed}"
    rerun = tracking.rerun_command("cnnlab.run", overrides)
    tags = {
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "data.source": arrays.source,
        **{f"data.sha256.{key}": value for key, value in arrays.sha256.items()},
        **tracking.git_state(),
        **tracking.versions(),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        "hydra.overrides": " ".join(overrides),
    }
    description = (
        f"{cfg.model.name} network on {cfg.dataset.name}, {cfg.trainer.epochs} epochs, seed {cfg.seed}.\n\n"
        f"Rerun: `{rerun}`"
    )
    with tracking.tracked_run(experiment_id, run_name, tags, description) as run:
        log.info("MLflow run %s (%s) in experiment %r", run.info.run_id, run_name, cfg.tracking.experiment)
        params = tracking.flatten(cfg)
        params["num_params"] = str(num_params)
        mlflow.log_params(params)
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        mlflow.log_text(model_summary(model), "model_summary.txt")
        log.info(
            "training %s (%s parameters) on %d images, validating on %s, for %d epochs",
            cfg.model.name,
            f"{num_params:,}",
            len(splits.train),
            f"{len(splits.validation)} images" if splits.validation else "nothing",
            cfg.trainer.epochs,
        )

        nan_guard, timer = StopOnNaN(), EpochTimer()
        callbacks: list[Any] = [nan_guard, timer, MlflowEpochLogger()]
        if cfg.trainer.early_stopping.enabled:
            stop = cfg.trainer.early_stopping
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=stop.monitor,
                    patience=stop.patience,
                    restore_best_weights=stop.restore_best_weights,
                )
            )
        checkpoint_dir = None
        if cfg.trainer.checkpoint:
            import tempfile

            checkpoint_dir = tempfile.TemporaryDirectory(prefix="cnnlab-checkpoint-")
            best_path = os.path.join(checkpoint_dir.name, "best.keras")
            callbacks.append(keras.callbacks.ModelCheckpoint(best_path, monitor="val_loss", save_best_only=True))
        verbose = cfg.trainer.verbose
        if verbose is None:
            verbose = 1 if sys.stdout.isatty() else 2
        history = model.fit(
            pipeline(splits.train, shuffle=True),
            validation_data=pipeline(splits.validation, shuffle=False) if splits.validation else None,
            epochs=cfg.trainer.epochs,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the tf.data pipeline already reshuffles every epoch
        )
        nan_guard.raise_if_diverged()
        if checkpoint_dir is not None:
            model = keras.saving.load_model(best_path, safe_mode=True)
            checkpoint_dir.cleanup()

        test_data = pipeline(splits.test, shuffle=False)
        test_metrics = model.evaluate(test_data, verbose=0, return_dict=True)
        final = {f"test_{key}": float(value) for key, value in test_metrics.items()}
        probabilities = model.predict(test_data, verbose=0)
        predicted = np.argmax(probabilities, axis=1)
        final["epochs_run"] = float(len(timer.seconds))
        final["seconds_per_epoch"] = float(np.mean(timer.seconds))
        final["train_seconds"] = float(np.sum(timer.seconds))
        mlflow.log_metrics(final)

        title = f"{cfg.dataset.name} / {cfg.model.name} / seed {cfg.seed}"
        for name, figure in (
            ("learning_curves", plots.learning_curves(history.history, title)),
            ("confusion_matrix", plots.confusion_matrix(splits.test.y, predicted, class_names, title)),
        ):
            mlflow.log_figure(figure, f"plots/{name}.png")
            plots.plt.close(figure)
        if cfg.tracking.log_model:
            log_keras_model(model, test_data)
        final["total_seconds"] = time.perf_counter() - started
        mlflow.log_metric("total_seconds", final["total_seconds"])
        return Result(
            run_id=run.info.run_id,
            experiment_id=experiment_id,
            metrics=final,
            epoch_seconds=list(timer.seconds),
            data_source=arrays.source,
            num_params=num_params,
        )


def log_keras_model(model: Any, sample_data: Any) -> None:
    """Logs the model as an MLflow Keras model with a signature, so ``mlflow.pyfunc.load_model`` can predict."""
    import keras
    import mlflow
    import numpy as np
    import tensorflow as tf
    from mlflow.models import infer_signature

    images, _ = next(iter(sample_data.take(1)))
    example = np.asarray(images[:4])
    signature = infer_signature(example, np.asarray(model.predict(example, verbose=0)))
    # Stating the requirements skips MLflow's inference of them, which reloads the model in a subprocess.
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=requirements)
