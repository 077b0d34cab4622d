"""evaluate(cfg): a logged model's test metrics, per-class accuracy, confusion matrix and worst mistakes, logged as
a run linked to its source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.commands.source_protocol import with_source_protocol


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

    from cnnlab import plots, train
    from cnnlab.models.loading import load_model
    from cnnlab.models.serving import trained_network
    from cnnlab.tracking.provenance import rerun_command
    from cnnlab.tracking.records import flatten, log_figures
    from cnnlab.tracking.runs import tracked_run
    from cnnlab.tracking.store import configure, tracking_uri

    # The store the model URI refers to, opened by the lookup (the checks found it); created only for the record.
    mlflow.set_tracking_uri(tracking_uri(cfg.tracking))
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

    experiment_id = configure(cfg.tracking)
    tags = {
        "cnnlab.source_run_id": loaded.source_run_id or "",
        "cnnlab.model_uri": cfg.model_uri,
        "dataset": cfg.dataset.name,
    }
    rerun = rerun_command("cnnlab.evaluate", list(overrides or []))
    description = f"Evaluation of `{cfg.model_uri}` on {cfg.dataset.name}'s test split.\n\nRerun: `{rerun}`"
    with tracked_run(experiment_id, f"eval-{cfg.dataset.name}", tags, description) as run:
        mlflow.log_params({"model_uri": cfg.model_uri, **flatten(cfg.dataset, "dataset.")})
        mlflow.log_metrics(metrics)
        mlflow.log_metrics({f"class_accuracy.{i}": acc for i, (_, acc, _) in enumerate(per_class)})
        title = f"{cfg.model_uri} on {cfg.dataset.name}"
        log_figures(
            (
                ("confusion_matrix", plots.confusion_matrix(truth, predicted, names, title)),
                (
                    "worst_misclassified",
                    plots.image_grid(data.splits.test.x[worst], captions, f"worst mistakes: {title}"),
                ),
            )
        )
        mlflow.log_text(
            "class,accuracy,count\n" + "".join(f"{n},{a:.6f},{c}\n" for n, a, c in per_class), "per_class_accuracy.csv"
        )
    return Evaluation(run.info.run_id, loaded.source_run_id, metrics, per_class, confusion)


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
