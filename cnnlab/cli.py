"""What the Hydra entry points share: the launcher, their checks before work, clean errors, exit codes.

An entry point hands its own checks to :func:`launch` (``launch(main, checks.check_run)``); Hydra's callback
:class:`CheckBeforeWork` (named in every primary config's ``hydra.callbacks``) runs them after composing and before
Hydra creates anything, and :func:`command` runs them where that callback does not: multirun jobs, which differ
by their sweep overrides and are checked as each starts, inside its own job folder.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from hydra.experimental.callback import Callback

from cnnlab import compat
from cnnlab.errors import ConfigError

log = logging.getLogger("cnnlab")

EXIT_BAD_INPUT = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def overrides() -> list[str]:
    """The command line's Hydra overrides (empty outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


class _Launched:
    checks: Callable[[Any, list[str]], None] | None = None  # what the entry point handed to launch()
    checked_before_run = False  # Hydra's callback checked this process's single run


class CheckBeforeWork(Callback):
    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        run_checks(config, list(config.hydra.overrides.task))
        _Launched.checked_before_run = True


def run_checks(cfg: Any, given: list[str]) -> None:
    """The launched entry point's checks; a refusal is one ``Error:`` line and exit code 1."""
    if _Launched.checks is None:
        raise RuntimeError("no checks were handed to the launcher: start the entry point with launch(main, checks)")
    try:
        _Launched.checks(cfg, given)
    except ConfigError as error:
        fail(str(error))


def checked(cfg: Any) -> list[str]:
    """The overrides, after the entry point's checks unless Hydra's callback already ran them for this run."""
    given = overrides()
    if not _Launched.checked_before_run:
        run_checks(cfg, given)
    return given


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(code)


def launch(main: Any, checks: Callable[[Any, list[str]], None]) -> None:
    """Runs a ``@hydra.main`` function as a command, ``checks(cfg, overrides)`` before any work: Hydra's composition
    errors (an unknown key or option, a wrong type, a bad override) print as one ``Error:`` message without the
    stack-trace hint, and a finished command exits at once (:func:`exit_without_teardown`)."""
    _Launched.checks = checks
    compat.report_hydra_errors(_report_config_errors)
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
            message = _naming_the_file(message, error.__cause__ or error.__context__)
            fail(message + "\n(the groups, options and keys: add --help; every config: add --cfg job)")
        except Exception as error:  # anything else: Hydra's own report, trimmed traceback and all
            return hydra_run_and_report(partial(_reraise, error))

    return run_and_report


def _naming_the_file(message: str, cause: Any) -> str:
    """Hydra's ``In 'dataset/mine': ...`` with the file's path, and the key when OmegaConf named none (a list given
    where the schema has a mapping), so the user knows which line of which file to fix."""
    import re

    from cnnlab.config.compose import misfit_key, option_file, search_folders

    found = re.match(r"In '([\w-]+)/([^']+)'", message)
    given = [argument for argument in sys.argv[1:] if not argument.startswith("-")]
    path = found and option_file(*found.groups(), search_folders(given))
    if not path:
        return message
    message = message.replace(found.group(0), f"{found.group(0)} ({path})", 1)
    if not getattr(cause, "full_key", "unknown") and (key := misfit_key(found.group(1), path)):
        message += f"\n{key} in {path} is not of the type the schema gives it (docs/reference/keys.md)"
    return message


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
    if "tensorflow" not in sys.modules:
        return
    compat.run_exit_handlers()  # MLflow's and Hydra's handlers, as a normal exit would run them
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


def command(cfg: Any, action: Any) -> Any:
    """What every entry point does: its checks (where Hydra's callback did not run them), then ``action(overrides)``
    with bad input, divergence and signals turned into one message and an exit code."""
    given = checked(cfg)
    return guarded(lambda: action(given))
