"""run_study(cfg): a whole study: validate the space, search with keras-tuner, report, export, finalists."""

from __future__ import annotations

import logging
import time
from typing import Any

from omegaconf import OmegaConf

from cnnlab.allocator import pin_mmap_threshold
from cnnlab.config.validation import validate
from cnnlab.tuning.space import check_space

log = logging.getLogger(__name__)


def run_study(cfg: Any, overrides: list[str] | None = None) -> dict[str, Any]:
    """Runs (or resumes) the study ``cfg.sweep.name``; returns the best trial and where everything went.

    With ``distributed.workers=N`` this process launches a chief and N workers (keras-tuner's own distributed mode)
    and reports when they are done; a process started with ``KERASTUNER_TUNER_ID`` set is one of them.
    """
    validate(cfg)
    check_space(cfg)
    started = time.perf_counter()
    pin_mmap_threshold()  # a study trains many differently shaped models in this one process

    from cnnlab import train
    from cnnlab.tracking import provenance, records, runs
    from cnnlab.tuning import distributed
    from cnnlab.tuning import role as roles
    from cnnlab.tuning import study as studies
    from cnnlab.tuning.tuners import make_tuner

    overrides = list(overrides or [])
    command = provenance.rerun_command("cnnlab.sweep", overrides)
    role = roles.role()
    if role is not None and (role != "chief" or roles.launched()):
        return distributed.run_role(cfg, command, role)
    if role == "chief":  # started by hand, as on several hosts: the chief opens, serves and reports the study
        distributed.set_threads()
    # A chief must not end the workers' running trials: only a process that runs trials itself judges its own.
    study = studies.Study.open(cfg, command, mark_stale=role is None)
    data = train.prepare_data(cfg)
    tuner = make_tuner(cfg, data, study)
    finished_before = sum(1 for t in tuner.oracle.trials.values() if t.status == "COMPLETED")
    budget = study.budget if study.budget is not None else "hyperband brackets"
    print(
        f"[study {study.name}] {'resuming' if study.resumed else 'starting'}: {cfg.tuner.name.value} search, "
        f"budget {budget} trials, {finished_before} finished before; state in {study.folder}; "
        f"parent MLflow run {study.parent_run_id}"
        + (f"; {cfg.distributed.workers} workers" if cfg.distributed.workers else ""),
        flush=True,
    )
    with runs.tracked_run(study.experiment_id, "", {"cnnlab.study": study.name}, "", run_id=study.parent_run_id):
        if not study.resumed:
            import mlflow

            mlflow.log_params(
                {f"sweep.{k}": v for k, v in records.flatten(cfg.sweep).items() if not k.startswith("space")}
            )
            mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "study_config.yaml")
        if cfg.distributed.workers:
            distributed.launch(cfg, overrides, study)
            tuner = make_tuner(cfg, data, study)  # reloads the oracle the chief saved
        else:
            tuner.search(verbose=1)  # a chief serves the oracle here until every worker is done
        if role == "chief":
            print(f"[study {study.name}] every worker is done; reporting", flush=True)
        summary = report(cfg, tuner, study, data)
        summary["finished_before"] = finished_before
        summary["minutes"] = (time.perf_counter() - started) / 60
        return summary


