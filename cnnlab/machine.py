"""What this machine's CPU can do, for every figure that depends on it (speed, and results made here).

Machines differ from session to session (AVX-512 with native bfloat16 on some, AVX2 only on others), so each
report names the CPU and the flags that decide how fast and in which arithmetic TensorFlow runs on it.
"""

from __future__ import annotations

import os
import platform
import sys
from functools import cache
from pathlib import Path

# The flags that change TensorFlow's CPU kernels: vector width, fused multiply-add, native bfloat16, AMX tiles.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@cache
def _cpuinfo() -> str | None:
    """/proc/cpuinfo, read once per process (every report and precision check asks it)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


# oneDNN's dispatcher control (ONEDNN_MAX_CPU_ISA, formerly DNNL_MAX_CPU_ISA) caps the instructions TensorFlow's
# kernels use, whatever the CPU has: under ONEDNN_MAX_CPU_ISA=AVX2 an AVX-512 machine runs as the AVX2 kind (and
# cannot run bf16 at all, see bf16_impossible). Each cap and the flags of interest it leaves usable; other values
# (DEFAULT, the AMX caps, AVX2_VNNI_2 with its own bf16 instructions) leave the CPU as it is.
_AVX2 = ("avx2", "fma")
_AVX512 = (*_AVX2, "avx512f")
_AVX512_BF16 = (*_AVX512, "avx512_bf16")
ISA_CAPS = {
    "SSE41": (),
    "AVX": (),
    "AVX2": _AVX2,
    "AVX2_VNNI": _AVX2,
    "AVX512_CORE": _AVX512,
    "AVX512_CORE_VNNI": _AVX512,
    "AVX512_CORE_BF16": _AVX512_BF16,
    "AVX512_CORE_FP16": _AVX512_BF16,
    "AVX10_1_512": _AVX512_BF16,
}


# The environment that changes a run's arithmetic: oneDNN's ISA cap (either spelling) and TensorFlow's intra-op threads
ISA_CAP_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
THREADS_ENV = "TF_NUM_INTRAOP_THREADS"
ARITHMETIC_ENV = (*ISA_CAP_ENV, THREADS_ENV)


def arithmetic_env() -> list[str]:
    """This process's settings of ``ARITHMETIC_ENV`` (``["ONEDNN_MAX_CPU_ISA=AVX2"]``): what a command shown for a
    rerun must start with, since without them the rerun computes other bits."""
    return [f"{name}={os.environ[name]}" for name in ARITHMETIC_ENV if os.environ.get(name)]


def isa_cap() -> tuple[str, tuple[str, ...]] | None:
    """The oneDNN ISA cap in force, as its setting (``ONEDNN_MAX_CPU_ISA=AVX2``) and the flags it leaves usable."""
    for variable in ISA_CAP_ENV:
        value = os.environ.get(variable, "").upper()
        if value in ISA_CAPS:
            return f"{variable}={value}", ISA_CAPS[value]
    return None


def bf16_impossible() -> str | None:
    """Why TensorFlow cannot run bfloat16 here at all, or None. It sends bf16 matmuls to oneDNN whatever the cap, and
    below AVX-512 oneDNN has no bf16 kernel: the process aborts (seen under ONEDNN_MAX_CPU_ISA=AVX2 on an AVX-512
    EPYC: "could not create a primitive descriptor for the matmul primitive"; AVX512_CORE emulates bf16)."""
    cap = isa_cap()
    if cap is None or "avx512f" in cap[1]:
        return None
    return f"{cap[0]} leaves oneDNN no bfloat16 kernel and TensorFlow would abort; unset it or raise it to AVX512_CORE"


def cpu_flags() -> set[str]:
    """The CPU's flags, less those of interest that a oneDNN ISA cap hides from TensorFlow."""
    text = _cpuinfo()
    if text is None:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    flags = set(line.partition(":")[2].split())
    cap = isa_cap()
    if cap is not None:
        flags -= set(RELEVANT_FLAGS) - set(cap[1])
    return flags


def cpu_model() -> str:
    text = _cpuinfo()
    if text is None:
        return platform.processor() or platform.machine()
    return next(
        (line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("model name")),
        platform.machine(),
    )


KINDS = ("avx2", "avx512", "avx512_bf16", "amx", "other")  # what kind() can answer, narrowest last but one


