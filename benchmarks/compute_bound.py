"""The speed of cnnlab's training step alone: the bound on what any input pipeline or loop change can reach.

Builds and compiles the network through cnnlab (the one model builder, the same compile as a run) and fits it on a
single batch already in memory, repeated, so no epoch pays for reading, scaling, shuffling or batching images. The
math per step is the training run's. Prints one JSON line like benchmarks/plain_keras.py.

``--layout channels_first`` runs the same layers on (channels, height, width) images, the other layout oneDNN's
kernels take (benchmarks/options.py compares it).
"""

import argparse
import json
import os
import resource
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]


def channels_first(model):
    """``model``'s layers computing on (channels, height, width) images, compiled as ``model`` was: each layer with a
    layout is rebuilt from its config (the same seeded initializer), the others are ``model``'s own."""
    import keras

    height, width, channels = model.input_shape[1:]

    def in_channels_first(layer):
        config = layer.get_config()
        if "data_format" not in config:
            return layer
        return layer.__class__.from_config({**config, "data_format": "channels_first"})

    layers = [in_channels_first(layer) for layer in model.layers]
    clone = keras.Sequential([keras.Input((channels, height, width)), *layers], name=model.name)
    clone.compile_from_config(model.get_compile_config())
    return clone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--network", required=True)
    parser.add_argument("--images", type=int, required=True, help="images an epoch stands for (steps x batch)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--layout", choices=["channels_last", "channels_first"], default="channels_last")
    parser.add_argument("overrides", nargs="*", help="cnnlab config overrides, e.g. trainer.precision=bf16")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    from cnnlab.config import compose_run_config, option

    cfg = compose_run_config([f"model={args.network}", *args.overrides])

    import numpy as np
    import tensorflow as tf

    from cnnlab import train
    from cnnlab.callbacks import EpochTimer
    from cnnlab.data.pipeline import without_autotuning

    train.seed_everything(cfg)
    model = train.build_compiled_model(cfg)
    if args.layout == "channels_first":
        model = channels_first(model)
    batch_size = cfg.trainer.batch_size
    images = np.random.default_rng(0).random((batch_size, *model.input_shape[1:]), dtype=np.float32)
    classes = np.arange(batch_size) % len(cfg.dataset.classes)
    one_hot = option(cfg.trainer.loss) == "categorical_crossentropy"
    labels = np.eye(len(cfg.dataset.classes), dtype=np.float32)[classes] if one_hot else classes
    steps = args.images // batch_size
    # As cnnlab's pipeline: no autotuning thread for dropped iterators to wait on.
    one_batch = without_autotuning(tf.data.Dataset.from_tensors((images, labels)).repeat(steps))

    timer = EpochTimer()  # the timer a cnnlab run logs its epoch_seconds with
    model.fit(one_batch, epochs=args.epochs, verbose=0, callbacks=[timer])
    print(
        json.dumps(
            {
                "epoch_seconds": timer.seconds,
                "images": steps * batch_size,
                "num_params": model.count_params(),
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
