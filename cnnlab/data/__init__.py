"""Datasets: verified sources (``sources``), file formats (``formats``), protocols (``splits``), input pipeline."""

from cnnlab.data.sources import Arrays, DataError, load_arrays

__all__ = ["Arrays", "DataError", "load_arrays"]
