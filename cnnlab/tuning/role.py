"""Which part of a distributed study this process is: keras-tuner's chief/worker role, read from its environment.

Both the oracles (a chief keeps its workers' running trials) and the launcher (:mod:`cnnlab.tuning.distributed`)
read it here, so neither imports the other for it.
"""

from __future__ import annotations

import os

ROLE_VARIABLE = "KERASTUNER_TUNER_ID"
THREADS_VARIABLE = "CNNLAB_THREADS"
LAUNCHER_VARIABLE = "CNNLAB_LAUNCHED"  # set for the processes `distributed.workers=N` starts: it reports, not they


def role() -> str | None:
    """``chief``, ``tuner<i>``, or None for a process that was not started as part of a distributed study."""
    return os.environ.get(ROLE_VARIABLE)


def launched() -> bool:
    """Whether this process was started by cnnlab's launcher (one machine) rather than by hand (several hosts)."""
    return os.environ.get(LAUNCHER_VARIABLE) == "1"
