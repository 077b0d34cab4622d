"""`make bench-sweep`: how fast a study finds a good network, and whether a long study's memory stays flat.

1. Time to first reach --target validation accuracy: random search and Bayesian optimisation, each with and
   without median pruning, and Hyperband, --studies studies each (different study seeds), same search space
   (--space), same wall-clock budget per study; the median time per setting with its min and max. Each study is
   `python -m cnnlab.sweep` from a clean state, stopped with SIGTERM when the budget is spent (the running trial is
   recorded KILLED; the study stays resumable). The time is read from MLflow: the timestamp of the first per-epoch
   val_accuracy at or above the target, counted from the moment the process was started (start-up included).
2. Memory over a --memory-trials study of short trials: the study process's resident memory, sampled from /proc
   four times a second and read at each trial's end (MLflow end times). Flat means no growth from trial to trial:
   over the trials after the first (which carries TensorFlow's one-time set-up), the median trial-to-trial change,
   projected over the whole study, stays under 5% of the memory after trial 2 (see memory_verdict).

Each part writes its own section of BENCHMARKS.md and its plot (--part runs one of them): benchmarks/sweep.png (best
validation accuracy so far against time) and benchmarks/sweep_memory.png (memory after each trial).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import add_dataset_arguments, command_line, dataset_overrides, work_folder, write_section

from cnnlab.machine import choose_precision

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_study(name: str, overrides: list[str], workdir: Path, budget_s: float) -> dict:
    """Runs one study until it ends or ``budget_s`` passes; returns its start time, wall time and memory samples."""
    command = [
        sys.executable,
        "-m",
        "cnnlab.sweep",
        f"sweep.name={name}",
        f"sweep.directory={workdir}/sweeps",
        f"sweep.export_dir={workdir}/exported",
        "sweep.overwrite=true",
        "trainer.verbose=0",
        *overrides,
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/bench.db", "TF_CPP_MIN_LOG_LEVEL": "3"}
    samples: list[tuple[float, float]] = []
    started = time.time()
    with open(workdir / f"{name}.log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

        def sample() -> None:
            while process.poll() is None:
                value = rss_mb(process.pid)
                if value is not None:
                    samples.append((time.time(), value))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            process.wait(timeout=budget_s)
            stopped = False
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            stopped = True
        sampler.join()
    if not stopped and process.returncode != 0:
        tail = (workdir / f"{name}.log").read_text()[-3000:]
        raise RuntimeError(f"{shlex.join(command)} failed ({process.returncode}):\n{tail}")
    return {"name": name, "started": started, "wall": time.time() - started, "stopped": stopped, "rss": samples}


def trial_runs(store: str, name: str) -> tuple[list, object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name(f"cnnlab-sweep-{name}")
    runs = client.search_runs([experiment.experiment_id], max_results=5000) if experiment else []
    return [run for run in runs if run.data.tags.get("mlflow.parentRunId")], client


def efficiency(store: str, study: dict, budget_s: float) -> dict:
    """Best val_accuracy so far against seconds since start, within the budget."""
    runs, client = trial_runs(store, study["name"])
    # An earlier attempt at the same study (one that failed, before --resume ran it again) is not this study's.
    runs = [run for run in runs if run.info.start_time / 1000 >= study["started"]]
    # A study stopped at the budget may still log an epoch while it shuts down: that one came too late to count.
    points = sorted(
        (seconds, point.value)
        for run in runs
        for point in client.get_metric_history(run.info.run_id, "val_accuracy")
        if (seconds := point.timestamp / 1000 - study["started"]) <= budget_s
    )
    curve, best = [], 0.0
    for seconds, value in points:
        best = max(best, value)
        curve.append((seconds, best))
    if curve:
        curve.append((min(study["wall"], budget_s), best))  # the best so far holds until the study ends
    finished = sum(run.info.status == "FINISHED" for run in runs)
    return {**study, "curve": curve, "best": best, "trials": len(runs), "finished": finished}


def best_at(curve: list[tuple[float, float]], seconds: float) -> float:
    """The best val_accuracy a study had reached ``seconds`` after it started (0 before its first epoch)."""
    return max((best for moment, best in curve if moment <= seconds), default=0.0)


def reached_at(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((moment for moment, best in curve if best >= target), None)


def automatic_target(studies: list[dict], budget_s: float) -> float:
    """What plain random search reaches in half its budget: the median over its studies of the best at half-time."""
    import numpy as np

    halfway = [best_at(study["curve"], budget_s / 2) for study in studies if study["tuner"] == "random"]
    if not halfway:
        raise SystemExit("--target auto reads random search's studies: include the 'random' setting")
    return float(np.median(halfway))


def memory(store: str, study: dict) -> dict:
    """Resident memory at each finished trial's end: the last sample taken before it."""
    runs, _ = trial_runs(store, study["name"])
    ends = sorted(run.info.end_time / 1000 for run in runs if run.info.status == "FINISHED" and run.info.end_time)
    per_trial = []
    for end in ends:
        before = [value for moment, value in study["rss"] if moment <= end]
        if before:
            per_trial.append(before[-1])
    peak = max((value for _, value in study["rss"]), default=float("nan"))
    return {**study, "per_trial": per_trial, "peak": peak}


