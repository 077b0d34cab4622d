"""Exceptions the entry points turn into messages and exit codes; importing them loads no TensorFlow or MLflow."""


class NanLossError(RuntimeError):
    """Training diverged; the run ends FAILED with reason "nan loss"."""

    reason = "nan loss"


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so the run can be closed as KILLED (like KeyboardInterrupt for SIGINT)."""
