"""Seeds side by side: does training a claim's seeds as ``cnnlab reproduce workers=N`` change its outcome?

Each worker trains on its share of the CPUs (one thread each for 2 workers on 2 cores), and a seed split over
other threads rounds differently (docs/runs.md, "Precision"). So for each claim, its seeds trained by one process
on every CPU are compared with the same seeds trained side by side, paired by seed, on each claimed metric: the
mean difference with its 95% t interval, and *equivalent* by the paired sign-test TOST within the claim's tolerance
(stats.paired_tost, as for bf16 against float32), with its power if the two were equal.

The seeds come from ``cnnlab reproduce claims=[<claim>] seeds=<K> verdicts=false`` with ``workers=1`` and with
``workers=N``, each in the claim's own precision here; both reuse every seed already FINISHED in the store on this
machine kind and thread count (a reproduction's, or imported from results/seeds/), so the check reads what
reproductions made and trains only what is missing. Written to REPRODUCTION.md, section ``side-by-side``.

    python benchmarks/side_by_side.py                               # the claims at their verdicts' seeds here
    python benchmarks/side_by_side.py mnist_simple:5 mnist_pooled:10
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each claim at the seeds its verdict took on the AVX-512 kind (REPRODUCTION.md): those its workers=1 seeds cover
DEFAULT_CLAIMS = ["mnist_simple:5", "mnist_dropout:5", "mnist_pooled:10", "fashion_deep:10"]


def make_seeds(claim: str, seeds: int, workers: int, overrides: list[str]) -> None:
    """The claim's seeds 0..seeds-1 as ``workers`` workers train them (reused where already in the store)."""
    command = [
        sys.executable,
        "-m",
        "cnnlab.reproduce",
        f"claims=[{claim}]",
        f"seeds={seeds}",
        "verdicts=false",
        f"workers={workers}",
        *overrides,
    ]
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        sys.exit(f"[side by side] {claim}: the reproduction with workers={workers} failed (its output is above)")


def pairs(client, experiment_id: str, claim: str, seeds: int, threads: tuple[str, str]) -> dict[str, tuple]:
    """This kind's FINISHED seeds below ``seeds`` of the claim, by fingerprint (one per precision the claim was
    trained in): those on the first thread count and those on the second, where a fingerprint has both."""
    from cnnlab.claims import kinds

    found: dict[str, dict[str, dict[int, object]]] = {}
    here = kinds.this_kind()
    for run in kinds.finished_runs(client, experiment_id, {"cnnlab.claim": claim}):
        if kinds.run_kind(run) != here or not 0 <= kinds.seed_of(run) < seeds:
            continue
        by_threads = found.setdefault(run.data.tags["cnnlab.fingerprint"], {})
        by_threads.setdefault(kinds.run_threads(run), {}).setdefault(kinds.seed_of(run), run)  # newest first
    return {
        fingerprint: tuple(list(by_threads[count].values()) for count in threads)
        for fingerprint, by_threads in found.items()
        if all(by_threads.get(count) for count in threads)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "claims", nargs="*", default=DEFAULT_CLAIMS, help="claim:seeds, e.g. mnist_simple:5 (default: %(default)s)"
    )
    parser.add_argument("--workers", type=int, default=2, help="the side-by-side reproduction's workers")
    parser.add_argument("--output", default=str(ROOT / "REPRODUCTION.md"))
    parser.add_argument(
        "--overrides", nargs="*", default=[], help="cnnlab overrides for both reproductions (a test's synthetic data)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))

    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from cnnlab.claims import EXPERIMENT
    from cnnlab.claims.report import paired_difference
    from cnnlab.claims.verdict import distance_to_margin
    from cnnlab.config import compose_run_config
    from cnnlab.machine import usable_cpus
    from cnnlab.tracking.store import configure

    cpus = usable_cpus()
    threads = (str(cpus), str(max(1, cpus // args.workers)))
    rows = []
    for entry in args.claims:
        claim, _, count = entry.partition(":")
        seeds = int(count or 5)
        for workers in (1, args.workers):
            make_seeds(claim, seeds, workers, args.overrides)
        cfg = compose_run_config([f"experiment={claim}", *args.overrides])
        experiment_id = configure(OmegaConf.merge(cfg.tracking, {"experiment": EXPERIMENT}))
        client = MlflowClient()
        claim_block = OmegaConf.to_container(cfg.claim)
        for alone, side_by_side in pairs(client, experiment_id, claim, seeds, threads).values():
            precision = alone[0].data.tags.get("cnnlab.precision", "float32")
            for target in claim_block["targets"]:
                if target["value"] is None:  # a claim without a number (kmnist) has no tolerance to test within
                    continue
                tolerance = distance_to_margin(claim_block, target["value"])
                paired = paired_difference(alone, side_by_side, target["metric"], tolerance)
                if paired:
                    rows.append({"claim": claim, "precision": precision, "metric": target["metric"], **paired})
                    print(f"[side by side] {claim} ({precision}) {target['metric']}: {paired}", flush=True)
    write_report(Path(args.output), rows, threads, args.workers)


def write_report(output: Path, rows: list[dict], threads: tuple[str, str], workers: int) -> None:
    from common import command_line

    from cnnlab import documents
    from cnnlab.claims.report import REPRODUCTION_HEADER, bounds_points, percent, points
    from cnnlab.machine import cpu_description

    lines = [
        "## Seeds side by side: the same seeds on every thread and on a worker's share",
        "",
        f"Command: `{command_line('make side-by-side')}`. Machine: {cpu_description()}.",
        "",
        f"Each claim's seeds from `cnnlab reproduce` (one process, {threads[0]} thread(s)) against the same seeds from "
        f"`cnnlab reproduce workers={workers}` (each worker on {threads[1]} thread(s)), in the claim's precision "
        "here, paired by seed. *Equivalent*: the sign test's bounds of the median difference (each at 95%) inside "
        "the claim's tolerance, as for bf16 against float32; power: the chance of showing it at these seeds if the "
        "two were equal, at the differences' spread measured.",
        "",
        f"| claim | precision | metric | seeds | {threads[0]} thread(s) | {threads[1]} thread(s) | difference, points "
        "(95% CI) | median difference bounds | reading |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        reading = (
            f"{'equivalent' if row['equivalent'] else 'not shown equivalent'} within +-{100 * row['tolerance']:.2f}"
        )
        if row["power_if_equal"] == row["power_if_equal"]:  # not NaN
            reading += f"; power if equal {row['power_if_equal']:.0%}"
        lines.append(
            f"| {row['claim']} | {row['precision']} | {row['metric']} | {row['seeds']} | "
            f"{percent(row['reference_mean'])} | {percent(row['mean'])} | {points(row['difference'])} "
            f"[{points(row['difference_ci95_low'])}, {points(row['difference_ci95_high'])}] | "
            f"{bounds_points(row['median_difference_low'], row['median_difference_high'], row['tolerance'])} | "
            f"{reading} |"
        )
    if not rows:
        lines.append("| (no claim has seeds on both thread counts here) | | | | | | | | |")
    documents.write_section(output, "side-by-side", "\n".join(lines), REPRODUCTION_HEADER)
    print(f"[side by side] wrote its section of {output}", flush=True)


if __name__ == "__main__":
    main()
