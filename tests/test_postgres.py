"""A short run and a 2-trial sweep logged to an MLflow tracking server backed by real PostgreSQL.

`.ci/run` installs and starts Debian's postgresql on loopback and sets CNNLAB_TEST_POSTGRES; without it the test
is skipped and says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import LEARNING_RATE_SPACE, kmnist_folder, make_mlflow

POSTGRES = os.environ.get("CNNLAB_TEST_POSTGRES")
# PostgreSQL behind make server: make test-system
pytestmark = [
    pytest.mark.slow,
    pytest.mark.system,
    pytest.mark.skipif(not POSTGRES, reason="CNNLAB_TEST_POSTGRES unset: .ci/run sets it after starting postgresql"),
]


@pytest.fixture
def server(tmp_path):
    artifacts = f"ARTIFACTS={tmp_path / 'artifacts'}"
    with make_mlflow("server", POSTGRES, tmp_path / "server.log", artifacts) as (address, _):
        yield address


def test_run_and_sweep_log_to_a_postgres_backed_server(tmp_path, arrays, server):
    import sqlalchemy

    folder = kmnist_folder(tmp_path, arrays, copies=2)
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "MLFLOW_TRACKING_URI": server, "CNNLAB_DATA": str(tmp_path / "cache")}
    data = [
        "dataset=kmnist",
        f"dataset.local_dir={folder}",
        "dataset.sources=[local]",
        "model=simple",
        "trainer.verbose=0",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "cnnlab.run", *data, "trainer.epochs=1", f"tracking.experiment=pg-run-{tag}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    sweep = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab.sweep",
            *data,
            "trainer.holdout_size=100",
            f"sweep.name=pg{tag}",
            f"sweep.directory={tmp_path}/sweeps",
            f"sweep.export_dir={tmp_path}/exported",
            "sweep.max_trials=2",
            "sweep.noise_seeds=0",
            "sweep.max_epochs=1",
            "tracking.log_model=false",
            LEARNING_RATE_SPACE,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]

    client = MlflowClient(tracking_uri=server)
    (single,) = client.search_runs([client.get_experiment_by_name(f"pg-run-{tag}").experiment_id])
    assert single.info.status == "FINISHED" and "test_accuracy" in single.data.metrics
    assert client.list_artifacts(single.info.run_id, "plots")  # artifacts went through the server
    study = client.get_experiment_by_name(f"cnnlab-sweep-pg{tag}")
    runs = client.search_runs([study.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"study-pg{tag}", "trial-001", "trial-002"]
    assert {r.info.status for r in runs} == {"FINISHED"}

    engine = sqlalchemy.create_engine(POSTGRES)  # the rows really are in PostgreSQL
    with engine.connect() as connection:
        count = connection.execute(
            sqlalchemy.text("select count(*) from runs where experiment_id = :id"), {"id": int(study.experiment_id)}
        ).scalar()
    assert count == 3
