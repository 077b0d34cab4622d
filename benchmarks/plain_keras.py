"""The baseline: each tutorial network trained the way the tutorials write it (float32 numpy arrays into model.fit).

Written out by hand on purpose, as a reader of the tutorials would: it is what cnnlab is measured against.
Prints one JSON line: samples per second per epoch, seconds per epoch, the parameter count and, when the npz holds
a test split, the test accuracy (the fidelity comparison in benchmarks/fidelity.py reads it).
"""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from tensorflow import keras  # noqa: E402
from tensorflow.keras import layers  # noqa: E402


def network(name):
    if name == "simple":
        return [
            layers.Conv2D(64, 3, activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ]
    if name == "pooled":
        return [
            layers.Conv2D(32, 5, activation="relu", padding="same"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    if name == "dropout":
        return [
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    if name == "deep":
        return [
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(16, 3, padding="same", activation="linear"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 3, padding="same", activation="linear"),
            layers.Conv2D(8, 3, padding="same", activation="linear"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    raise ValueError(f"unknown network {name!r}")


class EpochTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []  # kept across fit calls: --epoch-order reshuffled fits one epoch at a time

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--network", required=True)
    parser.add_argument("--data", required=True, help="an npz with x_train, y_train (uint8)")
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw-pixels", action="store_true", help="feed 0-255 pixels, as the 97.57%% tutorial does")
    parser.add_argument(
        "--input",
        choices=["arrays", "tfdata"],
        default="arrays",
        help="arrays: float32 arrays into fit, as the tutorials do; tfdata: cnnlab's own input pipeline (uint8 images "
        "shuffled in full each epoch, scaled per batch), to tell the pipeline's part in a fidelity gap from the rest",
    )
    parser.add_argument(
        "--epoch-order",
        choices=["keras", "reshuffled"],
        default="keras",
        help="keras: fit(shuffle=True), which under a fixed seed replays one order every epoch; reshuffled: a new "
        "seeded permutation each epoch, as an unseeded tutorial run and cnnlab's pipeline both get",
    )
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    scale = 1.0 if args.raw_pixels else 255.0
    with np.load(args.data, allow_pickle=False) as data:
        x_train, y_train = data["x_train"][: args.images], data["y_train"][: args.images]
        x_test, y_test = (data["x_test"], data["y_test"]) if "x_test" in data else (None, None)
    model = keras.Sequential([keras.Input((28, 28, 1)), *network(args.network)])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    times = EpochTimes()
    if args.input == "tfdata":
        from cnnlab.data.pipeline import make_dataset

        batches = make_dataset(
            x_train,
            y_train,
            batch_size=args.batch_size,
            scale_pixels=not args.raw_pixels,
            one_hot_classes=10,
            shuffle_seed=args.seed,
        )
        # the pipeline shuffles every epoch itself; Keras ignores (and warns about) its own shuffle for a Dataset
        model.fit(batches, epochs=args.epochs, shuffle=False, verbose=0, callbacks=[times])
    else:
        x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / scale
        y_train = keras.utils.to_categorical(y_train, 10)
        if args.epoch_order == "reshuffled":
            order = np.random.default_rng(args.seed)
            for epoch in range(args.epochs):
                permutation = order.permutation(len(x_train))
                model.fit(
                    x_train[permutation],
                    y_train[permutation],
                    batch_size=args.batch_size,
                    epochs=epoch + 1,
                    initial_epoch=epoch,
                    shuffle=False,
                    verbose=0,
                    callbacks=[times],
                )
        else:
            model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=0, callbacks=[times])
    scores = {}
    if x_test is not None:
        x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / scale
        _, scores["test_accuracy"] = model.evaluate(x_test, keras.utils.to_categorical(y_test, 10), verbose=0)
    print(
        json.dumps(
            {
                **scores,
                "epoch_seconds": times.seconds,
                "images": len(x_train),
                "num_params": model.count_params(),
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
