"""`python -m cnnlab.register model_uri=runs:/<id>/model name=<name> [alias=champion]`: the Model Registry."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.checks import check_use
from cnnlab.cli import command, launch
from cnnlab.config.compose import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="use_config")
def main(cfg: DictConfig) -> None:
    from cnnlab.commands.register_model import register, registration_summary

    print(registration_summary(command(cfg, lambda overrides: register(cfg)), cfg))


if __name__ == "__main__":
    launch(main, check_use)
