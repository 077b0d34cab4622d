"""keras-tuner's chief/worker mode on loopback: every trial once as a child run, workers restarted, nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import free_port, kmnist_folder, kmnist_study

# A chief and two workers at once, then a restart: several processes end to end (make test-system).
pytestmark = [pytest.mark.slow, pytest.mark.system]


def sweep_command(tmp_path, folder, port, trials=4):
    return [
        sys.executable,
        "-m",
        "cnnlab.sweep",
        *kmnist_study(folder, "dist", trials, epochs=2),
        f"sweep.directory={tmp_path}/sweeps",
        f"sweep.export_dir={tmp_path}/exported",
        "tracking.log_model=false",
        "distributed.workers=2",
        f"distributed.oracle_port={port}",
    ]


def children_of_processes(pid: int) -> list[int]:
    """Every live process whose parent chain reaches ``pid`` (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def environ_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # exited meanwhile
        return b""


def check_store(tmp_path, trials):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store.db")
    experiment = client.get_experiment_by_name("cnnlab-sweep-dist")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.info.run_name == "study-dist"]
    assert parent.info.status == "FINISHED"
    finished = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id and r.info.status == "FINISHED"
    ]
    trial_ids = sorted(r.data.tags["cnnlab.trial_id"] for r in finished)
    assert len(trial_ids) == trials and len(set(trial_ids)) == trials  # every trial exactly once
    assert {r.data.tags["cnnlab.tuner_id"] for r in finished} <= {"tuner0", "tuner1"}
    assert not [r for r in runs if r.info.status == "RUNNING"]
    return runs


def run_launcher_killing_a_worker(tmp_path, arrays, store_uri):
    folder = kmnist_folder(tmp_path, arrays, copies=4)
    env = {**os.environ, "CNNLAB_DATA": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": store_uri}
    launcher = subprocess.Popen(
        sweep_command(tmp_path, folder, free_port()),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    killed = False
    for line in launcher.stdout:
        output.append(line)
        if not killed and line.startswith("[tuner0]") and "Epoch" not in line and "trial" in line.lower():
            pids = [p for p in children_of_processes(launcher.pid) if b"KERASTUNER_TUNER_ID=tuner0" in environ_of(p)]
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed = True
    launcher.wait(timeout=600)
    text = "".join(output)
    assert launcher.returncode == 0, text[-4000:]
    assert not children_of_processes(launcher.pid)
    return text, killed


def test_chief_and_two_workers_run_every_trial_once_a_killed_worker_included(tmp_path, arrays, new_store):
    """The launcher's whole promise in one study (each study costs a minute of start-ups): every trial once as a
    child run, a worker killed mid-study restarted, and nothing left running. A study without the kill takes the
    same path minus the restart, which this one covers."""
    text, killed = run_launcher_killing_a_worker(tmp_path, arrays, new_store("store.db"))
    assert "[chief]" in text and "[tuner0]" in text and "[tuner1]" in text
    assert killed, "the test never found tuner0 mid-study to kill"
    assert "tuner0 died" in text
    runs = check_store(tmp_path, trials=4)
    assert [r for r in runs if r.info.status == "KILLED"] or "restarting it" in text
