"""Trials per hour: one worker with 2 TensorFlow threads against two workers with 1 thread each, on this machine.

`make bench-distributed` appends its table to BENCHMARKS.md. Each layout runs the same study (random search,
Fashion-MNIST subset, fixed seed) from a clean state through the launcher, end to end (start-up included).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from common import command_line, work_folder, write_section

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ((1, 2), (2, 1))  # (workers, threads per worker)
NETWORKS = {"simple": "small", "dropout": "large"}


def study(network: str, workers: int, threads: int, trials: int, images: int, epochs: int, workdir: Path, port: int):
    name = f"bench-{network}-{workers}x{threads}"
    command = [
        sys.executable,
        "-m",
        "cnnlab.sweep",
        "dataset=fashion",
        f"dataset.subset={images}",
        f"model={network}",
        "trainer.holdout_size=2000",
        "trainer.verbose=0",
        "tracking.log_model=false",
        f"sweep.name={name}",
        f"sweep.directory={workdir}/sweeps",
        f"sweep.export_dir={workdir}/exported",
        "sweep.overwrite=true",
        f"sweep.max_trials={trials}",
        "sweep.noise_seeds=0",  # trial throughput only: no retraining for seed noise
        f"sweep.max_epochs={epochs}",
        "sweep.early_stopping_patience=null",
        "sweep.space=[{key: optimizer.learning_rate, type: float, min: 1.0e-4, max: 1.0e-2, sampling: log}]",
        f"distributed.workers={workers}",
        f"distributed.threads_per_worker={threads}",
        f"distributed.oracle_port={port}",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/bench.db", "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{result.stdout[-3000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--output", default="BENCHMARKS.md")
    args = parser.parse_args()
    workdir = work_folder("cnnlab-bench-distributed-")
    rows = []
    for index, (network, size) in enumerate(NETWORKS.items()):
        for workers, threads in LAYOUTS:
            wall = study(
                network, workers, threads, args.trials, args.images, args.epochs, workdir, 8700 + index * 10 + workers
            )
            rows.append((network, size, workers, threads, wall, args.trials / wall * 3600))
            print(
                f"{network}: {workers} worker(s) x {threads} thread(s): {wall:.0f} s, {rows[-1][-1]:.0f} trials/hour",
                flush=True,
            )
    command = command_line("make bench-distributed")
    lines = [
        "## Distributed sweeps: trials per hour",
        "",
        f"Command: `{command}`. Each row is one study of {args.trials} trials (random search over the learning rate, "
        f"{args.images} Fashion-MNIST training images and 2,000 held out, {args.epochs} epochs a trial) run end "
        "to end through the launcher (chief and workers started, every trial tracked in MLflow) on this machine's "
        f"{os.cpu_count()} cores.",
        "",
        "| network | size | workers x threads | wall, s | trials/hour |",
        "|---|---|---|---|---|",
        *[f"| {n} | {s} | {w} x {t} | {wall:.0f} | {rate:.0f} |" for n, s, w, t, wall, rate in rows],
        "",
    ]
    for network in NETWORKS:
        one, two = (r for r in rows if r[0] == network)
        lines.append(
            f"- {network}: two workers x 1 thread run {two[-1] / one[-1]:.2f}x the trials per hour of one "
            "worker x 2 threads."
        )
    ratios = [two[-1] / one[-1] for one, two in ((r for r in rows if r[0] == n) for n in NETWORKS)]
    summary = (
        f"Two workers of one thread run {min(ratios):.2f}-{max(ratios):.2f}x the trials per hour of one worker of "
        f"two threads on {os.cpu_count()} cores."
    )
    write_section(ROOT / args.output, "distributed", "\n".join(lines), summary)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
