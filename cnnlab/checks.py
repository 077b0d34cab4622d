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

from cnnlab.config.compose import CONF_DIR, claim_names, parse_overrides, searchpath_overrides
from cnnlab.config.domains import check_domains
from cnnlab.config.overrides import check_keys_in_schema
from cnnlab.config.validation import validate
from cnnlab.errors import ConfigError


def check_run(cfg: Any, overrides: list[str]) -> None:
    """run: the whole config, the model's shapes included."""
    check_common(cfg, overrides)
    validate(cfg)
    check_sizes(cfg)
    check_store_first("run", cfg)


def check_sweep(cfg: Any, overrides: list[str]) -> None:
    """sweep: the base config, then the search space (every value it can take must make a valid config)."""
    from cnnlab.tuning.space import check_space

    check_common(cfg, overrides)
    validate(cfg)
    check_space(cfg)
    check_sizes(cfg)
    check_store_first("sweep", cfg)


def check_use(cfg: Any, overrides: list[str]) -> None:
    """evaluate, predict and register: their options in their domains (registry names among them), images present,
    then the store and the model the URI names."""
    check_common(cfg, overrides)
    check_domains(cfg)
    missing = [f"images.{i}: no such file: {image}" for i, image in enumerate(cfg.images) if not Path(image).is_file()]
    if missing:
        raise ConfigError("\n".join(missing))
    check_store_first("use", cfg)


def check_reproduce(cfg: Any, overrides: list[str]) -> None:
    """reproduce: the seeds design, then every claim's own config composed with the same overrides and validated."""
    from hydra import compose

    from cnnlab.claims.reproduce import check_workers, claim_overrides, never_decides, precision_variants
    from cnnlab.claims.sources import check_design

    check_common(cfg, overrides)
    check_domains(cfg)
    never_decides(cfg)
    check_workers(cfg)
    if cfg.claims is not None and not cfg.claims:  # null: every experiment with a claim block (claim_names)
        known = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
        raise ConfigError(f"claims: empty; name at least one conf/experiment file, e.g. claims=[{','.join(known)}]")
    try:
        variants = precision_variants(cfg, claim_overrides(overrides))
    except ValueError as error:
        raise ConfigError(f"precisions: {error}") from error
    searchpath = searchpath_overrides()
    claim_cfgs = {}
    for name in claim_names(cfg, lambda extra: compose("config", overrides=extra), searchpath):
        for variant in variants:
            try:
                claim_cfg = compose(
                    "config", overrides=[f"experiment={name}", *claim_overrides(overrides), *variant, *searchpath]
                )
            except Exception as error:  # Hydra's own errors: no such experiment, a bad override
                raise ConfigError(f"claims: {name!r} is not a usable conf/experiment/{name}.yaml ({error})") from error
            validate(claim_cfg)
            check_sizes(claim_cfg)
            claim_cfgs[name] = claim_cfg
    check_design(cfg, claim_cfgs)
    check_store_first("reproduce", cfg)


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
    check_store_first("compare", cfg)


def check_verify(cfg: Any, overrides: list[str]) -> None:
    """verify: its options in their domains (the run id's form), then the run itself in the store."""
    check_common(cfg, overrides)
    check_domains(cfg)
    check_store_first("verify", cfg)


def check_seeds(cfg: Any, overrides: list[str]) -> None:
    """seeds: its options in their domains; export needs the store it reads, import a seeds file that is whole and
    of a version this cnnlab reads (checked before the store is touched)."""
    from cnnlab.claims.portable import SeedsFileRefused, read_seeds_file

    check_common(cfg, overrides)
    check_domains(cfg)
    action = cfg.action.value
    if action == "import":
        given = [key for key in ("claims", "machine_kind") if cfg[key] is not None]
        given += ["runs"] if cfg.runs.value != "all" else []
        if given:
            raise ConfigError(f"{given[0]}: chooses what export writes; import takes every seed of the file")
        try:
            read_seeds_file(cfg.path)
        except SeedsFileRefused as error:
            raise ConfigError(str(error)) from None
    check_store_first(f"seeds-{action}", cfg)


def check_common(cfg: Any, overrides: list[str]) -> None:
    """What every command checks first: the store a ``tracking.uri`` names, and the options it requires."""
    from omegaconf import OmegaConf

    check_tracking_uri(overrides)
    check_keys_in_schema(cfg)
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


def check_sizes(cfg: Any) -> None:
    """Split sizes (holdout, subset) against what is known of the dataset, without loading it."""
    from cnnlab.data.sizes import size_problems

    if problems := size_problems(cfg):
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def check_store_first(command: str, cfg: Any) -> None:
    """The store answers within seconds, whole and MLflow's; a command that only reads needs it to exist, and
    what it looks up in it (a run, a registered model) to be there. Nothing is created either way."""
    from cnnlab.tracking.preflight import check_store, effective_uri

    key = "tracking.uri" if "tracking" in cfg else "tracking_uri"
    uri, source = effective_uri(cfg.tracking.uri if key == "tracking.uri" else cfg.tracking_uri, key)
    model_uri = str(cfg.get("model_uri") or "")
    needs_store = command in ("compare", "verify", "seeds-export") or model_uri.startswith(("runs:/", "models:/"))
    check_store(uri, source, must_exist=needs_store)
    if command not in ("use", "verify", "compare"):
        return
    import mlflow

    from cnnlab.tracking.lookups import check_experiments, check_model_uri, check_run

    mlflow.set_tracking_uri(uri)  # not a store yet: MLflow opens it on the first lookup, which needs_store vouched for
    if command == "verify":
        check_run(mlflow.MlflowClient(), cfg.run_id, "run_id", uri)
    elif command == "compare":
        check_experiments(mlflow.MlflowClient(), list(cfg.experiments or []), uri)
    else:
        check_model_uri(model_uri, uri)
