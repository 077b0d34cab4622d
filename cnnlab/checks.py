"""Every command's checks before work, in one place, run before Hydra creates anything.

Hydra composes the config, then calls its callbacks' ``on_run_start``, and only then creates the run's output folder
and starts the task. :class:`CheckBeforeWork` (named in ``hydra.callbacks`` of every primary config) checks there, so
a refused command leaves no ``outputs/`` folder, no MLflow store and no study behind, and TensorFlow is never
imported. The entry points call :func:`check` only where the callback did not run: callers that bypass Hydra's
launcher, and multirun jobs, which differ by their sweep overrides and are checked as each starts, inside its own
job folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from cnnlab.claims.reproduce import seeds_design
from cnnlab.config.compose import parse_overrides
from cnnlab.config.domains import check_domains
from cnnlab.config.validation import validate
from cnnlab.errors import ConfigError

# Set once Hydra's callback has checked this process's single run, so the entry point does not check it again.
checked_before_run = False


class CheckBeforeWork(Callback):
    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        global checked_before_run
        from cnnlab.cli import fail

        try:
            check(config.hydra.job.name, config, list(config.hydra.overrides.task))
        except ConfigError as error:
            fail(str(error))
        checked_before_run = True


def check(command: str, cfg: Any, overrides: list[str]) -> None:
    """Raises ConfigError naming the first key (or option) of ``command`` that cannot work."""
    from omegaconf import OmegaConf

    check_tracking_uri(overrides)
    required = [key for key in cfg if key != "hydra" and OmegaConf.is_missing(cfg, key)]
    if required:
        raise ConfigError("; ".join(f"{key}: required, give it as {key}=..." for key in required))
    if command in ("run", "sweep"):
        validate(cfg)
    if command == "sweep":
        from cnnlab.tuning.space import check_space

        check_space(cfg)
    elif command in ("evaluate", "predict", "register"):
        check_use(cfg)
    elif command == "reproduce":
        check_claims(cfg, overrides)
    elif command == "compare":
        check_domains(cfg)
        shown = [*cfg.params, *cfg.metrics]
        for key in ("sort_by", "plot_x"):
            if cfg[key] is not None and cfg[key] not in shown:
                raise ConfigError(
                    f"{key}: {cfg[key]!r} is not a shown column {shown}; add it to params=[...] or metrics=[...]"
                )
    elif command == "verify":
        check_domains(cfg)


def check_tracking_uri(overrides: list[str]) -> None:
    """A ``tracking.uri`` on the command line that ``MLFLOW_TRACKING_URI`` would silently overrule is refused."""
    environment = os.environ.get("MLFLOW_TRACKING_URI")
    for key, value in parse_overrides(overrides):
        if key in ("tracking.uri", "tracking_uri") and environment and str(value) != environment:
            raise ConfigError(
                f"{key}: {value} was given, but MLFLOW_TRACKING_URI={environment} is set, and MLflow's own variable "
                f"decides the store; unset it (unset MLFLOW_TRACKING_URI) to use {value}, or drop {key}"
            )


def check_use(cfg: Any) -> None:
    """evaluate, predict and register: their options in their domains (registry names among them), images present."""
    check_domains(cfg)
    missing = [f"images.{i}: no such file: {image}" for i, image in enumerate(cfg.images) if not Path(image).is_file()]
    if missing:
        raise ConfigError("\n".join(missing))


def check_claims(cfg: Any, overrides: list[str]) -> None:
    """reproduce: the seeds design, then every claim's own config composed with the same overrides and validated."""
    from hydra import compose

    from cnnlab.claims.reproduce import claim_overrides, precision_variants

    seeds_design(cfg)
    try:
        variants = precision_variants(cfg, claim_overrides(overrides))
    except ValueError as error:
        raise ConfigError(f"precisions: {error}") from error
    from cnnlab.config.compose import claim_names, searchpath_overrides

    searchpath = searchpath_overrides()
    for name in claim_names(cfg, lambda extra: compose("config", overrides=extra), searchpath):
        for variant in variants:
            try:
                claim_cfg = compose(
                    "config", overrides=[f"experiment={name}", *claim_overrides(overrides), *variant, *searchpath]
                )
            except Exception as error:  # Hydra's own errors: no such experiment, a bad override
                raise ConfigError(f"claims: {name!r} is not a usable conf/experiment/{name}.yaml ({error})") from error
            validate(claim_cfg)
