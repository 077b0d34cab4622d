"""A run's life: opened with where its process runs, always closed FINISHED, FAILED or KILLED with a reason, and
found KILLED later when its process died without closing it."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import mlflow

from cnnlab.errors import Terminated
from cnnlab.tracking import signals

log = logging.getLogger(__name__)

REASON_TAG = "cnnlab.status_reason"


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
    previous_term = signals.raise_on_sigterm()
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
        signals.seen()
        _end(run, "KILLED", "terminated by SIGTERM")
        raise
    except BaseException as error:
        full = disk_full(error)
        cause = full or error
        reason = getattr(cause, "reason", None) or f"{type(cause).__name__}: {cause}"
        if full is not None:
            _remove_partial_artifact(full, run)
        _end(run, "FAILED", reason)
        raise
    else:
        _end(run, "FINISHED", "completed")
    finally:
        signals.restore(previous_term)


def disk_full(error: BaseException | None) -> OSError | None:
    """The "no space left on device" behind ``error``, if that is what it comes to: MLflow's own clean-up may fail on
    the full disk too and raise its error in front of it."""
    import errno

    while error is not None and not (isinstance(error, OSError) and error.errno == errno.ENOSPC):
        error = error.__cause__ or error.__context__
    return error


def _remove_partial_artifact(full: OSError, run: Any) -> None:
    """A disk that filled while MLflow copied an artifact into a local store leaves the copy half written, and that
    half file holds the room the store needs to record the run as FAILED. The copy is useless: remove it."""
    from pathlib import Path
    from urllib.parse import urlparse

    if not full.filename2:
        return
    root = urlparse(run.info.artifact_uri)
    if root.scheme not in ("", "file"):
        return
    store_root = Path(root.path).resolve().parents[1]  # <experiment's artifacts>/<run id>/artifacts
    partial = Path(full.filename2).resolve()
    # Only a file under this experiment's artifact tree (a run's or a logged model's folder), never anything else.
    if partial.is_file() and store_root in partial.parents:
        partial.unlink()


def run_role(tags: Any) -> str:
    """What a run is, read from its tags (a mapping; a missing or NaN value counts as absent): ``parent`` (a study's
    or a reproduction's own run, which holds the others), ``noise`` (a sweep trial retrained on another seed to
    measure seed noise), ``finalist`` (a top trial retrained on the test set), ``trial``, or ``run``."""

    def has(key: str) -> bool:
        return isinstance(tags.get(key), str)

    if not has("mlflow.parentRunId") and (has("cnnlab.study") or has("cnnlab.reproduction")):
        return "parent"
    if has("cnnlab.noise_of"):
        return "noise"
    if has("cnnlab.finalist_of"):
        return "finalist"
    return "trial" if has("cnnlab.trial_id") else "run"


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


def system_metrics_interval(tracking_cfg: Any) -> float | None:
    """The sampling interval for a run's system metrics, or None when ``tracking.system_metrics=false``."""
    return tracking_cfg.system_metrics_interval if tracking_cfg.system_metrics else None


def _end(run: Any, status: str, reason: str) -> None:
    # Tagging can itself fail (disk full, store gone); the status must still be set if at all possible.
    with contextlib.suppress(Exception):
        mlflow.set_tag(REASON_TAG, reason[:5000])
    mlflow.end_run(status=status)