def growth_per_trial(memory_mb: list[float]) -> float:
    """Least-squares slope of memory against trial number over consecutive trials, MB per trial."""
    import numpy as np

    return float(np.polyfit(np.arange(len(memory_mb)), np.asarray(memory_mb, dtype=float), 1)[0])


def memory_verdict(per_trial: list[float], flat_percent: float = 5.0) -> dict:
    """Whether memory grows from trial to trial, over the trials after the first (TensorFlow's one-time set-up).

    A leak adds memory at every trial, so the growth per trial is the median trial-to-trial change; a one-off rise
    (the first larger configuration lifting the allocator's high-water mark) moves a least-squares trend for good
    but not the median. Both are returned, with the largest single rise, so a report can show all three.
    """
    import numpy as np

    settled = per_trial[1:]
    changes = np.diff(settled)
    per_trial_growth = float(np.median(changes))
    projected = 100 * per_trial_growth * len(changes) / settled[0]
    largest = int(np.argmax(changes))
    return {
        "growth": per_trial_growth,
        "projected_percent": projected,
        "flat": projected < flat_percent,
        "trend": growth_per_trial(settled),
        "largest_rise": float(changes[largest]),
        "largest_rise_trial": largest + 3,  # changes[0] is trial 2 -> trial 3, trials counted from 1
    }


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_memory(mem: dict, path: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 3.4))
    trials = range(1, len(mem["per_trial"]) + 1)
    axis.plot(trials, mem["per_trial"], marker="o", ms=3)
    axis.set_ylim(0, max(mem["per_trial"], default=1) * 1.15)
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.set_xlabel("trial")
    axis.set_ylabel("resident memory at its end, MB")
    axis.set_title(f"Memory over a {len(mem['per_trial'])}-trial study")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot(results: list[dict], target: float, path: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 3.8))
    colours = {setting: f"C{index}" for index, setting in enumerate(dict.fromkeys(r["tuner"] for r in results))}
    labelled: set[str] = set()
    for result in results:  # one line per study, one colour per setting
        if result["curve"]:
            seconds, best = zip(*result["curve"], strict=True)
            label = None if result["tuner"] in labelled else result["tuner"]
            labelled.add(result["tuner"])
            axis.step([s / 60 for s in seconds], best, where="post", color=colours[result["tuner"]], label=label)
    axis.axhline(target, color="black", ls="--", lw=0.8, label=f"target {target:.2%}")  # not a tuner's colour
    axis.set_xlabel("minutes since the study started")
    axis.set_ylabel("best val_accuracy so far")
    axis.set_title("Sweep efficiency: same space, same wall-clock budget")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--target",
        default="auto",
        help="validation accuracy to reach; auto: what plain random search reaches in half its budget (median of "
        "its studies), so the target is neither out of reach nor reached at once",
    )
    # 5 settings x 4 studies x 4 min: about 85 minutes with start-ups, within 90 on the slow (AVX2) kind; the
    # memory part is run on its own (--part memory).
    parser.add_argument("--minutes", type=float, default=4, help="wall-clock budget of each study")
    parser.add_argument("--images", type=int, default=12000, help="training images (0: all)")
    parser.add_argument(
        "--space",
        default="default",
        help="the study (conf/sweep) whose space the tuners search; its dataset is replaced by --dataset. The "
        "default study's space (widths, head, optimiser, learning rate over two decades, batch size) holds poor "
        "networks as well as good ones; over dropout_rates' space every network came within a point of the best, "
        "so any tuner found one in its first trials and the settings could not be told apart",
    )
    parser.add_argument("--max-epochs", type=int, default=6, help="epochs of a random trial; Hyperband's largest")
    parser.add_argument(
        "--precision", default="auto", choices=["auto", "float32", "bf16"], help="auto: bf16 only where native"
    )
    parser.add_argument("--max-trials", type=int, default=1000, help="random search: stop after this many trials")
    parser.add_argument("--studies", type=int, default=4, help="studies per setting, study seeds 0..N-1")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--memory-trials", type=int, default=20)
    parser.add_argument("--memory-images", type=int, default=3000)
    parser.add_argument("--output", default="BENCHMARKS.md")
    parser.add_argument("--plot", default="benchmarks/sweep.png")
    parser.add_argument("--memory-plot", default="benchmarks/sweep_memory.png")
    parser.add_argument("--part", choices=["all", "efficiency", "memory"], default="all", help="run one part only")
    add_dataset_arguments(parser)
    parser.add_argument(
        "--resume",
        metavar="WORK_FOLDER",
        help="an earlier run's work folder: studies it finished are read back, not run again (each study is timed "
        "from its own start, so a study run later is measured as one run at once)",
    )
    parser.add_argument("--short", action="store_true", help="a check that it still runs (CI, under a minute)")
    args = parser.parse_args()
    if args.short:
        # A check that it runs, not a speed figure: its two-trial studies end on their own within seconds, and the
        # budget only has to outlast them on a loaded machine (one minute did not, with training running beside it).
        args.minutes, args.images, args.max_epochs, args.max_trials = 5, 400, 2, 2
        args.studies, args.settings = 1, ["random", "random + median pruning"]
        args.memory_trials, args.memory_images = 3, 400
    args.budget_s = args.minutes * 60
    workdir = Path(args.resume) if args.resume else work_folder("cnnlab-bench-sweep-")
    store = f"sqlite:///{workdir}/bench.db"
    if args.part in ("all", "efficiency"):
        studies = efficiency_part(args, workdir, store)
        args.auto_target = args.target == "auto"
        args.target = automatic_target(studies, args.budget_s) if args.auto_target else float(args.target)
        for study in studies:
            study["reached"] = reached_at(study["curve"], args.target)
        plot(studies, args.target, ROOT / args.plot)
        write_efficiency(args, studies)
    if args.part in ("all", "memory"):
        mem = memory_part(args, workdir, store)
        plot_memory(mem, ROOT / args.memory_plot)
        write_memory(args, mem)


