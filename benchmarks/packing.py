"""Several seeds of one claim trained together in one model: does it keep the CPU busier than one seed at a time?

The tutorials' small layers (8 to 64 channels, batches of 32) leave much of a core's vector units idle in each op.
Packing K seeds puts K independent copies of the network (each built by cnnlab's builder with its own seed) side by
side in one Keras model, each fed its own batch, with its own loss; their sum is minimised, and since no weight is
shared, each copy's gradient, and so its Adam state and update, is the one it would get alone. TensorFlow can then
run the K copies' ops in one step, side by side.

Measured as benchmarks/compute_bound.py measures the step alone: one batch per copy held in memory and repeated, so
the figure is the arithmetic's, not the input pipeline's. Per network and precision, K = 1, 2, 4 run one after the
other in each repeat, each in its own process; the ratio is the packed model's images per second over all its K
seeds against K = 1's in the same repeat: how much less time a seed takes when packed. A packing is worth adopting
at 1.3x or more (and never slower on another machine kind).

    python benchmarks/packing.py                      # every network, float32 and bf16 where native
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/packing.py   # the AVX2 kind's stand-in (float32)
    python benchmarks/packing.py --worker --network deep --pack 2 trainer.precision=bf16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NETWORKS = ("simple", "pooled", "dropout", "deep")
PACKS = (1, 2, 4)
WORTH = 1.3  # time per seed, one at a time over packed: what would pay for a second training path


def worker(network: str, pack: int, images: int, epochs: int, overrides: list[str]) -> dict:
    """Trains ``pack`` copies of ``network`` side by side on one repeated batch each; their epoch times."""
    import keras
    import numpy as np
    import tensorflow as tf
    from omegaconf import OmegaConf

    from cnnlab import train
    from cnnlab.callbacks import EpochTimer
    from cnnlab.config import compose_run_config, option
    from cnnlab.data.pipeline import without_autotuning
    from cnnlab.data.sources import image_shape
    from cnnlab.machine import choose_precision
    from cnnlab.models.builder import LayerSeeds, build_model, build_optimizer

    cfg = compose_run_config([f"model={network}", *overrides])
    train.seed_everything(cfg)
    precision, _ = choose_precision(option(cfg.trainer.precision))
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    classes = len(cfg.dataset.classes)
    shape = image_shape(cfg.dataset)
    copies = [
        build_model(
            OmegaConf.merge(cfg.model, {"name": f"{network}_seed{seed}"}),
            classes,
            shape,
            precision,
            LayerSeeds(init_seed=seed, dropout_seed=seed),
        )
        for seed in range(pack)
    ]
    inputs = [keras.Input(shape=shape, name=f"images_{seed}") for seed in range(pack)]
    model = keras.Model(inputs, [copy(x) for copy, x in zip(copies, inputs, strict=True)])
    model.compile(
        optimizer=build_optimizer(cfg.optimizer),
        loss=[option(cfg.trainer.loss)] * pack,
        steps_per_execution=cfg.trainer.steps_per_execution,
    )
    batch = cfg.trainer.batch_size
    rng = np.random.default_rng(0)
    one_hot = option(cfg.trainer.loss) == "categorical_crossentropy"
    x = tuple(rng.random((batch, *shape), dtype=np.float32) for _ in range(pack))
    labels = [np.arange(seed, seed + batch) % classes for seed in range(pack)]
    y = tuple(np.eye(classes, dtype=np.float32)[c] if one_hot else c for c in labels)
    steps = images // batch
    data = without_autotuning(tf.data.Dataset.from_tensors((x, y)).repeat(steps))
    timer = EpochTimer()
    model.fit(data, epochs=epochs, verbose=0, callbacks=[timer])
    return {"epoch_seconds": timer.seconds, "images": steps * batch, "pack": pack}


def run_worker(network: str, pack: int, args: argparse.Namespace, overrides: list[str]) -> dict:
    import subprocess

    command = [sys.executable, __file__, "--worker", "--network", network, "--pack", str(pack)]
    command += ["--images", str(args.images), "--epochs", str(args.epochs), *overrides]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help="train one packing and print its epoch times")
    parser.add_argument("--network", choices=NETWORKS)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--pack", type=int, default=1)
    parser.add_argument("--images", type=int, default=3200, help="images a copy sees per epoch (steps x batch)")
    parser.add_argument("--epochs", type=int, default=4, help="the first compiles and is not counted")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default="BENCHMARKS.md")
    parser.add_argument("--resume", help="an earlier run's work folder: its finished measurements are read back")
    parser.add_argument("overrides", nargs="*", help="cnnlab overrides for --worker, e.g. trainer.precision=bf16")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.network, args.pack, args.images, args.epochs, args.overrides)))
        return

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import Measurements, command_line, ratio_cells, steady_rate, work_folder, write_section

    from cnnlab.machine import native_bf16

    precisions = ["float32", *(["bf16"] if native_bf16() else [])]
    folder = Path(args.resume) if args.resume else work_folder("cnnlab-bench-packing-")
    measurements = Measurements(folder, ("network", "precision", "repeat", "pack"))
    rows, best = [], []
    for network in args.networks:
        for precision in precisions:
            rates: dict[int, list[float]] = {pack: [] for pack in PACKS}
            for repeat in range(args.repeats):
                for pack in PACKS:
                    key = {"network": network, "precision": precision, "repeat": repeat, "pack": pack}
                    result = measurements.get(key, run_worker, network, pack, args, [f"trainer.precision={precision}"])
                    rate = result["pack"] * steady_rate(result)  # K seeds, each advanced by the epoch's images
                    rates[pack].append(rate)
                    print(
                        f"{network} {precision} repeat {repeat + 1} pack {pack}: {rate:.0f} images/s over its seeds",
                        flush=True,
                    )
            for pack in PACKS[1:]:
                median, cells = ratio_cells(rates[1], rates[pack])
                best.append((median, network, precision, pack))
                rows.append(f"| {network} | {precision} | {pack} {cells}")
    top = max(best)
    verdict = (
        f"worth adopting ({top[0]:.2f}x for {top[1]} {top[2]} packed {top[3]})"
        if top[0] >= WORTH
        else f"not worth a second training path (best {top[0]:.2f}x: {top[1]} {top[2]} packed {top[3]}; "
        f"{WORTH}x needed)"
    )
    lines = [
        "## Packing seeds: several seeds of one claim in one model",
        "",
        f"Command: `{command_line('python benchmarks/packing.py')}`. Each network built K times by cnnlab's builder "
        "(its own seed each), side by side in one Keras model with one loss per copy, fitted on one batch per copy "
        f"held in memory and repeated ({args.images} images a copy an epoch, {args.epochs} epochs, the first not "
        f"counted; {args.repeats} repeats, each K in its own process). Images a second over all the seeds a model "
        "trains (K seeds, each advanced by its own images), median over repeats; the ratio is packed over alone in "
        "the same repeat, median (min-max): how much less time a seed takes when packed.",
        "",
        "| network | precision | seeds packed | one seed alone, images/s | packed, images/s over its seeds "
        "| time per seed, alone over packed |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Reading: packing is {verdict}; cnnlab trains one seed at a time.",
    ]
    summary = f"Packing several seeds in one model is {verdict}."
    write_section(ROOT / args.output, "packing", "\n".join(lines), summary)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
