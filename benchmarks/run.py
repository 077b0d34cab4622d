"""`make bench`: each tutorial network through the plain tutorial-style script and through cnnlab, side by side.

Jobs alternate (plain, cnnlab float32, cnnlab bf16) and repeat, so a noisy shared machine hits all of them alike;
the figures are ratios of medians with their min-max spread. Writes BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import add_dataset_arguments, command_line, dataset_overrides, steady_rate, work_folder, write_section

from cnnlab.machine import bf16_impossible, native_bf16

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = ("simple", "pooled", "dropout", "deep")
# The bench keeps its runs in its own throwaway store (tracking.uri=...), whatever store the user's shell points at.
ENV = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "TF_CPP_MIN_LOG_LEVEL": "3"}
COMPUTE_BOUND = "float32 step alone (bound)"


def child_rss(command: list[str]) -> tuple[str, float, float]:
    """Runs a command; returns stdout, wall seconds and the child's own peak RSS in MB (reaped with wait4)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    stdout, stderr = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{stderr[-3000:]}")
    return stdout, wall, usage.ru_maxrss / 1024


def script_job(command: list[str]) -> dict:
    """A benchmark script that trains in its own process and prints its epoch times as one JSON line."""
    stdout, wall, rss = child_rss(command)
    result = json.loads(stdout.strip().splitlines()[-1])
    return {
        "epoch_seconds": result["epoch_seconds"],
        "images": result["images"],
        "wall": wall,
        "rss_mb": rss,
        "num_params": result["num_params"],
    }


def plain_job(network: str, data: Path, images: int, epochs: int) -> dict:
    return script_job(
        [
            sys.executable,
            "benchmarks/plain_keras.py",
            "--network",
            network,
            "--data",
            str(data),
            "--images",
            str(images),
            "--epochs",
            str(epochs),
        ]
    )


def compute_bound_job(network: str, images: int, epochs: int, dataset: list[str]) -> dict:
    """cnnlab's float32 step on one batch held in memory: no input pipeline at all, the same math per step."""
    return script_job(
        [
            sys.executable,
            "benchmarks/compute_bound.py",
            "--network",
            network,
            "--images",
            str(images),
            "--epochs",
            str(epochs),
            "trainer.loss=categorical_crossentropy",
            "trainer.precision=float32",
            "trainer.jit_compile=false",
            *dataset,
        ]
    )


def cnnlab_job(
    network: str, images: int, epochs: int, precision: str, store: str, dataset: list[str], extra: list[str] = ()
) -> dict:
    from mlflow.tracking import MlflowClient

    command = [
        sys.executable,
        "-m",
        "cnnlab.run",
        f"model={network}",
        *dataset,
        f"dataset.subset={images}",
        f"trainer.epochs={epochs}",
        "trainer.validation=none",
        "trainer.loss=categorical_crossentropy",
        f"trainer.precision={precision}",
        "trainer.verbose=0",
        f"tracking.uri={store}",
        "tracking.experiment=cnnlab-bench",
        *extra,
    ]
    stdout, wall, rss = child_rss(command)
    run_id = stdout.split("MLflow run")[1].split()[0]
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(run_id)
    history = [p.value for p in sorted(client.get_metric_history(run_id, "epoch_seconds"), key=lambda p: p.step)]
    return {
        "epoch_seconds": history,
        "images": images,
        "wall": wall,
        "rss_mb": rss,
        "num_params": int(run.data.params["num_params"]),
        "train_seconds": run.data.metrics["train_seconds"],
    }


def matmul_peak(dtype: str, size: int = 2048, repeats: int = 20) -> float:
    import tensorflow as tf

    a = tf.random.normal((size, size), dtype=tf.float32)
    a = tf.cast(a, tf.bfloat16) if dtype == "bf16" else a

    @tf.function
    def multiply(x):
        return tf.linalg.matmul(x, x)

    multiply(a).numpy()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        multiply(a).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def peak_words(peaks: dict[str, float]) -> str:
    """``478 GFLOP/s float32, 906 GFLOP/s bf16``; a bf16 that cannot run here says why."""
    words = [f"{peaks[dtype]:.0f} GFLOP/s {dtype}" for dtype in ("float32", "bf16") if dtype in peaks]
    return ", ".join(words + ([] if "bf16" in peaks else [f"bf16 not run ({bf16_impossible()})"]))


