"""Exceptions the entry points turn into messages and exit codes; importing them loads no TensorFlow or MLflow."""


class UserError(Exception):
    """Anything a user can get wrong and fix (a config, a data file, an image, a model, a store): the message says
    what and what to do. Every command turns it into ``Error: <message>`` and exit code 1 (``cli.guarded``)."""

    exit_code = 1
    epilogue = ""  # what the message adds about what was recorded


class NanLossError(UserError, RuntimeError):
    """Training diverged; the run ends FAILED with reason "nan loss"."""

    reason = "nan loss"
    epilogue = ". The run is recorded as FAILED."


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so the run can be closed as KILLED (like KeyboardInterrupt for SIGINT)."""


class ConfigError(UserError, ValueError):
    """A config that composes but cannot be trained: names the key and what is valid."""
