"""Faults and bad input: signals, broken study state, diverging trials, concurrent writers. Synthetic data only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cnnlab.config import ConfigError
from tests.conftest import compose_config, kmnist_folder, mounted_tmpfs, sweep_config

pytestmark = pytest.mark.slow


def start(command, env, cwd) -> subprocess.Popen:
    """A cnnlab process with its output captured, SIGINT handled as a terminal would deliver it.

    A shell's background job inherits SIGINT ignored, and Python then keeps ignoring it.
    """
    return subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def cli(tmp_path, folder, store, *extra):
    env = {**os.environ, "CNNLAB_DATA": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": store}
    command = [
        sys.executable,
        "-m",
        "cnnlab.run",
        "dataset=kmnist",
        f"dataset.local_dir={folder}",
        "dataset.sources=[local]",
        "model=simple",
        "tracking.log_model=false",
        *extra,
    ]
    return command, env


# Copies of the 240 synthetic images for the runs signalled or killed after their first epoch: 2,400 images make an
# epoch of ~1 s on the AVX-512 kind (several on the AVX2 kind, where the convolutions run ~5x slower), so a signal
# 0.5 s after the first epoch's line lands mid-epoch.
SIGNALLED_RUN_COPIES = 10


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_epoch_ends_the_run_killed(tmp_path, arrays, new_store, signum, code):
    folder = kmnist_folder(tmp_path, arrays, copies=SIGNALLED_RUN_COPIES)
    command, env = cli(
        tmp_path, folder, new_store(), "trainer.epochs=50", "trainer.verbose=2", "trainer.steps_per_execution=1"
    )
    process = start(command, env, tmp_path)
    for line in process.stdout:  # wait for the first finished epoch, then signal during the second
        if "val_accuracy" in line:
            break
    time.sleep(0.5)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-2000:]
    assert "recorded as KILLED" in stderr
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("cnnlab-kmnist").experiment_id])
    assert run.info.status == "KILLED"
    assert run.data.tags["cnnlab.status_reason"] in ("interrupted by SIGINT (Ctrl-C)", "terminated by SIGTERM")
    assert [p.step for p in client.get_metric_history(run.info.run_id, "val_accuracy")][0] == 1  # kept


SWALLOWED_SIGTERM = """
import os, signal, sys, time
import mlflow
from cnnlab import tracking
from cnnlab.errors import Terminated

mlflow.set_tracking_uri(sys.argv[1])
experiment = mlflow.create_experiment("swallowed")
try:
    with tracking.tracked_run(experiment, "run", {}, ""):
        try:  # the first Terminated lands where Python drops it, as in a weakref callback
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except BaseException:
            print("swallowed", flush=True)
        time.sleep(30)
        print("not stopped", flush=True)
except Terminated:
    print("terminated", flush=True)
"""


def test_a_sigterm_dropped_in_a_callback_is_raised_again(tmp_path):
    store = f"sqlite:///{tmp_path}/store.db"
    result = subprocess.run(
        [sys.executable, "-c", SWALLOWED_SIGTERM, store], capture_output=True, text=True, timeout=120
    )
    # Without the repeat: "swallowed", "not stopped" after the script's 30 s, and the run FINISHED.
    assert result.stdout.split() == ["swallowed", "terminated"], result.stdout + result.stderr[-2000:]
    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("swallowed").experiment_id])
    assert run.info.status == "KILLED" and run.data.tags["cnnlab.status_reason"] == "terminated by SIGTERM"


def test_kill_9_of_a_plain_run_is_marked_killed_by_the_next_command_on_this_host(tmp_path, arrays, new_store):
    from cnnlab import tracking
    from tests.conftest import compose_config

    folder = kmnist_folder(tmp_path, arrays, copies=SIGNALLED_RUN_COPIES)
    command, env = cli(
        tmp_path, folder, new_store(), "trainer.epochs=50", "trainer.verbose=2", "trainer.steps_per_execution=1"
    )
    process = start(command, env, tmp_path)
    for line in process.stdout:
        if "val_accuracy" in line:
            break
    process.kill()  # SIGKILL: no handler runs, the run stays RUNNING in the store
    process.communicate(timeout=60)
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiment_id = client.get_experiment_by_name("cnnlab-kmnist").experiment_id
    (run,) = client.search_runs([experiment_id])
    assert run.info.status == "RUNNING" and run.data.tags["cnnlab.pid"] == str(process.pid)
    # A RUNNING run of a live process on this host (this test's) and one of another host are left alone.
    live = client.create_run(experiment_id, tags=tracking.process_tags())
    elsewhere = client.create_run(experiment_id, tags={**tracking.process_tags(), "cnnlab.host": "another-host"})
    with_store = compose_config(f"tracking.uri={env['MLFLOW_TRACKING_URI']}", "tracking.experiment=cnnlab-kmnist")
    tracking.configure(with_store.tracking)  # what every command does first
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["cnnlab.status_reason"].startswith("process died without closing the run")
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    assert client.get_run(elsewhere.info.run_id).info.status == "RUNNING"


@pytest.mark.system  # four cnnlab processes at once (make test-system)
def test_four_concurrent_runs_into_one_new_experiment(tmp_path, arrays):
    folder = kmnist_folder(tmp_path, arrays)
    store = f"sqlite:///{tmp_path}/store.db"  # not there yet: the four runs make it
    processes = []
    for seed in range(4):
        command, env = cli(tmp_path, folder, store, "trainer.epochs=1", f"seed={seed}")
        processes.append(start(command, env, tmp_path))
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
        assert "database is locked" not in stderr
    client = MlflowClient(tracking_uri=store)
    experiments = [e for e in client.search_experiments() if e.name == "cnnlab-kmnist"]
    assert len(experiments) == 1
    runs = client.search_runs([experiments[0].experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2", "3"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all("test_accuracy" in r.data.metrics for r in runs)


def test_broken_study_state_names_the_file(tmp_path, sweep_overrides):
    """Each state file, truncated or emptied in turn (and put back after), over one finished study."""
    from cnnlab.tuning.run_study import run_study

    cfg = sweep_config(*sweep_overrides)
    summary = run_study(cfg)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    study = summary["study"]
    for file in ("oracle.json", "trial_0/trial.json"):
        path = tmp_path / "sweeps" / "toy" / file
        intact = path.read_text()
        for damage, broken in (("truncate", intact[: len(intact) // 2]), ("empty", "")):
            path.write_text(broken)
            with pytest.raises(ConfigError) as error:
                run_study(cfg)
            message = str(error.value)
            assert str(path) in message and "sweep.overwrite=true" in message, (file, damage, message)
            assert path.read_text() == broken and (tmp_path / "sweeps" / "toy" / "trial_1").exists()  # nothing wiped
            children = client.search_runs([study.experiment_id], f"tags.mlflow.parentRunId = '{study.parent_run_id}'")
            assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}, (file, damage)
            path.write_text(intact)


def test_diverging_trial_fails_and_the_sweep_goes_on(tmp_path, sweep_overrides):
    from cnnlab.tuning.run_study import run_study

    space = "sweep.space=[{key: optimizer.learning_rate, type: choice, values: [1.0e12, 1.0e-3]}]"
    cfg = sweep_config(*sweep_overrides, space, "optimizer=sgd", "dataset.scale_pixels=false", "sweep.max_trials=2")
    summary = run_study(cfg)
    table = summary["table"]
    assert sorted(table["status"]) == ["COMPLETED", "FAILED"]
    best = table.iloc[0]
    assert best["status"] == "COMPLETED" and best["optimizer.learning_rate"] == 1e-3
    markdown = tmp_path / "best.md"
    from cnnlab.tuning.study import markdown as render

    markdown.write_text(render(table))
    assert "nan" not in markdown.read_text().lower()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    study = summary["study"]
    children = client.search_runs([study.experiment_id], f"tags.mlflow.parentRunId = '{study.parent_run_id}'")
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 1 and "nan loss" in failed[0].data.tags["cnnlab.status_reason"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs: room for the config, summary and plots, not for the model."""
    yield from mounted_tmpfs(tmp_path / "full", "1m")


