"""cnnlab.compat: each hook into another library's private names works, was read against the installed version,
and is the only such use in the package."""

from __future__ import annotations

import ast
import pickle
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab import compat

# Each hook and the test below that exercises it; a hook added without a test fails the first test.
EXERCISED = {
    "OracleHooks": "test_oracle_hooks_give_the_first_point_then_leave_the_draws_to_keras_tuner",
    "nothing_tried": "test_oracle_hooks_give_the_first_point_then_leave_the_draws_to_keras_tuner",
    "forget_retry": "test_a_trial_kept_running_leaves_the_retry_queue_and_can_end",
    "note_running_trial": "test_a_trial_kept_running_leaves_the_retry_queue_and_can_end",
    "report_hydra_errors": "test_hydra_reports_its_errors_through_the_replaced_reporter",
    "wrap_override_application": "test_overrides_pass_through_the_wrapped_step_once",
    "run_exit_handlers": "test_exit_handlers_run_before_an_immediate_exit",
    "released_gradient_registrations": "test_gradients_registered_while_tracing_are_released",
    "replace_call": "test_a_replaced_call_runs_and_the_layer_stays_plain_dropout",
    "numpy_array_reconstructor": "test_the_reconstructor_is_the_one_a_pickled_array_names",
    "mlflow_schema_revisions": "test_the_schema_revisions_read_as_text_end_where_mlflow_expects",
    "keras_default_seed": "test_the_default_seed_is_the_draw_keras_gives_an_unseeded_layer",
    "set_op_determinism": "test_op_determinism_goes_off_again_after_a_run_that_set_it",
}


def test_every_hook_is_exercised_here():
    assert set(compat.HOOKS) == set(EXERCISED)
    assert all(name in globals() for name in EXERCISED.values())


def test_every_hook_was_checked_against_the_installed_version():
    """Fails after an upgrade, naming each hook to read again against the new version (then update its version)."""
    stale = compat.stale_hooks()
    assert not stale, "hooks into private names, to recheck:\n  " + "\n  ".join(stale)


def test_a_new_version_names_exactly_the_hooks_that_rely_on_it(monkeypatch):
    real = compat.installed_version
    monkeypatch.setattr(compat, "installed_version", lambda name: "9.9" if name == "keras-tuner" else real(name))
    stale = compat.stale_hooks()
    assert sorted(line.split(":")[0] for line in stale) == [
        "OracleHooks",
        "forget_retry",
        "note_running_trial",
        "nothing_tried",
    ]
    assert "checked against keras-tuner 1.4.8, installed 9.9; recheck Oracle._retry_queue" in "\n".join(stale)


# Public despite the underscore: documented API (docs.python.org/3/library/os.html#os._exit).
DOCUMENTED = {"os._exit"}


def foreign_private_uses(source: str) -> list[str]:
    """Where a module names another library's private name, as far as the text shows it: an import of one, an
    attribute of an imported module or class, ``super()._name``, ``getattr`` with one, or an override of one (a
    ``_method`` in a class built on another library's). An attribute of an object the code was handed
    (``oracle._display``) is not seen; review keeps those in compat."""
    tree = ast.parse(source)
    foreign: set[str] = set()
    found = []

    def private(name: str) -> bool:
        return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("cnnlab"):
                    foreign.add(alias.asname or alias.name.split(".")[0])
                    if private(alias.name):
                        found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith(("cnnlab", "__future__")):
            for alias in node.names:
                foreign.add(alias.asname or alias.name)
                if private(f"{node.module}.{alias.name}"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in foreign and ast.unparse(node) not in DOCUMENTED:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
            if isinstance(root, ast.Call) and ast.unparse(root.func) == "super":
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "getattr" and len(node.args) > 1:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and private(name.value):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ClassDef) and any(ast.unparse(base).split(".")[0] in foreign for base in node.bases):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and private(item.name):
                    found.append(f"line {item.lineno}: overrides {item.name}")
    return found


def test_no_module_but_compat_uses_another_librarys_private_names():
    uses = {}
    for module in pkgutil.walk_packages(cnnlab.__path__, "cnnlab."):
        source = Path(module.module_finder.find_spec(module.name).origin).read_text()
        if module.name != "cnnlab.compat" and (found := foreign_private_uses(source)):
            uses[module.name] = found
    assert not uses, f"move these into cnnlab/compat.py as hooks: {uses}"


