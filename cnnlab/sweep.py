"""`python -m cnnlab.sweep [overrides]`: a keras-tuner study over a Hydra-defined space (cnnlab.tuning.run_study)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.checks import check_sweep
from cnnlab.cli import command, launch
from cnnlab.config.compose import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="sweep_config")
def main(cfg: DictConfig) -> float | None:
    from cnnlab.tuning.run_study import run_study, summary_text

    summary = command(cfg, lambda overrides: run_study(cfg, overrides))
    print(summary_text(summary))
    return summary.get("best_score")


if __name__ == "__main__":
    launch(main, check_sweep)
