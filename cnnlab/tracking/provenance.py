"""What a run needs to be rerun: the git commit (and the uncommitted diff), library versions, the command."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import mlflow

import cnnlab


def git_state() -> dict[str, str]:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


def versions() -> dict[str, str]:
    """The libraries a run's numbers depend on, read from their installed metadata: importing TensorFlow to ask it
    costs ~5 CPU-s, which a reproduction or report with nothing left to train would spend on this alone."""
    from importlib.metadata import version

    return {
        "version.cnnlab": cnnlab.__version__,
        "version.tensorflow": version("tensorflow"),
        "version.keras": version("keras"),
        "version.mlflow": mlflow.__version__,
        "version.python": sys.version.split()[0],
    }


def rerun_command(module: str, overrides: list[str]) -> str:
    """What a user types to run ``module`` (``cnnlab.run``) again with ``overrides``: the console script's form,
    ``cnnlab run ...``, as the documentation writes every command, after any variable set in the environment that
    changes the arithmetic (``machine.ARITHMETIC_ENV``), since without it the rerun is another run."""
    from cnnlab.machine import arithmetic_env

    return shlex.join([*arithmetic_env(), "cnnlab", module.removeprefix("cnnlab."), *overrides])


def log_uncommitted_diff() -> None:
    """A run made from a dirty tree logs ``git diff HEAD`` as ``uncommitted.diff``, so it can still be rerun."""
    root = Path(__file__).resolve().parents[2]
    try:
        diff = subprocess.run(
            ["git", "diff", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return
    if diff:
        mlflow.log_text(diff, "uncommitted.diff")
