"""SIGTERM as an exception (:class:`cnnlab.errors.Terminated`) in the main thread, so a run it interrupts is closed
as KILLED rather than left RUNNING."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Any

from cnnlab.errors import Terminated


class _SigtermState:
    pending = False  # raised in the main thread, not yet seen by a run
    delivered = False  # a run has seen it: the process is closing its runs and exiting


def _on_sigterm(signum: int, frame: Any) -> None:
    """Raises Terminated in the main thread, and raises it again until a run has seen it.

    Python runs a signal handler between any two bytecodes of the main thread, weakref and finalizer callbacks
    included, and an exception raised inside one of those is printed ("Exception ignored in ...") and dropped: seen
    in a sweep told to stop, which trained on for a minute until it was killed. So the signal is sent again every
    second until ``tracked_run`` has seen the exception; once it has, the runs are being closed and a repeat would
    only interrupt that.
    """
    if _SigtermState.delivered:
        return
    if not _SigtermState.pending:
        _SigtermState.pending = True
        threading.Thread(target=_resend_sigterm, name="cnnlab-sigterm", daemon=True).start()
    raise Terminated("SIGTERM")


def _resend_sigterm() -> None:
    while True:
        time.sleep(1.0)
        if not _SigtermState.pending:
            return
        os.kill(os.getpid(), signal.SIGTERM)


def raise_on_sigterm() -> Any:
    """Makes SIGTERM raise Terminated in the main thread; returns the handler it replaced (for :func:`restore`)."""
    previous = signal.getsignal(signal.SIGTERM)
    _SigtermState.delivered = False
    with contextlib.suppress(ValueError):  # not the main thread (e.g. a test runner's worker): keep the default
        signal.signal(signal.SIGTERM, _on_sigterm)
    return previous


def seen() -> None:
    """A run has seen Terminated: stop raising it again, the process is closing its runs and exiting."""
    _SigtermState.pending, _SigtermState.delivered = False, True


def restore(previous: Any) -> None:
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, previous)
