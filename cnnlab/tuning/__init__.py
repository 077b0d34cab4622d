"""Sweeps: the space as data (``space``), keras-tuner's HyperModel and tracked Tuners (``hypermodel``), the study."""
