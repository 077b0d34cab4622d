"""register(cfg): a logged model into the MLflow Model Registry, an alias pointed at the new version."""

from __future__ import annotations

from typing import Any


def register(cfg: Any) -> Any:
    """Registers ``model_uri`` in the MLflow Model Registry under ``name`` and points ``alias`` at the new version."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from cnnlab.config.domains import name_problem
    from cnnlab.errors import ConfigError
    from cnnlab.models.loading import source_run_id
    from cnnlab.tracking.store import configure

    if not cfg.name:
        raise ConfigError("name: give the registered model a name, e.g. name=deep-network")
    for key in ("name", "alias"):
        problem = name_problem(cfg[key])
        if problem:
            raise ConfigError(f"{key}: {problem}")
    configure(cfg.tracking)
    run_id = source_run_id(cfg.model_uri)
    client = MlflowClient()
    source_tags = client.get_run(run_id).data.tags if run_id else {}
    tags = {"cnnlab.source_run_id": run_id or ""}
    for key in ("cnnlab.study", "cnnlab.claim", "dataset", "model"):
        if key in source_tags:
            tags[key] = source_tags[key]
    version = mlflow.register_model(cfg.model_uri, cfg.name, tags=tags)
    client.set_registered_model_alias(cfg.name, cfg.alias, version.version)
    return version


def registration_summary(version: Any, cfg: Any) -> str:
    return (
        f"registered {cfg.model_uri} as {cfg.name} version {version.version}, alias @{cfg.alias}\n"
        f"evaluate it: cnnlab evaluate model_uri=models:/{cfg.name}@{cfg.alias}"
    )
