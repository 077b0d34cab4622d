"""Loading trained models safely: only the native ``.keras`` format, always with ``safe_mode=True``.

A ``.keras`` file with a Lambda layer carries Python bytecode; ``safe_mode`` refuses it. Legacy ``.h5`` files cannot
be checked that way, so cnnlab refuses them outright.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import UserError

UNSAFE_SUFFIXES = (".h5", ".hdf5")


class ModelLoadError(UserError, ValueError):
    """A model that cnnlab will not or cannot load; the message says which and what to do."""


@dataclass
class LoadedModel:
    model: Any
    uri: str
    source_run_id: str | None  # the MLflow run that logged it, when known


def source_run_id(uri: str) -> str | None:
    """The run behind ``runs:/<id>/...`` or ``models:/<name>@<alias>`` / ``models:/<name>/<version>``."""
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/")[0]
    if uri.startswith("models:/"):
        from mlflow.tracking import MlflowClient

        reference = uri.removeprefix("models:/")
        client = MlflowClient()
        if "@" in reference:
            name, alias = reference.split("@", 1)
            return client.get_model_version_by_alias(name, alias).run_id
        name, version = reference.split("/", 1)
        return client.get_model_version(name, version).run_id
    return None


def _keras_file(folder: Path) -> Path:
    unsafe = [p for p in folder.rglob("*") if p.suffix in UNSAFE_SUFFIXES]
    if unsafe:
        raise ModelLoadError(f"{unsafe[0]}: legacy HDF5 models are refused; re-save the model as .keras")
    found = sorted(folder.rglob("*.keras"))
    if not found:
        raise ModelLoadError(f"no .keras file under {folder}: cnnlab loads only models saved in the native format")
    return found[0]


def load_model(uri: str) -> LoadedModel:
    """Loads a model from an MLflow URI (runs:/, models:/, any artifact URI) or a local ``.keras`` path."""
    import keras

    local = Path(uri).expanduser()
    if local.suffix in UNSAFE_SUFFIXES:
        raise ModelLoadError(f"{uri}: legacy HDF5 models are refused (they cannot be loaded safely); use a .keras file")
    if "://" in uri or uri.startswith(("runs:/", "models:/")):
        import mlflow

        try:
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        except Exception as error:
            raise ModelLoadError(
                f"cannot fetch {uri} from MLflow ({error}); check the run id or model alias"
            ) from error
        path = _keras_file(folder) if folder.is_dir() else folder
        run_id = source_run_id(uri)
    elif local.exists():
        path, run_id = local, None
    else:
        raise ModelLoadError(
            f"{uri}: no such file, and not an MLflow URI (runs:/<run_id>/model, models:/<name>@<alias>)"
        )
    if path.suffix != ".keras":
        raise ModelLoadError(f"{path}: cnnlab loads only .keras files")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except ValueError as error:
        raise ModelLoadError(f"{path}: refused by Keras safe mode ({error})") from error
    return LoadedModel(model=model, uri=uri, source_run_id=run_id)
