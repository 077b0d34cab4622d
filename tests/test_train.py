"""End to end: a one-epoch run on synthetic data into a temporary MLflow store, checked from the store's side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from cnnlab import machine
from cnnlab.errors import NanLossError
from cnnlab.train import train
from tests.conftest import compose_config

pytestmark = pytest.mark.slow


@pytest.fixture
def client(tmp_path):
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def test_one_epoch_run_is_fully_tracked(tiny_run_overrides, client, arrays):
    cfg = compose_config(*tiny_run_overrides, "trainer.epochs=2")
    result = train(cfg, overrides=tiny_run_overrides)
    run = client.get_run(result.run_id)

    assert run.info.status == "FINISHED"
    assert run.info.run_name == "mnist-simple-s0"
    params = run.data.params
    assert params["trainer.epochs"] == "2"
    assert params["model.blocks.0.filters"] == "64"
    assert params["num_params"] == "203434"
    tags = run.data.tags
    assert tags["dataset"] == "mnist" and tags["model"] == "simple"
    assert tags["data.source"].startswith("local")
    assert len(tags["data.sha256.x_train"]) == 64
    assert {
        "git.commit",
        "git.dirty",
        "version.tensorflow",
        "version.keras",
        "version.cnnlab",
        "command",
    } <= set(tags)
    import keras
    import tensorflow as tf

    # read from the installed metadata, not by importing: the same versions as the libraries that trained the run
    assert (tags["version.tensorflow"], tags["version.keras"]) == (tf.__version__, keras.__version__)
    assert "trainer.epochs=1" in tags["hydra.overrides"]
    # The machine it ran on, as tags a query groups by, and the op determinism its numbers depend on.
    assert tags["machine.kind"] == machine.kind() and tags["machine.cpu"] == machine.cpu_model()
    assert tags["cnnlab.deterministic"] == "true"
    assert "`cnnlab run " in tags["mlflow.note.content"]

    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(result.run_id, metric)
        assert [point.step for point in history] == [1, 2], metric
    for metric in ("test_loss", "test_accuracy", "seconds_per_epoch", "total_seconds"):
        assert metric in run.data.metrics
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])

    artifacts = {item.path for item in client.list_artifacts(result.run_id)}
    artifacts |= {item.path for item in client.list_artifacts(result.run_id, "plots")}
    assert {
        "model_summary.txt",
        "config.yaml",
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        "plots/preview.png",
    } <= artifacts
    summary = Path(client.download_artifacts(result.run_id, "model_summary.txt")).read_text()
    assert "203,434" in summary

    mlflow.set_tracking_uri(client.tracking_uri)
    model = mlflow.keras.load_model(f"runs:/{result.run_id}/model")
    images = arrays["x_test"][:5].astype(np.float32)  # raw pixels 0-255: the logged model scales them itself
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    np.testing.assert_allclose(np.asarray(pyfunc.predict(images)), probabilities, rtol=1e-5, atol=1e-6)


def test_run_logs_its_datasets_system_metrics_and_uncommitted_diff(tiny_run_overrides, client, arrays, monkeypatch):
    from cnnlab.data.sources import sha256_of
    from cnnlab.tracking import provenance

    monkeypatch.setattr(provenance, "git_state", lambda: {"git.commit": "abc", "git.dirty": "true"})
    monkeypatch.setattr(
        provenance, "log_uncommitted_diff", lambda: mlflow.log_text("diff --git a/x b/x", "uncommitted.diff")
    )
    cfg = compose_config(*tiny_run_overrides, "tracking.system_metrics_interval=0.2")
    result = train(cfg, overrides=tiny_run_overrides)
    run = client.get_run(result.run_id)
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}  # context tag -> dataset
    assert set(inputs) == {"training", "validation", "test"}
    assert inputs["training"].name == "mnist-train"
    # a whole split's digest starts with its pinned SHA-256: findable by digest
    assert inputs["test"].digest == sha256_of(arrays["x_test"])[:16] + sha256_of(arrays["y_test"])[:16]
    assert inputs["training"].source_type == "local"
    assert any(key.startswith("system/cpu_utilization") for key in run.data.metrics), sorted(run.data.metrics)
    assert any(key.startswith("system/system_memory_usage") for key in run.data.metrics)
    assert "uncommitted.diff" in {item.path for item in client.list_artifacts(result.run_id)}

    quiet = train(compose_config(*tiny_run_overrides, "tracking.system_metrics=false", "seed=1"), tiny_run_overrides)
    assert not any(key.startswith("system/") for key in client.get_run(quiet.run_id).data.metrics)


def test_same_seed_same_numbers(tiny_run_overrides, client):
    first = train(compose_config(*tiny_run_overrides, "seed=3", "tracking.log_model=false"))
    second = train(compose_config(*tiny_run_overrides, "seed=3", "tracking.log_model=false"))
    other = train(compose_config(*tiny_run_overrides, "seed=4", "tracking.log_model=false"))
    for key in ("test_loss", "test_accuracy"):
        assert first.metrics[key] == second.metrics[key]
    assert first.metrics["test_loss"] != other.metrics["test_loss"]


def test_diverging_run_fails_with_nan_reason(tiny_run_overrides, client):
    cfg = compose_config(
        *tiny_run_overrides, "optimizer=sgd", "optimizer.learning_rate=1e12", "dataset.scale_pixels=false"
    )
    with pytest.raises(NanLossError):
        train(cfg)
    (run,) = client.search_runs([client.get_experiment_by_name("cnnlab-mnist").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["cnnlab.status_reason"].startswith("nan loss")


def test_holdout_protocol_with_early_stopping_and_checkpoint(tiny_run_overrides, client):
    cfg = compose_config(
        *tiny_run_overrides,
        "trainer.validation=holdout",
        "trainer.holdout_size=40",
        "trainer.epochs=3",
        "trainer.early_stopping.enabled=true",
        "trainer.early_stopping.patience=1",
        "trainer.checkpoint=true",
        "trainer.loss=categorical_crossentropy",
        "trainer.metrics=[accuracy,auc]",
        "tracking.log_model=false",
    )
    result = train(cfg)
    assert "test_auc" in result.metrics
    assert [p.step for p in client.get_metric_history(result.run_id, "val_auc")][0] == 1


def test_cli_end_to_end_prints_summary(tmp_path, arrays):
    """The real entry point, in a subprocess, on KMNIST-format npz files (no pinned hashes to patch)."""
    folder = tmp_path / "kmnist"
    folder.mkdir()
    for name, file in compose_config("dataset=kmnist").dataset.files.items():
        np.savez_compressed(folder / file, arr_0=arrays[name])
    command = [
        sys.executable,
        "-m",
        "cnnlab.run",
        "dataset=kmnist",
        f"dataset.local_dir={folder}",
        "dataset.sources=[local]",
        "model=simple",
        "trainer.epochs=1",
        "tracking.log_model=false",
    ]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/store.db",
        "CNNLAB_DATA": str(tmp_path / "c"),
    }
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout
    assert "val_accuracy:" in result.stdout  # the per-epoch progress line
    run_id = result.stdout.split("MLflow run")[1].split()[0]
    run = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert not (tmp_path / "mlruns").exists()  # MLFLOW_TRACKING_URI won over tracking.uri
    # The command skips the interpreter's teardown after success; Hydra's log file must still be complete.
    logs = list(tmp_path.glob("outputs/*/*/*.log"))
    assert len(logs) == 1 and f"MLflow run {run_id}" in logs[0].read_text()


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["trainer.loss=categorical_crossentropy", "trainer.metrics=[accuracy,auc]"],
    ],
    ids=["sparse", "categorical-auc"],
)
def test_one_pass_scores_equal_keras_evaluate(tiny_run_overrides, overrides):
    """train() scores the test set from its predictions; the numbers must be the ones model.evaluate gives."""
    from cnnlab.train import build_compiled_model, fit, prepare_data, score

    cfg = compose_config(*tiny_run_overrides, *overrides)
    data = prepare_data(cfg)
    model = build_compiled_model(cfg)
    fit(model, cfg, data)
    test = data.pipeline(cfg, "test")
    expected = model.evaluate(test, verbose=0, return_dict=True)
    scores, probabilities = score(model, cfg, test, data.splits.test.y)

    assert set(scores) == set(expected)
    for name, value in expected.items():
        assert scores[name] == pytest.approx(float(value), rel=1e-5, abs=1e-6), name
    assert probabilities.shape == (len(data.splits.test), 10)
    assert mlflow.active_run() is None  # fit() outside a run logs nothing and leaves no run open


def test_models_trained_one_after_another_do_not_accumulate_traced_graphs(tiny_run_overrides):
    """A sweep trains many models in one process; TensorFlow's gradient registry kept each one's traced graph."""
    import gc

    import keras
    from tensorflow.python.framework import func_graph, ops

    from cnnlab.train import build_compiled_model, fit, prepare_data

    cfg = compose_config(*tiny_run_overrides)
    data = prepare_data(cfg)

    def train_one() -> tuple[int, int]:
        keras.backend.clear_session()
        fit(build_compiled_model(cfg), cfg, data)
        gc.collect()
        graphs = sum(isinstance(o, func_graph.FuncGraph) for o in gc.get_objects())
        return len(ops._gradient_registry._registry), graphs

    first = train_one()
    assert [train_one() for _ in range(2)] == [first] * 2  # each kept graph would show in the next count

    # The registrations dropped were only needed while tracing: a model fitted again still learns.
    model = build_compiled_model(cfg)
    fit(model, cfg, data)
    before = [weight.copy() for weight in model.get_weights()]
    history = fit(model, cfg, data)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))
