"""A logged model's source run's protocol (dataset, trainer, seed), for commands that use a trained model."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

PROTOCOL_KEYS = ("dataset", "trainer", "seed")


def with_source_protocol(cfg: Any, run_id: str | None, overrides: list[str]) -> Any:
    """Dataset, protocol and seed from the source run's logged config, except what the user set by hand."""
    if run_id is None:
        return cfg
    import mlflow

    from cnnlab.config.compose import parse_overrides, with_dataset_description
    from cnnlab.config.schema import DatasetConfig

    try:
        source = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml"))
    except Exception:
        log.warning("run %s has no config.yaml; using the dataset and protocol given on the command line", run_id)
        return cfg
    given = parse_overrides(overrides)
    chosen_groups = {key for key, _ in given}
    taken = {key: source[key] for key in PROTOCOL_KEYS if key in source and key not in chosen_groups}
    dataset = taken.pop("dataset", None)
    merged = OmegaConf.merge(cfg, taken)  # `dataset=mnist` typed on the command line keeps that choice
    if dataset is not None:  # whole: a merge would keep the default dataset's pinned hashes and files
        merged.dataset = OmegaConf.merge(OmegaConf.structured(DatasetConfig), with_dataset_description(dataset))
    for key, value in given:  # then dotted overrides such as trainer.batch_size=128 win
        if key.split(".")[0] in PROTOCOL_KEYS and "." in key:
            OmegaConf.update(merged, key, value, merge=True)
    return merged
