"""The array names every source yields, and the file names of the IDX format (MNIST's, Fashion-MNIST's, KMNIST's).

What each dataset is (its shape, classes, pinned hashes, download, mirror) is its file in ``conf/dataset/``.
"""

from __future__ import annotations

from cnnlab.config.schema import ARRAY_NAMES

__all__ = ["ARRAY_NAMES", "IDX_FILES"]
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
