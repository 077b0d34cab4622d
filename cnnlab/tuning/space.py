"""A search space as data: config keys -> keras-tuner ``hp.*`` calls, and the chosen values back onto the config.

Validation is pure Python (no TensorFlow) and runs before the first trial: every key must exist in the config,
every range must be non-empty, every parent must be a searched choice, and every value a range can take must make
a config that passes :func:`~cnnlab.config.validation.validate`
(so a trial never fails on a kernel larger than its input).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from omegaconf import OmegaConf

from cnnlab.config.compose import compose_run_config
from cnnlab.config.overrides import positional
from cnnlab.config.schema import OPTIMIZER_FIELDS, fields_not_taken, optimizers_taking, option
from cnnlab.config.validation import validate
from cnnlab.errors import ConfigError

_ABSENT = object()


def _kind(param: Any) -> str:
    return option(param.type)


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
        for context in _contexts(param, space):
            for value in _extremes(param):
                try:
                    validate(apply(cfg, {**context, param.key: value}))
                except ConfigError as error:
                    within = "".join(f" with {key}={choice}" for key, choice in context.items())
                    message = f"{where}: the value {value!r}{within} makes an invalid config: {error}"
                    field = param.key.partition(".")[2]
                    chosen = context.get("optimizer.name")
                    if chosen is not None and param.parent is None and field in fields_not_taken(option(chosen)):
                        message += "\n  search it only where it applies: parent: optimizer.name, "
                        message += f"parent_values: {optimizers_taking(field)}"
                    raise ConfigError(message) from error
                except Exception as error:  # a type the schema refuses, e.g. a string for an int field
                    raise ConfigError(f"{where}: the value {value!r} does not fit {param.key}: {error}") from error


def _contexts(param: Any, space: Any) -> list[dict[str, Any]]:
    """The other searched values a value of ``param`` can meet in a trial and must be valid with: each of its
    parent's values it is searched under, and, for an optimizer field, each optimizer the space may pick."""
    contexts: list[dict[str, Any]] = [{}]
    if param.parent is not None:
        contexts = [{param.parent: value} for value in param.parent_values]
    chooser = next((p for p in space if p.key == "optimizer.name" and _kind(p) == "choice"), None)
    optimizer_field = param.key.startswith("optimizer.") and chooser is not None and param.key != chooser.key
    if optimizer_field and param.parent != chooser.key:
        contexts = [{**context, chooser.key: name} for context in contexts for name in chooser["values"]]
    return contexts


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
    """A copy of ``cfg`` with the chosen values set (types checked by the schema).

    A chosen ``optimizer.name`` other than the study's brings that optimizer's own fields, as ``optimizer=<name>``
    would on the command line (adam's beta_1 does not follow into an rmsprop trial; rmsprop's rho comes in), and
    keeps what the study set on its own optimizer where the chosen one takes the key (``optimizer.epsilon=1e-6``)."""
    trial_cfg = copy.deepcopy(cfg)
    chosen = values.get("optimizer.name")
    if chosen is not None and option(chosen) != option(cfg.optimizer.name):
        for field, value in switched_optimizer(cfg.optimizer, option(chosen)).items():
            OmegaConf.update(trial_cfg, f"optimizer.{field}", value, merge=False)
    for key, value in values.items():
        # Bayesian optimisation proposes NumPy scalars (np.float64), which OmegaConf's typed nodes refuse.
        plain = value.item() if hasattr(value, "item") else value
        OmegaConf.update(trial_cfg, positional(cfg, key), plain, merge=False)
    return trial_cfg


def switched_optimizer(study_optimizer: Any, name: str) -> Any:
    """The optimizer section, every field, of a trial that picked ``name``: its option's fields
    (``conf/optimizer/<name>.yaml``, the others null), and the study's own settings that differ from its option's
    defaults, where ``name`` takes them."""
    own_defaults = _option_defaults(option(study_optimizer.name))
    section = dict(_option_defaults(name))
    for key in OPTIMIZER_FIELDS[name]:
        value = study_optimizer.get(key)
        if value is not None and value != own_defaults.get(key):
            section[key] = value
    return section


@functools.cache
def _option_defaults(name: str) -> dict:
    """``optimizer=<name>``'s section as Hydra composes it (once per process: composing takes ~0.3 s)."""
    return OmegaConf.to_container(compose_run_config([f"optimizer={name}"]).optimizer, enum_to_str=True)
