"""Every use of another library's private names, in one place, each with the version it was checked against.

A private name can change in any release without notice. Each hook below says which library version it was read
against, what it relies on and why no public API serves; :func:`stale_hooks` lists the hooks whose library is now
at another version, and tests/test_compat.py fails naming them, so an upgrade is a list of hooks to reread rather
than a silent break. Nothing here is imported at module level beyond the standard library: the launcher imports
this module before anything heavy.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Hook:
    name: str
    distribution: str  # as importlib.metadata names it; "python" for the standard library
    checked: str  # the version(s) the hook was read against, comma-separated
    uses: str  # the private names it touches
    why: str  # why no public API serves


HOOKS: dict[str, Hook] = {}


def hook(distribution: str, checked: str, uses: str, why: str) -> Callable[[Any], Any]:
    def register(function: Any) -> Any:
        HOOKS[function.__name__] = Hook(function.__name__, distribution, checked, uses, why)
        return function

    return register


def installed_version(distribution: str) -> str:
    if distribution == "python":
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    from importlib.metadata import version

    return version(distribution)


def stale_hooks() -> list[str]:
    """``<hook>: checked against <library> <version>, installed <version>`` for every hook to read again."""
    stale = []
    for item in HOOKS.values():
        installed = installed_version(item.distribution)
        if installed not in item.checked.split(", "):
            stale.append(
                f"{item.name}: checked against {item.distribution} {item.checked}, installed {installed}; "
                f"recheck {item.uses}"
            )
    return stale


# keras-tuner


@hook(
    "keras-tuner",
    "1.4.8",
    "Oracle._random_values",
    "Random search, Bayesian optimisation's initial points and Hyperband's new brackets all draw their next point "
    "through this one method; populate_space, the public override, differs per oracle (Hyperband keeps its bracket "
    "bookkeeping there), so a first point given there would need one copy of each oracle's logic.",
)
class OracleHooks:
    """Mixed into a keras-tuner oracle: :meth:`first_values`, when it returns values, is the next random point."""

    def first_values(self) -> dict[str, Any] | None:
        return None

    def _random_values(self) -> dict[str, Any] | None:
        values = self.first_values()
        return values if values is not None else super()._random_values()


@hook(
    "keras-tuner",
    "1.4.8",
    "Oracle._tried_so_far",
    "The set of value hashes the oracle has proposed, restored with its state; oracle.trials also holds trials "
    "made by Hyperband's later rounds and by reloads, so only this says whether any point was drawn yet.",
)
def nothing_tried(oracle: Any) -> bool:
    """Whether ``oracle`` has proposed no point yet (in this study, across restarts)."""
    return not oracle._tried_so_far


@hook(
    "keras-tuner",
    "1.4.8",
    "Oracle._retry_queue",
    "reload() queues every trial its state file lists as running for a retry, with no public way to say that a "
    "trial is still being trained by a worker of a restarted chief.",
)
def forget_retry(oracle: Any, trial_id: str) -> None:
    """Takes ``trial_id`` off the queue of trials ``oracle`` will hand out again."""
    oracle._retry_queue.remove(trial_id)


@hook(
    "keras-tuner",
    "1.4.8",
    "Oracle._display.trial_start, Oracle._display.trial_number",
    "The oracle saves its state before its display notes a trial's start; ending that trial after a reload looks "
    "its start up and fails with a KeyError. The display has no public setter.",
)
def note_running_trial(oracle: Any, trial_id: str) -> None:
    """Gives a trial kept running across a chief's restart the display entries ending it looks up."""
    oracle._display.trial_start.setdefault(trial_id, datetime.now())
    oracle._display.trial_number.setdefault(trial_id, len(oracle.trials))


# Hydra


@hook(
    "hydra-core",
    "1.3.8",
    "hydra._internal.utils.run_and_report",
    "Hydra prints its composition errors (an unknown key, a wrong type, a bad override) with a stack-trace hint "
    "through this function, and offers no public hook for how an error is reported.",
)
def report_hydra_errors(wrap: Callable[[Any], Any]) -> None:
    """Replaces Hydra's error reporter by ``wrap(hydra's own reporter)`` for the rest of the process."""
    import hydra._internal.utils as hydra_utils

    hydra_utils.run_and_report = wrap(hydra_utils.run_and_report)


