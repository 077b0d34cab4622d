"""Hydra's plumbing: the schema registered in the ConfigStore, Hydra's own settings, composing ``conf/config.yaml``
outside a Hydra application, and reading overrides with Hydra's grammar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from cnnlab.config.overrides import address_blocks_by_name
from cnnlab.config.schema import (
    CompareConfig,
    Config,
    ReproduceConfig,
    SeedsConfig,
    SweepEntryConfig,
    UseConfig,
    VerifyConfig,
)

# Hydra's own settings, shared by every command's primary config (its defaults list names "hydra_settings").
HYDRA_SETTINGS = {
    "hydra": {
        # cnnlab/cli.py: the entry point's checks run after composing and before Hydra creates anything
        "callbacks": {"check_before_work": {"_target_": "cnnlab.cli.CheckBeforeWork"}},
        # relative paths (mlruns/, dataset.local_dir) stay relative to where the command was run
        "job": {"chdir": False},
        "run": {"dir": "outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}"},
    }
}


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="hydra_settings", node=HYDRA_SETTINGS, package="_global_")
    store.store(name="cnnlab_schema", node=Config)
    store.store(name="cnnlab_sweep_schema", node=SweepEntryConfig)
    store.store(name="cnnlab_use_schema", node=UseConfig)
    store.store(name="cnnlab_reproduce_schema", node=ReproduceConfig)
    store.store(name="compare_config", node=CompareConfig)
    store.store(name="verify_config", node=VerifyConfig)
    store.store(name="seeds_config", node=SeedsConfig)
    address_blocks_by_name()


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """``(key, value)`` per command-line override, read by Hydra's own override grammar (``+a.b=[1,2]`` ->
    ``("a.b", [1, 2])``), so cnnlab never splits an override by hand."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return [(parsed.key_or_group, parsed.value()) for parsed in OverridesParser.create().parse_overrides(overrides)]


CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_run_config(overrides: list[str]) -> Any:
    """``conf/config.yaml`` with ``overrides``, inside a Hydra application (its search path) or outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a command: its search path, --config-dir and all
        return compose("config", overrides=[*overrides, *searchpath_overrides()])
    register_configs()  # a script's own composition: no Hydra application registered the schema
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def with_dataset_description(dataset: Any) -> Any:
    """A dataset config logged before a dataset described itself (no ``shape``), completed from its file in
    ``conf/dataset/``; what was logged wins. Returned as it is when it has a shape, or when no file names it."""
    from omegaconf import OmegaConf

    path = CONF_DIR / "dataset" / f"{dataset.get('name')}.yaml"
    if dataset.get("shape") is not None or not path.exists():
        return dataset
    return OmegaConf.merge(OmegaConf.load(path), dataset)


def group_file(cfg: Any, group: str) -> Path | None:
    """The file ``cfg``'s ``group`` option was read from (:func:`option_file`), in the folders Hydra searched for
    it (its record in ``cfg``, else :func:`search_folders`); the option is Hydra's record of the choice, else the
    group's ``name``. None when no file has it."""
    from omegaconf import OmegaConf

    choice = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}", default=None) or OmegaConf.select(
        cfg, f"{group}.name", default=None
    )
    sources = OmegaConf.select(cfg, "hydra.runtime.config_sources", default=None)
    folders = [Path(s.path) for s in sources if s.schema == "file"] if sources else search_folders([])
    return None if choice is None else option_file(group, str(choice), folders)


def search_folders(overrides: list[str]) -> list[Path]:
    """The folders of the config search path, in Hydra's order (the first that has a file wins): the application's
    own (``conf/``, ``--config-dir``), then ``hydra.searchpath`` as ``overrides`` give it; ``conf/`` outside one."""
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        return [CONF_DIR]
    folders = [Path(s.path) for s in GlobalHydra.instance().config_loader().get_sources() if s.scheme() == "file"]
    for _, value in parse_overrides([o for o in overrides if o.startswith("hydra.searchpath")]):
        folders += [
            Path(str(entry).removeprefix("file://"))
            for entry in value
            if "://" not in entry or str(entry).startswith("file://")
        ]
    return folders


def option_file(group: str, choice: str, folders: list[Path]) -> Path | None:
    """``<group>/<choice>.yaml`` in the first of ``folders`` that has it, or None."""
    return next(
        (folder / group / f"{choice}.yaml" for folder in folders if (folder / group / f"{choice}.yaml").is_file()), None
    )


def misfit_key(group: str, path: Path) -> str | None:
    """The first top-level key of the group file ``path`` whose value the run schema cannot take (a list where the
    schema has a mapping, say), for the errors where OmegaConf names no key; None when each fits on its own."""
    from dataclasses import fields

    from omegaconf import OmegaConf

    from cnnlab.config.schema import Config

    if group not in {field.name for field in fields(Config)}:
        return None
    schema = OmegaConf.structured(Config)
    written = OmegaConf.load(path)
    for key in written if OmegaConf.is_dict(written) else []:
        try:
            OmegaConf.merge(schema, {group: {key: written[key]}})
        except Exception:  # OmegaConf's validation errors, whatever their class
            return f"{group}.{key}"
    return None


def searchpath_overrides() -> list[str]:
    """``hydra.searchpath=[...]`` as given on the command line (a user's own config folders), so that configs
    composed inside a command see the same folders; empty outside a Hydra application."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [override for override in HydraConfig.get().overrides.hydra if override.startswith("hydra.searchpath")]


def claim_names(cfg: Any, compose: Any, searchpath: list[str] | None = None) -> list[str]:
    """reproduce's ``claims``, or when it is null every experiment in the config search path (conf/experiment/,
    ``--config-dir``, ``hydra.searchpath``) that has a ``claim`` block, by name. ``compose(overrides)`` composes."""
    from hydra.core.global_hydra import GlobalHydra

    from cnnlab.errors import ConfigError

    if cfg.claims is not None:
        return list(cfg.claims)
    searchpath = searchpath if searchpath is not None else searchpath_overrides()
    options = (
        GlobalHydra.instance()
        .config_loader()
        .get_group_options("experiment", config_name="config", overrides=searchpath)
    )
    names = [name for name in options if compose([f"experiment={name}", *searchpath]).get("claim") is not None]
    if not names:
        raise ConfigError("claims: no experiment in the config search path has a claim block (see docs/own-claim.md)")
    return names
