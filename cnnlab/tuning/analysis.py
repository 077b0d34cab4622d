"""What a study's trials say: which hyperparameters mattered above seed noise, and the plots people look at.

The trials are mirrored into an in-memory Optuna study, so that Optuna's own analysis applies to a keras-tuner
study: its fANOVA importance evaluator (Hutter et al. 2014, over a random forest fitted to the trials) and its
matplotlib plots (optimisation history, slice).

fANOVA attributes a share of the fitted objective's variance to each hyperparameter, and it always attributes
some: a forest fitted to pure noise still splits on every input (optuna#4985). So each share is set beside a noise
floor measured for this study: the objective's seed-to-seed spread is measured by retraining trials on extra seeds
(``sweep.noise_seeds``), 39 pure-noise objectives with that spread are drawn at the study's own hyperparameter
values, and each hyperparameter's floor is the second largest variance fANOVA attributes to it in those draws. That
is a Monte-Carlo test at exactly the 5% level (p = (1 + draws at or above) / 40): a hyperparameter is *above noise*
when seed noise alone, at the measured spread, would attribute as much to it with at most 5% probability, and
*indistinguishable from noise* otherwise. The level holds given the spread; the spread itself is estimated from a
few seeds, which the report states beside it.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cnnlab import plots
from cnnlab.config.schema import option

# Optuna's slice plot draws choice values (filters 32, 64) as categories, and matplotlib says so at INFO for every
# axis of every refresh: two dozen lines in a three-trial study under Hydra's INFO logging, none a user can act on.
logging.getLogger("matplotlib.category").setLevel(logging.WARNING)

NULL_DRAWS = 39  # pure-noise studies per floor: with 39, "above all but one draw" is a test at exactly 5%
LEVEL = 0.05
MIN_TRIALS_FOR_IMPORTANCE = 5  # below this a forest over the trials says nothing
COLUMNS = ["hyperparameter", "share", "noise_floor", "verdict"]


@dataclass
class SeedNoise:
    """The objective's run-to-run spread from retrained trials: pooled within-trial standard deviation."""

    sd: float
    dof: int  # sum over retrained trials of (runs - 1)
    runs: dict[str, list[float]]  # trial id -> the objective of its original run and of each extra seed


def seed_noise(runs: dict[str, list[float]]) -> SeedNoise | None:
    """Pooled standard deviation over trials trained on several seeds; None without any repeated trial."""
    squares, dof = 0.0, 0
    for values in runs.values():
        if len(values) >= 2:
            squares += float(np.sum((np.asarray(values) - np.mean(values)) ** 2))
            dof += len(values) - 1
    if dof == 0:
        return None
    return SeedNoise(sd=math.sqrt(squares / dof), dof=dof, runs=runs)


def distributions(space: Any) -> dict[str, Any]:
    """Optuna's distribution for each searched key of ``sweep.space``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    result = {}
    for param in space:
        kind = option(param.type)
        log = option(param.sampling) == "log"
        if kind == "choice":
            result[param.key] = CategoricalDistribution(list(param["values"]))
        elif kind == "boolean":
            result[param.key] = CategoricalDistribution([False, True])
        elif kind == "int":
            step = int(param.step) if param.step is not None and not log else 1
            result[param.key] = IntDistribution(int(param.min), int(param.max), log=log, step=step)
        else:
            step = float(param.step) if param.step is not None and not log else None
            result[param.key] = FloatDistribution(float(param.min), float(param.max), log=log, step=step)
    return result


def mirror(table: pd.DataFrame, space: Any, objective: str, maximize: bool) -> Any:
    """An in-memory Optuna study holding the table's trials: finished ones COMPLETE, pruned ones PRUNED."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spaces = distributions(space)
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    for row in table.to_dict("records"):
        value = row.get(objective)
        finished = value is not None and not pd.isna(value)
        state = {"COMPLETED": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED}.get(row.get("status"))
        if state is None or (state == TrialState.COMPLETE and not finished):
            continue
        params, used = {}, {}
        for key, distribution in spaces.items():
            chosen = row.get(key)
            if chosen is None or (isinstance(chosen, float) and math.isnan(chosen)):
                continue  # a conditional hyperparameter that did not apply
            if hasattr(distribution, "choices"):
                chosen = next(c for c in distribution.choices if c == chosen or str(c) == str(chosen))
            elif isinstance(distribution.low, int):
                chosen = int(chosen)
            else:
                chosen = float(chosen)
            params[key], used[key] = chosen, distribution
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # create_trial is marked experimental
            study.add_trial(
                create_trial(
                    params=params,
                    distributions=used,
                    value=float(value) if state == TrialState.COMPLETE else None,
                    state=state,
                    user_attrs={"trial": str(row.get("trial"))},
                )
            )
    return study


