"""The allocator setting sweeps and reproductions use: freed large buffers must go back to the system."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
import numpy as np
from cnnlab.allocator import pin_mmap_threshold

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

if sys.argv[1] == "pinned":
    assert pin_mmap_threshold()
buffers = [np.ones(2_000_000 + 1000 * i) for i in range(8)]  # ~16 MB each: above the threshold, so mmapped
del buffers  # unpinned, each free raises glibc's threshold: the same sizes now come from the heap
before = rss_mb()
for i in range(8):
    buffer = np.ones(1_900_000 + 1000 * i)
    del buffer
print(rss_mb() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc are Linux's")
def test_pinned_mmap_threshold_returns_freed_buffers_to_the_system():
    def growth(mode: str) -> float:
        result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return float(result.stdout.strip())

    assert growth("pinned") < 4  # MB: each ~15 MB buffer was unmapped when freed
    assert growth("default") > 10  # without the pin the same program keeps one resident: the check can fail
