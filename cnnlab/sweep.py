"""`python -m cnnlab.sweep [overrides]`: a keras-tuner study over a Hydra-defined space. Logic: cnnlab.tuning."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.cli import launch, sweep_entry
from cnnlab.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="sweep_config")
def main(cfg: DictConfig) -> float | None:
    return sweep_entry(cfg)


if __name__ == "__main__":
    launch(main)
