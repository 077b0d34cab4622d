"""The suite's own wiring: every marker `make test` leaves out has a make target, CI runs the system tests, and a
test that starts MLflow's server is one of them."""

from __future__ import annotations

import re
import sys
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


PYTEST_OUTPUT = (
    "created: 2/2 workers\n2 workers [602 items]\n...\n"
    "=========== 602 passed, 3 skipped, 11 deselected in 376.12s (0:06:16) ===========\n"
)


def test_timing_the_suite_writes_its_section_with_the_machine_kind_and_the_command(tmp_path, monkeypatch):
    """The writer behind `make bench-suite`, on a made-up run of `make test` (the suite is not run here)."""
    from cnnlab import machine
    from tests.test_bench import load_benchmark

    suite = load_benchmark("suite")
    timed = []
    monkeypatch.setattr(suite, "run_target", lambda target: timed.append(target) or (376.1, 0, PYTEST_OUTPUT))
    document = tmp_path / "BENCHMARKS.md"
    document.write_text(
        "# Benchmarks\n\n<!-- section: sweep / avx2 -->\nkept as it was\n<!-- end of section: sweep / avx2 -->\n"
    )
    monkeypatch.setattr(sys, "argv", ["benchmarks/suite.py", "--output", str(document)])
    for name in machine.ARITHMETIC_ENV:  # a cap or thread count in force would head the command shown
        monkeypatch.delenv(name, raising=False)
    suite.main()
    text = document.read_text()
    kind = machine.kind()
    assert timed == ["test"] and "kept as it was" in text
    assert f"<!-- section: test-suite / {kind} -->" in text
    assert f"## Test suite: how long `make test` takes ({kind})" in text
    assert f"Machine kind `{kind}`: {machine.cpu_description()}; measured " in text
    assert "Command: `make bench-suite  # python benchmarks/suite.py --output " in text
    assert "| `make test` | 6 min 16 s (376 s) | 602 passed, 3 skipped | files in parallel over 2 workers |" in text
    summary = "- Test suite: `make test` takes 6 min 16 s (602 passed, 3 skipped), files in parallel over 2 workers"
    assert summary in text.split("<!-- end of section: summary -->")[0]  # the document's opening summary


def test_a_suite_that_fails_or_prints_no_summary_writes_no_time(tmp_path, monkeypatch):
    from tests.test_bench import load_benchmark

    suite = load_benchmark("suite")
    document = tmp_path / "BENCHMARKS.md"
    document.write_text("# Benchmarks\n")
    monkeypatch.setattr(sys, "argv", ["benchmarks/suite.py", "--output", str(document)])
    monkeypatch.setattr(suite, "run_target", lambda target: (90.0, 2, "== 1 failed, 601 passed in 90.00s =="))
    with pytest.raises(SystemExit, match="make test failed \\(exit 2\\); nothing written"):
        suite.main()
    assert document.read_text() == "# Benchmarks\n"
    with pytest.raises(ValueError, match="no pytest summary line"):
        suite.outcome("make: *** [Makefile:110: test] Interrupted\n")
    assert suite.workers("== 5 passed in 1.00s ==") == "files one after another"
