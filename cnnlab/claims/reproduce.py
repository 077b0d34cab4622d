"""reproduce(cfg): every claim x seed as a child run of one parent run, skipping pairs already done, then verdicts."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

EXPERIMENT = "cnnlab-reproductions"
OWN_KEYS = ("seeds", "claims", "report_path")  # reproduce's own options; every other override reaches each claim


@dataclass
class ClaimResult:
    name: str
    claim: Any
    runs: list[Any] = field(default_factory=list)  # FINISHED MLflow runs, one per seed
    split_sizes: dict[str, int] = field(default_factory=dict)
    unavailable: str | None = None
    skipped: int = 0


def fingerprint(cfg: Any, data_hashes: dict[str, str]) -> str:
    """Same data, same protocol (config minus seed and tracking), same libraries -> same fingerprint."""
    import keras
    import tensorflow as tf

    import cnnlab

    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    for key in ("seed", "tracking"):
        container.pop(key, None)
    payload = {
        "data": data_hashes,
        "config": container,
        "versions": [cnnlab.__version__, tf.__version__, keras.__version__],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def claim_overrides(overrides: list[str]) -> list[str]:
    return [o for o in overrides if o.partition("=")[0].lstrip("+~") not in OWN_KEYS]


def reproduce(cfg: Any, overrides: list[str], compose: Any) -> tuple[str, list[ClaimResult]]:
    """Runs or resumes the reproduction; ``compose(overrides)`` composes a run config (Hydra's compose API)."""
    from mlflow.tracking import MlflowClient

    from cnnlab import tracking, train
    from cnnlab.data import DataError

    passthrough = claim_overrides(overrides)
    tracking_cfg = OmegaConf.merge(cfg.tracking, {"experiment": EXPERIMENT})
    experiment_id = tracking.configure(tracking_cfg)
    client = MlflowClient()
    key = hashlib.sha256(json.dumps([list(cfg.claims), cfg.seeds, passthrough]).encode()).hexdigest()[:16]
    parents = client.search_runs(
        [experiment_id], filter_string=f"tags.`cnnlab.reproduction` = '{key}'", order_by=["attributes.start_time DESC"]
    )
    command = tracking.rerun_command("cnnlab.reproduce", overrides)
    if parents:
        parent_id = parents[0].info.run_id
        print(f"[reproduce] resuming parent run {parent_id}", flush=True)
    else:
        run = client.create_run(experiment_id, run_name="reproduction", tags={"cnnlab.reproduction": key})
        parent_id = run.info.run_id
        client.set_tag(
            parent_id,
            "mlflow.note.content",
            f"Reproduction of {list(cfg.claims)} over {cfg.seeds} seeds.\n\nRerun: `{command}`",
        )
        print(f"[reproduce] new parent run {parent_id}", flush=True)

    results = []
    with tracking.tracked_run(experiment_id, "", {}, "", run_id=parent_id):
        for name in cfg.claims:
            claim_cfg = compose([f"experiment={name}", *passthrough])
            claim_cfg.tracking.experiment = EXPERIMENT
            result = ClaimResult(name=name, claim=claim_cfg.claim)
            results.append(result)
            try:
                data = train.prepare_data(claim_cfg)
            except DataError as error:
                result.unavailable = str(error).splitlines()[0]
                print(f"[reproduce] {name}: data unavailable here, no verdict ({result.unavailable})", flush=True)
                continue
            splits = data.splits
            result.split_sizes = {
                "test_accuracy": len(splits.test),
                "accuracy": len(splits.train),
                "val_accuracy": len(splits.validation) if splits.validation else 0,
            }
            print_ = fingerprint(claim_cfg, data.arrays.sha256)
            for seed in range(cfg.seeds):
                done = client.search_runs(
                    [experiment_id],
                    filter_string=(
                        f"tags.`cnnlab.claim` = '{name}' and tags.`cnnlab.seed` = '{seed}' and "
                        f"tags.`cnnlab.fingerprint` = '{print_}' and attributes.status = 'FINISHED'"
                    ),
                    max_results=1,
                )
                if done:
                    print(
                        f"[reproduce] {name} seed {seed}: already FINISHED ({done[0].info.run_id}), skipped", flush=True
                    )
                    result.runs.append(done[0])
                    result.skipped += 1
                    continue
                print(f"[reproduce] {name} seed {seed}: training ({claim_cfg.trainer.epochs} epochs)", flush=True)
                seed_cfg = OmegaConf.merge(claim_cfg, {"seed": seed, "tracking": {"run_name": f"{name}-s{seed}"}})
                outcome = train.train(
                    seed_cfg,
                    [f"experiment={name}", f"seed={seed}", *passthrough],
                    parent_run_id=parent_id,
                    extra_tags={"cnnlab.claim": name, "cnnlab.seed": str(seed), "cnnlab.fingerprint": print_},
                    data=data,
                )
                result.runs.append(client.get_run(outcome.run_id))
        report = log_report(results, parent_id, command, client)
    return parent_id, results, report


def log_report(results: list[ClaimResult], parent_id: str, command: str, client: Any) -> dict[str, Any]:
    """Logs the claims table (CSV, Markdown) and the self-contained HTML page to the parent run."""
    import mlflow

    from cnnlab.claims import report

    table = report.claims_table(results)
    figures = {f"{r.name}: learning curves": report.learning_curves_figure(r, client) for r in results if r.runs}
    figures["accuracy per seed"] = report.distribution_figure(table, results)
    header = f"Parent MLflow run {parent_id}. Command: {command}"
    markdown = report.to_markdown(report.readable(table))
    mlflow.log_text(table.to_csv(index=False), "claims.csv")
    mlflow.log_text(markdown, "report.md")
    mlflow.log_text(report.to_html(table, figures, header), "report.html")
    return {"table": table, "markdown": markdown, "command": command}