def _variance_by_parameter(study: Any, params: list[str], seed: int, n_trees: int) -> dict[str, float]:
    """fANOVA's share of each parameter times the variance of the objective: variance in the objective's units."""
    import optuna

    values = np.array([t.value for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # normalize=False is marked experimental
        shares = optuna.importance.get_param_importances(
            study,
            evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=n_trees, seed=seed),
            params=params,
            normalize=False,
        )
    total = float(np.var(values, ddof=1))
    return {name: float(share) * total for name, share in shares.items()}


def monte_carlo_floor(null: list[float], level: float = LEVEL) -> float:
    """The value an observation must exceed for the Monte-Carlo p-value (1 + #null >= it) / (draws + 1) <= level."""
    allowed_at_or_above = math.floor(level * (len(null) + 1)) - 1
    if allowed_at_or_above < 0:
        raise ValueError(
            f"{len(null)} draws cannot give a test at level {level}: use at least {math.ceil(1 / level) - 1}"
        )
    return float(sorted(null, reverse=True)[allowed_at_or_above])


def _with_values(study: Any, values: np.ndarray) -> Any:
    """A copy of ``study``'s complete trials (same hyperparameters) with other objective values."""
    import optuna
    from optuna.trial import TrialState, create_trial

    copy = optuna.create_study(direction=study.direction)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for trial, value in zip(complete, values, strict=True):
            copy.add_trial(create_trial(params=trial.params, distributions=trial.distributions, value=float(value)))
    return copy


def importance_skipped(finished: int) -> str:
    """The line a study prints when it has no importance table: why, and what would give one."""
    if finished < MIN_TRIALS_FOR_IMPORTANCE:
        return (
            f"importance skipped: {finished} finished trial(s), and a forest over fewer than "
            f"{MIN_TRIALS_FOR_IMPORTANCE} says nothing (no seed-noise reruns spent either); raise sweep.max_trials"
        )
    return "importance skipped: no searched hyperparameter varied across the trials, or every trial scored the same"


def importance(
    study: Any, noise_sd: float | None, *, draws: int = NULL_DRAWS, seed: int = 0, n_trees: int = 64
) -> pd.DataFrame:
    """Each hyperparameter's share of the objective's variance beside its pure-noise floor, largest share first.

    Columns: ``hyperparameter``, ``share`` (fANOVA), ``noise_floor`` (the share a test at 5% requires, given seed
    noise of sd ``noise_sd`` at these hyperparameter values; NaN without a noise measurement) and ``verdict``.
    Only hyperparameters every complete trial has are ranked (fANOVA needs them all; a conditional one is left out).
    """
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return pd.DataFrame(columns=COLUMNS)
    params = sorted(set.intersection(*(set(t.params) for t in complete)))
    varying = [p for p in params if len({str(t.params[p]) for t in complete}) > 1]
    if not varying:
        return pd.DataFrame(columns=COLUMNS)
    values = np.array([t.value for t in complete])
    total = float(np.var(values, ddof=1))
    if np.ptp(values) <= 1e-12:  # every trial scored the same: there is no variance to attribute
        return pd.DataFrame(columns=COLUMNS)
    observed = _variance_by_parameter(study, varying, seed, n_trees)
    floors: dict[str, float] = {}
    if noise_sd is not None and noise_sd > 0:
        rng = np.random.default_rng(seed)
        null: dict[str, list[float]] = {p: [] for p in varying}
        for draw in range(draws):
            noise = rng.normal(0.0, noise_sd, size=len(values))
            attributed = _variance_by_parameter(_with_values(study, noise), varying, seed + draw, n_trees)
            for name, variance in attributed.items():
                null[name].append(variance)
        floors = {name: monte_carlo_floor(variances) for name, variances in null.items()}
    rows = []
    for name in varying:
        share = observed[name] / total
        floor = floors[name] / total if name in floors else float("nan")
        if math.isnan(floor):
            verdict = "no noise measurement"
        elif share > floor:
            verdict = "above noise"
        else:
            verdict = "indistinguishable from noise"
        rows.append({"hyperparameter": name, "share": share, "noise_floor": floor, "verdict": verdict})
    return pd.DataFrame(rows).sort_values("share", ascending=False).reset_index(drop=True)


# --- plots, refreshed on the study's parent run as trials end (tuners.PLOT_REFRESH_S) -----------------------


def history_figure(study: Any, title: str) -> Any:
    from optuna.visualization.matplotlib import plot_optimization_history

    with plots.plt.style.context("default"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are marked experimental
        axis = plot_optimization_history(study)
    axis.set_title(title)
    axis.figure.tight_layout()
    return axis.figure


def slice_figure(study: Any, title: str) -> Any:
    from optuna.visualization.matplotlib import plot_slice

    with plots.plt.style.context("default"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = plot_slice(study)
    figure = np.ravel(axes)[0].figure
    figure.suptitle(title)  # no tight_layout: Optuna's colour bar axes refuse it
    return figure


def importance_figure(table: pd.DataFrame, title: str) -> Any:
    """Horizontal bars of each hyperparameter's share, its noise floor marked; bars under the floor grey."""
    shown = table.iloc[::-1]
    figure, axis = plots.plt.subplots(figsize=(7, 0.5 * len(shown) + 1.5))
    colours = ["tab:grey" if verdict == "indistinguishable from noise" else "tab:blue" for verdict in shown["verdict"]]
    axis.barh(shown["hyperparameter"], shown["share"], color=colours)
    if shown["noise_floor"].notna().any():
        axis.scatter(shown["noise_floor"], shown["hyperparameter"], marker="|", s=400, color="tab:red", zorder=3)
        axis.plot([], [], "|", color="tab:red", markersize=15, label="noise floor (5% test against seed noise)")
        axis.legend(loc="lower right", fontsize=8)
    axis.set_xlabel("share of the objective's variance (fANOVA)")
    axis.set_title(title)
    figure.tight_layout()
    return figure


def pareto_front(costs: np.ndarray, scores: np.ndarray, maximize: bool) -> np.ndarray:
    """Indices of the points no other point beats on both cost (lower) and score, cheapest first."""
    order = np.lexsort((-scores if maximize else scores, costs))
    front, best = [], None
    for index in order:
        score = scores[index]
        if best is None or (score > best if maximize else score < best):
            front.append(index)
            best = score
    return np.array(front, dtype=int)


def pareto_figure(table: pd.DataFrame, objective: str, maximize: bool, title: str) -> Any:
    """The objective against each cost (parameters, seconds per epoch), the Pareto front joined."""
    figure, axes = plots.plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    finished = table[table["status"] == "COMPLETED"].dropna(subset=[objective])
    for axis, cost, label in (
        (axes[0], "num_params", "parameters"),
        (axes[1], "seconds_per_epoch", "seconds per epoch"),
    ):
        points = finished.dropna(subset=[cost]) if cost in finished else finished.iloc[0:0]
        if points.empty:
            axis.text(0.5, 0.5, f"no {label} logged yet", ha="center", transform=axis.transAxes)
            continue
        costs, scores = points[cost].to_numpy(float), points[objective].to_numpy(float)
        axis.scatter(costs, scores, color="tab:grey", alpha=0.6, label="trial")
        front = pareto_front(costs, scores, maximize)
        axis.plot(costs[front], scores[front], "o-", color="tab:blue", label="Pareto front")
        for index in front:
            axis.annotate(str(points["trial"].iloc[index]), (costs[index], scores[index]), fontsize=7)
        axis.set_xlabel(label)
        if cost == "num_params":
            axis.set_xscale("log")
    axes[0].set_ylabel(objective)
    if axes[0].get_legend_handles_labels()[0]:  # a study whose trials all failed has nothing to label
        axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def refresh(study: Any, table: pd.DataFrame, space: Any, noise_sd: float | None = None) -> pd.DataFrame:
    """Redraws ``study``'s plots on its parent run; returns the importance table (empty while too few trials)."""
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    client = MlflowClient()
    objective, maximize, name = study.objective, study.direction == "max", study.name
    mirrored = mirror(table, space, objective, maximize)
    figures = {"plots/pareto_front.png": pareto_figure(table, objective, maximize, f"study {name}: accuracy vs cost")}
    if mirrored.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        figures["plots/optimization_history.png"] = history_figure(mirrored, f"study {name}: {objective} by trial")
        figures["plots/slice.png"] = slice_figure(mirrored, f"study {name}: {objective} against each hyperparameter")
    table_of_importance = importance(mirrored, noise_sd)
    if not table_of_importance.empty:
        floor = "with its seed-noise floor" if noise_sd else "(noise floor measured when the study ends)"
        figures["plots/importance.png"] = importance_figure(table_of_importance, f"study {name}: importance\n{floor}")
    for path, figure in figures.items():
        client.log_figure(study.parent_run_id, figure, path)
        plots.plt.close(figure)
    return table_of_importance
