"""Runs from MLflow into pandas: a table of chosen params and metrics, best first, and a metric-vs-param plot."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd


def search(cfg: Any) -> pd.DataFrame:
    """The runs matching the filters, one row each, with ``run``, ``experiment`` and the chosen columns."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from cnnlab.errors import ConfigError

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri)
    if cfg.experiments:
        names = list(cfg.experiments)
        known = {e.name for e in mlflow.search_experiments()}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ConfigError(f"experiments: no experiment named {unknown} in this store; there are {sorted(known)}")
    else:
        names = [e.name for e in mlflow.search_experiments() if e.name.startswith("cnnlab-")]
    clauses = []
    if cfg.dataset:
        clauses.append(f"tags.dataset = '{cfg.dataset}'")
    if cfg.model:
        clauses.append(f"tags.model = '{cfg.model}'")
    if cfg.status:
        clauses.append(f"attributes.status = '{cfg.status}'")
    if cfg.filter:
        clauses.append(cfg.filter)
    if not names:
        return pd.DataFrame()
    from cnnlab.tracking.runs import mark_dead_processes_killed

    # A run whose process died must not show as RUNNING: the same clean-up every command does on opening.
    ids = [e.experiment_id for e in mlflow.search_experiments() if e.name in names]
    mark_dead_processes_killed(mlflow.MlflowClient(), *ids)
    try:
        runs = mlflow.search_runs(experiment_names=names, filter_string=" and ".join(clauses), max_results=5000)
    except MlflowException as error:
        raise ConfigError(f"filter: MLflow cannot read {' and '.join(clauses)!r}: {error.message}") from error
    if runs.empty:
        return runs
    from cnnlab.tracking.runs import run_role

    tag_columns = [column for column in runs.columns if column.startswith("tags.")]
    roles = pd.Series(
        [
            run_role({column[5:]: value for column, value in zip(tag_columns, row, strict=True)})
            for row in runs[tag_columns].itertuples(index=False)
        ],
        index=runs.index,
    )
    # A study's or a reproduction's own run holds the others, it is not one of them; a run that is some listed run's
    # parent is one too, whatever its tags.
    parents = set(runs.get("tags.mlflow.parentRunId", pd.Series(dtype=object)).dropna())
    kept = (roles != "parent") & ~runs["run_id"].isin(parents)
    runs, roles = runs[kept], roles[kept]
    noise = roles == "noise"
    experiments = {e.experiment_id: e.name for e in mlflow.search_experiments()}
    table = pd.DataFrame(
        {
            "run": runs.get("tags.mlflow.runName"),
            "experiment": runs["experiment_id"].map(experiments),
            "status": runs["status"],
        }
    )
    if (roles != "run").any():
        table.insert(1, "role", roles)
    for param in cfg.params:
        column = runs.get(f"params.{param}")
        table[param] = _numeric_if_possible(column) if column is not None else None
    ranked = ~noise
    if ranked.any() and (roles[ranked] == "trial").all():
        for key in searched_keys(runs[ranked]):
            if key not in table:
                table[key] = _numeric_if_possible(runs[f"params.hp.{key}"])
    for metric in cfg.metrics:
        table[metric] = runs.get(f"metrics.{metric}")
    table["run_id"] = runs["run_id"]
    table = table.reset_index(drop=True)
    noise, ranked = noise.to_numpy(), ranked.to_numpy()
    # Seed-noise reruns repeat a trial; ranked among the trials they would stand for configurations of their own.
    best = table[ranked]
    sort_by = cfg.sort_by
    if sort_by == "test_accuracy" and best.get(sort_by, pd.Series(dtype=float)).isna().all():
        # Trials are scored on validation data and never touch the test split, so the default ranks a study by
        # what it searched on, rather than by an empty column.
        sort_by = "val_accuracy"
    if sort_by in best:
        best = best.sort_values(sort_by, ascending=cfg.ascending, na_position="last")
    reruns = table[noise] if cfg.noise_reruns else table.iloc[0:0]
    shown = pd.concat([best.head(cfg.limit), reruns]).reset_index(drop=True)
    shown.attrs["noise_left_out"] = 0 if cfg.noise_reruns else int(noise.sum())
    shown.attrs["sorted_by"] = sort_by
    return shown


def searched_keys(runs: pd.DataFrame) -> list[str]:
    """The hyperparameters the trials in ``runs`` searched: every ``hp.<key>`` param a trial recorded (keras-tuner's
    own ``tuner/`` bookkeeping left out)."""
    keys = [column.removeprefix("params.hp.") for column in runs.columns if column.startswith("params.hp.")]
    return [key for key in keys if not key.startswith("tuner/") and runs[f"params.hp.{key}"].notna().any()]


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    """MLflow stores params as strings; numbers become numbers so they sort and plot as numbers."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().sum() == column.notna().sum() else column


def render(table: pd.DataFrame, output_format: str) -> str:
    """The table as text; in CSV one table (its ``role`` column tells seed-noise reruns apart), otherwise the ranked
    runs, then the seed-noise reruns under a heading of their own."""
    if table.empty:
        return "no runs match"
    if output_format == "csv":
        return table.to_csv(index=False)
    if output_format == "markdown":
        from cnnlab.tuning.study import markdown as text
    else:

        def text(part: pd.DataFrame) -> str:
            return part.to_string(index=False, float_format=lambda v: f"{v:.4f}")

    noise = table["role"] == "noise" if "role" in table else pd.Series(False, index=table.index)
    parts = [text(table[~noise])] if (~noise).any() else ["no ranked runs match"]
    if noise.any():
        parts.append(f"seed-noise reruns (trials retrained on other seeds; not ranked):\n{text(table[noise])}")
    return "\n\n".join(parts)


def plot_path(cfg: Any) -> str:
    """Where the plot goes: ``plot_path``, else ``compare.png`` in the command's Hydra output folder (under the
    git-ignored outputs/), never the folder the command was run from."""
    if cfg.plot_path:
        return cfg.plot_path
    from hydra.core.hydra_config import HydraConfig

    return os.path.join(HydraConfig.get().runtime.output_dir, "compare.png")


def plot(table: pd.DataFrame, x: str, y: str, path: str) -> str:
    """Saves ``y`` against ``x`` (log scale when x spans more than two decades) as a PNG at ``path``."""
    from pathlib import Path

    from cnnlab import plots

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if "role" in table:  # a seed-noise rerun is a trial again, not a point of its own
        table = table[table["role"] != "noise"]
    data = table[[x, y]].dropna()
    figure, axis = plots.plt.subplots(figsize=(6, 4))
    numeric = pd.api.types.is_numeric_dtype(data[x])
    axis.scatter(data[x] if numeric else data[x].astype(str), data[y])
    if numeric and (data[x] > 0).all() and data[x].max() / max(data[x].min(), 1e-300) > 100:
        axis.set_xscale("log")
    axis.set_xlabel(x)
    axis.set_ylabel(y)
    axis.set_title(f"{y} against {x} ({len(data)} runs)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plots.plt.close(figure)
    return path
