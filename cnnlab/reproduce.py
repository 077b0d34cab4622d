"""`python -m cnnlab.reproduce [seeds=N] [claims=[...]]`: claims over seeds, verdicts, report (cnnlab.claims)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.cli import launch, reproduce_entry
from cnnlab.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="reproduce_config")
def main(cfg: DictConfig) -> None:
    reproduce_entry(cfg)


if __name__ == "__main__":
    launch(main)
