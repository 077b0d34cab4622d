"""Shared fixtures: synthetic MNIST-shaped data written in the real file formats, and the real Hydra config."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from cnnlab.config import CONF_DIR as CONF_PATH
from cnnlab.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = str(CONF_PATH)  # Hydra takes the folder as a string
register_configs()


def free_port() -> int:
    """A TCP port nothing listens on now, for a server a test starts on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The markers of the test now running in this process, so that helpers can hold the suite's split (make_mlflow).
RUNNING_MARKERS: set[str] = set()


def pytest_runtest_setup(item: pytest.Item) -> None:
    RUNNING_MARKERS.clear()
    RUNNING_MARKERS.update(marker.name for marker in item.iter_markers())


@contextlib.contextmanager
def make_mlflow(target: str, store: str, log: Path, *variables: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``make ui``, ``make server`` or ``make serve MODEL=...`` over ``store`` on a free loopback port, started as a
    user starts it (the Makefile's environment and options, nothing copied here). Yields its address once
    ``/health`` answers, and the ``make`` process; stops the whole process group after. Its output goes to ``log``.

    MLflow's server is another program end to end: a test that starts it runs in ``make test-system``, not in
    ``make test``, the suite everyone runs between edits."""
    if "system" not in RUNNING_MARKERS:
        pytest.fail(f"a test that starts make {target} belongs in make test-system: mark it @pytest.mark.system")
    port = free_port()
    where = [f"PORT={port}", f"TRACKING_URI={store}"]
    if target == "server":
        where = [f"SERVER_PORT={port}", f"BACKEND_URI={store}"]
    if target == "serve":
        where = [f"SERVE_PORT={port}", f"TRACKING_URI={store}"]
    with open(log, "w") as output:
        process = subprocess.Popen(
            ["make", "--no-print-directory", target, *where, *variables],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180  # a model server loads TensorFlow and the model before it answers
        while True:
            try:
                urllib.request.urlopen(f"{address}/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    pytest.fail(f"make {target} did not answer on {address}:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield address, process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def post_pixels(address: str, pixels: np.ndarray) -> np.ndarray:
    """What the model server at ``address`` (``make serve``) answers to ``pixels`` POSTed as a user sends them."""
    import json

    request = urllib.request.Request(
        f"{address}/invocations",
        data=json.dumps({"inputs": pixels.tolist()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return np.asarray(json.load(response)["predictions"], dtype=np.float32)


def synthetic_arrays(train: int = 240, test: int = 80, seed: int = 0) -> dict[str, np.ndarray]:
    """Learnable toy images: class k lights a 6x6 patch at a class-specific place, over uniform noise."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", train), ("test", test)):
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        images = rng.integers(0, 60, size=(count, 28, 28)).astype(np.uint8)
        for index, label in enumerate(labels):
            row, column = 2 + 8 * (label // 4), 2 + 8 * (label % 4)
            images[index, row : row + 6, column : column + 6] = 250
        arrays[f"x_{split}"], arrays[f"y_{split}"] = images, labels
    return arrays


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    return synthetic_arrays()


def write_idx_folder(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    folder.mkdir()
    for name, file in IDX_NAMES.items():
        write_idx(folder / file, arrays[name])
    return folder


@pytest.fixture
def idx_dir(tmp_path: Path, arrays) -> Path:
    return write_idx_folder(tmp_path / "idx", arrays)


def isolate(patch: pytest.MonkeyPatch, folder: Path) -> None:
    """No test touches the user's cache, store or network settings. (mlflow.set_tracking_uri also sets
    MLFLOW_TRACKING_URI, which cnnlab obeys: an earlier test's store would win over the next one's tracking.uri.)"""
    patch.setenv("CNNLAB_DATA", str(folder / "cache"))
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch):
    isolate(monkeypatch, tmp_path)


def pin_mnist_hashes(patch: pytest.MonkeyPatch, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Pins MNIST's hashes (conf/dataset/mnist.yaml's sha256) to ``arrays``, so verification runs exactly as for
    real data."""
    from cnnlab.data import sources

    digests = {name: hashlib.sha256(value.tobytes()).hexdigest() for name, value in arrays.items()}
    pinned = sources.pinned_hashes
    patch.setattr(sources, "pinned_hashes", lambda cfg: digests if cfg.name == "mnist" else pinned(cfg))
    return digests


@pytest.fixture
def pin_mnist(monkeypatch, arrays):
    return pin_mnist_hashes(monkeypatch, arrays)


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, made once per test process: MLflow's schema migrations take about a second a
    store, and a copy of the file is the same store. Tests of how a store comes to exist make their own."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def copy_store(template: Path, path: Path) -> str:
    """The URI of an empty MLflow store at ``path``, copied from ``template`` (``store_template``)."""
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def new_store(tmp_path: Path, store_template: Path):
    """``new_store(name)``: the URI of an empty MLflow store at ``tmp_path / name``, ready to use."""
    return lambda name="mlflow.db": copy_store(store_template, tmp_path / name)


def mounted_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``mount_point`` for a disk-full test, unmounted after it (lazily: MLflow may still hold
    a store there open). Needs root, which CI has; elsewhere the test skips and says why."""
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()}): a disk-full test needs root")
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def compose_config(*overrides: str, config_name: str = "config"):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def tiny_run(idx_dir: Path, store: str) -> list[str]:
    """A one-epoch run of the smallest network on the synthetic MNIST-shaped files in ``idx_dir``."""
    return [
        "dataset=mnist",
        f"dataset.local_dir={idx_dir}",
        "dataset.sources=[local]",
        "model=simple",
        "trainer.epochs=1",
        "trainer.batch_size=32",
        "trainer.verbose=0",
        f"tracking.uri={store}",
    ]


