"""What the Hydra entry points share: validation before heavy imports, clean errors, exit codes, the summary."""

from __future__ import annotations

import logging
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

from cnnlab.config import ConfigError

log = logging.getLogger("cnnlab")

EXIT_BAD_INPUT = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def overrides() -> list[str]:
    """The command line's Hydra overrides (empty outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def checked(command: str, cfg: Any) -> list[str]:
    """The overrides, after :func:`cnnlab.checks.check` (Hydra's callback ran it already; callers without Hydra's
    launcher, the tests among them, get the same refusals here)."""
    from cnnlab.checks import check

    given = overrides()
    try:
        check(command, cfg, given)
    except ConfigError as error:
        fail(str(error))
    return given


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(code)


def launch(main: Any) -> None:
    """Runs a ``@hydra.main`` function as a command: Hydra's composition errors (an unknown key or option, a wrong
    type, a bad override) print as one ``Error:`` message without the stack-trace hint, and a finished command
    exits at once (:func:`exit_without_teardown`)."""
    import hydra._internal.utils as hydra_utils

    hydra_utils.run_and_report = _report_config_errors(hydra_utils.run_and_report)
    main()
    exit_without_teardown()


def _report_config_errors(hydra_run_and_report: Any) -> Any:
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    def run_and_report(func: Any) -> Any:
        try:
            return func()
        except (HydraException, OmegaConfBaseException) as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            message = str(error).strip()
            if isinstance(error, OverrideParseException) and (bad := _unreadable_override()):
                message = f"{bad}: not a valid override ({message})"
            if isinstance(error.__cause__, OmegaConfBaseException):
                message += "\n" + str(error.__cause__).strip()
            fail(message + "\n(the groups, options and keys: add --help; every config: add --cfg job)")
        except Exception as error:  # anything else: Hydra's own report, trimmed traceback and all
            return hydra_run_and_report(partial(_reraise, error))

    return run_and_report


def _unreadable_override() -> str | None:
    """The first command-line argument Hydra's override grammar cannot read, to name it in the message."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for argument in sys.argv[1:]:
        if argument.startswith("-"):
            continue
        try:
            parser.parse_override(argument)
        except Exception:
            return argument
    return None


def _reraise(error: Exception) -> None:
    raise error


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
    from cnnlab.errors import Terminated, UserError

    try:
        return action()
    except UserError as error:  # every error a user can fix, from any module: one message, one exit code
        fail(f"{error}{error.epilogue}", error.exit_code)
    except KeyboardInterrupt:
        fail("interrupted (SIGINT); the run is recorded as KILLED and what finished is kept.", EXIT_SIGINT)
    except Terminated:
        fail("terminated (SIGTERM); the run is recorded as KILLED and what finished is kept.", EXIT_SIGTERM)


def run_entry(cfg: Any) -> float:
    """Trains (train() validates before TensorFlow loads) and prints the summary."""
    from cnnlab.train import train

    given = checked("run", cfg)
    result = guarded(lambda: train(cfg, given))
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
                f"http://127.0.0.1:5000/#/experiments/{result.experiment_id}/runs/{result.run_id}"
                "?workflowType=machine_learning",
                "",
            ]
        )
    )
    return accuracy


def sweep_entry(cfg: Any) -> float | None:
    """Runs or resumes the study (run_sweep checks config and space before TensorFlow loads), prints the results."""
    from cnnlab.tuning.run import run_sweep

    given = checked("sweep", cfg)
    summary = guarded(lambda: run_sweep(cfg, given))
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
            f"\n  retrain it     python -m cnnlab.run --config-dir {summary['exported'].parent.parent} experiment=best"
        )
    print(f"  parent run     {study.parent_run_id} (experiment cnnlab-sweep-{study.name}); browse with `make ui`\n")
    return summary.get("best_score")


def evaluate_entry(cfg: Any) -> None:
    from cnnlab.evaluation import evaluate

    given = checked("evaluate", cfg)
    result = guarded(lambda: evaluate(cfg, given))
    print(f"\n  model           {cfg.model_uri}" + (f" (run {result.source_run_id})" if result.source_run_id else ""))
    print(f"  test accuracy   {result.metrics['test_accuracy']:.4f}   (test loss {result.metrics['test_loss']:.4f})\n")
    width = max(len(name) for name, _, _ in result.per_class)
    print(f"  {'class':<{width}}  accuracy  images")
    for name, accuracy, count in result.per_class:
        print(f"  {name:<{width}}  {accuracy:8.4f}  {count:6d}")
    print(f"\n  logged as run {result.run_id} (experiment {cfg.tracking.experiment!r}): plots in its artifacts\n")


def predict_entry(cfg: Any) -> None:
    from cnnlab.evaluation import predict

    given = checked("predict", cfg)
    rows = guarded(lambda: predict(cfg, given))
    import pandas as pd

    table = pd.DataFrame(rows)
    if not table["note"].astype(bool).any():
        table = table.drop(columns="note")
    if not table["true"].astype(bool).any():
        table = table.drop(columns="true")
    print(table.to_string(index=False, formatters={"probability": "{:.4f}".format}))


def register_entry(cfg: Any) -> None:
    from cnnlab.evaluation import register

    checked("register", cfg)
    version = guarded(lambda: register(cfg))
    print(f"registered {cfg.model_uri} as {cfg.name} version {version.version}, alias @{cfg.alias}")
    print(f"evaluate it: python -m cnnlab.evaluate model_uri=models:/{cfg.name}@{cfg.alias}")


def verify_entry(cfg: Any) -> None:
    """Reruns a logged run and prints how its new histories compare with the logged ones."""
    from cnnlab.verification import verify

    checked("verify", cfg)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    result = guarded(lambda: verify(cfg.run_id, uri))
    compared = ", ".join(f"{metric} ({epochs} epochs)" for metric, epochs in result.compared.items())
    print(f"\n  verified run   {result.run_id}\n  compared       {compared}\n  result         {result.outcome}")
    print(f"  rerun logged   {result.rerun_id} (experiment cnnlab-verifications)\n")


def reproduce_entry(cfg: Any) -> None:
    """Validates every claim's config first (fast), then runs or resumes the reproduction and prints the table."""
    from hydra import compose

    given = checked("reproduce", cfg)
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
