"""How long the test suite takes, timed whole as a developer runs it; BENCHMARKS.md, section "test-suite".

`make test` by default (the whole suite but the system tests, files in parallel over one worker per core), or
`--target test-quick` (the loop between edits). A suite that does not pass writes nothing: its time is not the
suite's.

    python benchmarks/suite.py [--target test|test-quick] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from common import command_line, write_section

ROOT = Path(__file__).resolve().parents[1]
# pytest's last line: "== 602 passed, 3 skipped, 11 deselected in 376.12s (0:06:16) =="
OUTCOME = re.compile(r"^=+ (?P<counts>[^=]*?) in [\d.]+s(?: \([\d:]+\))? =+$", re.M)


def run_target(target: str) -> tuple[float, int, str]:
    """Seconds ``make <target>`` took in the project, its exit code and its output."""
    start = time.perf_counter()
    result = subprocess.run(["make", target], cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start, result.returncode, result.stdout + result.stderr


def outcome(output: str) -> str:
    """pytest's count of what ran (``602 passed, 3 skipped``), without what ``-m`` deselected."""
    found = OUTCOME.findall(output)
    if not found:
        raise ValueError("no pytest summary line in the output")
    parts = [part for part in found[-1].split(", ") if "deselected" not in part]
    return ", ".join(parts)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s" if seconds >= 60 else f"{seconds:.0f} s"


def workers(output: str) -> str:
    """How pytest-xdist spread the files (``created: 2/2 workers``), or that they ran one after another."""
    found = re.findall(r"created: (\d+)/\d+ workers", output)
    return f"files in parallel over {found[-1]} workers" if found else "files one after another"


def section(target: str, seconds: float, ran: str, spread: str) -> tuple[str, str]:
    """The section's text and its summary line."""
    summary = f"`make {target}` takes {minutes(seconds)} ({ran}), {spread}, its .venv already made."
    text = "\n".join(
        [
            f"## Test suite: how long `make {target}` takes",
            "",
            f"Command: `{command_line('make bench-suite')}`, which times `make {target}` whole (its .venv already "
            f"made), on Python {platform.python_version()}; the suite runs synthetic data only, no network. "
            "Wall time of one run: other work on the machine lengthens it.",
            "",
            "| target | wall time | what ran | how |",
            "|---|---|---|---|",
            f"| `make {target}` | {minutes(seconds)} ({seconds:.0f} s) | {ran} | {spread} |",
        ]
    )
    return text, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="test", choices=["test", "test-quick"])
    parser.add_argument("--output", default="BENCHMARKS.md")
    args = parser.parse_args()
    seconds, code, output = run_target(args.target)
    if code != 0:
        sys.exit(f"make {args.target} failed (exit {code}); nothing written. Its last lines:\n{output[-2000:]}")
    text, summary = section(args.target, seconds, outcome(output), workers(output))
    write_section(ROOT / args.output, "test-suite", text, summary)
    print(text)


if __name__ == "__main__":
    main()