def report(cfg: Any, tuner: Any, study: Any, data: Any) -> dict[str, Any]:
    """The parent run's artifacts: trials table, parallel coordinates, the exported best config, finalists."""
    import mlflow

    from cnnlab.tracking import records
    from cnnlab.tuning import analysis
    from cnnlab.tuning import study as studies

    table = studies.trials_table(tuner.oracle, study)
    mlflow.log_text(table.to_csv(index=False), "best_trials.csv")
    mlflow.log_text(studies.markdown(table), "best_trials.md")
    figure = studies.parallel_coordinates(table, study.objective, f"study {study.name}: {study.objective}")
    records.log_figures([("parallel_coordinates", figure)])
    summary: dict[str, Any] = {"study": study, "table": table}
    noise = measure_seed_noise(cfg, tuner, study, table)
    importance = analysis.refresh(study, table, cfg.sweep.space, noise_sd=noise.sd if noise else None)
    if not importance.empty:
        mlflow.log_text(importance.to_csv(index=False), "importance.csv")
        mlflow.log_text(importance_text(importance, noise, table, study.objective), "importance.md")
    summary.update(noise=noise, importance=importance)
    best_trials = tuner.oracle.get_best_trials(1)
    if best_trials and best_trials[0].score is not None:
        best_cfg = tuner.hypermodel.trial_config(best_trials[0].hyperparameters)
        exported = studies.export_best(cfg, table, study, best_cfg)
        mlflow.log_artifact(str(exported))
        mlflow.log_metric(f"best_{study.objective}", float(best_trials[0].score))
        summary.update(
            best_trial=studies.trial_number(best_trials[0].trial_id),
            best_score=best_trials[0].score,
            exported=exported,
            best_config=best_cfg,
        )
        if cfg.sweep.finalists.top_k > 0:
            summary["finalists"] = run_finalists(cfg, tuner, study, data)
    return summary


