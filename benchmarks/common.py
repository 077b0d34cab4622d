"""What the benchmarks share: the dataset they run on, and BENCHMARKS.md, where each rewrites only its section."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from cnnlab import documents

HEADER = "# Benchmarks\n\nEach section below was written by the command it names, on this machine.\n"


def write_section(path: Path, name: str, text: str) -> None:
    """Replaces section ``name`` of BENCHMARKS.md-like ``path``, leaving the other benchmarks' sections as they are."""
    documents.write_section(path, name, text, HEADER)


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
