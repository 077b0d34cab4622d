"""Scale-out on keras-tuner's own chief/worker mode: no scheduler of cnnlab's own.

The launcher (``distributed.workers=N``) starts a chief (``KERASTUNER_TUNER_ID=chief``, serving the oracle over gRPC)
and N workers (``tuner0``...) running the same command; every worker logs its trials as children of the study's one
parent run. A worker that dies is restarted with its tuner id, so keras-tuner hands it the same trial again. On any
exit, interrupt or error the launcher stops every process it started.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cnnlab.processes import start as start_process
from cnnlab.processes import stop_all
from cnnlab.tuning.role import LAUNCHER_VARIABLE, ROLE_VARIABLE, THREADS_VARIABLE

log = logging.getLogger(__name__)


def set_threads() -> int:
    """Applies ``CNNLAB_THREADS`` to TensorFlow's thread pools; 0 (unset) leaves TensorFlow's defaults."""
    from cnnlab.machine import set_threads

    threads = int(os.environ.get(THREADS_VARIABLE, "0"))
    if threads:
        set_threads(threads)
    return threads


def run_role(cfg: Any, command: str, tuner_id: str) -> dict[str, Any]:
    """A worker runs trials until the oracle says stop; a chief under the launcher serves the oracle until then.

    A worker first ends as KILLED any run of its own tuner id still RUNNING: tuner ids are unique per worker, so such
    a run belongs to a process that died with it, on this host or another, and keras-tuner hands this worker the
    same trial again.
    """
    from mlflow.tracking import MlflowClient

    from cnnlab import train
    from cnnlab.tuning.study import STATE_FILE, Study
    from cnnlab.tuning.tuners import make_tuner

    threads = set_threads()
    cfg.sweep.overwrite = False  # only the launcher may start a study over
    if tuner_id == "chief":
        study = Study.open(cfg, command, mark_stale=False)
    else:
        _wait_for_study(Path(cfg.sweep.directory) / cfg.sweep.name / STATE_FILE)
        study = Study.open(cfg, command, attach_only=True)
        _mark_worker_runs_killed(MlflowClient(), study, tuner_id)
    tuner = make_tuner(cfg, train.prepare_data(cfg), study)
    print(
        f"joined study {study.name} as {tuner_id} (oracle {os.environ.get('KERASTUNER_ORACLE_IP')}:"
        f"{os.environ.get('KERASTUNER_ORACLE_PORT')}, {threads or 'default'} threads)",
        flush=True,
    )
    tuner.search(verbose=1 if tuner_id == "chief" else 0)
    return {"study": study, "role": tuner_id}


def _wait_for_study(state_file: Path, timeout: float = 300) -> None:
    """A worker may start before the chief has opened the study; it waits for the study's state file."""
    deadline = time.time() + timeout
    while not state_file.exists():
        if time.time() > deadline:
            raise RuntimeError(f"no study at {state_file} after {timeout:.0f} s: start the chief first")
        time.sleep(1)


def _wait_for_port(host: str, port: int, chief: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if chief.poll() is not None:
            raise RuntimeError(f"the chief exited with code {chief.returncode} before serving the oracle")
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the chief did not serve the oracle on {host}:{port} within {timeout:.0f} s")


def launch(cfg: Any, overrides: list[str], study: Any) -> None:
    """Starts the chief and the workers, restarts workers that die, and returns when the chief has finished."""
    from mlflow.tracking import MlflowClient

    from cnnlab.machine import usable_cpus
    from cnnlab.tracking.store import tracking_uri

    workers = cfg.distributed.workers
    host, port = cfg.distributed.oracle_host, cfg.distributed.oracle_port
    threads = cfg.distributed.threads_per_worker or max(1, usable_cpus() // workers)
    child_overrides = [o for o in overrides if not o.startswith(("sweep.overwrite=", "+sweep.overwrite="))]
    command = [sys.executable, "-m", "cnnlab.sweep", *child_overrides, "sweep.overwrite=false"]
    base_env = {
        **os.environ,
        "KERASTUNER_ORACLE_IP": host,
        "KERASTUNER_ORACLE_PORT": str(port),
        THREADS_VARIABLE: str(threads),
        LAUNCHER_VARIABLE: "1",
        "MLFLOW_TRACKING_URI": tracking_uri(cfg.tracking),
        "PYTHONUNBUFFERED": "1",
    }
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str) -> None:
        processes[name] = start_process(name, command, {**base_env, ROLE_VARIABLE: name})

    print(f"[launcher] chief on {host}:{port} and {workers} workers x {threads} TensorFlow threads", flush=True)
    restarts = {f"tuner{i}": 0 for i in range(workers)}
    try:
        start("chief")
        _wait_for_port(host, port, processes["chief"])
        for name in restarts:
            start(name)
        while processes["chief"].poll() is None:
            for name in restarts:
                code = processes[name].poll()
                if code is None or code == 0:
                    continue
                _mark_worker_runs_killed(MlflowClient(), study, name)
                if restarts[name] >= cfg.distributed.max_restarts:
                    raise RuntimeError(f"worker {name} died {restarts[name] + 1} times (last exit code {code})")
                restarts[name] += 1
                print(f"[launcher] {name} died (exit {code}); restarting it, its trial is retried", flush=True)
                start(name)
            time.sleep(1)
        if processes["chief"].returncode != 0:
            raise RuntimeError(f"the chief exited with code {processes['chief'].returncode}")
        for name in restarts:
            processes[name].wait(timeout=120)
    finally:
        stop_all(processes)


def _mark_worker_runs_killed(client: Any, study: Any, worker: str) -> None:
    from cnnlab.tracking.runs import mark_killed

    mark_killed(
        client,
        [study.experiment_id],
        f"tags.mlflow.parentRunId = '{study.parent_run_id}' and tags.`cnnlab.tuner_id` = '{worker}'",
        f"worker {worker} died mid-trial; the trial is retried",
    )
