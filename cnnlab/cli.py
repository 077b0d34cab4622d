"""What the Hydra entry points share: validation before heavy imports, clean errors, exit codes, the summary."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from cnnlab.config import ConfigError, name_problem, validate

log = logging.getLogger("cnnlab")

EXIT_BAD_INPUT = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def overrides() -> list[str]:
    """The command line's Hydra overrides; refuses a ``tracking.uri`` that ``MLFLOW_TRACKING_URI`` would overrule."""
    from hydra.core.hydra_config import HydraConfig

    given = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    environment = os.environ.get("MLFLOW_TRACKING_URI")
    for override in given:
        key, _, value = override.partition("=")
        if key.lstrip("+~") in ("tracking.uri", "tracking_uri") and environment and value != environment:
            fail(
                f"{key}: {value} was given, but MLFLOW_TRACKING_URI={environment} is set, and MLflow's own variable "
                f"decides the store; unset it (unset MLFLOW_TRACKING_URI) to use {value}, or drop {key}"
            )
    return given


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(code)


def exit_without_teardown() -> None:
    """Ends a finished command at once: exit handlers run and output is flushed, then the process exits.

    Once TensorFlow is loaded, the interpreter's own teardown (module clean-up, TensorFlow's thread pools and
    static destructors) takes ~2 s on 2 cores and records nothing: every run is already closed in MLflow by
    then. Only for successful ends; errors leave through ``sys.exit`` as usual.
    """
    import atexit

    if "tensorflow" not in sys.modules:
        return
    atexit._run_exitfuncs()  # MLflow's and Hydra's handlers, as a normal exit would run them
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def guarded(action: Any) -> Any:
    """Runs ``action()``, turning bad input, divergence and signals into one clear line and the right exit code."""
    from cnnlab.data import DataError
    from cnnlab.errors import NanLossError, Terminated

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
    """Trains (train() validates before TensorFlow loads) and prints the summary."""
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
    """Runs or resumes the study (run_sweep checks config and space before TensorFlow loads), prints the results."""
    from cnnlab.tuning.run import run_sweep

    summary = guarded(lambda: run_sweep(cfg, overrides()))
    study = summary["study"]
    if "role" in summary:
        print(f"{summary['role']} done with study {study.name}")
        return None
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


def _use_errors(action: Any) -> Any:
    from cnnlab.evaluation import ImageError
    from cnnlab.models.loading import ModelLoadError

    try:
        return guarded(action)
    except (ModelLoadError, ImageError) as error:
        fail(str(error))


def _checked(cfg: Any) -> Any:
    """A use command's own options in their domains, and its image files present, before anything loads."""
    from cnnlab.config import check_domains

    try:
        check_domains(cfg)
        missing = [image for image in cfg.get("images", []) if not Path(image).is_file()]
        if missing:
            raise ConfigError(f"images: no such file: {', '.join(missing)}")
    except ConfigError as error:
        fail(str(error))
    return cfg


def evaluate_entry(cfg: Any) -> None:
    from cnnlab.evaluation import evaluate

    result = _use_errors(lambda: evaluate(_checked(cfg), overrides()))
    print(f"\n  model           {cfg.model_uri}" + (f" (run {result.source_run_id})" if result.source_run_id else ""))
    print(f"  test accuracy   {result.metrics['test_accuracy']:.4f}   (test loss {result.metrics['test_loss']:.4f})\n")
    width = max(len(name) for name, _, _ in result.per_class)
    print(f"  {'class':<{width}}  accuracy  images")
    for name, accuracy, count in result.per_class:
        print(f"  {name:<{width}}  {accuracy:8.4f}  {count:6d}")
    print(f"\n  logged as run {result.run_id} (experiment {cfg.tracking.experiment!r}): plots in its artifacts\n")


def predict_entry(cfg: Any) -> None:
    from cnnlab.evaluation import predict

    rows = _use_errors(lambda: predict(_checked(cfg), overrides()))
    import pandas as pd

    table = pd.DataFrame(rows)
    if not table["note"].astype(bool).any():
        table = table.drop(columns="note")
    if not table["true"].astype(bool).any():
        table = table.drop(columns="true")
    print(table.to_string(index=False, formatters={"probability": "{:.4f}".format}))


def register_entry(cfg: Any) -> None:
    from cnnlab.evaluation import register

    version = _use_errors(lambda: register(_checked(cfg)))
    print(f"registered {cfg.model_uri} as {cfg.name} version {version.version}, alias @{cfg.alias}")
    print(f"evaluate it: python -m cnnlab.evaluate model_uri=models:/{cfg.name}@{cfg.alias}")


def verify_entry(cfg: Any) -> None:
    """Reruns a logged run and prints how its new histories compare with the logged ones."""
    import re

    if not re.fullmatch(r"[0-9a-f]{32}", cfg.run_id):
        fail(f"run_id: an MLflow run id is 32 hexadecimal characters, got {cfg.run_id!r}")
    from cnnlab.verification import VerificationRefused, verify

    overrides()  # refuses a tracking_uri that MLFLOW_TRACKING_URI would overrule
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    try:
        result = guarded(lambda: verify(cfg.run_id, uri))
    except VerificationRefused as error:
        fail(str(error))
    compared = ", ".join(f"{metric} ({epochs} epochs)" for metric, epochs in result.compared.items())
    print(f"\n  verified run   {result.run_id}\n  compared       {compared}\n  result         {result.outcome}")
    print(f"  rerun logged   {result.rerun_id} (experiment cnnlab-verifications)\n")


def reproduce_entry(cfg: Any) -> None:
    """Validates every claim's config first (fast), then runs or resumes the reproduction and prints the table."""
    from hydra import compose

    from cnnlab.claims.reproduce import claim_overrides, precision_variants
    from cnnlab.config import seeds_design

    given = overrides()
    try:
        seeds_design(cfg)
        try:
            variants = precision_variants(cfg, claim_overrides(given))
        except ValueError as error:
            raise ConfigError(f"precisions: {error}") from error
        for name in cfg.claims:
            if problem := name_problem(name):
                raise ConfigError(f"claims: {problem}")
            for variant in variants:
                try:
                    claim_cfg = compose("config", overrides=[f"experiment={name}", *claim_overrides(given), *variant])
                except Exception as error:  # Hydra's own errors: no such experiment, a bad override
                    raise ConfigError(
                        f"claims: {name!r} is not a usable conf/experiment/{name}.yaml ({error})"
                    ) from error
                validate(claim_cfg)
    except ConfigError as error:
        fail(str(error))
    from cnnlab.claims.report import write_reproduction_md
    from cnnlab.claims.reproduce import reproduce

    def on_report(report: Any, results: list[Any], parent_id: str) -> None:
        if cfg.report_path:
            write_reproduction_md(Path(cfg.report_path), report, parent_id, results, list(cfg.claims))

    parent_id, results, report = guarded(
        lambda: reproduce(cfg, given, lambda extra: compose("config", overrides=extra), on_report)
    )
    print("\n" + report["markdown"] + "\n")
    print(f"  parent run {parent_id} (experiment cnnlab-reproductions): report.html, report.md, claims.csv")
    if cfg.report_path:
        print(f"  wrote {cfg.report_path}")
