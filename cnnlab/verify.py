"""`python -m cnnlab.verify run_id=<id>`: rerun a logged run from what MLflow holds and compare its histories."""

from __future__ import annotations

import hydra

from cnnlab.checks import check_verify
from cnnlab.cli import command, launch
from cnnlab.config.compose import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path=None, config_name="verify_config")
def main(cfg) -> None:
    import os

    from cnnlab.commands.rerun import summary, verify

    store = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    print(summary(command(cfg, lambda overrides: verify(cfg.run_id, store))))


if __name__ == "__main__":
    launch(main, check_verify)
