"""Time to verdicts: the reproduction of every claim from nothing, and how busy it keeps the arithmetic units.

``make bench-verdicts`` runs ``python -m cnnlab.reproduce`` (every claim, or ``--claims``) against an MLflow store
of its own in a work folder, so no seed is reused, and times it whole: start-up, data, every seed, the report. It
then reads back each claim's verdicts, the precision they rest on and the claim's minutes (the parent run's
claims.csv, as REPRODUCTION.md has them) and, per claim and precision, how fast its seeds trained: GFLOP/s from the
analytical FLOPs of an epoch (training images x the network's training FLOPs per image, plus the validation pass's
forward FLOPs) over the epoch's time, median over every seed's epochs after the first, against TensorFlow's float32
and bf16 matmul peaks measured here. It writes the section "Time to verdicts" of BENCHMARKS.md beside the goal:
every claim decided (or at its last seed) within 60 minutes on 2 cores.

    python benchmarks/verdicts.py                                # every claim (hours where claims run float32)
    python benchmarks/verdicts.py --claims mnist_simple          # one claim
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", nargs="*", default=[], help="claims to reproduce (default: every claim)")
    parser.add_argument("--resume", help="the work folder of an interrupted measurement, to continue it")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--matmul-repeats", type=int, default=20)
    parser.add_argument("overrides", nargs="*", help="cnnlab overrides for every claim (a test's synthetic data)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    import pandas as pd
    from common import command_line, work_folder
    from mlflow.tracking import MlflowClient
    from run import matmul_peak, peak_words

    from cnnlab.claims import DESIGN_TAG, EXPERIMENT
    from cnnlab.machine import bf16_impossible

    if args.resume and not (Path(args.resume) / "wall.json").is_file():
        sys.exit(f"--resume {args.resume}: not the work folder of an earlier measurement (it has no wall.json)")
    work = Path(args.resume) if args.resume else work_folder("cnnlab-verdicts-")
    reproduce(work, args.claims, args.overrides)

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (parent,) = client.search_runs(
        [experiment_id], f"tags.`{DESIGN_TAG}` != ''", order_by=["attributes.start_time DESC"], max_results=1
    )
    table = pd.read_csv(io.StringIO(Path(client.download_artifacts(parent.info.run_id, "claims.csv")).read_text()))
    claims = list(dict.fromkeys(table["claim"]))
    dtypes = ("float32", "bf16") if bf16_impossible() is None else ("float32",)
    peaks = {dtype: matmul_peak(dtype, repeats=args.matmul_repeats) for dtype in dtypes}
    speeds = utilisation(client, experiment_id, claims, args.overrides)
    walls = json.loads((work / "wall.json").read_text())
    minutes = sum(w["seconds"] for w in walls) / 60
    which = f"claims {', '.join(claims)}" if args.claims else "every claim"
    report = (table, speeds, peaks, minutes, len(walls), which)
    write_report(Path(args.output), *report, command_line("make bench-verdicts"))
    print(f"time to verdicts: {minutes:.1f} min; {peak_words(peaks)}; section written to {args.output}", flush=True)


def write_report(
    output: Path, table, speeds: list[dict], peaks: dict, minutes: float, processes: int, which: str, command: str
):
    from common import write_section
    from run import peak_words

    from cnnlab.claims.verdict import EXCEEDS, NOT_REPRODUCED, REPRODUCED

    met = minutes <= GOAL_MINUTES
    goal = f"{'within' if met else 'over'} the goal of {GOAL_MINUTES:.0f} minutes on 2 cores"
    how = "one process" if processes == 1 else f"{processes} processes, resumed (their wall times added)"
    lines = [
        f"## Time to verdicts: {which} reproduced from nothing",
        "",
        f"Command: `{command}`, on an otherwise idle machine. Wall time of `cnnlab reproduce` against a new store "
        f"(start-up, data from the cache, every seed, the report), {how}: **{minutes:.1f} min**, {goal}. Each claim's "
        "minutes are its seeds' own (training, scoring, logging), as REPRODUCTION.md gives them; the precision is the "
        "one each verdict rests on (bf16 only where the claim's evidence shows it equivalent here).",
        "",
        "| claim | precision | metric | verdict (median run) | seeds | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.claim} | {row.precision} | {row.metric} | {row.verdict} | {row.seeds} ({row.seeds_run}) | "
            f"{row.minutes:.1f} |"
        )
    lines += [
        "",
        f"Arithmetic units kept busy: each claim's training GFLOP/s (analytical FLOPs of an epoch, validation's "
        f"forward pass included, over the epoch's time; median over the seeds' epochs after the first) against "
        f"TensorFlow's 2048x2048 matmul peak here: {peak_words(peaks)}.",
        "",
        "| claim | network | precision | seeds | GFLOP/s | of its precision's peak |",
        "|---|---|---|---|---|---|",
    ]
    for speed in speeds:
        peak = peaks.get(speed["precision"])
        share = f"{100 * speed['gflops'] / peak:.1f}%" if peak else "no peak measured"
        lines.append(
            f"| {speed['claim']} | {speed['network']} | {speed['precision']} | {speed['seeds']} | "
            f"{speed['gflops']:.1f} | {share} |"
        )
    claimed = table[table["claimed"].notna()]
    decided = int(claimed["verdict"].isin([REPRODUCED, EXCEEDS, NOT_REPRODUCED]).sum())  # not a modified protocol
    summary = f"{which.capitalize()} reproduced from nothing in {minutes:.1f} min ({goal}); {decided} of "
    summary += f"{len(claimed)} claimed numbers decided."
    write_section(output, "verdicts", "\n".join(lines) + "\n", summary)


if __name__ == "__main__":
    main()
