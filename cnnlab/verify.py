"""`python -m cnnlab.verify run_id=<id>`: rerun a logged run from what MLflow holds and compare its histories."""

from __future__ import annotations

import hydra

from cnnlab.cli import launch, verify_entry
from cnnlab.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path=None, config_name="verify_config")
def main(cfg) -> None:
    verify_entry(cfg)


if __name__ == "__main__":
    launch(main)
