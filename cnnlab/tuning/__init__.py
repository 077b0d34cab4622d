"""Sweeps: the space as data (``space``), the HyperModel (``hypermodel``), the search algorithms (``oracles``), the
tracked tuners and the name-to-class table (``tuners``), the study (``study``, run by ``run_study``), scale-out
(``role``, ``distributed``), pruning and analysis."""
