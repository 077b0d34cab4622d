"""A study: its folder under sweeps/, its MLflow parent run, its progress lines and its closing report."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from cnnlab import plots
from cnnlab.config.blocks import FIELD_DEFAULTS
from cnnlab.config.compose import compose_run_config
from cnnlab.config.schema import option, without_dataset_description
from cnnlab.errors import ConfigError
from cnnlab.tracking.provenance import git_state
from cnnlab.tracking.runs import mark_killed, process_tags
from cnnlab.tracking.store import configure
from cnnlab.tuning.pruning import PRUNED_TAG

log = logging.getLogger(__name__)

STATE_FILE = "cnnlab_study.json"
COST_COLUMNS = ("num_params", "seconds_per_epoch")  # what a trial cost, from its MLflow run
INACTIVE = -0.12  # where parallel_coordinates draws a conditional hyperparameter that did not apply


def trial_number(trial_id: str) -> int:
    """The number keras-tuner's console gives the trial ("Search: Running Trial #N", "Trial N Complete"): its id + 1.

    keras-tuner keys a trial by a 0-based id (its state folder ``trial_<id>``) and numbers it from 1 on the console;
    cnnlab names, prints and tags the console's number so a trial reads the same everywhere. The id stays the key
    (tags ``cnnlab.trial_id``, ``cnnlab.noise_of``, ``cnnlab.finalist_of``) by which a resumed study finds its runs.
    """
    return int(trial_id) + 1


def study_fingerprint(cfg: Any) -> str:
    """What must not change for a study to be resumed: everything but the budget, tracking, the overwrite flag and
    what only acts before the first trial or after the last (warm start, finalists, seed-noise retraining).

    Pruning settings count only when pruning is on, so that studies started before pruning existed still resume.
    """
    container = without_dataset_description(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    for key in ("max_trials", "overwrite", "finalists", "warm_start", "noise_seeds"):
        container["sweep"].pop(key, None)
    if container["sweep"].get("pruning") == "none":
        for key in [key for key in container["sweep"] if key.startswith("pruning")]:
            container["sweep"].pop(key)
    container.pop("tracking", None)
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Study:
    name: str
    folder: Path
    experiment_id: str
    parent_run_id: str
    command: str
    objective: str
    direction: str
    budget: int | None
    resumed: bool

    @classmethod
    def open(cls, cfg: Any, command: str, attach_only: bool = False, mark_stale: bool = True) -> Study:
        """Reattaches the study's parent run when its folder exists, else starts it (``sweep.overwrite`` restarts).

        ``attach_only``: a distributed worker joining the study its launcher opened; it changes nothing.
        ``mark_stale``: trial runs left RUNNING are ended KILLED on resume (not by a chief: workers may be mid-trial).
        """
        folder = Path(cfg.sweep.directory) / cfg.sweep.name
        state_path = folder / STATE_FILE
        experiment_name = f"cnnlab-sweep-{cfg.sweep.name}"
        cfg_tracking = OmegaConf.merge(cfg.tracking, {"experiment": experiment_name})
        experiment_id = configure(cfg_tracking)
        if cfg.sweep.overwrite and folder.exists():
            log.warning("sweep.overwrite=true: discarding the study state in %s", folder)
            shutil.rmtree(folder)
        fingerprint = study_fingerprint(cfg)
        tuner = option(cfg.tuner.name)
        budget = None if tuner == "hyperband" else cfg.sweep.max_trials
        common = dict(
            name=cfg.sweep.name,
            folder=folder,
            experiment_id=experiment_id,
            command=command,
            objective=cfg.sweep.objective,
            direction=option(cfg.sweep.direction),
            budget=budget,
        )
        if attach_only:
            state = read_state(state_path)
            return cls(parent_run_id=state["parent_run_id"], resumed=True, **common)
        if state_path.exists():
            state = read_state(state_path)
            if state.get("fingerprint") != fingerprint:
                raise ConfigError(
                    f"study {cfg.sweep.name!r} in {folder} was started with a different space, tuner or protocol. "
                    "Resume it with the same settings, pick a new sweep.name, or start over with sweep.overwrite=true."
                )
            check_tuner_state(folder, state["parent_run_id"])
            study = cls(parent_run_id=state["parent_run_id"], resumed=True, **common)
            if mark_stale:
                study.mark_stale_trials_killed()
            return study
        tags = {
            "cnnlab.study": cfg.sweep.name,
            "cnnlab.tuner": tuner,
            "dataset": cfg.dataset.name,
            **git_state(),
        }
        description = (
            f"Study {cfg.sweep.name!r}: {tuner} search, objective {cfg.sweep.objective}.\n\nRerun: `{command}`"
        )
        run = MlflowClient().create_run(
            experiment_id, run_name=f"study-{cfg.sweep.name}", tags={**tags, **process_tags()}
        )
        MlflowClient().set_tag(run.info.run_id, "mlflow.note.content", description)
        folder.mkdir(parents=True, exist_ok=True)
        write_state(state_path, {"parent_run_id": run.info.run_id, "fingerprint": fingerprint})
        return cls(parent_run_id=run.info.run_id, resumed=False, **common)

    def mark_stale_trials_killed(self) -> None:
        """Child runs left RUNNING by a killed process end KILLED; keras-tuner reruns their trials."""
        mark_killed(
            MlflowClient(),
            [self.experiment_id],
            f"tags.mlflow.parentRunId = '{self.parent_run_id}'",
            "process died mid-trial; the trial is run again",
        )

    def finished_runs(self) -> list[Any]:
        """The study's FINISHED child runs: trials (tag ``cnnlab.trial_id``), retrained trials, finalists."""
        return MlflowClient().search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}' and attributes.status = 'FINISHED'",
            max_results=5000,
        )

    def report_progress(self, oracle: Any, trial: Any, pruned: str | None = None) -> None:
        trials = getattr(oracle, "trials", None)  # a distributed worker's oracle client only answers RPCs
        if trials is not None:
            done = sum(1 for t in trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID"))
        else:
            done = None
        total = self.budget if self.budget is not None else "?"
        best = oracle.get_best_trials(1)
        scored = best and best[0].score is not None
        best_text = f"{best[0].score:.4f} (trial {trial_number(best[0].trial_id)})" if scored else "-"
        unscored = "n/a" if trials is not None else "scored by the chief"
        score = f"{trial.score:.4f}" if trial.score is not None else unscored
        # 6 significant digits: a stepped float reads 0.3, not keras-tuner's 0.30000000000000004
        values = {
            k: float(f"{v:.6g}") if isinstance(v, float) else v
            for k, v in trial.hyperparameters.values.items()
            if not k.startswith("tuner/")
        }
        progress = f"{done}/{total} done" if done is not None else f"budget {total}"
        print(
            f"[study {self.name}] trial {trial_number(trial.trial_id)} {'pruned' if pruned else trial.status.lower()} "
            f"({progress}): {self.objective}={score} "
            f"| best so far {best_text} | {values}" + (f"\n  {pruned}" if pruned else ""),
            flush=True,
        )
        if best and best[0].score is not None:
            # The study's row in the UI's run list carries its best objective while the study runs.
            import mlflow

            mlflow.MlflowClient().log_metric(
                self.parent_run_id, f"best_{self.objective}", float(best[0].score), step=done or 0
            )


def read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"study state {path} is unreadable ({error}). Delete it to start a new parent run, "
            "or rerun with sweep.overwrite=true to start the study over."
        ) from error


