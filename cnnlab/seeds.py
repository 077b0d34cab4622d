"""`cnnlab seeds export path=<file> [claims=[...]] [machine_kind=...] [runs=all|seeds|sources]`,
`cnnlab seeds import path=<file>`: a reproduction's seeds carried to another store as a small file."""

from __future__ import annotations

import sys

import hydra

from cnnlab.checks import check_seeds
from cnnlab.cli import command, launch
from cnnlab.config.compose import register_configs

register_configs()

# `cnnlab seeds export ...` as the usual subcommand, mapped onto Hydra's override.
ACTIONS = {"export": "action=export", "import": "action=import"}


@hydra.main(version_base="1.3", config_path=None, config_name="seeds_config")
def main(cfg) -> None:
    import os

    from cnnlab.claims.portable import export_seeds, import_seeds, summary

    store = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    action = cfg.action.value
    if action == "export":
        chosen = (cfg.claims, cfg.machine_kind, cfg.runs.value)
        moved = command(cfg, lambda overrides: export_seeds(store, cfg.path, *chosen))
    else:
        moved = command(cfg, lambda overrides: import_seeds(store, cfg.path))
    print(summary(action, moved, store))


if __name__ == "__main__":
    sys.argv = [ACTIONS.get(arg, arg) for arg in sys.argv]
    launch(main, check_seeds)