# The search settings compared: a name, and what it adds to the study's command line. A study runs about ten
# trials in its budget, so the defaults made for long studies would never act within it: keras-tuner's Bayesian
# optimisation draws 3 x (number of hyperparameters) random trials before its Gaussian process (21 for the default
# space), and the pruner waits for 5 finished trials.
SETTINGS = {
    "random": ["tuner=random"],
    "random + median pruning": ["tuner=random", "sweep.pruning=median", "sweep.pruning_warmup_trials=3"],
    "bayesian": ["tuner=bayesian", "tuner.num_initial_points=3"],
    "bayesian + median pruning": [
        "tuner=bayesian",
        "tuner.num_initial_points=3",
        "sweep.pruning=median",
        "sweep.pruning_warmup_trials=3",
    ],
    "hyperband": ["tuner=hyperband"],
}


def efficiency_part(args: argparse.Namespace, workdir: Path, store: str) -> list[dict]:
    """``--studies`` studies per setting, each with its own study seed (the oracle's draws and the trials' seeds)."""
    holdout = max(100, (args.images or 60000) // 5)
    studies = []
    for study_seed in range(args.studies):
        for setting in args.settings:
            overrides = [
                f"sweep={args.space}",
                *dataset_overrides(args),
                f"dataset.subset={args.images if args.images else 'null'}",
                f"trainer.holdout_size={holdout}",
                f"trainer.precision={args.precision}",
                *SETTINGS[setting],
                f"seed={study_seed}",
                f"sweep.max_epochs={args.max_epochs}",
                f"sweep.max_trials={args.max_trials}",  # by default the budget ends random search, as it ends Hyperband
                "sweep.noise_seeds=0",  # time to target only
                # The base configuration would be every tuner's same first trial; the benchmark times the search.
                "sweep.warm_start=false",
            ]
            name = f"efficiency-{setting.replace(' + ', '-').replace(' ', '-')}-s{study_seed}"
            record = workdir / f"{name}.json"
            if record.exists():  # finished by an earlier run of this work folder (--resume)
                print(f"{setting}, study seed {study_seed}: finished before, read back", flush=True)
                study = json.loads(record.read_text())
            else:
                print(f"{setting}, study seed {study_seed}: up to {args.minutes:g} min ...", flush=True)
                study = run_study(name, overrides, workdir, args.budget_s)
                record.write_text(json.dumps({key: study[key] for key in ("name", "started", "wall", "stopped")}))
            studies.append({**efficiency(store, study, args.budget_s), "tuner": setting, "study_seed": study_seed})
            print(f"{setting}: best {studies[-1]['best']:.4f}", flush=True)
    return studies


def seconds_to_target(study: dict, budget_s: float) -> float:
    """When the study first reached the target; a study that never did counts as the whole budget."""
    return study["reached"] if study["reached"] is not None else budget_s


def time_to_target(studies: list[dict], budget_s: float) -> dict[str, dict]:
    """Per setting: the median time to the target over its studies (a study that never got there counts as the
    whole budget, so the median is "at least" that when half of them missed), min, max and how many reached it."""
    import numpy as np

    summary = {}
    for setting in dict.fromkeys(study["tuner"] for study in studies):
        times = [seconds_to_target(s, budget_s) for s in studies if s["tuner"] == setting]
        reached = sum(s["reached"] is not None for s in studies if s["tuner"] == setting)
        summary[setting] = {
            "median": float(np.median(times)),
            "min": min(times),
            "max": max(times),
            "reached": reached,
            "studies": len(times),
            "censored": reached <= len(times) // 2,  # the median is the budget: at least that long
        }
    return summary


def paired_with_random(studies: list[dict], budget_s: float) -> dict[str, dict[str, int]]:
    """Per setting: in how many study seeds it reached the target before, after, or together with random search."""
    random_time = {s["study_seed"]: seconds_to_target(s, budget_s) for s in studies if s["tuner"] == "random"}
    counts: dict[str, dict[str, int]] = {}
    for study in studies:
        outcome = counts.setdefault(study["tuner"], {"faster": 0, "slower": 0, "tied": 0})
        if study["study_seed"] in random_time:
            difference = seconds_to_target(study, budget_s) - random_time[study["study_seed"]]
            outcome["faster" if difference < 0 else "slower" if difference > 0 else "tied"] += 1
    return counts


def memory_part(args: argparse.Namespace, workdir: Path, store: str) -> dict:
    overrides = [
        *dataset_overrides(args),
        f"dataset.subset={args.memory_images}",
        f"trainer.holdout_size={max(100, args.memory_images // 5)}",
        "tuner=random",
        "sweep.max_epochs=1",
        f"sweep.max_trials={args.memory_trials}",
        "sweep.noise_seeds=0",  # memory per trial: the retrained trials would add points that are not trials
    ]
    print(f"memory: {args.memory_trials} trials ...", flush=True)
    return memory(store, run_study("memory", overrides, workdir, 3600))


def write_efficiency(args: argparse.Namespace, studies: list[dict]) -> None:
    images = f"{args.images:,}" if args.images else "all"
    summary = time_to_target(studies, args.budget_s)
    lines = [
        "## Sweep efficiency",
        "",
        f"Command: `{command_line('make bench-sweep')}`. Dataset {args.dataset}, {images} training images less a fifth "
        f"held out for validation, the space of the `{args.space}` study (conf/sweep/{args.space}.yaml), "
        f"trainer.precision={args.precision} ({choose_precision(args.precision)[0]} here), trials of up "
        f"to {args.max_epochs} epochs; {args.studies} studies per setting (study seeds 0-{args.studies - 1}), each "
        f"with {args.minutes:g} min of wall clock on this machine's {os.cpu_count()} cores, start-up included. A "
        "study that never reached the target counts as the whole budget. The target "
        + (
            "is what plain random search reached at half its budget (median over its studies). "
            if args.auto_target
            else "was given. "
        )
        + "Warm start off (the base configuration would be every setting's same first trial). Settings, as "
        "overrides: "
        + "; ".join(f"{setting}: `{' '.join(SETTINGS[setting])}`" for setting in dict.fromkeys(args.settings))
        + ". Plot: "
        f"[{args.plot}]({args.plot}).",
        "",
        f"| setting | median time to {args.target:.2%} val_accuracy (min-max) | studies that reached it "
        "| vs random's median | same study seed as random: faster / slower / tied |",
        "|---|---|---|---|---|",
    ]
    baseline = summary.get("random", {}).get("median")
    baseline_censored = summary.get("random", {}).get("censored", False)
    paired = paired_with_random(studies, args.budget_s)
    for setting, row in summary.items():
        median = f"{'>= ' if row['censored'] else ''}{row['median'] / 60:.1f} min"
        ratio = f"{row['median'] / baseline:.2f}x" if baseline else ""
        # A median that is only a bound ("at least the budget") bounds the ratio too, or leaves it unknown.
        if setting != "random" and baseline and (baseline_censored or row["censored"]):
            if baseline_censored and row["censored"]:
                ratio = "unknown (both medians censored)"
            else:
                ratio = ("<= " if baseline_censored else ">= ") + ratio
        pairs = " / ".join(str(paired[setting][outcome]) for outcome in ("faster", "slower", "tied"))
        lines.append(
            f"| {setting} | {median} ({row['min'] / 60:.1f}-{row['max'] / 60:.1f}) | {row['reached']}/{row['studies']} "
            f"| {ratio} | {pairs if setting != 'random' else ''} |"
        )
    lines += [
        "",
        "Same study seed: a setting's study against random search's study of that seed (the same seed gives the "
        "same first draws where the search is random), counting a study that missed the target as the whole "
        "budget, so two misses tie. With this few studies a ratio of medians is a description, not a ranking; the "
        "pairs say how often the setting got there first.",
    ]
    late = [s for s in studies if s["wall"] > args.budget_s + 10]
    if late:
        lines += [
            "",
            "Stopped late (after SIGTERM at the budget; what they logged after the budget is not counted): "
            + ", ".join(f"{s['tuner']} seed {s['study_seed']} ({s['wall'] - args.budget_s:.0f} s)" for s in late)
            + ".",
        ]
    lines += [
        "",
        "| setting | study seed | time to target | best val_accuracy | trials started | trials finished |",
        "|---|---|---|---|---|---|",
    ]
    for study in studies:
        reached = f"{study['reached'] / 60:.1f} min" if study["reached"] is not None else "not within the budget"
        lines.append(
            f"| {study['tuner']} | {study['study_seed']} | {reached} | {study['best']:.4f} | {study['trials']} "
            f"| {study['finished']} |"
        )
    fastest = min(summary, key=lambda setting: summary[setting]["median"])
    best = summary[fastest]
    verdict = (
        f"to {args.target:.2%} validation accuracy, {fastest} got there soonest "
        f"(median {'>= ' if best['censored'] else ''}{best['median'] / 60:.1f} min, {best['reached']} of "
        f"{best['studies']} studies); with {best['studies']} studies a setting that is a description, not a ranking."
    )
    write_section(ROOT / args.output, "sweep", "\n".join(lines), verdict[0].upper() + verdict[1:])
    print("\n".join(lines))


def write_memory(args: argparse.Namespace, mem: dict) -> None:
    per_trial = mem["per_trial"]
    lines = [
        "## Sweep memory",
        "",
        f"Command: `{command_line('make bench-sweep')}`. A {args.memory_trials}-trial random study of the default "
        f"study's space ({args.dataset}, {args.memory_images} images, 1 epoch a trial, every model logged to MLflow), "
        f"one process; its resident memory read at each trial's end. Plot: [{args.memory_plot}]({args.memory_plot}).",
        "",
    ]
    if len(per_trial) >= 3:
        verdict = memory_verdict(per_trial)
        half = len(per_trial) // 2
        lines += [
            f"- {per_trial[0]:.0f} MB after trial 1, {per_trial[1]:.0f} MB after trial 2, {per_trial[-1]:.0f} MB after "
            f"trial {len(per_trial)}, peak {mem['peak']:.0f} MB.",
            f"- Growth per trial over trials 2-{len(per_trial)} (the median trial-to-trial change, which a leak "
            f"raises and a one-off rise does not): {verdict['growth']:+.1f} MB, {verdict['projected_percent']:+.1f}% "
            f"over the study: {'flat' if verdict['flat'] else 'GROWING'} (flat: under 5%).",
            f"- For the record: the least-squares trend over trials 2-{len(per_trial)} is {verdict['trend']:+.1f} MB "
            f"per trial, {growth_per_trial(per_trial[half:]):+.1f} MB over the second half (trials {half + 1}-"
            f"{len(per_trial)}); the largest single rise is {verdict['largest_rise']:+.0f} MB, at trial "
            f"{verdict['largest_rise_trial']}.",
            "- RSS after each trial, MB: " + ", ".join(f"{value:.0f}" for value in per_trial),
        ]
    else:
        lines.append(f"Only {len(per_trial)} trials finished; no trend to report (peak {mem['peak']:.0f} MB).")
    summary = f"Only {len(per_trial)} trials finished: no trend."
    if len(per_trial) >= 3:
        verdict = memory_verdict(per_trial)
        summary = (
            f"Memory is {'flat' if verdict['flat'] else 'GROWING'} over a {len(per_trial)}-trial study: "
            f"{verdict['growth']:+.1f} MB a trial, peak {mem['peak']:.0f} MB."
        )
    write_section(ROOT / args.output, "sweep-memory", "\n".join(lines), summary)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
