"""Native memory for processes that train many models one after another (sweeps, reproductions)."""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value


def pin_mmap_threshold() -> bool:
    """Keeps glibc from raising its mmap threshold, so freed tensor buffers go back to the system.

    glibc raises the threshold each time a large mmapped block is freed, after which blocks of that size come from
    the heap, whose top is rarely given back. A study builds models of many shapes, so the heap's high-water mark
    climbed by ~3 MB a trial with no Python object alive (benchmarks/sweep.py --part memory). With the threshold
    pinned, large buffers are unmapped when freed (tests/test_allocator.py); the study's trend fell to ~1 MB a
    trial in one A/B here, within that benchmark's noise. Returns False where the C library has no mallopt.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    pinned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not pinned:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; memory may grow across trials")
    return pinned
