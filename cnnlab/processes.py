"""Processes cnnlab starts beside itself (a sweep's chief and workers, a reproduction's workers): each in a process
group of its own, its output relayed line by line under its name, and every one stopped, group and all, when the
process that started it ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time


def start(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Starts ``command`` in a process group of its own (stopped as a whole, never left behind) and relays its
    output, each line prefixed with ``[name]`` so that interleaved output stays readable."""
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",  # a stray byte must not end the relay, or the process blocks on a full pipe
        start_new_session=True,
    )

    def pump() -> None:
        for line in process.stdout:
            print(f"[{name}] {line}", end="", flush=True)

    process.relay = threading.Thread(target=pump, daemon=True)
    process.relay.start()
    return process


def drain(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """Waits until a process that has exited has had its last lines relayed."""
    relay = getattr(process, "relay", None)
    if relay is not None:
        relay.join(timeout)


def stop_all(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM each process group still running, then SIGKILL what is left after 15 s."""
    for process in processes.values():
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.time() + 15
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