def measure_seed_noise(cfg: Any, tuner: Any, study: Any, table: Any) -> Any:
    """Retrains the best and the median finished trial on ``sweep.noise_seeds`` extra seeds (kept in MLflow, so a
    resumed study retrains only what is missing) and pools their spread: the objective's seed noise."""
    from cnnlab.tuning import analysis
    from cnnlab.tuning import study as studies

    finished = table[table["status"] == "COMPLETED"].dropna(subset=[study.objective])
    # the noise floor serves importance only: too few trials for importance, no reruns spent on a floor
    if cfg.sweep.noise_seeds == 0 or len(finished) < analysis.MIN_TRIALS_FOR_IMPORTANCE:
        return None
    numbers = list(dict.fromkeys([finished["trial"].iloc[0], finished["trial"].iloc[len(finished) // 2]]))
    by_number = {studies.trial_number(trial.trial_id): trial for trial in tuner.oracle.trials.values()}
    score = f"best_{study.objective}"
    done = {
        (run.data.tags["cnnlab.noise_of"], run.data.tags["cnnlab.seed"]): run.data.metrics.get(score)
        for run in study.finished_runs()
        if "cnnlab.noise_of" in run.data.tags
    }
    values: dict[str, list[float]] = {}
    for number in numbers:
        trial = by_number[number]
        values[str(number)] = [float(trial.score)]
        for seed in range(cfg.seed + 1, cfg.seed + 1 + cfg.sweep.noise_seeds):
            value = done.get((trial.trial_id, str(seed)))
            if value is None:
                print(f"[study {study.name}] seed noise: trial {number} again on seed {seed}", flush=True)
                value = tuner.retrain(trial, seed)
            if value is not None:
                values[str(number)].append(float(value))
    noise = analysis.seed_noise(values)
    if noise is not None:
        import mlflow

        mlflow.log_metrics({f"seed_noise_sd_{study.objective}": noise.sd, "seed_noise_dof": noise.dof})
    return noise


def importance_text(importance: Any, noise: Any, table: Any, objective: str) -> str:
    """The importance table in Markdown, with what its noise floor rests on."""
    from cnnlab.tuning.study import markdown

    scores = table[table["status"] == "COMPLETED"][objective].dropna()
    lines = [
        f"Importance of each hyperparameter to {objective} (fANOVA over {len(scores)} finished trials; "
        f"spread of {objective} across trials: sd {scores.std():.4f}).",
    ]
    if noise is not None:
        repeated = ", ".join(
            f"trial {trial}: {', '.join(f'{v:.4f}' for v in values)}" for trial, values in noise.runs.items()
        )
        lines.append(
            f"Seed noise: sd {noise.sd:.4f} ({noise.dof} degrees of freedom; {repeated}); seed noise alone is "
            f"{min(1.0, noise.sd**2 / scores.var()):.0%} of the spread across trials."
        )
    shown = importance.assign(
        share=importance["share"].map(lambda v: f"{v:.1%}"),
        noise_floor=importance["noise_floor"].map(lambda v: "" if v != v else f"{v:.1%}"),
    )
    return "\n\n".join([*lines, markdown(shown)]) + "\n"


def run_finalists(cfg: Any, tuner: Any, study: Any, data: Any) -> Any:
    """Retrains the top-k configurations over several seeds, evaluating the test set, ranked by mean and lower bound."""
    import mlflow
    import pandas as pd

    from cnnlab import train
    from cnnlab.claims.stats import t_interval
    from cnnlab.tuning.study import trial_number

    rows = []
    for rank, trial in enumerate(tuner.oracle.get_best_trials(cfg.sweep.finalists.top_k), start=1):
        accuracies = []
        for seed in range(cfg.sweep.finalists.seeds):
            finalist_cfg = tuner.hypermodel.trial_config(trial.hyperparameters)
            finalist_cfg.seed = seed
            finalist_cfg.tracking.run_name = f"finalist-{rank}-trial-{trial_number(trial.trial_id)}-s{seed}"
            finalist_cfg.tracking.experiment = f"cnnlab-sweep-{study.name}"
            finalist_cfg.tracking.log_model = False
            result = train.train(
                finalist_cfg,
                parent_run_id=study.parent_run_id,
                extra_tags={
                    "cnnlab.study": study.name,
                    "cnnlab.finalist_of": trial.trial_id,
                    "cnnlab.trial": str(trial_number(trial.trial_id)),
                },
                data=data,
            )
            accuracies.append(result.metrics["test_accuracy"])
        interval = t_interval(accuracies)
        rows.append(
            {
                "trial": trial_number(trial.trial_id),
                "seeds": len(accuracies),
                "mean_test_accuracy": interval.mean,
                "std": interval.std,
                "ci95_low": interval.low,
                "ci95_high": interval.high,
            }
        )
    table = pd.DataFrame(rows).sort_values(["ci95_low", "mean_test_accuracy"], ascending=False)
    mlflow.log_text(table.to_csv(index=False), "finalists.csv")
    print(table.to_string(index=False), flush=True)
    return table


def summary_text(summary: dict[str, Any]) -> str:
    """What `python -m cnnlab.sweep` prints at the end: the best trials, the best, how to retrain it."""
    from cnnlab.tuning.study import markdown

    study = summary["study"]
    if "role" in summary:
        return f"{summary['role']} done with study {study.name}"
    table = summary["table"]
    lines = [
        f"\n[study {study.name}] {len(table)} trials, {summary['minutes']:.1f} min in this command\n",
        markdown(table.head(10)),
    ]
    if "best_score" in summary:
        lines.append(
            f"\n  best {study.objective}  {summary['best_score']:.4f} (trial {summary['best_trial']})"
            f"\n  retrain it     {this_python()} -m cnnlab.run --config-dir {summary['exported'].parent.parent} "
            "experiment=best"
        )
    importance = summary.get("importance")
    if importance is not None and not importance.empty:
        lines.append("\n" + importance_text(importance, summary.get("noise"), table, study.objective))
    elif importance is not None:
        from cnnlab.tuning import analysis

        finished = int((table["status"] == "COMPLETED").sum()) if "status" in table else 0
        lines.append(f"\n  {analysis.importance_skipped(finished)}\n")
    lines.append(
        f"  parent run     {study.parent_run_id} (experiment cnnlab-sweep-{study.name}); browse with `make ui`\n"
    )
    return "\n".join(lines)


def this_python() -> str:
    """The interpreter running cnnlab, as a user can type it here: a bare ``python`` outside the project's .venv
    would not find cnnlab's packages."""
    import os
    import sys

    relative = os.path.relpath(sys.executable)
    return relative if not relative.startswith("..") else sys.executable