def startup_seconds(args: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cnnlab.run", *args], cwd=ROOT, env=ENV, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=9600)
    parser.add_argument("--epochs", type=int, default=3, help="the first epoch is warm-up and not counted")
    parser.add_argument("--repeats", type=int, default=4, help="alternating repeats; this machine is noisy")
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS))
    parser.add_argument("--skip-full-run", action="store_true", help="skip the whole fashion_deep run (overhead)")
    parser.add_argument("--startup-repeats", type=int, default=5)
    parser.add_argument("--matmul-repeats", type=int, default=20, help="timed 2048x2048 matmuls for each peak")
    parser.add_argument("--output", default="BENCHMARKS.md")
    add_dataset_arguments(parser)
    parser.add_argument(
        "--short",
        action="store_true",
        help="a check that the benchmark still runs (CI, under a minute): simple only, tiny data, one repeat",
    )
    args = parser.parse_args()
    if args.short:
        args.networks, args.images, args.epochs, args.repeats = ["simple"], 256, 2, 1
        # two timed matmuls each: where bf16 is emulated (AVX2) each one is many times slower
        args.skip_full_run, args.startup_repeats, args.matmul_repeats = True, 1, 2
    sys.path.insert(0, str(ROOT))
    os.environ.update(ENV)

    import numpy as np

    from cnnlab.config import compose_run_config, image_shape
    from cnnlab.data import load_arrays
    from cnnlab.models.shapes import training_flops_per_sample

    dataset = dataset_overrides(args)
    workdir = work_folder("cnnlab-bench-")
    store = f"sqlite:///{workdir}/bench.db"
    data = Path(workdir) / "plain.npz"  # the plain script reads the very same images
    peaks = {}
    if args.networks:
        arrays = load_arrays(compose_run_config(dataset).dataset)  # verified, cached on first use
        np.savez(data, x_train=arrays.x_train[: args.images], y_train=arrays.y_train[: args.images])
        # bf16 where TensorFlow can run it at all (a oneDNN cap below AVX-512 aborts the process)
        dtypes = ("float32", "bf16") if bf16_impossible() is None else ("float32",)
        peaks = {dtype: matmul_peak(dtype, repeats=args.matmul_repeats) for dtype in dtypes}
        print(f"matmul peak: {peak_words(peaks)}", flush=True)

    rows = []
    for network in args.networks:
        network_cfg = compose_run_config([*dataset, f"model={network}"])
        flops = training_flops_per_sample(
            network_cfg.model.blocks, image_shape(network_cfg.dataset), len(network_cfg.dataset.classes)
        )
        # bf16 only where native: elsewhere trainer.precision=auto is float32 (emulated bf16 runs ~10x slower).
        kinds = ["plain", "float32", *(["bf16"] if native_bf16() else []), "xla", "bound"]
        jobs = {kind: [] for kind in kinds}
        for repeat in range(args.repeats):
            jobs["plain"].append(plain_job(network, data, args.images, args.epochs))
            jobs["bound"].append(compute_bound_job(network, args.images, args.epochs, dataset))
            # XLA pinned either way, so each row measures what it names whatever the configs default to.
            for kind, precision, jit in (
                ("float32", "float32", "false"),
                ("bf16", "auto", "false"),
                ("xla", "float32", "true"),
            ):
                if kind not in jobs:
                    continue
                jobs[kind].append(
                    cnnlab_job(
                        network, args.images, args.epochs, precision, store, dataset, [f"trainer.jit_compile={jit}"]
                    )
                )
            print(
                f"{network} repeat {repeat + 1}: "
                + ", ".join(f"{kind} {steady_rate(runs[-1]):.0f}/s" for kind, runs in jobs.items()),
                flush=True,
            )
        assert len({runs[0]["num_params"] for runs in jobs.values()}) == 1, "plain and cnnlab networks differ"
        speeds = {kind: [steady_rate(job) for job in runs] for kind, runs in jobs.items()}
        for kind in kinds:
            median = statistics.median(speeds[kind])
            precision = "bf16" if kind == "bf16" else "float32"
            ratios = [s / p for s, p in zip(speeds[kind], speeds["plain"], strict=False)]
            rows.append(
                {
                    "network": network,
                    "path": {
                        "plain": "plain Keras script",
                        "float32": "cnnlab float32",
                        "bf16": "cnnlab bf16 (auto)",
                        "xla": "cnnlab float32 + XLA",
                        "bound": COMPUTE_BOUND,
                    }[kind],
                    "samples_per_s": median,
                    "spread": (min(speeds[kind]), max(speeds[kind])),
                    "s_per_epoch": 60000 / median,
                    "wall_s": statistics.median(job["wall"] for job in jobs[kind]),
                    "rss_mb": max(job["rss_mb"] for job in jobs[kind]),
                    "gflops": flops * median / 1e9,
                    "peak": peaks[precision],
                    "ratio": statistics.median(ratios),
                    "ratio_spread": (min(ratios), max(ratios)),
                    "flops": flops,
                    "vs_float32": [s / f for s, f in zip(speeds[kind], speeds["float32"], strict=True)],
                }
            )

    full = None
    if not args.skip_full_run:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=store).search_experiments()  # a user's store exists after their first run
        stdout, wall, rss = child_rss(
            [
                sys.executable,
                "-m",
                "cnnlab.run",
                "experiment=fashion_deep",
                f"tracking.uri={store}",
                "tracking.experiment=cnnlab-bench",
                "trainer.verbose=0",
            ]
        )
        run = MlflowClient(tracking_uri=store).get_run(stdout.split("MLflow run")[1].split()[0])
        train_seconds = run.data.metrics["train_seconds"]
        full = {
            "wall": wall,
            "train": train_seconds,
            "in_train": run.data.metrics["total_seconds"] - train_seconds,
            "overhead": wall - train_seconds,
            "rss_mb": rss,
            "accuracy": run.data.metrics["test_accuracy"],
        }
        print(f"full fashion_deep: wall {wall:.0f}s, training {train_seconds:.0f}s", flush=True)

    help_s = startup_seconds(["--help"], args.startup_repeats)
    reject_s = startup_seconds(["trainer.epochs=-1"], args.startup_repeats)
    if rows:
        write_report(args, rows, peaks)
    write_end_to_end(args, full, help_s, reject_s)


