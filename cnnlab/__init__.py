"""cnnlab: Hydra-configured, MLflow-tracked Keras CNN runs, sweeps and reproductions on MNIST-family images."""

import os

# TensorFlow logs CUDA probing and oneDNN notices at import on CPU-only machines; keep the terminal readable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# MLflow 3 sends usage telemetry off the machine by default. cnnlab's commands send nothing unless the user opts in,
# by setting MLFLOW_DISABLE_TELEMETRY=false (the Makefile's ui and server targets follow the same rule).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
