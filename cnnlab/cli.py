"""What the Hydra entry points share: validation before heavy imports, clean errors, exit codes, the summary."""

from __future__ import annotations

import logging
import os
import sys
from functools import partial
from typing import Any

from cnnlab.errors import ConfigError

log = logging.getLogger("cnnlab")

EXIT_BAD_INPUT = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def overrides() -> list[str]:
    """The command line's Hydra overrides (empty outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def checked(command: str, cfg: Any) -> list[str]:
    """The overrides, after :func:`cnnlab.checks.check` unless Hydra's callback already ran it for this run
    (callers without Hydra's launcher, the tests among them, and multirun jobs get the same refusals here)."""
    from cnnlab import checks

    given = overrides()
    if checks.checked_before_run:
        return given
    try:
        checks.check(command, cfg, given)
    except ConfigError as error:
        fail(str(error))
    return given


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(code)


def launch(main: Any) -> None:
    """Runs a ``@hydra.main`` function as a command: Hydra's composition errors (an unknown key or option, a wrong
    type, a bad override) print as one ``Error:`` message without the stack-trace hint, and a finished command
    exits at once (:func:`exit_without_teardown`)."""
    import hydra._internal.utils as hydra_utils

    hydra_utils.run_and_report = _report_config_errors(hydra_utils.run_and_report)
    main()
    exit_without_teardown()


def _report_config_errors(hydra_run_and_report: Any) -> Any:
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    def run_and_report(func: Any) -> Any:
        try:
            return func()
        except (HydraException, OmegaConfBaseException) as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            message = str(error).strip()
            if isinstance(error, OverrideParseException) and (bad := _unreadable_override()):
                message = f"{bad}: not a valid override ({message})"
            if isinstance(error.__cause__, OmegaConfBaseException):
                message += "\n" + str(error.__cause__).strip()
            fail(message + "\n(the groups, options and keys: add --help; every config: add --cfg job)")
        except Exception as error:  # anything else: Hydra's own report, trimmed traceback and all
            return hydra_run_and_report(partial(_reraise, error))

    return run_and_report


def _unreadable_override() -> str | None:
    """The first command-line argument Hydra's override grammar cannot read, to name it in the message."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for argument in sys.argv[1:]:
        if argument.startswith("-"):
            continue
        try:
            parser.parse_override(argument)
        except Exception:
            return argument
    return None


def _reraise(error: Exception) -> None:
    raise error


def exit_without_teardown() -> None:
    """Ends a finished command at once: exit handlers run and output is flushed, then the process exits.

    Once TensorFlow is loaded, the interpreter's own teardown (module clean-up, TensorFlow's thread pools and
    static destructors) takes ~2 s on 2 cores and records nothing: every run is already closed in MLflow by
    then. Only for successful ends; errors leave through ``sys.exit`` as usual.
    """
    import atexit

    if "tensorflow" not in sys.modules:
        return
    atexit._run_exitfuncs()  # MLflow's and Hydra's handlers, as a normal exit would run them
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def guarded(action: Any) -> Any:
    """Runs ``action()``, turning bad input, divergence and signals into one clear line and the right exit code."""
    from cnnlab.errors import Terminated, UserError

    try:
        return action()
    except UserError as error:  # every error a user can fix, from any module: one message, one exit code
        fail(f"{error}{error.epilogue}", error.exit_code)
    except KeyboardInterrupt:
        fail("interrupted (SIGINT); the run is recorded as KILLED and what finished is kept.", EXIT_SIGINT)
    except Terminated:
        fail("terminated (SIGTERM); the run is recorded as KILLED and what finished is kept.", EXIT_SIGTERM)


def command(name: str, cfg: Any, action: Any) -> Any:
    """What every entry point does: ``name``'s checks (again, for callers outside Hydra's launcher), then
    ``action(overrides)`` with bad input, divergence and signals turned into one message and an exit code."""
    given = checked(name, cfg)
    return guarded(lambda: action(given))
