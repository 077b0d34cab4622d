"""`python -m cnnlab.evaluate model_uri=runs:/<id>/model`: test metrics, per-class accuracy, worst mistakes."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.checks import check_use
from cnnlab.cli import command, launch
from cnnlab.config.compose import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="use_config")
def main(cfg: DictConfig) -> None:
    from cnnlab.commands.score_model import evaluate, evaluation_summary

    print(evaluation_summary(command(cfg, lambda overrides: evaluate(cfg, overrides)), cfg))


if __name__ == "__main__":
    launch(main, check_use)
