"""oneDNN, layout and thread options against cnnlab's defaults: does any keep the CPU busier per seed?

Each variant trains cnnlab's step alone (benchmarks/compute_bound.py: the same model and compile as a run, fitted on
one batch held in memory and repeated, so the figure is the arithmetic's, not the input pipeline's):

- cnnlab's default: one process, TensorFlow's threads over every core, oneDNN's kernels, channels last;
- oneDNN off (``TF_ENABLE_ONEDNN_OPTS=0``): TensorFlow's own (Eigen) kernels;
- channels first: the same layers on (channels, height, width) images, oneDNN's other layout;
- seeds side by side: one process per core (``TF_NUM_INTRAOP_THREADS=1``), each training its own seed at once, so
  the small layers need not be split across cores.

Per network and precision (bf16 where native), the variants run one after the other in each repeat; the ratio is
the variant's images a second per seed (side by side: the processes' rates added) over the default's in the same
repeat. None computes exactly the default's bits (other kernels, layouts or thread splits round differently), so a
variant worth adopting (1.3x or more, as for packing) would also need the fidelity check of its outcomes.

    python benchmarks/options.py                      # every network, float32 and bf16 where native
    python benchmarks/options.py --networks deep --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = ("simple", "pooled", "dropout", "deep")
WORTH = 1.3  # time per seed, default over variant: what would pay for a second way to train
VARIANTS: dict[str, tuple[dict[str, str], list[str], int]] = {  # name: environment, arguments, processes at once
    "cnnlab's default": ({}, [], 1),
    "oneDNN off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, [], 1),
    "channels first": ({}, ["--layout", "channels_first"], 1),
    "seeds side by side": ({"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}, [], os.cpu_count() or 1),
}


def steady_rate(result: dict) -> float:
    """Images a second of one process over its steady epochs (the first one compiles)."""
    return result["images"] / statistics.median(result["epoch_seconds"][1:])


def measure(variant: str, network: str, precision: str, args: argparse.Namespace) -> dict:
    """Images a second per seed under ``variant`` (``rate``): its processes started together, their rates added."""
    environment, arguments, processes = VARIANTS[variant]
    command = [sys.executable, str(ROOT / "benchmarks" / "compute_bound.py"), "--network", network]
    command += ["--images", str(args.images), "--epochs", str(args.epochs), *arguments]
    command += [f"trainer.precision={precision}", *args.overrides]
    env = {**os.environ, **environment}
    started = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    rates = []
    for process in started:
        out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{variant}: {' '.join(command)} failed:\n{err[-3000:]}")
        rates.append(steady_rate(json.loads(out.strip().splitlines()[-1])))
    return {"rate": sum(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--images", type=int, default=3200, help="images a seed sees per epoch (steps x batch)")
    parser.add_argument("--epochs", type=int, default=4, help="the first compiles and is not counted")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default="BENCHMARKS.md")
    parser.add_argument("--resume", help="an earlier run's work folder: its finished measurements are read back")
    parser.add_argument("overrides", nargs="*", help="cnnlab overrides for every variant")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import Measurements, command_line, ratio_cells, work_folder, write_section

    from cnnlab.machine import native_bf16

    precisions = ["float32", *(["bf16"] if native_bf16() else [])]
    folder = Path(args.resume) if args.resume else work_folder("cnnlab-bench-options-")
    measurements = Measurements(folder, ("network", "precision", "repeat", "variant"))
    default, *others = VARIANTS
    rows, best = [], []
    for network in args.networks:
        for precision in precisions:
            rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            for repeat in range(args.repeats):
                for variant in VARIANTS:
                    key = {"network": network, "precision": precision, "repeat": repeat, "variant": variant}
                    rate = measurements.get(key, measure, variant, network, precision, args)["rate"]
                    rates[variant].append(rate)
                    print(f"{network} {precision} repeat {repeat + 1} {variant}: {rate:.0f} images/s per seed")
            for variant in others:
                median, cells = ratio_cells(rates[default], rates[variant])
                best.append((median, network, precision, variant))
                rows.append(f"| {network} | {precision} | {variant} {cells}")
    top = max(best)
    verdict = (
        f"worth a fidelity check ({top[0]:.2f}x: {top[3]}, {top[1]} {top[2]})"
        if top[0] >= WORTH
        else f"not worth changing cnnlab's defaults (best {top[0]:.2f}x: {top[3]}, {top[1]} {top[2]}; {WORTH}x needed)"
    )
    side_by_side = VARIANTS["seeds side by side"][2]
    lines = [
        "## CPU options: oneDNN, layout and threads against cnnlab's defaults",
        "",
        f"Command: `{command_line('make bench-options')}`. cnnlab's training step alone "
        "(`benchmarks/compute_bound.py`: one batch held in memory and repeated, "
        f"{args.images} images a seed an epoch, {args.epochs} epochs, the first not counted; {args.repeats} repeats, "
        "the variants one after the other in each) under: oneDNN off (`TF_ENABLE_ONEDNN_OPTS=0`); channels first "
        f"(the same layers on (channels, height, width) images); seeds side by side ({side_by_side} processes at "
        "once, one thread each, their rates added). Images a second per seed, median over repeats; the ratio is "
        "the variant over cnnlab's default in the same repeat, median (min-max): how much less time a seed takes.",
        "",
        "| network | precision | variant | cnnlab's default, images/s | variant, images/s per seed "
        "| time per seed, default over variant |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Reading: the best option is {verdict}. None computes exactly the default's bits (other kernels, layouts "
        "or thread splits round differently), so one worth adopting would also need the fidelity check of its "
        "outcomes.",
    ]
    summary = f"The best of oneDNN off, channels first and seeds side by side is {verdict}."
    write_section(ROOT / args.output, "options", "\n".join(lines), summary)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
