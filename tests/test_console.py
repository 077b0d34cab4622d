"""The `cnnlab` console script forwards to the Hydra entry points, and results documents open with their summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab import documents
from cnnlab.__main__ import COMMANDS, main

SCRIPT = Path(sys.executable).parent / "cnnlab"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as leaving:
        main(["--help"])
    assert leaving.value.code == 0
    shown = capsys.readouterr().out
    for name in ("run", "sweep", "reproduce", "compare", "evaluate", "predict", "register", "verify"):
        assert f"  {name} " in shown
    assert all((Path(__file__).parents[1] / "cnnlab" / f"{name}.py").exists() for name in COMMANDS)


def test_unknown_command_is_refused_with_the_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as leaving:
        main(["train", "model=simple"])
    assert leaving.value.code == 2
    assert "'train' is not a cnnlab command; one of run, sweep" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not SCRIPT.exists(), reason=f"{SCRIPT} missing: make setup installs the console script")
def test_console_script_runs_the_command_with_its_checks(tmp_path):
    """`cnnlab run` is `python -m cnnlab.run`: the run's checks refuse before anything is created, exit code 1."""
    result = subprocess.run([str(SCRIPT), "run", "trainer.epochs=0"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert "trainer.epochs: must be >= 1, got 0" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/, no mlruns/
    listed = subprocess.run([str(SCRIPT), "sweep", "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True)
    assert listed.returncode == 0 and "space:" in listed.stdout  # the sweep's own config, composed by Hydra


def section(title: str, summary: str) -> str:
    return f"## {title} (avx512)\n\n**Summary:** {summary}\n\nthe numbers"


def test_a_document_opens_with_its_sections_summaries_per_machine_kind(tmp_path):
    path = tmp_path / "BENCH.md"
    header = "# Bench\n\nWhat this is.\n"
    documents.write_section(path, "speed / avx512", section("Speed: a against b", "a is 2x b."), header)
    documents.write_section(path, "memory / avx2", "## Memory (avx2)\n\n**Summary:** flat.\n\nrows", header)
    documents.write_section(path, "speed / avx512", section("Speed: a against b", "a is 3x b."), header)
    text = path.read_text()
    assert text.index("<!-- section: summary -->") < text.index("<!-- section: speed / avx512 -->")
    summary = documents.sections(text)["summary"]
    assert "Machine kind `avx512`:\n\n- Speed: a is 3x b." in summary and "a is 2x b." not in summary
    assert "Machine kind `avx2`:\n\n- Memory: flat." in summary
    assert text.startswith(header.strip())
