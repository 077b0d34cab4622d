"""Looking things up in a store that exists (:mod:`cnnlab.tracking.preflight` checked it), without writing to it:
a failed lookup is one line naming what was not found and what the store has instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError

SHOWN = 8  # how many alternatives a message lists


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return (", ".join(names[:SHOWN]) + more) if names else "none"


def check_run(client: Any, run_id: str, key: str, store: str) -> Any:
    """The run ``run_id``, or ConfigError naming the store's latest runs."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        experiments = [e.experiment_id for e in client.search_experiments()]
        latest = client.search_runs(experiments, max_results=SHOWN, order_by=["attributes.start_time DESC"])
        shown = [f"{run.info.run_name} ({run.info.run_id})" for run in latest]
        raise ConfigError(f"{key}: no run {run_id!r} in {store}; its latest runs: {_listed(shown)}") from None


def check_model_uri(uri: str, store: str) -> None:
    """``runs:/<id>/<path>``, ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` must name something the
    store has; a path must be a ``.keras`` file or a folder holding one."""
    if uri.startswith("runs:/"):
        import mlflow

        run_id, _, artifact = uri.removeprefix("runs:/").partition("/")
        client = mlflow.MlflowClient()
        check_run(client, run_id, "model_uri", store)
        top = artifact.strip("/").split("/")[0]
        if top:
            logged = [entry.path for entry in client.list_artifacts(run_id)]
            if top not in logged:
                raise ConfigError(f"model_uri: run {run_id} has no artifact {top!r}; it has: {_listed(logged)}")
    elif uri.startswith("models:/"):
        _check_registered(uri.removeprefix("models:/"), store)
    elif "://" not in uri:
        path = Path(uri).expanduser()
        if not path.exists():
            raise ConfigError(
                f"model_uri: no such file or folder: {uri} (give runs:/<run_id>/model, models:/<name>@<alias> or a "
                ".keras file)"
            )
        if path.is_file() and path.suffix != ".keras":
            raise ConfigError(f"model_uri: {uri} is not a .keras file; cnnlab loads only models in Keras's format")
        if path.is_dir() and not any(path.rglob("*.keras")):
            raise ConfigError(f"model_uri: no .keras file under the folder {uri}")


def _check_registered(reference: str, store: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name, at, alias = reference.partition("@")
    if not at:
        name, _, alias = reference.partition("/")
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        names = [m.name for m in client.search_registered_models(max_results=100)]
        raise ConfigError(
            f"model_uri: no registered model {name!r} in {store}; registered models: {_listed(names)}"
        ) from None
    if at:
        if alias not in model.aliases:
            raise ConfigError(
                f"model_uri: registered model {name!r} has no alias @{alias}; its aliases: "
                f"{_listed(['@' + a for a in model.aliases])}"
            )
        return
    versions = [v.version for v in client.search_model_versions(f"name = '{name}'")]
    if alias not in {str(v) for v in versions} and alias != "latest":
        raise ConfigError(f"model_uri: registered model {name!r} has no version {alias!r}; its versions: {versions}")


def check_experiments(client: Any, names: list[str], store: str) -> None:
    """Every experiment in ``names`` is in the store, or ConfigError naming the ones it has."""
    known = sorted(e.name for e in client.search_experiments())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"experiments: no experiment named {unknown} in this store ({store}); there are {known}")
