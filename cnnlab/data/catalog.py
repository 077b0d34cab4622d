"""The array names every source yields, and the file names of the IDX format (MNIST's, Fashion-MNIST's, KMNIST's).

What each dataset is (its shape, classes, pinned hashes, download, mirror) is its file in ``conf/dataset/``.
"""

from __future__ import annotations

ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
