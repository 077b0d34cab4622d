"""oneDNN, layout and thread options against cnnlab's defaults: does any keep the CPU busier per seed?

Each variant trains cnnlab's step alone (benchmarks/compute_bound.py: the same model and compile as a run, fitted on
one batch held in memory and repeated, so the figure is the arithmetic's, not the input pipeline's):

- cnnlab's default: one process, TensorFlow's threads over every core, oneDNN's kernels, channels last;
- oneDNN off (``TF_ENABLE_ONEDNN_OPTS=0``): TensorFlow's own (Eigen) kernels;
- channels first: the same layers on (channels, height, width) images, oneDNN's other layout;
- seeds side by side: one process per core (``TF_NUM_INTRAOP_THREADS=1``), each training its own seed at once, so
  the small layers need not be split across cores.

Where seeds side by side pays on the step alone (``--whole-from``, by default the 1.3x worth adopting), it is timed
again as whole runs: one seed per core of the network's claim as ``cnnlab run`` jobs (start-up, data from the cache,
training, scoring, logging to a store of their own), one after the other on every thread, against all at once on
one thread each: the input pipeline and start-up, which the step alone leaves out, included. Each job one after the
other pays its own start-up, where ``cnnlab reproduce`` pays it once for all its seeds, so the ratio is an upper
bound of what side by side would save a reproduction, and nearer the truth the more epochs a run has.

Per network and precision (bf16 where native), the variants run one after the other in each repeat; the ratio is
the variant's images a second per seed (side by side: the processes' rates added) over the default's in the same
repeat. None computes exactly the default's bits (other kernels, layouts or thread splits round differently), so a
variant worth adopting (1.3x or more, as for packing) would also need the fidelity check of its outcomes.

    python benchmarks/options.py                      # every network, float32 and bf16 where native
    python benchmarks/options.py --networks deep --repeats 3
    python benchmarks/options.py --whole-from 0      # whole runs for every network and precision
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from common import Measurements, command_line, ratio_cells, steady_rate, work_folder, write_section

from cnnlab.machine import native_bf16, usable_cpus

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = ("simple", "pooled", "dropout", "deep")
WORTH = 1.3  # time per seed, default over variant: what would pay for a second way to train
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
VARIANTS: dict[str, tuple[dict[str, str], list[str], int]] = {  # name: environment, arguments, processes at once
    "cnnlab's default": ({}, [], 1),
    "oneDNN off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, [], 1),
    "channels first": ({}, ["--layout", "channels_first"], 1),
    "seeds side by side": (ONE_THREAD, [], usable_cpus()),
}
CLAIM_OF = {"simple": "mnist_simple", "pooled": "mnist_pooled", "dropout": "mnist_dropout", "deep": "fashion_deep"}
WHOLE = ("one after the other", "side by side")  # the whole-run ways: cnnlab's, then one thread a process


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


def whole_runs(way: str, network: str, precision: str, args: argparse.Namespace, folder: Path) -> dict:
    """Wall seconds for one seed per core of the network's claim as whole ``cnnlab run`` jobs (``seconds``): one
    after the other on every thread, or all at once on one thread each (``way``, one of ``WHOLE``)."""
    seeds, side = range(usable_cpus()), way == WHOLE[1]
    env = {**os.environ, **(ONE_THREAD if side else {})}
    logs = folder / f"whole-{network}-{precision}-{'side' if side else 'alone'}-{time.time_ns()}"
    logs.mkdir()

    def start(seed: int) -> subprocess.Popen:
        command = [sys.executable, "-m", "cnnlab.run", f"experiment={CLAIM_OF[network]}", f"seed={seed}"]
        command += [f"trainer.precision={precision}", f"trainer.epochs={args.whole_epochs}", "trainer.verbose=0"]
        command += [f"tracking.uri=sqlite:///{logs / f'seed{seed}.db'}", "tracking.log_model=false"]
        command += [f"hydra.run.dir={logs / f'seed{seed}'}", *args.overrides, *shlex.split(args.whole_overrides)]
        with (logs / f"seed{seed}.log").open("w") as log:
            return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def finish(processes: list[subprocess.Popen]) -> None:
        for process in processes:
            if process.wait() != 0:
                for other in processes:  # none left running behind a failure
                    other.kill()
                raise RuntimeError(f"whole runs {way}: {shlex.join(process.args)} failed; its log is in {logs}")

    began = time.perf_counter()
    if side:
        finish([start(seed) for seed in seeds])
    else:
        for seed in seeds:
            finish([start(seed)])
    return {"seconds": time.perf_counter() - began, "seeds": len(seeds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--images", type=int, default=3200, help="images a seed sees per epoch (steps x batch)")
    parser.add_argument("--epochs", type=int, default=4, help="the first compiles and is not counted")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default="BENCHMARKS.md")
    parser.add_argument("--resume", help="an earlier run's work folder: its finished measurements are read back")
    parser.add_argument(
        "--whole-from", type=float, default=WORTH, help="time whole runs where side by side reaches this on the step"
    )
    parser.add_argument("--whole-epochs", type=int, default=3, help="epochs of each whole run (its claim's own data)")
    parser.add_argument("--whole-overrides", default="", help="cnnlab overrides for the whole runs, one string")
    parser.add_argument("overrides", nargs="*", help="cnnlab overrides for every variant")
    args = parser.parse_args()
    precisions = ["float32", *(["bf16"] if native_bf16() else [])]
    folder = Path(args.resume) if args.resume else work_folder("cnnlab-bench-options-")
    measurements = Measurements(folder, ("network", "precision", "repeat", "variant"))
    default, *others = VARIANTS
    rows, best, whole = [], [], []
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
                if variant == "seeds side by side" and median >= args.whole_from:
                    whole.append((network, precision))
    whole_rows, whole_best = [], []
    for network, precision in whole:
        hourly: dict[str, list[float]] = {way: [] for way in WHOLE}
        for repeat in range(args.repeats):
            for way in WHOLE:
                key = {"network": network, "precision": precision, "repeat": repeat, "variant": f"whole runs {way}"}
                result = measurements.get(key, whole_runs, way, network, precision, args, folder)
                hourly[way].append(result["seeds"] * 3600 / result["seconds"])
                print(f"{network} {precision} repeat {repeat + 1} whole runs {way}: {result['seconds']:.0f} s")
        median, cells = ratio_cells(*hourly.values())
        whole_best.append((median, network, precision))
        whole_rows.append(f"| {network} ({CLAIM_OF[network]}) | {precision} {cells}")
    top = max(best)
    verdict = (
        f"worth a fidelity check ({top[0]:.2f}x: {top[3]}, {top[1]} {top[2]})"
        if top[0] >= WORTH
        else f"not worth changing cnnlab's defaults (best {top[0]:.2f}x: {top[3]}, {top[1]} {top[2]}; {WORTH}x needed)"
    )
    side_by_side = VARIANTS["seeds side by side"][2]
    if whole_best:
        most = max(whole_best)
        whole_verdict = (
            f"as whole runs, seeds side by side is worth a fidelity check ({most[0]:.2f}x: {most[1]} {most[2]})"
            if most[0] >= WORTH
            else f"as whole runs, seeds side by side does not pay (best {most[0]:.2f}x: {most[1]} {most[2]}; "
            f"{WORTH}x needed), so cnnlab keeps training one seed at a time on every core"
        )
    else:
        whole_verdict = f"seeds side by side reached {args.whole_from}x on no network, so no whole runs were timed"
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
        f"Reading: on the step alone, the best option is {verdict}. None computes exactly the default's bits "
        "(other kernels, layouts or thread splits round differently), so one worth adopting would also need the "
        "fidelity check of its outcomes.",
    ]
    if whole_rows:
        lines += [
            "",
            f"Seeds side by side as whole runs, where it reached {args.whole_from}x on the step: {side_by_side} seeds "
            f"of the network's claim as `cnnlab run` jobs of {args.whole_epochs} epochs on the claim's data (start-up, "
            "data from the cache, training, scoring and logging to a store of their own), one after the other on "
            f"every thread, against all {side_by_side} at once on one thread each; wall time, "
            "as seeds an hour, median over the same repeats (min-max of the ratio). Each job one after the other "
            "pays its own start-up, which `cnnlab reproduce` pays once for all its seeds: the ratio is an upper "
            "bound of what side by side would save a reproduction, nearer the truth the more epochs a run has.",
            "",
            "| network (claim) | precision | one after the other, seeds/h | side by side, seeds/h "
            "| time per seed, one after the other over side by side |",
            "|---|---|---|---|---|",
            *whole_rows,
        ]
    lines += ["", f"Reading, whole runs: {whole_verdict}."]
    summary = f"On the step alone the best of oneDNN off, channels first and seeds side by side is {verdict}; "
    summary += f"{whole_verdict}."
    write_section(ROOT / args.output, "options", "\n".join(lines), summary)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
