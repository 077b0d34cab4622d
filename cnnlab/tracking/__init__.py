"""MLflow: where runs go, what each run records, and how it ends (FINISHED, FAILED or KILLED with a reason)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
from omegaconf import OmegaConf

import cnnlab
from cnnlab.errors import Terminated

log = logging.getLogger(__name__)

REASON_TAG = "cnnlab.status_reason"
# MLflow 3's UI opens an experiment in its GenAI view unless told it holds model training.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


# What each experiment holds and how to rerun it, shown on its page in the UI (the experiment's description).
DESCRIPTIONS = {
    "cnnlab-sweep-": (
        "keras-tuner study `{rest}`. The parent run is the study: its trials table, plots and `best_<objective>` "
        "(updated after every trial); each trial is a child run. Resume it with the command in the parent run's "
        "description (`python -m cnnlab.sweep sweep.name={rest} ...`)."
    ),
    "cnnlab-reproductions": (
        "Reproductions of the tutorials' published claims: one parent run per `make reproduce` (verdicts in "
        "report.html, report.md, claims.csv) and one child run per claim and seed. Rerun or resume: `make reproduce`."
    ),
    "cnnlab-evaluations": "Evaluations of logged models (`python -m cnnlab.evaluate model_uri=...`), each tagged "
    "with its source run.",
    "cnnlab-verifications": "Reruns of logged runs (`python -m cnnlab.verify run_id=<id>`), each tagged "
    "`cnnlab.verifies=<id>` with the verdict.",
    "cnnlab-fidelity": "The tutorials' plain Keras script on the claims' protocols (`make fidelity`), beside "
    "cnnlab's own seeds in cnnlab-reproductions.",
    "cnnlab-": "Training runs of `python -m cnnlab.run dataset={rest}`; each run's description has the command that "
    "reruns it.",
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


def git_state() -> dict[str, str]:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


def versions() -> dict[str, str]:
    """The libraries a run's numbers depend on, read from their installed metadata: importing TensorFlow to ask it
    costs ~5 CPU-s, which a reproduction or report with nothing left to train would spend on this alone."""
    from importlib.metadata import version

    return {
        "version.cnnlab": cnnlab.__version__,
        "version.tensorflow": version("tensorflow"),
        "version.keras": version("keras"),
        "version.mlflow": mlflow.__version__,
        "version.python": sys.version.split()[0],
    }


def rerun_command(module: str, overrides: list[str]) -> str:
    return shlex.join(["python", "-m", module, *overrides])


class _SigtermState:
    pending = False  # raised in the main thread, not yet seen by a run
    delivered = False  # a run has seen it: the process is closing its runs and exiting


def _on_sigterm(signum: int, frame: Any) -> None:
    """Raises Terminated in the main thread, and raises it again until a run has seen it.

    Python runs a signal handler between any two bytecodes of the main thread, weakref and finalizer callbacks
    included, and an exception raised inside one of those is printed ("Exception ignored in ...") and dropped: seen
    in a sweep told to stop, which trained on for a minute until it was killed. So the signal is sent again every
    second until ``tracked_run`` has seen the exception; once it has, the runs are being closed and a repeat would
    only interrupt that.
    """
    if _SigtermState.delivered:
        return
    if not _SigtermState.pending:
        _SigtermState.pending = True
        threading.Thread(target=_resend_sigterm, name="cnnlab-sigterm", daemon=True).start()
    raise Terminated("SIGTERM")


def _resend_sigterm() -> None:
    while True:
        time.sleep(1.0)
        if not _SigtermState.pending:
            return
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def tracked_run(
    experiment_id: str,
    run_name: str,
    tags: dict[str, str],
    description: str,
    parent_run_id: str | None = None,
    run_id: str | None = None,
    system_metrics_interval: float | None = None,
) -> Iterator[Any]:
    """Opens a run and always closes it with the right status: FINISHED, FAILED (exception) or KILLED (signal).

    The reason goes into the ``cnnlab.status_reason`` tag so the UI shows why a run did not finish.
    ``parent_run_id`` nests the run (a sweep trial, a reproduction seed); ``run_id`` reattaches an existing run.
    ``system_metrics_interval`` (seconds) turns on MLflow's system metrics for the run.
    """
    previous_term = signal.getsignal(signal.SIGTERM)
    _SigtermState.delivered = False
    with contextlib.suppress(ValueError):  # not the main thread (e.g. a test runner's worker): keep the default
        signal.signal(signal.SIGTERM, _on_sigterm)
    tags = {**tags, **process_tags()}
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id)
        mlflow.set_tags(tags)
    else:
        if system_metrics_interval is not None:
            mlflow.set_system_metrics_sampling_interval(system_metrics_interval)
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            tags=tags,
            description=description,
            parent_run_id=parent_run_id,
            nested=parent_run_id is not None,
            log_system_metrics=system_metrics_interval is not None,
        )
    try:
        yield run
    except KeyboardInterrupt:
        _end(run, "KILLED", "interrupted by SIGINT (Ctrl-C)")
        raise
    except Terminated:
        _SigtermState.pending, _SigtermState.delivered = False, True
        _end(run, "KILLED", "terminated by SIGTERM")
        raise
    except BaseException as error:
        reason = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
        _end(run, "FAILED", reason)
        raise
    else:
        _end(run, "FINISHED", "completed")
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous_term)


def process_tags() -> dict[str, str]:
    """Where this process runs: host, pid and start time, so a later command can tell whether it died."""
    import psutil

    process = psutil.Process()
    return {
        "cnnlab.host": socket.gethostname(),
        "cnnlab.pid": str(process.pid),
        "cnnlab.process_start": f"{process.create_time():.3f}",
    }


def process_alive(run: Any) -> bool:
    """Whether the process a run's tags name still runs (same pid and start time, so a reused pid does not count)."""
    import psutil

    tags = run.data.tags
    try:
        process = psutil.Process(int(tags["cnnlab.pid"]))
        return abs(process.create_time() - float(tags["cnnlab.process_start"])) < 1.0
    except (KeyError, ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def mark_killed(client: Any, experiment_ids: list[str], filter_string: str, reason: str, keep: Any = None) -> list[Any]:
    """Ends every run matching ``filter_string`` that is still RUNNING (and ``keep`` does not spare) as KILLED.

    For runs whose process died without closing them (``kill -9``, a lost host): the one place runs, sweeps, their
    distributed workers and reproductions clean up, with ``reason`` in the status tag.
    """
    stale = client.search_runs(experiment_ids, filter_string=f"{filter_string} and attributes.status = 'RUNNING'")
    stale = [run for run in stale if keep is None or not keep(run)]
    for run in stale:
        client.set_tag(run.info.run_id, REASON_TAG, reason)
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning("marked %s (%s) KILLED: %s", run.info.run_name, run.info.run_id, reason)
    return stale


def mark_dead_processes_killed(client: Any, *experiment_ids: str) -> list[Any]:
    """RUNNING runs of this host whose process is gone end KILLED; other hosts' runs are left alone."""
    if not experiment_ids:
        return []
    return mark_killed(
        client,
        list(experiment_ids),
        f"tags.`cnnlab.host` = '{socket.gethostname()}'",
        "process died without closing the run (found by a later command on the same host)",
        keep=process_alive,
    )


SPLIT_CONTEXTS = {"train": "training", "validation": "validation", "test": "test"}


def dataset_source_uri(arrays: Any, dataset_name: str) -> str:
    """Where the verified arrays came from, as a URI MLflow's dataset sources understand.

    A download names its URL, a local folder itself; a mirror's files are read once into cnnlab's cache, so the
    source is the cached file.
    """
    from cnnlab.data.sources import cache_dir

    kind, _, rest = arrays.source.partition(" ")
    if kind == "download":
        return rest
    if kind in ("cache", "local"):  # a local folder nothing verified is never cached: name the folder itself
        return Path(rest).resolve().as_uri()
    return (cache_dir() / f"{dataset_name}.npz").resolve().as_uri()


def system_metrics_interval(tracking_cfg: Any) -> float | None:
    """The sampling interval for a run's system metrics, or None when ``tracking.system_metrics=false``."""
    return tracking_cfg.system_metrics_interval if tracking_cfg.system_metrics else None


def log_datasets(data: Any, dataset_name: str) -> None:
    """Logs each split as an MLflow dataset input: name, digest, source and context (training/validation/test).

    The digest joins the first 16 hex digits of the split's images' SHA-256 and of its labels': for a whole split
    they are the pinned hashes' own, so runs on identical data are found by digest in the UI and in search.
    """
    from mlflow.data import from_numpy
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    from cnnlab.data.sources import sha256_of

    with warnings.catch_warnings():  # MLflow registers its local-file source under two schemes and says so
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        source = resolve_dataset_source(dataset_source_uri(data.arrays, dataset_name))
    for split_name, context in SPLIT_CONTEXTS.items():
        split = getattr(data.splits, split_name)
        if split is None:
            continue
        digest = sha256_of(split.x)[:16] + sha256_of(split.y)[:16]
        dataset = from_numpy(
            split.x, source=source, targets=split.y, name=f"{dataset_name}-{split_name}", digest=digest
        )
        log_input(dataset, context)


# How each database backing an MLflow store words a broken unique key (PostgreSQL, SQLite, MySQL).
DUPLICATE_KEY = ("duplicate key value violates unique constraint", "UNIQUE constraint failed", "Duplicate entry")


def log_input(dataset: Any, context: str) -> None:
    """``mlflow.log_input``, tried once more when another process logged the same dataset at the same moment.

    The store looks the dataset up, then inserts it, in one transaction: two workers' first trials logging one
    dataset can both miss it, and the second insert breaks the store's unique key (PostgreSQL's UniqueViolation on
    ``dataset_pk`` failed a trial in tests/test_multihost.py). The transaction is rolled back whole, so the second
    try finds the other process's row and only links it to this run.
    """
    try:
        mlflow.log_input(dataset, context=context)
    except mlflow.exceptions.MlflowException as error:
        if not any(words in str(error) for words in DUPLICATE_KEY):
            raise
        log.info("dataset %s was logged by another process at the same moment; linking it", dataset.name)
        mlflow.log_input(dataset, context=context)


def log_uncommitted_diff() -> None:
    """A run made from a dirty tree logs ``git diff HEAD`` as ``uncommitted.diff``, so it can still be rerun."""
    root = Path(__file__).resolve().parents[2]
    try:
        diff = subprocess.run(
            ["git", "diff", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return
    if diff:
        mlflow.log_text(diff, "uncommitted.diff")


def _end(run: Any, status: str, reason: str) -> None:
    # Tagging can itself fail (disk full, store gone); the status must still be set if at all possible.
    with contextlib.suppress(Exception):
        mlflow.set_tag(REASON_TAG, reason[:5000])
    mlflow.end_run(status=status)
