"""Addressing keys: blocks by name (``model.blocks.conv1.filters``) wherever a key is given, and no key outside the
schema, whichever override syntax (``+``, ``++``) or file brought it in."""

from __future__ import annotations

import dataclasses
from typing import Any

from cnnlab.errors import ConfigError


def positional(cfg: Any, key: str) -> str:
    """``model.blocks.<name>.<field>`` as the list position it names today (``model.blocks.3.rate``); other keys as
    they are. Studies and command lines address blocks by name, so inserting a block does not retarget them."""
    parts = key.split(".")
    if parts[:2] != ["model", "blocks"] or len(parts) < 3 or parts[2].lstrip("-").isdigit():
        return key
    model = cfg.get("model") if hasattr(cfg, "get") else None
    if model is None or not model.get("blocks"):
        raise ConfigError(f"{key}: this config has no model blocks to address by name")
    names = [block.get("name") for block in model.blocks]
    if parts[2] not in names:
        raise ConfigError(f"{key}: no block named {parts[2]!r} in model {model.name!r}; its blocks: {names}")
    return ".".join([*parts[:2], str(names.index(parts[2])), *parts[3:]])


def apply_by_name(apply_overrides: Any) -> Any:
    """Wraps Hydra's step that applies ``key=value`` overrides to the composed config, so that a block's name in a
    key (with ``+``, ``++`` or neither) means the block's position in the model the defaults list chose."""
    from hydra.errors import ConfigCompositionException

    def apply(overrides: list[Any], cfg: Any) -> None:
        for override in overrides:  # one at a time: an earlier override may replace the block list
            if override.package is None and not override.is_delete():
                try:
                    key = positional(cfg, override.key_or_group)
                except ConfigError as error:
                    raise ConfigCompositionException(str(error)) from None
                override = dataclasses.replace(override, key_or_group=key)
            try:
                apply_overrides([override], cfg)
            except OverflowError as error:  # OmegaConf lets a float field's int conversion overflow unwrapped
                raise ConfigCompositionException(
                    f"{override.key_or_group}: must be a finite number within a float's range ({error})"
                ) from None

    return apply


def address_blocks_by_name() -> None:
    """Installs :func:`apply_by_name` on Hydra's config loader (idempotent)."""
    from cnnlab.compat import wrap_override_application

    wrap_override_application(apply_by_name)


def keys_outside_schema(cfg: Any, prefix: str = "") -> list[str]:
    """Every key of ``cfg`` that its schema (the dataclasses of :mod:`cnnlab.config.schema`) does not declare: what
    ``+key=...`` or ``++key=...`` added. Free-form nodes (a ``dict`` field) hold data and are not walked."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    outside: list[str] = []
    if isinstance(cfg, DictConfig):
        if cfg._is_none() or cfg._is_missing():
            return outside
        schema = OmegaConf.get_type(cfg)
        declared = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
        if declared is None:
            return outside
        for key in cfg:
            if not prefix and key == "hydra":
                continue
            if key not in declared:
                outside.append(f"{prefix}{key}")
            else:
                outside += keys_outside_schema(cfg._get_node(key), f"{prefix}{key}.")
    elif isinstance(cfg, ListConfig) and not (cfg._is_none() or cfg._is_missing()):
        for index in range(len(cfg)):
            outside += keys_outside_schema(cfg._get_node(index), f"{prefix}{index}.")
    return outside


def check_keys_in_schema(cfg: Any) -> None:
    """Raises ConfigError naming every key the schema does not have: a typo under ``+`` would otherwise change
    nothing and still train."""
    outside = keys_outside_schema(cfg)
    if outside:
        raise ConfigError(
            "not a key of this command's config (a '+' or '++' can add a key, but cnnlab reads only the ones its "
            f"schema has): {', '.join(outside)}; see them all with --cfg job"
        )
