"""`python -m cnnlab.predict model_uri=... samples=4 | images=[a.png]`: predicted class names as a table."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.checks import check_use
from cnnlab.cli import command, launch
from cnnlab.config.compose import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="use_config")
def main(cfg: DictConfig) -> None:
    from cnnlab.commands.predict_images import predict, predictions_table

    print(predictions_table(command(cfg, lambda overrides: predict(cfg, overrides))))


if __name__ == "__main__":
    launch(main, check_use)
