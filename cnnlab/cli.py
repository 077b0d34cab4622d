"""What the Hydra entry points share: validation before heavy imports, clean errors, exit codes, the summary."""

from __future__ import annotations

import logging
import sys
from typing import Any

from cnnlab.config import ConfigError, validate

log = logging.getLogger("cnnlab")

EXIT_BAD_INPUT = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(code)


def guarded(action: Any) -> Any:
    """Runs ``action()``, turning bad input, divergence and signals into one clear line and the right exit code."""
    from cnnlab.callbacks import NanLossError
    from cnnlab.data import DataError
    from cnnlab.tracking import Terminated

    try:
        return action()
    except (DataError, ConfigError) as error:
        fail(str(error))
    except NanLossError as error:
        fail(f"{error}. The run is recorded as FAILED.")
    except KeyboardInterrupt:
        fail("interrupted (SIGINT); the run is recorded as KILLED and what finished is kept.", EXIT_SIGINT)
    except Terminated:
        fail("terminated (SIGTERM); the run is recorded as KILLED and what finished is kept.", EXIT_SIGTERM)


def run_entry(cfg: Any) -> float:
    """Validates, trains, prints the summary."""
    try:
        validate(cfg)
    except ConfigError as error:
        fail(str(error))
    from cnnlab.train import train

    result = guarded(lambda: train(cfg, overrides()))
    from cnnlab.tracking import tracking_uri

    uri = tracking_uri(cfg.tracking)
    metrics = result.metrics
    accuracy = metrics.get("test_accuracy", float("nan"))
    print(
        "\n".join(
            [
                "",
                f"  test accuracy   {accuracy:.4f}   (test loss {metrics.get('test_loss', float('nan')):.4f})",
                f"  epochs          {int(metrics['epochs_run'])} at {metrics['seconds_per_epoch']:.1f} s each",
                f"  total           {metrics['total_seconds']:.1f} s",
                f"  data            {result.data_source}",
                f"  MLflow run      {result.run_id} (experiment {cfg.tracking.experiment!r}, {uri})",
                f"  open it         make ui   (or: mlflow ui --backend-store-uri {uri}), then "
                f"http://127.0.0.1:5000/#/experiments/{result.experiment_id}/runs/{result.run_id}",
                "",
            ]
        )
    )
    return accuracy


def sweep_entry(cfg: Any) -> float | None:
    """Validates config and space, runs or resumes the study, prints where its results are."""
    from cnnlab.tuning.space import check_space

    try:
        validate(cfg)
        check_space(cfg)
    except ConfigError as error:
        fail(str(error))
    from cnnlab.tuning.run import run_sweep

    summary = guarded(lambda: run_sweep(cfg, overrides()))
    study = summary["study"]
    table = summary["table"]
    from cnnlab.tuning.study import markdown

    print(f"\n[study {study.name}] {len(table)} trials, {summary['minutes']:.1f} min this session\n")
    print(markdown(table.head(10)))
    if "best_score" in summary:
        print(
            f"\n  best {study.objective}  {summary['best_score']:.4f} (trial {summary['best_trial']})"
            f"\n  retrain it     python -m cnnlab.run experiment={summary['exported'].stem}"
        )
    print(f"  parent run     {study.parent_run_id} (experiment cnnlab-sweep-{study.name}); browse with `make ui`\n")
    return summary.get("best_score")
