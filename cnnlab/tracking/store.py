"""Where runs go: the MLflow store (``MLFLOW_TRACKING_URI`` or ``tracking.uri``), its first contact, and experiments
created with local artifacts and a description of what they hold."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow

from cnnlab.tracking.runs import mark_dead_processes_killed

log = logging.getLogger(__name__)

# MLflow 3's UI opens an experiment in its GenAI view unless told it holds model training.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


# What each experiment holds and how to rerun it, shown on its page in the UI (the experiment's description).
DESCRIPTIONS = {
    "cnnlab-sweep-": (
        "keras-tuner study `{rest}`. The parent run is the study: its trials table, plots and `best_<objective>` "
        "(updated after every trial); each trial is a child run. Resume it with the command in the parent run's "
        "description (`cnnlab sweep sweep.name={rest} ...`)."
    ),
    "cnnlab-reproductions": (
        "Reproductions of the tutorials' published claims: one parent run per `make reproduce` (verdicts in "
        "report.html, report.md, claims.csv) and one child run per claim and seed. Rerun or resume: `make reproduce`."
    ),
    "cnnlab-evaluations": "Evaluations of logged models (`cnnlab evaluate model_uri=...`), each tagged "
    "with its source run.",
    "cnnlab-verifications": "Reruns of logged runs (`cnnlab verify run_id=<id>`), each tagged "
    "`cnnlab.verifies=<id>` with the verdict.",
    "cnnlab-fidelity": "The tutorials' plain Keras script on the claims' protocols (`make fidelity`), beside "
    "cnnlab's own seeds in cnnlab-reproductions.",
    "cnnlab-": "Training runs of `cnnlab run dataset={rest}`; each run's description has the command that reruns it.",
}


def experiment_description(name: str) -> str:
    for prefix, text in DESCRIPTIONS.items():
        if name.startswith(prefix):
            return text.format(rest=name.removeprefix(prefix))
    return "cnnlab runs; each run's description has the command that reruns it."


def tracking_uri(tracking_cfg: Any) -> str:
    """The standard ``MLFLOW_TRACKING_URI`` wins over ``tracking.uri``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or tracking_cfg.uri


@contextlib.contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
    """Serialises first contact with a SQLite store across processes.

    MLflow creates and migrates the schema on first contact; several processes doing that at once (a sweep's
    workers, four runs started together) collide mid-migration. Later writes are short and SQLite copes.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_announced: set[str] = set()


def configure(tracking_cfg: Any) -> str:
    """Points MLflow at the store and returns the experiment id, creating the experiment with local artifacts."""
    uri = tracking_uri(tracking_cfg)
    if uri not in _announced:  # once per store and process: a reproduction configures before every seed
        _announced.add(uri)
        source = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "tracking.uri"
        log.info("MLflow store: %s (from %s)", uri, source)
    mlflow.set_tracking_uri(uri)
    with sqlite_init_lock(uri):
        experiment_id = _experiment_id(tracking_cfg, uri)
    mark_dead_processes_killed(mlflow.MlflowClient(), experiment_id)
    return experiment_id


def _experiment_id(tracking_cfg: Any, uri: str) -> str:
    experiment = mlflow.get_experiment_by_name(tracking_cfg.experiment)
    tags = {**EXPERIMENT_KIND, "mlflow.note.content": experiment_description(tracking_cfg.experiment)}
    if experiment is not None:
        client = mlflow.MlflowClient()
        for key, value in tags.items():  # experiments made before these tags existed get them too
            if key not in experiment.tags:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    artifact_location = None
    if tracking_cfg.artifact_root:
        artifact_location = (Path(tracking_cfg.artifact_root).resolve() / tracking_cfg.experiment).as_uri()
    elif uri.startswith("sqlite:///"):
        # Artifacts live beside the database, so one folder (mlruns/ by default) holds the whole store.
        database = Path(uri.removeprefix("sqlite:///"))
        artifact_location = (database.resolve().parent / "artifacts" / tracking_cfg.experiment).as_uri()
    try:
        return mlflow.create_experiment(tracking_cfg.experiment, artifact_location=artifact_location, tags=tags)
    except mlflow.exceptions.MlflowException:
        # Another process created it between our lookup and our create.
        return mlflow.get_experiment_by_name(tracking_cfg.experiment).experiment_id