@pytest.mark.parametrize(
    "source",
    [
        "import hydra._internal.utils as hydra_utils",
        "from numpy._core.multiarray import _reconstruct",
        "import atexit\natexit._run_exitfuncs()",
        "from tensorflow.python.framework import ops\nregistry = getattr(ops, '_gradient_registry', None)",
        "import keras_tuner as kt\nclass O(kt.Oracle):\n    def _random_values(self):\n        pass",
        "class M:\n    def f(self):\n        return super()._random_values()",
    ],
)
def test_the_search_finds_private_names_where_they_were_used(source):
    assert len(foreign_private_uses(source)) == 1
    assert not foreign_private_uses("import os\nos._exit(0)\nclass A:\n    def _own(self):\n        self._x = 1")


def make_oracle(tmp_path, first=None):
    import keras_tuner as kt

    class Oracle(compat.OracleHooks, kt.oracles.RandomSearchOracle):
        def first_values(self):
            return dict(first) if first and compat.nothing_tried(self) else None

    hp = kt.HyperParameters()
    hp.Int("units", 1, 100)
    oracle = Oracle(objective=kt.Objective("loss", "min"), max_trials=5, seed=1, hyperparameters=hp)
    oracle._set_project_dir(str(tmp_path), "study")
    return oracle


def test_oracle_hooks_give_the_first_point_then_leave_the_draws_to_keras_tuner(tmp_path):
    oracle = make_oracle(tmp_path, first={"units": 7})
    assert compat.nothing_tried(oracle)
    assert oracle.create_trial("tuner0").hyperparameters.values == {"units": 7}
    assert not compat.nothing_tried(oracle)
    drawn = [oracle.create_trial(f"tuner{i}").hyperparameters.values["units"] for i in (1, 2, 3)]
    assert 7 not in drawn and len(set(drawn)) == 3  # keras-tuner's own draws, which skip what was tried


def test_a_trial_kept_running_leaves_the_retry_queue_and_can_end(tmp_path):
    oracle = make_oracle(tmp_path)
    trial = oracle.create_trial("tuner0")
    oracle._retry_queue.append(trial.trial_id)
    compat.forget_retry(oracle, trial.trial_id)
    assert trial.trial_id not in oracle._retry_queue
    del oracle._display.trial_start[trial.trial_id], oracle._display.trial_number[trial.trial_id]
    compat.note_running_trial(oracle, trial.trial_id)
    assert oracle._display.trial_number[trial.trial_id] == len(oracle.trials)
    oracle.update_trial(trial.trial_id, {"loss": 0.5})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)  # looks up the display's entries: a KeyError without the hook
    assert oracle.get_best_trials(1)[0].trial_id == trial.trial_id