def test_disk_full_while_saving_the_model_fails_the_run(tmp_path, tiny_run_overrides, tiny_disk):
    from cnnlab.train import train

    cfg = compose_config(*tiny_run_overrides, f"tracking.artifact_root={tiny_disk}")
    with pytest.raises(OSError):
        train(cfg)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("cnnlab-mnist").experiment_id])
    assert run.info.status == "FAILED"
    assert "No space left on device" in run.data.tags["cnnlab.status_reason"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "model_summary.txt"} <= artifacts
    assert "simple" in Path(client.download_artifacts(run.info.run_id, "model_summary.txt")).read_text()
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do: a partial model must never load
        import mlflow

        mlflow.set_tracking_uri(client.tracking_uri)
        mlflow.keras.load_model(f"runs:/{run.info.run_id}/model")


RACE_MESSAGES = {
    # what the tracking server answered in tests/test_multihost.py, over PostgreSQL
    "postgresql": "BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "
    '"dataset_pk"',
    "sqlite": "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, "
    "datasets.digest",
}


@pytest.mark.parametrize("database", sorted(RACE_MESSAGES))
def test_a_dataset_logged_by_another_process_at_the_same_moment_is_linked_not_failed(
    new_store, arrays, monkeypatch, database
):
    """The other worker's insert lands between this process's look-up and its insert: the store refuses the
    duplicate, and the run must still get its input, linked to the one dataset row."""
    import mlflow
    from mlflow.data import from_numpy
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    from cnnlab import tracking

    mlflow.set_tracking_uri(new_store())
    client = MlflowClient()
    experiment_id = client.create_experiment("race")
    dataset = from_numpy(arrays["x_test"], targets=arrays["y_test"], name="mnist-test", digest="d" * 32)
    other_run = client.create_run(experiment_id)
    real_log_input, attempts = mlflow.log_input, []

    def racing(dataset, context=None, **kwargs):
        attempts.append(context)
        if len(attempts) == 1:
            entity = DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", "test")])
            client.log_inputs(other_run.info.run_id, [entity])  # the other worker, first to insert
            raise MlflowException(RACE_MESSAGES[database])
        return real_log_input(dataset, context=context, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", racing)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        tracking.log_input(dataset, "test")
    assert attempts == ["test", "test"]
    mine = client.get_run(run.info.run_id).inputs.dataset_inputs
    theirs = client.get_run(other_run.info.run_id).inputs.dataset_inputs
    assert [i.dataset.digest for i in mine] == [i.dataset.digest for i in theirs] == ["d" * 32]

    # Any other refusal is not a race: it is raised, not retried.
    attempts.clear()

    def refused(dataset, context=None, **kwargs):
        attempts.append(context)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: run not found")

    monkeypatch.setattr(mlflow, "log_input", refused)
    with mlflow.start_run(experiment_id=experiment_id), pytest.raises(MlflowException, match="run not found"):
        tracking.log_input(dataset, "test")
    assert attempts == ["test"]
