"""What the benchmarks share: the dataset they run on, and BENCHMARKS.md, where each rewrites only its section."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HEADER = "# Benchmarks\n\nEach section below was written by the command it names, on this machine.\n"


def write_section(path: Path, name: str, text: str) -> None:
    """Replaces section ``name`` of ``path`` (or appends it), leaving the other benchmarks' sections as they are."""
    begin, end = f"<!-- section: {name} -->", f"<!-- end of section: {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    current = path.read_text() if path.exists() else HEADER
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        updated = head + block + rest.split(end, 1)[1]
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(updated)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="fashion", help="a cnnlab dataset name (conf/dataset)")
    parser.add_argument(
        "--local-dir", help="read the dataset's files from this folder only (the short check uses synthetic files)"
    )


def dataset_overrides(args: argparse.Namespace) -> list[str]:
    """The cnnlab overrides that put a job on the benchmark's dataset."""
    overrides = [f"dataset={args.dataset}"]
    if args.local_dir:
        overrides += [f"dataset.local_dir={args.local_dir}", "dataset.sources=[local]"]
    return overrides


def command_line(target: str) -> str:
    """How this section was made: the make target, and the script's arguments when it was given any."""
    arguments = sys.argv[1:]
    return target + (f"  # python benchmarks/{Path(sys.argv[0]).name} {shlex.join(arguments)}" if arguments else "")
