"""cnnlab: Hydra-configured, MLflow-tracked Keras CNN runs, sweeps and reproductions on MNIST-family images."""

import os

# TensorFlow logs CUDA probing and oneDNN notices at import on CPU-only machines; keep the terminal readable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