def xla_verdict(vs_float32: list[float]) -> str:
    """XLA against the same job without it: one-sided only when every repeat agrees and the median is clear."""
    median = statistics.median(vs_float32)
    if all(ratio > 1 for ratio in vs_float32) and median > 1.05:
        return "faster"
    if all(ratio < 1 for ratio in vs_float32) and median < 0.95:
        return "slower"
    return "no consistent difference"


def write_report(args, rows, peaks) -> None:
    import keras
    import tensorflow as tf

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    command = command_line("make bench")
    lines = [
        "## Training speed: cnnlab against the tutorials' plain Keras script",
        "",
        f"Command: `{command}` (defaults: {args.images} Fashion-MNIST training images, {args.epochs} epochs of which "
        f"the first is warm-up, {args.repeats} alternating repeats). Machine: {cpu}, {os.cpu_count()} cores, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}.",
        "",
        "Each network is trained by (a) `benchmarks/plain_keras.py`, written the way the tutorials write it (float32 "
        "numpy arrays into `model.fit`, batch 32, Adam, categorical cross-entropy), and (b) `cnnlab.run` on the same "
        "images, batch size, optimizer and loss (uint8 images scaled on the fly by tf.data, "
        "`trainer.steps_per_execution=16`), in float32, in bf16 mixed precision, and in float32 compiled by XLA "
        "(`trainer.jit_compile=true`; the other rows pin it off). cnnlab's Dropout layers draw 8 or 16 random bits "
        "per unit where Keras draws 32, with the same drop probability (`cnnlab/models/dropout.py`); the other "
        "arithmetic is the plain script's. Keras feeds numpy arrays through tf.data with autotuning on, so the plain "
        "script also waits on autotuning's sleeping thread whenever an epoch's iterator is dropped (most of its "
        "spread here); cnnlab's pipeline runs with autotuning off. The bound row is cnnlab's float32 training step "
        "alone (`benchmarks/compute_bound.py`: the same model and compile, fitted on one batch held in memory and "
        "repeated, so no time goes to reading, scaling, shuffling or batching images): with identical math, no "
        "input pipeline or loop should train faster than it, noise apart. No validation in any of them, so "
        "epochs time training only. Samples/s: images over the median steady epoch; the ratio is against the plain "
        "script in the same repeat, as a median with its min-max over repeats. GFLOP/s: analytical training FLOPs "
        "per sample (3 x the forward multiply-adds x 2) times samples/s, against TensorFlow's measured 2048x2048 "
        f"matmul peak here: {peak_words(peaks)}.",
        "",
        "| network | path | samples/s (min-max) | s/epoch at 60k | vs plain (min-max) | wall of job, s | peak RSS, MB "
        "| GFLOP/s | of peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row["spread"]
        ratio_low, ratio_high = row["ratio_spread"]
        cells = [
            row["network"],
            row["path"],
            f"{row['samples_per_s']:.0f} ({low:.0f}-{high:.0f})",
            f"{row['s_per_epoch']:.1f}",
            f"{row['ratio']:.2f}x ({ratio_low:.2f}-{ratio_high:.2f})",
            f"{row['wall_s']:.1f}",
            f"{row['rss_mb']:.0f}",
            f"{row['gflops']:.1f}",
            f"{100 * row['gflops'] / row['peak']:.1f}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "### Targets", ""]
    xla_faster = []
    for network in args.networks:
        by_path = {row["path"]: row for row in rows if row["network"] == network}
        f32, bf16 = by_path["cnnlab float32"], by_path.get("cnnlab bf16 (auto)")
        xla, bound = by_path["cnnlab float32 + XLA"], by_path[COMPUTE_BOUND]
        verdict = xla_verdict(xla["vs_float32"])
        if verdict == "faster":
            xla_faster.append(network)
        lines.append(
            f"- {network}: float32 {f32['ratio']:.2f}x the plain script (target 1.15x: "
            f"{'met' if f32['ratio'] >= 1.15 else 'NOT met'}; the float32 step alone runs at {bound['ratio']:.2f}x, "
            f"about the most identical math can reach on this machine, within its noise); "
            + (
                f"bf16 {bf16['ratio']:.2f}x (target 1.8x"
                f"{' on simple, dropout, deep' if network != 'pooled' else ', not required for pooled'}: "
                f"{'met' if bf16['ratio'] >= 1.8 else 'NOT met'})"
                if bf16
                else "bf16 not measured: this CPU has no native bfloat16, so trainer.precision=auto trains float32"
            )
            + "; XLA runs at "
            f"{statistics.median(xla['vs_float32']):.2f}x cnnlab float32 without it (per repeat: "
            f"{', '.join(f'{ratio:.2f}' for ratio in xla['vs_float32'])}): {verdict}"
        )
    lines.append(
        "- XLA (`trainer.jit_compile=true`) counts as faster or slower only when it is so in every repeat and by more "
        "than 5% in the median; "
        + (
            "it was not faster on any network, so cnnlab's default (off) stands."
            if not xla_faster
            else f"it was faster on {', '.join(xla_faster)}: the default (off) is NOT the faster choice for those."
        )
    )
    float32 = [row["ratio"] for row in rows if row["path"] == "cnnlab float32"]
    bf16 = [row["ratio"] for row in rows if row["path"] == "cnnlab bf16 (auto)"]
    summary = (
        f"cnnlab trains {min(float32):.1f}-{max(float32):.1f}x as fast as the tutorials' plain Keras script in float32"
        + (f" and {min(bf16):.1f}-{max(bf16):.1f}x in bf16" if bf16 else " (no native bf16 on this kind)")
        + "; XLA "
        + (f"is faster on {', '.join(xla_faster)}." if xla_faster else "is not faster on any network, so it stays off.")
    )
    write_section(ROOT / args.output, "training", "\n".join(lines), summary)
    print("\n".join(lines))


def write_end_to_end(args, full, help_s, reject_s) -> None:
    lines = [
        "## End to end: overhead beyond training, and start-up",
        "",
        f"Command: `{command_line('make bench')}` (this section alone: `python benchmarks/run.py --networks`).",
        "",
    ]
    if full:
        share = 100 * full["overhead"] / full["wall"]
        lines += [
            f"- end-to-end overhead of a whole `python -m cnnlab.run experiment=fashion_deep` (60,000 images, 7 "
            f"epochs, on an existing MLflow store): {full['overhead']:.1f} s of {full['wall']:.0f} s wall = "
            f"{share:.1f}% (target < 5%: {'met' if share < 5 else 'NOT met'}). Of it, "
            f"{full['in_train']:.1f} s inside `train()` outside the epochs (TensorFlow and MLflow imports, which "
            "load lazily there, data, model, tracking, the test pass, plots, model logging) and "
            f"{full['overhead'] - full['in_train']:.1f} s outside it (interpreter, Hydra and config, exit).",
            f"- its test accuracy {full['accuracy']:.4f}, peak RSS {full['rss_mb']:.0f} MB, training "
            f"{full['train']:.0f} s",
        ]
    lines.append(
        f"- `python -m cnnlab.run --help`: {help_s:.2f} s; a rejected config (`trainer.epochs=-1`): "
        f"{reject_s:.2f} s (median of {args.startup_repeats}; target < 1 s: "
        f"{'met' if max(help_s, reject_s) < 1 else 'NOT met'})"
    )
    summary = f"a refused config answers in {reject_s:.1f} s and `--help` in {help_s:.1f} s" + (
        f"; a whole `make run` (fashion_deep, 7 epochs) takes about {full['wall'] / 60:.0f} min, "
        f"{100 * full['overhead'] / full['wall']:.0f}% of it beyond training."
        if full
        else "."
    )
    write_section(ROOT / args.output, "end-to-end", "\n".join(lines), summary[0].upper() + summary[1:])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