def tiny_reproduction(idx_dir: Path, tmp_path: Path) -> list[str]:
    """What every claim of a reproduction in a test takes: the synthetic files, one epoch, a store in tmp_path."""
    return [
        f"dataset.local_dir={idx_dir}",
        "dataset.sources=[local]",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "tracking.log_model=false",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
    ]


@pytest.fixture
def tiny_run_overrides(idx_dir: Path, pin_mnist, new_store) -> list[str]:
    """``tiny_run`` tracked in tmp_path."""
    return tiny_run(idx_dir, new_store())


SPACE = (
    "sweep.space=["
    "{key: optimizer.learning_rate, type: float, min: 1.0e-4, max: 1.0e-2, sampling: log},"
    "{key: model.blocks.0.filters, type: choice, values: [8, 16]},"
    "{key: optimizer.name, type: choice, values: [adam, sgd]},"
    "{key: optimizer.momentum, type: float, min: 0.0, max: 0.9, parent: optimizer.name, parent_values: [sgd]}]"
)


def sweep_config(*overrides: str):
    return compose_config(*overrides, config_name="sweep_config")


@pytest.fixture
def sweep_overrides(tmp_path, idx_dir, pin_mnist, new_store) -> list[str]:
    return [
        "dataset=mnist",
        f"dataset.local_dir={idx_dir}",
        "dataset.sources=[local]",
        "dataset.subset=null",
        "model=simple",
        "trainer.holdout_size=60",
        "trainer.verbose=0",
        f"tracking.uri={new_store()}",
        "sweep.name=toy",
        f"sweep.directory={tmp_path}/sweeps",
        f"sweep.export_dir={tmp_path}/exported",
        "sweep.max_trials=2",
        "sweep.max_epochs=1",
        "sweep.noise_seeds=0",  # retraining for seed noise has tests of its own
        SPACE,
    ]


LEARNING_RATE_SPACE = (
    "sweep.space=[{key: optimizer.learning_rate, type: float, min: 1.0e-4, max: 1.0e-2, sampling: log}]"
)


def kmnist_study(folder, name: str, trials: int, epochs: int) -> list[str]:
    """Overrides for a small learning-rate study on the KMNIST-format files in ``folder`` (kmnist_folder)."""
    return [
        f"sweep.name={name}",
        "dataset=kmnist",
        f"dataset.local_dir={folder}",
        "dataset.sources=[local]",
        "dataset.subset=null",
        "model=simple",
        "trainer.holdout_size=200",
        "trainer.verbose=0",
        f"sweep.max_trials={trials}",
        f"sweep.max_epochs={epochs}",
        "sweep.noise_seeds=0",  # these studies are about trials; seed noise has tests of its own
        LEARNING_RATE_SPACE,
    ]


def kmnist_folder(tmp_path, arrays, copies: int = 1):
    """KMNIST's published npz files (no published hash: read unverified), usable by subprocesses unpatched."""
    folder = tmp_path / "kmnist"
    folder.mkdir(exist_ok=True)
    for name, file in compose_config("dataset=kmnist").dataset.files.items():
        np.savez_compressed(folder / file, arr_0=np.concatenate([arrays[name]] * copies))
    return folder


# Test files by how long they take, longest first (measured: `make test ARGS=--durations=0`). pytest-xdist hands out
# whole files in collection order (`--dist loadfile --no-loadscope-reorder`), so a long file collected last would run
# alone at the end; the multi-host study, which mostly waits on servers and restarts, overlaps best when it starts
# first. Files not named keep their order after these. One order serves make test and make test-system: each runs
# only its own tests (the system marker) of these files.
LONGEST_FIRST = (
    "test_multihost.py",
    "test_bench.py",
    "test_distributed.py",
    "test_sweep.py",
    "test_reliability.py",
    "test_claims.py",
    "test_own_dataset.py",
    "test_train.py",
    "test_ui.py",
    "test_postgres.py",  # where PostgreSQL is installed (.ci/run): ~30 s
    "test_config.py",
    "test_server.py",
    "test_serving.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: tests keep their order within a file
