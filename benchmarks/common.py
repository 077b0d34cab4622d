"""What the benchmarks share: the dataset they run on, and BENCHMARKS.md, where each rewrites only its section."""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from cnnlab import documents, machine

HEADER = (
    "# Benchmarks\n\nEach section below was written by the command it names. Speed holds only for the kind of "
    "machine it was measured on, so every benchmark keeps one section per machine kind (the CPU's widest vector "
    "unit and whether it runs bfloat16 natively: `avx2`, `avx512`, `avx512_bf16`, `amx`), headed by the CPU, its "
    "flags and the date; a rerun rewrites only its own kind's section.\n"
)


def write_section(path: Path, name: str, text: str, summary: str) -> None:
    """Replaces this machine kind's section ``name`` of ``path``, leaving other benchmarks and kinds as they are;
    ``summary``, one sentence of what the numbers say, also goes to the document's opening summary."""
    kind = machine.kind()
    title, _, body = text.strip().partition("\n")
    stamp = f"Machine kind `{kind}`: {machine.cpu_description()}; measured {datetime.date.today().isoformat()}."
    text = f"{title} ({kind})\n\n**Summary:** {summary}\n\n{stamp}\n{body}"
    documents.write_section(path, f"{name} / {kind}", text, HEADER)


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


def kind_file(folder: Path, stem: str) -> Path:
    """This machine kind's file of ``stem`` in ``folder`` (``verdicts-avx512_bf16.json``): what a benchmark keeps
    between checkouts, one file per kind because its figures hold for that kind only."""
    return folder / f"{stem}-{machine.kind()}.json"


class Measurements:
    """A benchmark's finished measurements in its work folder (``results.jsonl``), read back by ``--resume``: each
    is kept as it finishes, so an interrupted run loses only the one under way."""

    def __init__(self, folder: Path, fields: tuple[str, ...]) -> None:
        self.file, self.fields, self.done = folder / "results.jsonl", fields, {}
        if self.file.exists():
            for line in self.file.read_text().splitlines():
                entry = json.loads(line)
                self.done[tuple(entry[field] for field in fields)] = entry

    def get(self, key: dict, measure: Callable[..., dict], *args: object) -> dict:
        """The measurement named by ``key`` (a value per field): read back, or made by ``measure(*args)`` and kept."""
        name = tuple(key[field] for field in self.fields)
        if name not in self.done:
            self.done[name] = {**key, **measure(*args)}
            with self.file.open("a") as out:
                out.write(json.dumps(self.done[name]) + "\n")
        return self.done[name]


def steady_rate(result: dict) -> float:
    """Images a second of one training job over its steady epochs (``images`` an epoch, ``epoch_seconds`` each
    epoch's time): the median epoch after the first, which traces and warms up (all of them if there is only one)."""
    steady = result["epoch_seconds"][1:] or result["epoch_seconds"]
    return result["images"] / statistics.median(steady)


def ratio_cells(base: list[float], other: list[float]) -> tuple[float, str]:
    """Rates of a way of training against the base's, repeat by repeat: the median ratio, and the table cells
    ``| base median | other median | ratio median (min-max) |``."""
    ratios = [mine / theirs for mine, theirs in zip(other, base, strict=True)]
    median = statistics.median(ratios)
    cells = f"| {statistics.median(base):.0f} | {statistics.median(other):.0f} | "
    return median, cells + f"{median:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |"


def command_line(target: str) -> str:
    """How this section was made: the make target after any setting that changes the arithmetic, and the script's
    arguments when it was given any (less a work folder or an MLflow store of this machine's, which are named, not
    shown)."""
    arguments, note = sys.argv[1:], ""
    if "--resume" in arguments:  # its work folder is this machine's: a rerun starts without it
        at = arguments.index("--resume")
        arguments, note = arguments[:at] + arguments[at + 2 :], "; read back from an earlier run's work folder"
    stores = [argument for argument in arguments if argument.startswith("tracking.uri=")]
    if stores:  # where this machine kept the runs, not what was measured: a rerun uses its own store
        arguments = [argument for argument in arguments if argument not in stores]
        note += "; its runs kept in an MLflow store of its own (tracking.uri=...)"
    shown = f"  # python benchmarks/{Path(sys.argv[0]).name} {shlex.join(arguments)}" if arguments else ""
    # a oneDNN cap or a thread count in force changes what was measured (the AVX2 kind's stand-in): a rerun needs it
    return " ".join([*machine.arithmetic_env(), target]) + shown + note


def work_folder(prefix: str) -> Path:
    """A new folder for a benchmark's stores and logs, kept afterwards for a reader and named on stdout."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    print(f"work folder, kept for its logs and MLflow store: {folder}", flush=True)
    return folder
