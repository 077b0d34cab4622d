"""Every entry point runs its own checks before any work: found by walking the package, so a new one is covered."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlab

# Runs an entry point as `python -m` would, with the launcher wrapping whatever checks the entry point hands it: the
# wrapper notes which heavy libraries are loaded when the checks run, then refuses, as a failed check does.
REFUSING_LAUNCHER = """
import runpy, sys
import cnnlab.cli as cli
from cnnlab.errors import ConfigError

real_launch = cli.launch

def launch(main, checks):
    def refusing(cfg, overrides):
        loaded = sorted(name for name in ("tensorflow", "keras", "keras_tuner") if name in sys.modules)
        raise ConfigError(f"{checks.__name__} ran first; loaded before it: {loaded}")
    real_launch(main, refusing)

cli.launch = launch
module = sys.argv[1]
sys.argv = [module, *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def entry_points() -> list[str]:
    """Every module of the package that reads a config from the command line: a ``@hydra.main`` function, or a
    ``__main__`` block in a module that uses Hydra or cnnlab's config."""
    found = []
    for module in pkgutil.walk_packages(cnnlab.__path__, "cnnlab."):
        source = Path(module.module_finder.find_spec(module.name).origin).read_text()
        tree = ast.parse(source)
        hydra_main = any(
            isinstance(node, ast.FunctionDef)
            and any("hydra.main" in ast.unparse(decorator) for decorator in node.decorator_list)
            for node in ast.walk(tree)
        )
        main_block = any(
            isinstance(node, ast.If) and ast.unparse(node.test) in ("__name__ == '__main__'", "'__main__' == __name__")
            for node in tree.body
        )
        reads_config = any(
            name == "hydra" or name.startswith(("hydra.", "cnnlab.config", "cnnlab.cli"))
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for name in ([node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names])
        )
        if hydra_main or (main_block and reads_config):
            found.append(module.name)
    return sorted(found)


def test_the_walk_finds_the_commands():
    names = entry_points()
    assert {f"cnnlab.{c}" for c in ("run", "sweep", "reproduce", "evaluate", "predict", "register")} <= set(names)
    assert {"cnnlab.compare", "cnnlab.verify"} <= set(names)


@pytest.mark.parametrize("module", entry_points())
def test_every_entry_point_runs_its_checks_before_any_work(module, tmp_path):
    """Refused by its checks: exit 1 with the one-line message, TensorFlow not loaded, nothing created."""
    run = subprocess.run(
        [sys.executable, "-c", REFUSING_LAUNCHER, module], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "ran first; loaded before it: []" in run.stderr, run.stderr
    assert run.stderr.startswith("Error: check_"), run.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/, no mlruns/, no sweeps/