def run_python(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_hydra_reports_its_errors_through_the_replaced_reporter(tmp_path):
    reported = run_python(
        """
import sys, hydra
from cnnlab import compat

def wrap(hydra_own):
    def report(func):
        print("through the hook", flush=True)
        return hydra_own(func)
    return report

@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    print("ran", flush=True)

compat.report_hydra_errors(wrap)
sys.argv = ["app", "hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"]
main()
""",
        tmp_path,
    )
    assert reported.returncode == 0, reported.stderr
    assert reported.stdout.startswith("through the hook") and "ran" in reported.stdout


def test_overrides_pass_through_the_wrapped_step_once(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    applied = run_python(
        f"""
from hydra import compose, initialize_config_dir
from cnnlab import compat

def wrap(hydra_own):
    def apply(overrides, cfg):
        print("through the hook:", [o.key_or_group for o in overrides], flush=True)
        return hydra_own(overrides, cfg)
    return apply

compat.wrap_override_application(wrap)
compat.wrap_override_application(wrap)  # a second install keeps the first
with initialize_config_dir(config_dir={str(tmp_path)!r}, version_base="1.3"):
    cfg = compose("config", overrides=["seed=7"])
print("seed", cfg.seed)
""",
        tmp_path,
    )
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("through the hook: ['seed']") == 1 and "seed 7" in applied.stdout


def test_exit_handlers_run_before_an_immediate_exit(tmp_path):
    ended = run_python(
        "import atexit, os\nfrom cnnlab import compat\n"
        "atexit.register(print, 'handler ran', flush=True)\ncompat.run_exit_handlers()\nos._exit(3)",
        tmp_path,
    )
    assert (ended.returncode, ended.stdout) == (3, "handler ran\n")


def test_gradients_registered_while_tracing_are_released():
    import tensorflow as tf
    from tensorflow.python.framework import ops

    registry = compat.gradient_registry(ops)
    assert registry is not None  # found where the hook looks: otherwise it would silently do nothing

    @tf.function
    def square(x):
        @tf.custom_gradient
        def inner(x):
            return x * x, lambda upstream: upstream * 2 * x

        return inner(x)

    before = set(registry)
    with compat.released_gradient_registrations():
        assert float(square(tf.constant(3.0))) == 9.0
        registered = {name for name in registry if name not in before and name.startswith("CustomGradient-")}
        assert registered
    assert not registered & set(registry)


def test_a_replaced_call_runs_and_the_layer_stays_plain_dropout():
    import keras

    calls = []

    def call(layer, inputs, training=False):
        calls.append(training)
        return inputs * 2

    layer = compat.replace_call(keras.layers.Dropout(0.5), call)
    assert type(layer) is keras.layers.Dropout
    output = keras.ops.convert_to_numpy(layer(np.ones((2, 3), "float32"), training=True))
    assert calls == [True] and (output == 2).all()


def test_the_reconstructor_is_the_one_a_pickled_array_names():
    named = []

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            named.append((module, name))
            return super().find_class(module, name)

    import io

    array = Recording(io.BytesIO(pickle.dumps(np.arange(3), protocol=2))).load()
    assert (array == np.arange(3)).all()
    assert ("numpy._core.multiarray", "_reconstruct") in named
    assert pickle.Unpickler(io.BytesIO(b"")).find_class("numpy._core.multiarray", "_reconstruct") is (
        compat.numpy_array_reconstructor()
    )


@pytest.mark.parametrize("name", sorted(EXERCISED))
def test_every_hook_says_what_it_relies_on_and_why(name):
    hook = compat.HOOKS[name]
    assert hook.uses and len(hook.why) > 60 and hook.checked[0].isdigit()


def test_the_schema_revisions_read_as_text_end_where_mlflow_expects(new_store):
    """The migration scripts read as text form one chain from one first revision, and its one head is MLflow's own
    answer (alembic, on the same scripts) and the revision of a store MLflow has just made."""
    import sqlite3

    from mlflow.store.db.utils import _get_latest_schema_revision

    version, known = compat.mlflow_schema_revisions()
    assert version == compat.installed_version("mlflow") and len(known) > 50
    assert len([revision for revision, follows in known.items() if not follows]) == 1
    assert all(parent in known for follows in known.values() for parent in follows)
    (head,) = set(known) - {parent for follows in known.values() for parent in follows}
    assert head == _get_latest_schema_revision()
    with sqlite3.connect(new_store().removeprefix("sqlite:///")) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)
    connection.close()


def test_the_default_seed_is_the_draw_keras_gives_an_unseeded_layer():
    """An unseeded initializer takes Keras' draw; the hook draws that number, from the global generator or another."""
    import random

    import keras

    random.seed(5)
    keras_draw = keras.initializers.GlorotUniform().seed
    random.seed(5)
    assert compat.keras_default_seed() == keras_draw
    assert compat.keras_default_seed(random.Random(5)) == keras_draw


def test_op_determinism_goes_off_again_after_a_run_that_set_it():
    from tensorflow.python.framework import config

    compat.set_op_determinism(True)
    assert config.is_op_determinism_enabled()
    compat.set_op_determinism(False)  # a variance design's run with trainer.deterministic=false, in the same process
    assert not config.is_op_determinism_enabled()
    compat.set_op_determinism(False)  # and off stays off
    assert not config.is_op_determinism_enabled()
    compat.set_op_determinism(True)  # as the other tests of this process expect
