"""The suite's own wiring: every marker `make test` leaves out has a make target, CI runs the system tests, and a
test that starts MLflow's server is one of them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def left_out_of_make_test() -> set[str]:
    """The markers pyproject's default ``-m`` expression deselects (``not chaos and not system``)."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    expression = re.search(r"-m '([^']+)'", options["addopts"]).group(1)
    return set(re.findall(r"not (\w+)", expression))


def make_targets_selecting(marker: str) -> list[str]:
    """Makefile targets whose recipe runs pytest on exactly ``-m <marker>``."""
    targets, current = [], None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if match := re.match(r"^([a-z-]+):", line):
            current = match.group(1)
        elif line.startswith("\t") and current and re.search(rf"-m {marker}\b(?! and)", line):
            targets.append(current)
    return targets


def test_what_make_test_leaves_out_has_its_own_target_and_ci_runs_the_system_tests():
    assert left_out_of_make_test() == {"chaos", "system"}
    assert make_targets_selecting("chaos") == ["reliability"]  # on demand: minutes of kill -9 (RELIABILITY.md)
    assert make_targets_selecting("system") == ["test-system"]
    ci = [line.split("#")[0].split() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ["time", "make", "test"] in ci and ["time", "make", "test-system"] in ci


def test_a_test_starting_mlflows_server_outside_the_system_marker_is_stopped_before_it_starts(tmp_path):
    from tests.conftest import RUNNING_MARKERS, make_mlflow

    assert "system" not in RUNNING_MARKERS  # this test runs in make test
    log = tmp_path / "ui.log"
    refused = pytest.raises(pytest.fail.Exception, match="belongs in make test-system: mark it @pytest.mark.system")
    with refused, make_mlflow("ui", f"sqlite:///{tmp_path}/mlflow.db", log):
        pass
    assert not log.exists() and list(tmp_path.iterdir()) == []  # no make, no store
