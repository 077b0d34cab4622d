"""Time to verdicts: the reproduction of every claim from nothing, and how busy it keeps the arithmetic units.

``make bench-verdicts`` runs ``python -m cnnlab.reproduce`` (every claim, or ``--claims``) against an MLflow store
of its own in a work folder, so no seed is reused, and times it whole: start-up, data, every seed, the report. It
then reads back each claim's verdicts, the precision they rest on and the claim's minutes (the parent run's
claims.csv, as REPRODUCTION.md has them) and, per claim and precision, how fast its seeds trained: GFLOP/s from the
analytical FLOPs of an epoch (training images x the network's training FLOPs per image, plus the validation pass's
forward FLOPs) over the epoch's time, median over every seed's epochs after the first, against TensorFlow's float32
and bf16 matmul peaks measured here. Each measurement is kept in ``results/bench/verdicts-<kind>.json`` (committed:
a later measurement of the same claims replaces it), and the section "Time to verdicts" of BENCHMARKS.md adds up
this kind's measurements beside the goal: every claim decided (or at its last seed) within 60 minutes on 2 cores,
judged once every claim with a claim block is in the record. So the claims can be measured a few at a time, each
group from nothing in a store and process of its own, when no idle stretch is long enough for all of them.

    python benchmarks/verdicts.py                                # every claim (hours where claims run float32)
    python benchmarks/verdicts.py --claims mnist_simple          # one claim, added to this kind's record
    python benchmarks/verdicts.py --resume /tmp/cnnlab-verdicts-x  # continue an interrupted measurement

Resumed, the reproduction reuses the seeds its store finished, and the wall time is the sum of each process's,
kept in the work folder (``wall.json``; a process killed outright adds nothing, so its time is lost); the section
says how many processes it took. The data come from cnnlab's cache like any run's: fill it first (one ``make run``
per dataset), or the first download is timed too. Run it on an otherwise idle machine: a second job on 2 cores
halves what it measures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_MINUTES = 60.0


def reproduce(work: Path, claims: list[str], overrides: list[str]) -> None:
    """Runs the reproduction into the work folder's store, adding this process's wall time to ``wall.json``."""
    command = [
        sys.executable,
        "-m",
        "cnnlab.reproduce",
        f"report_path={work / 'REPRODUCTION.md'}",
        f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        *([f"claims=[{','.join(claims)}]"] if claims else []),
        *overrides,
    ]
    wall_file = work / "wall.json"
    walls = json.loads(wall_file.read_text()) if wall_file.exists() else []
    started = time.perf_counter()
    try:
        # the store is the work folder's: an MLFLOW_TRACKING_URI of the user's would point the run elsewhere
        env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
        completed = subprocess.run(command, cwd=ROOT, env=env).returncode == 0
    finally:  # an interrupted process's time is part of the wait too
        walls.append({"seconds": time.perf_counter() - started})
        wall_file.write_text(json.dumps(walls))
    if not completed:
        sys.exit(f"the reproduction failed; its store and logs are in {work}: rerun with --resume {work}")


def epoch_flops(cfg, per_image: int) -> float:
    """One epoch's FLOPs for the claim's config: training on its training images, and the forward pass (a third of
    training's) over its validation images, split from the very arrays its runs loaded, as they split them."""
    from cnnlab.config import option
    from cnnlab.data import load_arrays
    from cnnlab.data.splits import make_splits

    splits = make_splits(
        load_arrays(cfg.dataset), option(cfg.trainer.validation), cfg.trainer.holdout_size, cfg.dataset.subset
    )
    validation = len(splits.validation) if splits.validation else 0
    return per_image * (len(splits.train) + validation / 3)


def utilisation(client, experiment_id: str, claims: list[str], overrides: list[str]) -> list[dict]:
    """Per claim and precision: the seeds' median steady GFLOP/s, from their logged epoch times."""
    from cnnlab.claims.reproduce import claim_overrides
    from cnnlab.config import compose_run_config, image_shape
    from cnnlab.models.shapes import training_flops_per_sample

    rows = []
    for claim in claims:
        runs = client.search_runs(
            [experiment_id], f"tags.`cnnlab.claim` = '{claim}' and attributes.status = 'FINISHED'", max_results=5000
        )
        if not runs:  # a claim whose data are not here (kmnist) trained nothing, and its arrays cannot be loaded
            continue
        cfg = compose_run_config([f"experiment={claim}", *claim_overrides(overrides)])
        per_image = training_flops_per_sample(cfg.model.blocks, image_shape(cfg.dataset), len(cfg.dataset.classes))
        flops = epoch_flops(cfg, per_image)
        by_precision: dict[str, list] = {}
        for run in runs:
            by_precision.setdefault(run.data.tags.get("cnnlab.precision", "float32"), []).append(run)
        for precision, seeds in sorted(by_precision.items()):
            rates = []
            for run in seeds:
                epochs = [m.value for m in client.get_metric_history(run.info.run_id, "epoch_seconds")]
                rates += [flops / seconds / 1e9 for seconds in (epochs[1:] or epochs)]  # the first traces
            if rates:
                rows.append(
                    {
                        "claim": claim,
                        "network": cfg.model.name,
                        "precision": precision,
                        "seeds": len(seeds),
                        "gflops": statistics.median(rates),
                    }
                )
    return rows


def claims_with_a_claim_block() -> list[str]:
    """What "every claim" means for the goal: the claims `cnnlab reproduce` runs without ``claims=``."""
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from cnnlab.config import compose_run_config, register_configs
    from cnnlab.config.compose import CONF_DIR, claim_names

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return claim_names(OmegaConf.create({"claims": None}), compose_run_config, searchpath=[])


def asked(measurement: dict) -> set[str]:
    """The claims a measurement reproduced or found without data: a later measurement of any of them replaces it."""
    return set(measurement["claims"]) | set(measurement.get("unavailable", []))


def label(measurement: dict) -> str:
    """``mnist_simple, kmnist (data unavailable here)``: what a measurement was asked to reproduce."""
    missing = [f"{claim} (data unavailable here)" for claim in measurement.get("unavailable", [])]
    return ", ".join([*measurement["claims"], *missing])


def remember(path: Path, measurement: dict) -> list[dict]:
    """Adds ``measurement`` to this kind's record, replacing every earlier one that measured any of its claims, so
    claims measured in separate runs (``--claims``, one session each) add up to the whole; returns the record."""
    record = json.loads(path.read_text()) if path.exists() else []
    for replaced in (m for m in record if asked(m) & asked(measurement)):
        others = [claim for claim in replaced["claims"] if claim not in asked(measurement)]
        print(
            f"replacing the earlier measurement of {label(replaced)}"
            + (f"; {', '.join(others)} must be measured again" if others else ""),
            flush=True,
        )
    record = [m for m in record if not asked(m) & asked(measurement)]
    record.append(measurement)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", nargs="*", default=[], help="claims to reproduce (default: every claim)")
    parser.add_argument("--resume", help="the work folder of an interrupted measurement, to continue it")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument(
        "--record",
        default=str(ROOT / "results" / "bench"),
        help="the folder of each machine kind's measurements (verdicts-<kind>.json), which the section adds up",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="reproduce with workers=N (seeds side by side), measured and recorded apart from one process",
    )
    parser.add_argument("--matmul-repeats", type=int, default=20)
    parser.add_argument("overrides", nargs="*", help="cnnlab overrides for every claim (a test's synthetic data)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    import pandas as pd
    from common import command_line, kind_file, work_folder
    from mlflow.tracking import MlflowClient
    from run import matmul_peak, peak_words

    from cnnlab.claims import DESIGN_TAG, EXPERIMENT
    from cnnlab.machine import bf16_impossible, cpu_description

    if args.resume and not (Path(args.resume) / "wall.json").is_file():
        sys.exit(f"--resume {args.resume}: not the work folder of an earlier measurement (it has no wall.json)")
    work = Path(args.resume) if args.resume else work_folder("cnnlab-verdicts-")
    reproduce(work, args.claims, [*args.overrides, *([f"workers={args.workers}"] if args.workers > 1 else [])])

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (parent,) = client.search_runs(
        [experiment_id], f"tags.`{DESIGN_TAG}` != ''", order_by=["attributes.start_time DESC"], max_results=1
    )
    table = pd.read_csv(io.StringIO(Path(client.download_artifacts(parent.info.run_id, "claims.csv")).read_text()))
    # a claim whose data are not here trained nothing: it is named, never counted as measured
    unavailable = list(dict.fromkeys(table.loc[table["verdict"].str.contains("data unavailable"), "claim"]))
    claims = [claim for claim in dict.fromkeys(table["claim"]) if claim not in unavailable]
    table = table[table["claim"].isin(claims)]
    dtypes = ("float32", "bf16") if bf16_impossible() is None else ("float32",)
    peaks = {dtype: matmul_peak(dtype, repeats=args.matmul_repeats) for dtype in dtypes}
    speeds = utilisation(client, experiment_id, claims, args.overrides)
    for speed in speeds:  # against the peaks of the same measurement, which a later one may not repeat exactly
        peak = peaks.get(speed["precision"])
        # workers train their seeds at once, each at this rate: the machine's share is theirs added
        speed["share"] = args.workers * speed["gflops"] / peak if peak else None
    walls = json.loads((work / "wall.json").read_text())
    minutes = sum(w["seconds"] for w in walls) / 60
    columns = ["claim", "precision", "metric", "claimed", "verdict", "seeds", "seeds_run", "minutes"]
    measurement = {
        "claims": claims,
        "unavailable": unavailable,
        "overrides": args.overrides,
        "command": command_line("make bench-verdicts"),
        "workers": args.workers,
        "minutes": minutes,
        "processes": len(walls),
        "machine": cpu_description(),
        "peaks": peaks,
        "rows": json.loads(table[columns].to_json(orient="records")),
        "speeds": speeds,
    }
    # one record and section per workers setting: each adds up to its own time to verdicts
    stem = "verdicts" if args.workers == 1 else f"verdicts-workers{args.workers}"
    path = kind_file(Path(args.record), stem)
    record = remember(path, measurement)
    write_report(Path(args.output), record, claims_with_a_claim_block(), args.workers)
    print(f"time to verdicts of {', '.join(claims)}: {minutes:.1f} min; {peak_words(peaks)}", flush=True)
    print(f"section written to {args.output}; measurement kept in {path}", flush=True)


def write_report(output: Path, record: list[dict], every_claim: list[str], workers: int = 1) -> None:
    """The section from this kind's record: each measurement's claims, reproduced from nothing in a store and
    process of their own, and the total, judged against the goal once every claim is in it."""
    from common import write_section
    from run import peak_words

    from cnnlab.claims.verdict import EXCEEDS, NOT_REPRODUCED, REPRODUCED

    measured = [claim for m in record for claim in m["claims"]]
    unavailable = {claim for m in record for claim in m.get("unavailable", [])} - set(measured)
    missing = [claim for claim in every_claim if claim not in measured and claim not in unavailable]
    overridden = sorted({o for m in record for o in m.get("overrides", [])})
    minutes = sum(m["minutes"] for m in record)
    met = minutes <= GOAL_MINUTES
    if missing:
        which = f"claims {', '.join(measured)}"
        goal = f"so far; {', '.join(missing)} not measured yet, so the goal ({GOAL_MINUTES:.0f} minutes) is not judged"
    elif overridden:
        which = f"claims {', '.join(measured)}"
        goal = f"with overrides ({' '.join(overridden)}), so the goal ({GOAL_MINUTES:.0f} minutes) is not judged"
    else:
        which = "every claim"
        goal = f"{'within' if met else 'over'} the goal of {GOAL_MINUTES:.0f} minutes on 2 cores"
    side_by_side = "" if workers == 1 else f" by {workers} workers side by side"
    lines = [f"## Time to verdicts: {which} reproduced from nothing{side_by_side}", ""]
    for m in record:
        how = (
            ("one process" if workers == 1 else "one command")
            if m["processes"] == 1
            else f"{m['processes']} {'processes' if workers == 1 else 'commands'}, resumed (their wall times added)"
        )
        lines.append(
            f"- {label(m)}: `{m['command']}`, {how}: **{m['minutes']:.1f} min** (matmul peaks {peak_words(m['peaks'])})"
        )
    parts = "" if len(record) == 1 else f", the sum of its {len(record)} measurements"
    lines += [
        "",
        "Each measurement runs "
        + (
            "`cnnlab reproduce`"
            if workers == 1
            else f"`cnnlab reproduce workers={workers}` ({workers} processes on one store, each on its share of the "
            "CPUs, training seeds at once)"
        )
        + " on an otherwise idle machine against a new store (start-up, data "
        f"from the cache, every seed, the report) and times it whole. Total{parts}: **{minutes:.1f} min**, {goal}. "
        "Claims measured apart each pay their own start-up, which one process for all would share. Each claim's "
        "minutes are its seeds' own (training, scoring, logging), as REPRODUCTION.md gives them"
        + ("" if workers == 1 else f", its {workers} workers' added, so they sum to more than the wall time")
        + "; the precision is the "
        "one each verdict rests on (bf16 only where the claim's evidence shows it equivalent here)."
        + (f" Data unavailable here, so not part of it: {', '.join(sorted(unavailable))}." if unavailable else ""),
        "",
        "Seeds: those the verdict was judged on (those trained).",
        "",
        "| claim | precision | metric | verdict (median run) | seeds | minutes |",
        "|---|---|---|---|---|---|",
    ]
    rows = [row for m in record for row in m["rows"]]
    for row in rows:
        lines.append(
            f"| {row['claim']} | {row['precision']} | {row['metric']} | {row['verdict']} | {row['seeds']} "
            f"({row['seeds_run']}) | {row['minutes']:.1f} |"
        )
    lines += [
        "",
        "Arithmetic units kept busy: each claim's training GFLOP/s (analytical FLOPs of an epoch, validation's "
        "forward pass included, over the epoch's time; median over the seeds' epochs after the first) against "
        "TensorFlow's 2048x2048 matmul peak of its precision, measured with it"
        + (
            "."
            if workers == 1
            else f"; the {workers} workers' seeds train at once, so the share is {workers} seeds' rate over the peak."
        ),
        "",
        "| claim | network | precision | seeds | GFLOP/s"
        + ("" if workers == 1 else f" a seed ({workers} at once)")
        + " | of its precision's peak |",
        "|---|---|---|---|---|---|",
    ]
    for speed in (speed for m in record for speed in m["speeds"]):
        share = f"{100 * speed['share']:.1f}%" if speed.get("share") is not None else "no peak measured"
        lines.append(
            f"| {speed['claim']} | {speed['network']} | {speed['precision']} | {speed['seeds']} | "
            f"{speed['gflops']:.1f} | {share} |"
        )
    claimed = [row for row in rows if row["claimed"] is not None]
    decided = sum(row["verdict"] in (REPRODUCED, EXCEEDS, NOT_REPRODUCED) for row in claimed)  # not a modified one
    summary = f"{which.capitalize()} reproduced from nothing{side_by_side} in {minutes:.1f} min ({goal}); {decided} of "
    summary += f"{len(claimed)} claimed numbers decided."
    write_section(
        output, "verdicts" if workers == 1 else f"verdicts-workers{workers}", "\n".join(lines) + "\n", summary
    )


if __name__ == "__main__":
    main()
