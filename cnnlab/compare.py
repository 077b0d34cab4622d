"""`python -m cnnlab.compare [dataset=fashion] [--csv | format=markdown] [plot_x=optimizer.learning_rate]`."""

from __future__ import annotations

import sys

import hydra

from cnnlab.checks import check_compare
from cnnlab.cli import checked, launch
from cnnlab.config.compose import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path=None, config_name="compare_config")
def main(cfg) -> None:
    from cnnlab.commands.runs_table import plot, plot_path, render, search
    from cnnlab.errors import ConfigError

    checked(cfg)
    try:
        table = search(cfg)
    except ConfigError as error:
        sys.exit(f"Error: {error}")
    print(render(table, cfg.format.value))
    left_out = table.attrs.get("noise_left_out", 0)
    if left_out:
        print(f"{left_out} seed-noise rerun(s) of sweep trials left out; noise_reruns=true lists them", file=sys.stderr)
    sorted_by = table.attrs.get("sorted_by", cfg.sort_by)
    if sorted_by != cfg.sort_by:
        print(
            f"ranked by {sorted_by}: no run shown has {cfg.sort_by} (trials never see the test split)", file=sys.stderr
        )
    if cfg.plot_x and not table.empty:
        print(f"saved the plot to {plot(table, cfg.plot_x, sorted_by, plot_path(cfg))}", file=sys.stderr)


if __name__ == "__main__":
    # `--csv` and `--markdown` as the usual flags, mapped onto Hydra's override.
    sys.argv = [{"--csv": "format=csv", "--markdown": "format=markdown"}.get(arg, arg) for arg in sys.argv]
    launch(main, check_compare)
