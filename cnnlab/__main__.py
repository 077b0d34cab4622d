"""`cnnlab <command> [overrides]`: one console script for every entry point (`cnnlab run model=simple` is
`python -m cnnlab.run model=simple`). It only forwards: each command stays a Hydra application of its own."""

from __future__ import annotations

import runpy
import sys

COMMANDS = {
    "run": "train one network and track it in MLflow",
    "sweep": "run or resume a keras-tuner study",
    "reproduce": "verdicts on the published claims, over seeds",
    "compare": "runs from MLflow as a table, best first",
    "evaluate": "test metrics, per-class accuracy and worst mistakes of a logged model",
    "predict": "a logged model's predictions for test images or image files",
    "register": "register a logged model under a name and alias",
    "verify": "retrain a logged run and compare its histories",
    "seeds": "export a reproduction's seeds to a file, or import such a file into this store",
}


def usage() -> str:
    lines = ["usage: cnnlab <command> [overrides ...]   (cnnlab <command> --help: its groups, options and keys)", ""]
    lines += [f"  {name:<10} {what}" for name, what in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if arguments else 2)
    name, *rest = arguments
    if name not in COMMANDS:
        print(f"Error: {name!r} is not a cnnlab command; one of {', '.join(COMMANDS)}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    # Hydra reads the command line from sys.argv, and the command's name from its module's file, as under python -m.
    sys.argv = [f"cnnlab {name}", *rest]
    runpy.run_module(f"cnnlab.{name}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
