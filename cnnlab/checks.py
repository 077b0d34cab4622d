"""Every command's checks before work: one function per command, ``check_<command>(cfg, overrides)``.

Each entry point hands its own function to the launcher (``cli.launch(main, checks.check_run)``), which runs it
where Hydra calls its callbacks' ``on_run_start``: after composing, before Hydra creates the run's output folder
and starts the task. So a refused command leaves no ``outputs/`` folder, no MLflow store and no study behind, and
TensorFlow is never imported. Each raises ConfigError naming the first key (or option) that cannot work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnnlab.config.compose import parse_overrides
from cnnlab.config.domains import check_domains
from cnnlab.config.validation import validate
from cnnlab.errors import ConfigError


def check_run(cfg: Any, overrides: list[str]) -> None:
    """run: the whole config, the model's shapes included."""
    check_common(cfg, overrides)
    validate(cfg)


def check_sweep(cfg: Any, overrides: list[str]) -> None:
    """sweep: the base config, then the search space (every value it can take must make a valid config)."""
    from cnnlab.tuning.space import check_space

    check_common(cfg, overrides)
    validate(cfg)
    check_space(cfg)


def check_use(cfg: Any, overrides: list[str]) -> None:
    """evaluate, predict and register: their options in their domains (registry names among them), images present."""
    check_common(cfg, overrides)
    check_domains(cfg)
    missing = [f"images.{i}: no such file: {image}" for i, image in enumerate(cfg.images) if not Path(image).is_file()]
    if missing:
        raise ConfigError("\n".join(missing))


def check_reproduce(cfg: Any, overrides: list[str]) -> None:
    """reproduce: the seeds design, then every claim's own config composed with the same overrides and validated."""
    from hydra import compose

    from cnnlab.claims.reproduce import claim_overrides, precision_variants, seeds_design

    check_common(cfg, overrides)
    seeds_design(cfg)
    try:
        variants = precision_variants(cfg, claim_overrides(overrides))
    except ValueError as error:
        raise ConfigError(f"precisions: {error}") from error
    for name in cfg.claims:
        for variant in variants:
            try:
                claim_cfg = compose("config", overrides=[f"experiment={name}", *claim_overrides(overrides), *variant])
            except Exception as error:  # Hydra's own errors: no such experiment, a bad override
                raise ConfigError(f"claims: {name!r} is not a usable conf/experiment/{name}.yaml ({error})") from error
            validate(claim_cfg)


def check_compare(cfg: Any, overrides: list[str]) -> None:
    """compare: its options in their domains, and the sort and plot columns among the shown ones."""
    check_common(cfg, overrides)
    check_domains(cfg)
    shown = [*cfg.params, *cfg.metrics]
    for key in ("sort_by", "plot_x"):
        if cfg[key] is not None and cfg[key] not in shown:
            raise ConfigError(
                f"{key}: {cfg[key]!r} is not a shown column {shown}; add it to params=[...] or metrics=[...]"
            )


def check_verify(cfg: Any, overrides: list[str]) -> None:
    """verify: its options in their domains (the run id's form); the run itself is looked up first thing."""
    check_common(cfg, overrides)
    check_domains(cfg)


def check_common(cfg: Any, overrides: list[str]) -> None:
    """What every command checks first: the store a ``tracking.uri`` names, and the options it requires."""
    from omegaconf import OmegaConf

    check_tracking_uri(overrides)
    required = [key for key in cfg if key != "hydra" and OmegaConf.is_missing(cfg, key)]
    if required:
        raise ConfigError("; ".join(f"{key}: required, give it as {key}=..." for key in required))


def check_tracking_uri(overrides: list[str]) -> None:
    """A ``tracking.uri`` on the command line that ``MLFLOW_TRACKING_URI`` would silently overrule is refused."""
    environment = os.environ.get("MLFLOW_TRACKING_URI")
    for key, value in parse_overrides(overrides):
        if key in ("tracking.uri", "tracking_uri") and environment and str(value) != environment:
            raise ConfigError(
                f"{key}: {value} was given, but MLFLOW_TRACKING_URI={environment} is set, and MLflow's own variable "
                f"decides the store; unset it (unset MLFLOW_TRACKING_URI) to use {value}, or drop {key}"
            )
