"""`python -m cnnlab.run [overrides]`: compose the config, train once, report. All logic lives in cnnlab.train."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.checks import check_run
from cnnlab.cli import command, launch
from cnnlab.config.compose import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from cnnlab import train

    result = command(cfg, lambda overrides: train.train(cfg, overrides))
    print(train.summary(result, cfg))
    return result.metrics.get("test_accuracy", float("nan"))


if __name__ == "__main__":
    launch(main, check_run)
