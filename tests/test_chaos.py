"""kill -9 at random points of a sweep, ten times, resuming after each. `make reliability` runs it (~3 min).

Kept out of the default `make test` (pytest -m "not chaos") for time; its figures go to RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import kmnist_folder, kmnist_study

pytestmark = pytest.mark.chaos
OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "reliability"


def test_kill_9_at_random_points_then_resume(tmp_path, arrays):
    import mlflow

    folder = kmnist_folder(tmp_path, arrays, copies=4)
    store = f"sqlite:///{tmp_path}/store.db"
    env = {**os.environ, "CNNLAB_DATA": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": store}
    budget = 8
    command = [
        sys.executable,
        "-m",
        "cnnlab.sweep",
        *kmnist_study(folder, "chaos", budget, epochs=2),
        "trainer.steps_per_execution=1",
        f"sweep.directory={tmp_path}/sweeps",
        f"sweep.export_dir={tmp_path}/exported",
    ]
    rng = random.Random(7)
    kills = []
    while len(kills) < 10:
        delay = rng.uniform(6, 16)  # start-up takes ~7 s: kills land in imports, epochs, state saves, MLflow logging
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            process.wait(timeout=delay)
            break  # the study finished before this kill
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills.append(round(delay, 1))
    final = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("cnnlab-sweep-chaos")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert not [r for r in runs if r.info.status == "RUNNING"], "a run was left RUNNING"
    oracle = json.loads((tmp_path / "sweeps" / "chaos" / "oracle.json").read_text())
    trial_ids = sorted(
        Path(p).parent.name.removeprefix("trial_") for p in (tmp_path / "sweeps" / "chaos").glob("trial_*/trial.json")
    )
    completed = [
        t
        for t in trial_ids
        if json.loads((tmp_path / "sweeps" / "chaos" / f"trial_{t}" / "trial.json").read_text())["status"]
        == "COMPLETED"
    ]
    assert len(completed) >= budget, f"study stopped at {len(completed)} of {budget}"
    mlflow.set_tracking_uri(store)
    for trial_id in completed:
        finished = [r for r in runs if r.data.tags.get("cnnlab.trial_id") == trial_id and r.info.status == "FINISHED"]
        assert len(finished) == 1, f"trial {trial_id}: {len(finished)} FINISHED runs"
        run = finished[0]
        assert "hp.optimizer.learning_rate" in run.data.params and "val_accuracy" in run.data.metrics
        assert "model_summary.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert mlflow.keras.load_model(f"runs:/{run.info.run_id}/model") is not None
    parents = [r for r in runs if r.info.run_name == "study-chaos"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # reattached after every kill, never duplicated
    killed = [r for r in runs if r.info.status == "KILLED"]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    figures = {
        "kills": len(kills),
        "kill_after_seconds": kills,
        "trials_completed": len(completed),
        "budget": budget,
        "finished_trial_runs": len(completed),
        "runs_marked_killed": len(killed),
        "runs_left_running": 0,
        "parent_runs": len(parents),
        "oracle_trials": len(oracle.get("ongoing_trials", {})) if isinstance(oracle, dict) else None,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    (OUTPUT / "kill9.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
