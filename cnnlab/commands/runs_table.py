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
    experiments = {e.experiment_id: e.name for e in mlflow.search_experiments()}
    table = pd.DataFrame(
        {
            "run": runs.get("tags.mlflow.runName"),
            "experiment": runs["experiment_id"].map(experiments),
            "status": runs["status"],
        }
    )
    for param in cfg.params:
        column = runs.get(f"params.{param}")
        table[param] = _numeric_if_possible(column) if column is not None else None
    for metric in cfg.metrics:
        table[metric] = runs.get(f"metrics.{metric}")
    table["run_id"] = runs["run_id"]
    if cfg.sort_by in table:
        table = table.sort_values(cfg.sort_by, ascending=cfg.ascending, na_position="last")
    return table.head(cfg.limit).reset_index(drop=True)


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    """MLflow stores params as strings; numbers become numbers so they sort and plot as numbers."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().sum() == column.notna().sum() else column


def render(table: pd.DataFrame, output_format: str) -> str:
    if table.empty:
        return "no runs match"
    if output_format == "csv":
        return table.to_csv(index=False)
    if output_format == "markdown":
        from cnnlab.tuning.study import markdown

        return markdown(table)
    return table.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def plot(table: pd.DataFrame, x: str, y: str, path: str) -> str:
    """Saves ``y`` against ``x`` (log scale when x spans more than two decades) as a PNG."""
    from cnnlab import plots

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
