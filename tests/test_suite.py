"""The suite's own wiring: every marker that `make test` leaves out has a make target, and CI runs the system tests."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