@hook(
    "hydra-core",
    "1.3.8",
    "ConfigLoaderImpl._apply_overrides_to_config",
    "Hydra has no hook between composing the defaults list and applying the command line's key=value overrides; "
    "a block's name (model.blocks.conv1.filters) can only be turned into its position in the model the defaults "
    "chose at that step.",
)
def wrap_override_application(wrap: Callable[[Any], Any]) -> None:
    """Replaces Hydra's step that applies ``key=value`` overrides by ``wrap(hydra's own step)``, once per process
    (a wrapper marks itself with ``wrapped_by_cnnlab``)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    current = ConfigLoaderImpl._apply_overrides_to_config
    if not getattr(current, "wrapped_by_cnnlab", False):
        wrapped = wrap(current)
        wrapped.wrapped_by_cnnlab = True
        ConfigLoaderImpl._apply_overrides_to_config = staticmethod(wrapped)


# The standard library


@hook(
    "python",
    "3.11, 3.12, 3.13",
    "atexit._run_exitfuncs",
    "A finished command exits with os._exit to skip TensorFlow's ~2 s of teardown; the exit handlers (MLflow's, "
    "Hydra's) must still run first, and atexit has no public call that runs them.",
)
def run_exit_handlers() -> None:
    """Runs every registered exit handler now, as a normal interpreter exit would."""
    import atexit

    atexit._run_exitfuncs()


# TensorFlow


@hook(
    "tensorflow",
    "2.21.0",
    "tensorflow.python.framework.ops._gradient_registry._registry",
    "Tracing Keras' train step registers CustomGradient-N entries that each hold the traced graph "
    "(tensorflow/tensorflow#97697); TensorFlow has no public call to unregister a gradient.",
)
@contextlib.contextmanager
def released_gradient_registrations() -> Iterator[None]:
    """Forgets the ``CustomGradient-N`` gradient functions TensorFlow registered globally inside the block.

    A sweep or reproduction that trains many models in one process grew by ~15 MB a trial without this.
    Gradients are taken while tracing, so once fit() returns nothing looks these entries up again; a model
    fitted again afterwards reuses its traced step or registers anew.
    """
    from tensorflow.python.framework import ops

    registry = gradient_registry(ops)
    before = set(registry) if registry is not None else None
    try:
        yield
    finally:
        if before is not None:
            for name in [name for name in registry if name not in before and name.startswith("CustomGradient-")]:
                del registry[name]


def gradient_registry(ops: Any) -> dict[str, Any] | None:
    """TensorFlow's process-wide gradient registry (a dict by op name), or None where it is not found."""
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


@hook(
    "tensorflow",
    "2.21.0",
    "tensorflow.python.framework.config.disable_op_determinism",
    "TensorFlow's public API only switches op determinism on; a process that trains a run with it on and then "
    "one with it off (a sweep, a reproduction, a variance design that turns it off) needs it switched off again.",
)
def set_op_determinism(on: bool) -> None:
    """Op determinism on or off for what this process trains next, whatever an earlier run set."""
    import tensorflow as tf
    from tensorflow.python.framework import config

    if on:
        tf.config.experimental.enable_op_determinism()
    elif config.is_op_determinism_enabled():
        config.disable_op_determinism()


# Keras


@hook(
    "keras",
    "3.15.1",
    "Layer.__call__ looking up the instance's call at call time",
    "A cheaper dropout draw for one layer (models.dropout) must keep the layer a plain keras.layers.Dropout, so a "
    "saved model loads anywhere without cnnlab; a subclass would be saved as cnnlab's class. Keras has no public "
    "way to give one instance another training-time call.",
)
def replace_call(layer: Any, call: Callable[..., Any]) -> Any:
    """``layer`` with ``call(layer, inputs, training=...)`` as its own ``call``; the class is unchanged."""
    import types

    layer.call = types.MethodType(call, layer)
    return layer


@hook(
    "keras",
    "3.15.1",
    "keras.src.random.seed_generator.make_default_seed (python_random.randint(1, int(1e9)))",
    "A kernel initializer or Dropout layer made without seed= takes its seed from this draw of Python's global "
    "generator as it is constructed. Seeding each source of randomness apart (models.builder) passes every layer "
    "its seed, and a source that follows the run's seed must get the very number Keras would have drawn; Keras "
    "exposes the draw under no public name.",
)
def keras_default_seed(generator: Any = None) -> int:
    """The seed Keras gives a layer made without ``seed=``: Keras' own draw when ``generator`` is None, else the same
    draw from ``generator`` (a ``random.Random``)."""
    if generator is None:
        from keras.src.random.seed_generator import make_default_seed

        return make_default_seed()
    return generator.randint(1, int(1e9))


# NumPy


@hook(
    "numpy",
    "2.4.6",
    "numpy._core.multiarray._reconstruct",
    "A pickled ndarray names this constructor; a restricted unpickler must hand back the very function the pickle "
    "names, and NumPy exposes it under no public name.",
)
def numpy_array_reconstructor() -> Callable[..., Any]:
    from numpy._core.multiarray import _reconstruct

    return _reconstruct


# MLflow


@hook(
    "mlflow",
    "3.17.2",
    "mlflow/store/db_migrations/versions/*.py: each alembic script's revision and down_revision",
    "MLflow names the schema revision it expects only through mlflow.store.db.utils._get_latest_schema_revision, "
    "which imports MLflow and alembic and executes every migration script (seconds, MLflow's whole import); the "
    "store's preflight answers before MLflow loads, so it reads the scripts' two assignments as text.",
)
def mlflow_schema_revisions() -> tuple[str, dict[str, tuple[str, ...]]]:
    """The installed MLflow's version, and each schema revision its migration scripts know -> the revisions it
    follows (none for the first). Nothing of MLflow is imported."""
    import ast
    import importlib.util
    from importlib.metadata import version
    from pathlib import Path

    spec = importlib.util.find_spec("mlflow")  # a top-level package's spec is found without running it
    folder = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    revisions: dict[str, tuple[str, ...]] = {}
    for script in sorted(folder.glob("*.py")):
        assigned = {}
        for node in ast.parse(script.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                        assigned[target.id] = ast.literal_eval(node.value)
        if isinstance(assigned.get("revision"), str):
            follows = assigned.get("down_revision")
            revisions[assigned["revision"]] = (
                tuple(follows) if isinstance(follows, list | tuple) else ((follows,) if follows else ())
            )
    return version("mlflow"), revisions
