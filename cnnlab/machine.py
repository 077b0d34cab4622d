"""What this machine's CPU can do, for every figure that depends on it (speed, and results made here).

Machines differ from session to session (AVX-512 with native bfloat16 on some, AVX2 only on others), so each
report names the CPU and the flags that decide how fast and in which arithmetic TensorFlow runs on it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The flags that change TensorFlow's CPU kernels: vector width, fused multiply-add, native bfloat16, AMX tiles.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    return next(
        (line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("model name")),
        platform.machine(),
    )


def cpu_description() -> str:
    """e.g. ``AMD EPYC, 2 cores, flags: avx2 fma avx512f avx512_bf16 (no amx_bf16 amx_tile)``."""
    flags = cpu_flags()
    present = [flag for flag in RELEVANT_FLAGS if flag in flags]
    absent = [flag for flag in RELEVANT_FLAGS if flag not in flags]
    return f"{cpu_model()}, {os.cpu_count()} cores, flags: {' '.join(present) or 'none of interest'}" + (
        f" (no {' '.join(absent)})" if absent else ""
    )
