"""A search space as data: config keys -> keras-tuner ``hp.*`` calls, and the chosen values back onto the config.

Validation is pure Python (no TensorFlow) and runs before the first trial: every key must exist in the config,
every range must be non-empty, every parent must be a searched choice, and every value a range can take must make
a config that passes :func:`cnnlab.config.validate` (so a trial never fails on a kernel larger than its input).
"""

from __future__ import annotations

import copy
from typing import Any

from omegaconf import OmegaConf

from cnnlab.config import ConfigError, option, validate

_ABSENT = object()


def _kind(param: Any) -> str:
    return option(param.type)


def positional(cfg: Any, key: str) -> str:
    """``model.blocks.<name>.<field>`` as the list position it names today (``model.blocks.3.rate``); other keys as
    they are. Studies address blocks by name, so inserting a block does not retarget them."""
    parts = key.split(".")
    if parts[:2] != ["model", "blocks"] or len(parts) < 3 or parts[2].isdigit():
        return key
    names = [block.get("name") for block in cfg.model.blocks]
    if parts[2] not in names:
        raise ConfigError(f"{key}: no block named {parts[2]!r} in model {cfg.model.name!r}; its blocks: {names}")
    return ".".join([*parts[:2], str(names.index(parts[2])), *parts[3:]])


def check_space(cfg: Any) -> None:
    """Raises ConfigError naming the first bad entry of ``cfg.sweep.space``."""
    space = cfg.sweep.space
    if not space:
        raise ConfigError("sweep.space is empty: list at least one {key, type, ...} entry to search")
    seen: dict[str, Any] = {}
    for index, param in enumerate(space):
        where = f"sweep.space[{index}] ({param.key})"
        try:
            key = positional(cfg, param.key)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from error
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT or param.key.startswith(("sweep.", "tuner.")):
            raise ConfigError(f"{where}: {param.key!r} is not a key of the run config (e.g. model.blocks.0.filters)")
        if param.key in seen:
            raise ConfigError(f"{where}: {param.key!r} is searched twice")
        kind = _kind(param)
        if kind == "choice" and not param["values"]:
            raise ConfigError(f"{where}: a choice needs a non-empty `values` list")
        if kind in ("int", "float"):
            if param.min is None or param.max is None:
                raise ConfigError(f"{where}: an {kind} range needs `min` and `max`")
            if param.min >= param.max:
                raise ConfigError(f"{where}: empty range min={param.min} >= max={param.max}")
            if option(param.sampling) == "log" and param.min <= 0:
                raise ConfigError(f"{where}: log sampling needs min > 0, got {param.min}")
            if param.step is not None and param.step <= 0:
                raise ConfigError(f"{where}: step must be > 0, got {param.step}")
        if param.parent is not None:
            parent = seen.get(param.parent)
            if parent is None or _kind(parent) != "choice":
                raise ConfigError(f"{where}: parent {param.parent!r} must be a choice listed before it in sweep.space")
            choices = list(parent["values"])
            unknown = [value for value in param.parent_values or [] if value not in choices]
            if not param.parent_values or unknown:
                raise ConfigError(f"{where}: parent_values must be some of {choices}, got {unknown or []}")
        seen[param.key] = param
        for value in _extremes(param):
            trial_cfg = copy.deepcopy(cfg)
            try:
                OmegaConf.update(trial_cfg, key, value, merge=False)
                validate(trial_cfg)
            except ConfigError as error:
                raise ConfigError(f"{where}: the value {value!r} makes an invalid config: {error}") from error
            except Exception as error:  # a type the schema refuses, e.g. a string for an int field
                raise ConfigError(f"{where}: the value {value!r} does not fit {param.key}: {error}") from error


def _extremes(param: Any) -> list[Any]:
    kind = _kind(param)
    if kind == "choice":
        return list(param["values"])
    if kind == "boolean":
        return [False, True]
    if kind == "int":
        return [int(param.min), int(param.max)]
    return [float(param.min), float(param.max)]


def declare(hp: Any, space: Any, base: Any) -> dict[str, Any]:
    """Declares every entry on a keras-tuner ``HyperParameters`` and returns the active values by config key.

    Each hyperparameter's default is its value in ``base`` (the study's base configuration) where the range holds
    it: keras-tuner's GridSearch starts from the defaults, and cnnlab's warm start makes them trial 0.
    """
    values: dict[str, Any] = {}
    for param in space:
        default = base_value(base, param)
        if param.parent is None:
            values[param.key] = _declare_one(hp, param, default)
            continue
        parent_values = list(param.parent_values)
        with hp.conditional_scope(param.parent, parent_values):
            value = _declare_one(hp, param, default)
        if values.get(param.parent) in parent_values:
            values[param.key] = value
    return values


def base_value(base: Any, param: Any) -> Any:
    """The base configuration's value of ``param.key`` when the range can take it, else None (keras-tuner's own)."""
    value = OmegaConf.select(base, positional(base, param.key), default=None)
    value = value.value if hasattr(value, "value") else value  # an enum field (optimizer.name)
    kind = _kind(param)
    if value is None:
        return None
    if kind == "choice":
        return value if value in list(param["values"]) else None
    if kind == "boolean":
        return bool(value)
    if not param.min <= value <= param.max:
        return None
    if kind == "int" and param.step is not None and (int(value) - int(param.min)) % int(param.step):
        return None
    return int(value) if kind == "int" else float(value)


def _declare_one(hp: Any, param: Any, default: Any) -> Any:
    kind = _kind(param)
    name = param.key
    if kind == "choice":
        return hp.Choice(name, list(param["values"]), default=default)
    if kind == "boolean":
        return hp.Boolean(name, default=bool(default))
    sampling = option(param.sampling)
    if kind == "int":
        step = int(param.step) if param.step is not None else None
        return hp.Int(name, int(param.min), int(param.max), step=step, sampling=sampling, default=default)
    return hp.Float(name, float(param.min), float(param.max), step=param.step, sampling=sampling, default=default)


def apply(cfg: Any, values: dict[str, Any]) -> Any:
    """A copy of ``cfg`` with the chosen values set (types checked by the schema)."""
    trial_cfg = copy.deepcopy(cfg)
    for key, value in values.items():
        # Bayesian optimisation proposes NumPy scalars (np.float64), which OmegaConf's typed nodes refuse.
        plain = value.item() if hasattr(value, "item") else value
        OmegaConf.update(trial_cfg, positional(cfg, key), plain, merge=False)
    return trial_cfg