def kind() -> str:
    """The machine kind a speed figure holds for: the widest vector unit, and whether bfloat16 is native."""
    flags = cpu_flags()
    if flags & {"amx_bf16", "amx_tile"}:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


def accelerator() -> str:
    """The accelerator TensorFlow could use here, in words (``none`` on the CPU-only machines cnnlab is measured on)."""
    gpus = sorted(path.name for path in Path("/proc/driver/nvidia/gpus").glob("*"))
    return f"nvidia gpu x{len(gpus)}" if gpus else "none"


def intra_op_threads() -> int:
    """The TensorFlow intra-op threads a run's kernels split their work over: as set in this process (the
    distributed launcher's workers set it), else ``TF_NUM_INTRAOP_THREADS``, else one per CPU it may use. Their
    number changes the arithmetic as a oneDNN cap does: a reduction is partitioned by thread, so the same seed
    through the same kernels on 1 and on 2 threads ends as two different runs (docs/runs.md, "Precision")."""
    tf = sys.modules.get("tensorflow")  # only where TensorFlow is loaded: a command that never trains stays quick
    chosen = tf.config.threading.get_intra_op_parallelism_threads() if tf is not None else 0
    if chosen:
        return chosen
    given = os.environ.get(THREADS_ENV, "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return usable_cpus()  # TensorFlow's default


def set_threads(threads: int) -> None:
    """Splits TensorFlow's kernels over ``threads`` threads, and runs as many ops at once, in this process: before
    its runtime starts (TensorFlow raises RuntimeError after). The processes cnnlab runs side by side (a sweep's
    workers, a reproduction's) each take their share of the CPUs this way."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def usable_cpus() -> int:
    """The CPUs this process may run on: a container's cpuset or taskset, not all the host's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def tags() -> dict[str, str]:
    """What a run records of the machine it ran on, as tags a query can group by (``tags.`machine.kind` = 'amx'``):
    the kind, the CPU model, the flags that change arithmetic, the oneDNN cap in force, any accelerator, and the
    intra-op threads (which change arithmetic too)."""
    flags = cpu_flags()
    cap = isa_cap()
    return {
        "machine.kind": kind(),
        "machine.cpu": cpu_model(),
        "machine.flags": " ".join(flag for flag in RELEVANT_FLAGS if flag in flags) or "none",
        "machine.isa_cap": cap[0] if cap else "none",
        "machine.accelerator": accelerator(),
        "machine.cores": str(os.cpu_count()),
        "machine.threads": str(intra_op_threads()),
    }


def cpu_description() -> str:
    """e.g. ``AMD EPYC, 2 cores, flags: avx2 fma avx512f avx512_bf16 (no amx_bf16 amx_tile)``; under a oneDNN cap,
    ``... flags: avx2 fma (no avx512f avx512_bf16 amx_bf16 amx_tile, capped by ONEDNN_MAX_CPU_ISA=AVX2)``."""
    flags = cpu_flags()
    present = [flag for flag in RELEVANT_FLAGS if flag in flags]
    absent = [flag for flag in RELEVANT_FLAGS if flag not in flags]
    cap = isa_cap()
    return f"{cpu_model()}, {os.cpu_count()} cores, flags: {' '.join(present) or 'none of interest'}" + (
        f" (no {' '.join(absent)}{', capped by ' + cap[0] if cap else ''})" if absent else ""
    )


# CPU flags of native bfloat16 arithmetic; without them oneDNN emulates it (10.8x slower than float32 for one epoch
# of `deep`, measured on a 2-core AVX2 EPYC).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16() -> str | None:
    """What runs bfloat16 natively here, in words, or None where TensorFlow would emulate it."""
    flags = cpu_flags()
    found = [flag for flag in NATIVE_BF16_FLAGS if flag in flags]
    if found:
        return f"the CPU has {found[0]}"
    if any(Path("/proc/driver/nvidia/gpus").glob("*")):
        return "an NVIDIA GPU is present"
    return None


def choose_precision(requested: str) -> tuple[str, str]:
    """``(precision, why)`` for ``trainer.precision``: ``auto`` is bf16 where native, float32 elsewhere."""
    if requested != "auto":
        return requested, f"trainer.precision={requested}"
    native = native_bf16()
    if native:
        return "bf16", f"trainer.precision=auto: {native}, so bfloat16 runs natively"
    return "float32", "trainer.precision=auto: no native bfloat16 here (no avx512_bf16 or amx_bf16, no GPU)"
