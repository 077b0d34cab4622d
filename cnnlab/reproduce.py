"""`python -m cnnlab.reproduce [seeds=N] [claims=[...]]`: claims over seeds, verdicts, report (cnnlab.claims).

Without ``claims``, every experiment with a ``claim`` block in the config search path is reproduced."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cnnlab.checks import check_reproduce
from cnnlab.cli import command, launch
from cnnlab.config.compose import register_configs, searchpath_overrides

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="reproduce_config")
def main(cfg: DictConfig) -> None:
    from hydra import compose

    from cnnlab.claims.report import reproduction_summary, reproduction_writer
    from cnnlab.claims.reproduce import reproduce
    from cnnlab.claims.sources import finish_sources, run_sources
    from cnnlab.config.schema import option

    searchpath = searchpath_overrides()  # a user's own config folders reach every claim's composition
    if option(cfg.design) == "sources":  # one claim's variance by source instead of verdicts
        claim_compose = lambda extra: compose("config", overrides=[*extra, *searchpath])  # noqa: E731
        print(finish_sources(cfg, *command(cfg, lambda overrides: run_sources(cfg, overrides, claim_compose))))
        return

    def run(overrides: list[str]):
        return reproduce(
            cfg, overrides, lambda extra: compose("config", overrides=[*extra, *searchpath]), reproduction_writer(cfg)
        )

    parent_id, _, report = command(cfg, run)
    if report:  # a worker of workers=N: the process that started it reports
        print(reproduction_summary(report, parent_id, cfg.report_path))


if __name__ == "__main__":
    launch(main, check_reproduce)