def check_tuner_state(folder: Path, parent_run_id: str) -> None:
    """keras-tuner reloads its JSON state on resume; a broken file is named here instead of a raw traceback."""
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("trial_*/trial.json")):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"{path} is truncated or corrupt ({error}); keras-tuner cannot resume study {folder.name!r} from it. "
                f"Finished trials are safe in MLflow (parent run {parent_run_id}). Restore the file from a backup, or "
                "rerun with sweep.overwrite=true to start the study over (its MLflow runs are kept)."
            ) from error


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomic: a kill mid-write leaves the old file, never half a file."""
    temporary = path.with_suffix(".json.part")
    temporary.write_text(json.dumps(state, indent=2))
    os.replace(temporary, path)


def trials_table(oracle: Any, study: Study) -> pd.DataFrame:
    """One row per trial: its number (:func:`trial_number`), status, score, hyperparameters, and its MLflow run; best
    first, NaN scores last."""
    finished = {
        run.data.tags["cnnlab.trial_id"]: run for run in study.finished_runs() if "cnnlab.trial_id" in run.data.tags
    }
    rows = []
    for trial in oracle.trials.values():
        score = trial.score if trial.score is not None and math.isfinite(trial.score) else None
        run = finished.get(trial.trial_id)
        metrics = run.data.metrics if run is not None else {}
        pruned = run is not None and PRUNED_TAG in run.data.tags
        row = {
            "trial": trial_number(trial.trial_id),
            "status": "PRUNED" if pruned else trial.status,
            study.objective: score,
            "run_id": run.info.run_id if run is not None else None,
            **{column: metrics.get(column) for column in COST_COLUMNS},
        }
        row.update({k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")})
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    ascending = study.direction == "min"
    return table.sort_values(study.objective, ascending=ascending, na_position="last").reset_index(drop=True)


def parallel_coordinates(table: pd.DataFrame, objective: str, title: str) -> Any:
    """One line per finished trial across every hyperparameter axis, coloured by its score."""
    finished = table.dropna(subset=[objective])
    hp_columns = [c for c in finished.columns if c not in ("trial", "status", "run_id", objective, *COST_COLUMNS)]
    columns = [*hp_columns, objective]
    figure, axis = plots.plt.subplots(figsize=(max(6, 1.6 * len(columns)), 4.5))
    if finished.empty:
        axis.text(0.5, 0.5, "no finished trials", ha="center")
        return figure
    scaled, labels = {}, {}
    for column in columns:
        values = finished[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numeric = values.astype(float)
            low, high = numeric.min(), numeric.max()
            # Log-sampled hyperparameters (learning rates) read best on a log axis.
            logarithmic = low > 0 and high / low > 100
            shown = np.log10(numeric) if logarithmic else numeric
            span = shown.max() - shown.min()
            scaled[column] = (shown - shown.min()) / span if span > 0 else shown * 0 + 0.5
            labels[column] = (f"{low:.3g}", f"{high:.3g}" + (" (log)" if logarithmic else ""))
        else:
            categories = sorted(values.dropna().astype(str).unique())
            codes = values.map(lambda v, c=categories: np.nan if pd.isna(v) else c.index(str(v)))
            scaled[column] = codes / max(len(categories) - 1, 1)
            labels[column] = (categories[0], categories[-1]) if categories else ("", "")
        # A conditional hyperparameter that did not apply to a trial sits below its axis instead of breaking the line.
        scaled[column] = scaled[column].fillna(INACTIVE)
    scores = finished[objective].astype(float)
    colour = plots.plt.cm.viridis((scores - scores.min()) / max(scores.max() - scores.min(), 1e-12))
    for row in range(len(finished)):
        axis.plot(range(len(columns)), [scaled[c].iloc[row] for c in columns], color=colour[row], alpha=0.8)
    axis.set_xticks(
        range(len(columns)), [c.replace("model.blocks.", "blocks.") for c in columns], rotation=25, ha="right"
    )
    for index, column in enumerate(columns):
        axis.axvline(index, color="grey", lw=0.5)
        axis.text(index, -0.04, labels[column][0], ha="center", va="top", fontsize=7)
        axis.text(index, 1.04, labels[column][1], ha="center", fontsize=7)
    if any((scaled[c] == INACTIVE).any() for c in columns):
        axis.axhline(INACTIVE, color="grey", lw=0.5, ls=":")
        axis.text(-0.45, INACTIVE, "n/a", va="center", fontsize=7, color="grey")
    axis.set_yticks([])
    axis.set_ylim(-0.2, 1.1)
    axis.set_title(title)
    figure.tight_layout()
    return figure


def export_best(cfg: Any, table: pd.DataFrame, study: Study, best_cfg: Any) -> Path:
    """Writes the best trial as a delta, ``sweeps/<study>/experiment/best.yaml``, that a run retrains.

    The delta is what Hydra needs to compose that trial from ``conf/``: the ``override /group: option`` lines and
    every run key whose value differs from that composition (the searched keys, and whatever the study fixed). YAML
    cannot set one element of a list, so a differing block field brings the whole ``model.blocks`` list. Retrain it
    with ``cnnlab run --config-dir sweeps/<study> experiment=best`` (Hydra adds the folder to its search
    path, so ``experiment=best`` finds the file); nothing generated lands in ``conf/``.
    """
    from cnnlab.config.domains import leaves

    best = table.dropna(subset=[study.objective]).iloc[0]
    choices = {"dataset": cfg.dataset.name, "model": cfg.model.name, "optimizer": option(best_cfg.optimizer.name)}
    base = compose_run_config([f"{group}={choice}" for group, choice in choices.items()])
    trial = {key: value for key, value in leaves(best_cfg).items() if key.split(".")[0] in RUN_SECTIONS}
    composed = leaves(base)
    changed = sorted(key for key, value in trial.items() if composed.get(key) != value)
    resolved = OmegaConf.to_container(best_cfg, resolve=True, enum_to_str=True)
    delta = OmegaConf.create()
    for key in changed:
        parts = key.split(".")
        listed = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        path = parts[:listed] if listed is not None else parts
        value = resolved
        for part in path:
            value = value[part]
        if path == ["model", "blocks"]:
            value = [_set_fields(block) for block in value]
        OmegaConf.update(delta, ".".join(path), value, force_add=True)
    folder = (Path(cfg.sweep.export_dir) if cfg.sweep.export_dir else study.folder) / "experiment"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "best.yaml"
    config_dir = folder.parent
    header = (
        "# @package _global_\n"
        f"# Best trial of study {study.name!r}: trial {best['trial']}, {study.objective}={best[study.objective]:.4f}, "
        f"MLflow run {best['run_id']}.\n"
        f"# Exported by `{study.command}`. Retrain it: cnnlab run --config-dir {config_dir} experiment=best\n"
        "defaults:\n" + "".join(f"  - override /{group}: {choice}\n" for group, choice in choices.items())
    )
    body = OmegaConf.to_yaml(delta) if changed else ""
    path.write_text(header + ("\n" + body if body else ""))
    return path


def _set_fields(block: dict) -> dict:
    """A block's fields less those at the schema's default (null, strides 1, ...), which composing puts back: a pool
    block reads ``{type: pool, name: pool1}``, not eight fields it has no use for."""
    return {key: value for key, value in block.items() if value is not None and value != FIELD_DEFAULTS.get(key)}


# The sections of a run's config that decide how it trains (tracking and the study's own settings do not).
RUN_SECTIONS = ("seed", "dataset", "model", "optimizer", "trainer")


def markdown(table: pd.DataFrame) -> str:
    shown = table.copy()
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return ""
        return f"{value:.4g}" if isinstance(value, float | np.floating) else str(value)

    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
