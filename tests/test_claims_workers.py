"""reproduce workers=N: several processes on one store share a reproduction's seeds, and the first reports."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from cnnlab.machine import usable_cpus
from tests.conftest import kmnist_folder


def _reproduce(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnlab.reproduce", *overrides],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )


def test_more_workers_than_cpus_or_workers_for_a_sources_design_are_refused_before_anything_exists(tmp_path):
    for bad, message in (
        (
            [f"workers={usable_cpus() + 1}"],
            f"workers: {usable_cpus() + 1} processes on the {usable_cpus()} CPU(s) this process may use",
        ),
        (["workers=2", "design=sources", "claims=[mnist_simple]"], "workers: design=sources trains in one process"),
    ):
        if bad[0] == "workers=2" and usable_cpus() < 2:
            continue  # refused for the CPUs first, checked above
        result = subprocess.run(
            [sys.executable, "-m", "cnnlab.reproduce", *bad, f"tracking.uri=sqlite:///{tmp_path}/x.db"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert list(tmp_path.iterdir()) == []  # no store, no outputs/ folder


@pytest.mark.slow
def test_two_workers_split_the_seeds_stop_at_a_closed_verdict_and_the_first_reports(tmp_path, arrays):
    """Worker i trains seeds i, i + 2, ...; with seeds=auto neither trains past the seeds that close the verdict
    (kmnist claims no number: min_seeds measure it). Each seed is trained once, on its worker's share of the CPUs,
    and a later reproduction on the same store reuses them."""
    if usable_cpus() < 2:
        pytest.skip("two workers need two CPUs")
    from mlflow.tracking import MlflowClient

    from cnnlab.claims import EXPERIMENT

    folder = kmnist_folder(tmp_path, arrays)
    common = [
        "claims=[kmnist]",
        "workers=2",
        f"dataset.local_dir={folder}",
        "dataset.sources=[local]",
        "dataset.subset=null",
        "trainer.holdout_size=200",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "tracking.log_model=false",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
    ]
    first = _reproduce(tmp_path, *common, "seeds=auto", "min_seeds=2", "max_seeds=6")
    assert first.returncode == 0, first.stdout + first.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id

    def seeds() -> dict[int, object]:
        children = client.search_runs([experiment_id], "tags.`cnnlab.claim` = 'kmnist'")
        assert all(run.info.status == "FINISHED" for run in children)
        by_seed = {int(run.data.tags["cnnlab.seed"]): run for run in children}
        assert len(by_seed) == len(children)  # no seed trained twice
        return by_seed

    def judged_seeds(parent) -> set[int]:
        table = pd.read_csv(client.download_artifacts(parent.info.run_id, "claims.csv"))
        return set(table.loc[table["claim"] == "kmnist", "seeds"])

    trained = seeds()
    # The verdict closes at min_seeds. Worker 0 may start seed 2 while seed 1 is still training, never seed 3,
    # which waits for seeds 0 and 1; the verdict is judged on seeds 0 and 1 either way.
    assert sorted(trained) in ([0, 1], [0, 1, 2])
    assert trained[0].data.tags["cnnlab.pid"] != trained[1].data.tags["cnnlab.pid"]
    assert {run.data.tags["machine.threads"] for run in trained.values()} == {str(usable_cpus() // 2)}
    assert "[worker 1] " in first.stdout and "2 workers of" in first.stdout
    (parent,) = client.search_runs([experiment_id], "tags.`cnnlab.reproduction` != ''")
    assert parent.info.status == "FINISHED" and judged_seeds(parent) == {2}

    second = _reproduce(tmp_path, *common, "seeds=4", "verdicts=false", f"report_path={tmp_path / 'REPORT.md'}")
    assert second.returncode == 0, second.stdout + second.stderr
    assert sorted(seeds()) == [0, 1, 2, 3]  # 0 and 1 (and perhaps 2) reused, the rest trained
    (parent, _) = client.search_runs(
        [experiment_id], "tags.`cnnlab.reproduction` != ''", order_by=["attributes.start_time DESC"]
    )
    assert parent.info.status == "FINISHED" and judged_seeds(parent) == {4}
    assert "kmnist" in (tmp_path / "REPORT.md").read_text()


@pytest.mark.system  # three cnnlab processes, one killed (make test-system)
def test_a_worker_killed_mid_seed_stops_the_reproduction_saying_what_to_do_and_the_same_command_finishes_it(
    tmp_path, arrays
):
    if usable_cpus() < 2:
        pytest.skip("two workers need two CPUs")
    import os
    import signal

    from mlflow.tracking import MlflowClient

    from cnnlab.claims import EXPERIMENT

    folder = kmnist_folder(tmp_path, arrays, copies=10)  # ~1 s an epoch: the kill lands mid-seed
    store = f"sqlite:///{tmp_path}/mlflow.db"
    command = [sys.executable, "-m", "cnnlab.reproduce", "claims=[kmnist]", "workers=2", "seeds=2", "verdicts=false"]
    command += [f"dataset.local_dir={folder}", "dataset.sources=[local]", "dataset.subset=null"]
    command += ["trainer.holdout_size=200", "trainer.epochs=30", "trainer.verbose=2", "tracking.log_model=false"]
    command += [f"tracking.uri={store}"]
    launcher = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in launcher.stdout:
        if line.startswith("[worker 1]") and "val_accuracy" in line:
            break
    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (training,) = client.search_runs([experiment_id], "tags.`cnnlab.seed` = '1' and attributes.status = 'RUNNING'")
    os.kill(int(training.data.tags["cnnlab.pid"]), signal.SIGKILL)
    output = launcher.stdout.read()
    assert launcher.wait(timeout=300) == 1
    assert "worker 1 exited with code -9" in output and "run the same command again to train the rest" in output
    assert "Traceback" not in output
    (kept,) = client.search_runs([experiment_id], "tags.`cnnlab.seed` = '0'")
    assert kept.info.status == "FINISHED"  # worker 0's seed is not lost
    (parent,) = client.search_runs([experiment_id], "tags.`cnnlab.reproduction` != ''")
    assert parent.info.status == "FAILED" and "worker 1 exited with code -9" in parent.data.tags["cnnlab.status_reason"]

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    runs = client.search_runs([experiment_id], "tags.`cnnlab.claim` = 'kmnist'")
    assert sorted((run.data.tags["cnnlab.seed"], run.info.status) for run in runs) == [
        ("0", "FINISHED"),
        ("1", "FINISHED"),
        ("1", "KILLED"),
    ]
    assert client.get_run(kept.info.run_id).info.status == "FINISHED"  # reused, not trained again
