"""Harness fidelity: does cnnlab change a tutorial's outcome? cnnlab's seeds against the tutorial written plainly.

For each claim, cnnlab's float32 reproduction runs (``python -m cnnlab.reproduce seeds=N claims=[...]``, run here for
any seed not yet FINISHED) are compared with ``benchmarks/plain_keras.py`` trained on the same verified images with
the claim's protocol (network, epochs, batch size, pixel scaling) on seeds 0..N-1. The seeds cannot be paired (the
two programs draw their randomness differently), so the report gives the difference of means with Welch's 95%
interval, and calls the harness *equivalent* by TOST (Schuirmann's two one-sided tests, 5% each: the 90% Welch
interval inside +-tolerance, the claim's own), with the test's power at the seeds used. Ten seeds a side, stated
before running: at the spread measured here (sd ~0.4 points for fashion_deep) TOST's power at ten seeds is about
half, so a comparison not shown equivalent says little; the reading names the seeds that would show it.

The plain script draws a new seeded order of the training images each epoch (``--plain-epoch-order reshuffled``),
as the tutorials do when run as written (unseeded); Keras's own ``fit(shuffle=True)`` under a fixed seed replays
one order every epoch, a different protocol (REPRODUCTION.md, section ``fidelity-epoch-order``).
Each plain run is logged to MLflow (experiment ``cnnlab-fidelity``), so a rerun skips what is done, and kept in
``results/fidelity/plain-<machine kind>.json`` (committed), so another checkout or machine of the same kind reuses it
under the same protocol, data and TensorFlow and Keras versions: the comparison can be finished a few seeds at a
time. (Speed is not measured here, so the plain runs may train beside other work.)

    python benchmarks/fidelity.py                       # mnist_simple and fashion_deep, 10 seeds: REPRODUCTION.md
    python benchmarks/fidelity.py --claims mnist_simple --seeds 6
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "cnnlab-fidelity"


def compose_claim(name: str, extra: list[str]):
    from cnnlab.config import compose_run_config

    return compose_run_config([f"experiment={name}", *extra])


def cnnlab_command(name: str, seeds: int, extra: list[str]) -> list[str]:
    """The reproduction that trains cnnlab's side: float32, as the plain script trains, even for a claim whose bf16
    evidence would run it in bf16 here (``trainer.precision=float32`` is the claim's own rule, not a modified
    protocol); verdicts=false: the seeds are measured, so a count too short for a verdict (a smoke test's 2) is
    allowed."""
    from cnnlab.claims.reproduce import override_key

    precision = [] if any(override_key(o) == "trainer.precision" for o in extra) else ["trainer.precision=float32"]
    return [
        sys.executable,
        "-m",
        "cnnlab.reproduce",
        f"seeds={seeds}",
        f"claims=[{name}]",
        "verdicts=false",
        *precision,
        *extra,
    ]


def cnnlab_values(name: str, cfg, arrays, seeds: int, extra: list[str]) -> list[float]:
    """cnnlab's test accuracy per seed, from the reproduction's FINISHED runs (trained here where missing)."""
    from mlflow.tracking import MlflowClient

    from cnnlab import tracking
    from cnnlab.claims import EXPERIMENT as REPRODUCTIONS
    from cnnlab.claims.kinds import finished_runs, this_kind
    from cnnlab.claims.reproduce import fingerprint

    command = cnnlab_command(name, seeds, extra)
    print(f"[fidelity] {name}: cnnlab seeds via {shlex.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    experiment_id = tracking.configure(OmegaConf.merge(cfg.tracking, {"experiment": REPRODUCTIONS}))
    print_ = fingerprint(cfg, arrays.sha256)
    client = MlflowClient()
    values = []
    for seed in range(seeds):  # the run the reproduction just trained or reused: this kind's, on these threads
        tags = {"cnnlab.claim": name, "cnnlab.seed": str(seed), "cnnlab.fingerprint": print_}
        run = finished_runs(client, experiment_id, tags, this_kind())[0]
        values.append(run.data.metrics["test_accuracy"])
    return values


def recorded(path: Path) -> dict[str, float]:
    """The record's plain runs: ``{record key: test accuracy}``."""
    return json.loads(path.read_text()) if path.exists() else {}


def plain_values(
    name: str,
    cfg,
    arrays,
    seeds: int,
    plain_input: str = "arrays",
    epoch_order: str = "reshuffled",
    record: Path | None = None,
) -> list[float]:
    """The plain script's test accuracy per seed on the same images and protocol, each logged as an MLflow run and
    kept in ``record`` (a JSON file), from which a run already made under the same key is taken instead."""
    import mlflow
    import numpy as np

    from cnnlab import tracking
    from cnnlab.config import option
    from cnnlab.tracking.provenance import versions

    if option(cfg.trainer.loss) != "categorical_crossentropy" or option(cfg.optimizer.name) != "adam":
        raise SystemExit(f"{name}: the plain script trains Adam with categorical cross-entropy only")
    experiment_id = tracking.configure(OmegaConf.merge(cfg.tracking, {"experiment": EXPERIMENT}))
    protocol = {
        "network": cfg.model.name,
        "epochs": cfg.trainer.epochs,
        "batch_size": cfg.trainer.batch_size,
        "raw_pixels": not cfg.dataset.scale_pixels,
        "data": arrays.sha256["x_train"][:16],
        # only what differs from the first protocol enters the key, so the runs made before each option keep theirs
        **({"input": plain_input} if plain_input != "arrays" else {}),
        **({"epoch_order": epoch_order} if epoch_order != "keras" else {}),
    }
    key = json.dumps(protocol, sort_keys=True)
    library = versions()
    client = mlflow.MlflowClient()
    values = []
    with tempfile.TemporaryDirectory(prefix="cnnlab-fidelity-") as workdir:
        data = Path(workdir) / "data.npz"
        np.savez(data, x_train=arrays.x_train, y_train=arrays.y_train, x_test=arrays.x_test, y_test=arrays.y_test)
        for seed in range(seeds):
            done = client.search_runs(
                [experiment_id],
                filter_string=(
                    f"tags.`cnnlab.claim` = '{name}' and tags.`cnnlab.seed` = '{seed}' and "
                    f"tags.`fidelity.protocol` = '{key}' and attributes.status = 'FINISHED'"
                ),
                max_results=1,
            )
            if done:
                values.append(done[0].data.metrics["test_accuracy"])
                continue
            # a plain run's identity across checkouts: claim, seed, protocol (data digest included) and the versions
            # of the libraries whose kernels it ran, on this machine kind (the record's file)
            identity = json.dumps([name, seed, key, library["version.tensorflow"], library["version.keras"]])
            kept = recorded(record) if record else {}
            if identity in kept:
                print(f"[fidelity] {name}: plain script, seed {seed} from {record}", flush=True)
                values.append(kept[identity])
                continue
            command = [
                sys.executable,
                str(ROOT / "benchmarks" / "plain_keras.py"),
                f"--network={protocol['network']}",
                f"--data={data}",
                f"--images={len(arrays.x_train)}",
                f"--epochs={protocol['epochs']}",
                f"--batch-size={protocol['batch_size']}",
                f"--seed={seed}",
                *(["--raw-pixels"] if protocol["raw_pixels"] else []),
                f"--input={plain_input}",
                f"--epoch-order={epoch_order}",
            ]
            print(f"[fidelity] {name}: plain script, seed {seed}", flush=True)
            output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
            measured = json.loads(output.strip().splitlines()[-1])
            with mlflow.start_run(
                experiment_id=experiment_id,
                run_name=f"plain-{name}-s{seed}",
                tags={"cnnlab.claim": name, "cnnlab.seed": str(seed), "fidelity.protocol": key},
            ):
                mlflow.log_params({**protocol, "seed": seed, "script": "benchmarks/plain_keras.py"})
                mlflow.log_metric("test_accuracy", measured["test_accuracy"])
                mlflow.log_metric("seconds_per_epoch", sum(measured["epoch_seconds"]) / len(measured["epoch_seconds"]))
            values.append(measured["test_accuracy"])
            if record:  # read again: another process may have added its own seeds meanwhile
                kept = recorded(record) | {identity: measured["test_accuracy"]}
                record.parent.mkdir(parents=True, exist_ok=True)
                record.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
    return values


def p_text(p: float) -> str:
    """``p = 0.032``, or ``p < 0.001`` where three decimals would print a zero."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def compare(cnnlab: list[float], plain: list[float], tolerance: float) -> dict[str, float | str]:
    """TOST of the difference of means (cnnlab - plain): Welch's 90% interval inside +-tolerance, 5% per side;
    with the test's power at the seeds used (if the measured spreads hold and the programs agree) and, when not
    shown, the seeds a side that would show it with 80% probability if the measured difference holds."""
    import numpy as np

    from cnnlab.claims.stats import seeds_for_tost, tost_power, welch_tost

    result = welch_tost(cnnlab, plain, tolerance)
    sd_a, sd_b = float(np.std(cnnlab, ddof=1)), float(np.std(plain, ddof=1))
    seeds = min(len(cnnlab), len(plain))
    power = tost_power(0.0, sd_a, sd_b, seeds, tolerance)
    if result.equivalent:
        reading = f"equivalent (TOST, {p_text(result.p_value)}): the 90% interval is within +-{100 * tolerance:.1f} pt"
    elif result.low > tolerance or result.high < -tolerance:
        reading = f"different: the whole 90% interval is beyond +-{100 * tolerance:.1f} pt"
    else:
        reading = f"not shown equivalent (TOST, {p_text(result.p_value)}): the 90% interval reaches past +-" + (
            f"{100 * tolerance:.1f} pt"
        )
        needed = seeds_for_tost(result.difference, sd_a, sd_b, tolerance)
        reading += (
            f"; {needed[0]} seeds a side would show it with {100 * needed[1]:.0f}% probability if the difference "
            "and spreads hold"
            if needed
            else "; the difference itself sits at or past the tolerance, so more seeds would not show it"
        )
    return {
        "difference": result.difference,
        "low": result.low,
        "high": result.high,
        "p_value": result.p_value,
        "power": power,
        "reading": reading,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", nargs="+", default=["mnist_simple", "fashion_deep"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--output", default="REPRODUCTION.md")
    parser.add_argument(
        "--plain-input",
        choices=["arrays", "tfdata"],
        default="arrays",
        help="how the plain script feeds its images (benchmarks/plain_keras.py --input): tfdata isolates the pipeline",
    )
    parser.add_argument(
        "--plain-epoch-order",
        choices=["reshuffled", "keras"],
        default="reshuffled",
        help="the plain script's order of training images (benchmarks/plain_keras.py --epoch-order): reshuffled "
        "each epoch as an unseeded tutorial run is, or Keras's fit(shuffle=True), one order replayed under a seed",
    )
    parser.add_argument(
        "--record",
        default=str(ROOT / "results" / "fidelity"),
        help="the folder of each machine kind's plain runs (plain-<kind>.json), reused by later comparisons",
    )
    parser.add_argument("overrides", nargs="*", help="cnnlab overrides for both sides, e.g. dataset.local_dir=...")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from common import kind_file

    rows = []
    for name in args.claims:
        from cnnlab.data import load_arrays

        cfg = compose_claim(name, args.overrides)
        arrays = load_arrays(cfg.dataset)  # verified once; both sides' fingerprint and the plain script's npz
        cnnlab = cnnlab_values(name, cfg, arrays, args.seeds, args.overrides)
        record = kind_file(Path(args.record), "plain")
        plain = plain_values(name, cfg, arrays, args.seeds, args.plain_input, args.plain_epoch_order, record)
        tolerance = cfg.claim.tolerance
        result = compare(cnnlab, plain, tolerance)
        rows.append((name, cnnlab, plain, result))
        print(f"[fidelity] {name}: {result}", flush=True)
        pending = args.claims[len(rows) :]
        write_report(args, rows, pending)  # after every claim: a stopped comparison keeps what it finished


def write_report(args: argparse.Namespace, rows: list[tuple], pending: list[str]) -> None:
    from cnnlab import documents
    from cnnlab.claims.report import REPRODUCTION_HEADER
    from cnnlab.machine import cpu_description

    def pct(values: list[float]) -> str:
        return ", ".join(f"{100 * v:.2f}" for v in values)

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import command_line

    command = command_line("make fidelity")
    lines = [
        "## Harness fidelity: cnnlab against the tutorial written plainly",
        "",
        f"Command: `{command}`. Machine: {cpu_description()}.",
        "",
        "Each claim's protocol trained by cnnlab (its reproduction runs, float32) and by `benchmarks/plain_keras.py`, "
        "the tutorial's code written plainly ("
        + (
            "float32 numpy arrays into `model.fit`"
            if args.plain_input == "arrays"
            else "its images fed through cnnlab's own tf.data pipeline, `--input tfdata`"
        )
        + (
            ", a new seeded order of the training images each epoch as an unseeded tutorial run gets"
            if args.plain_epoch_order == "reshuffled"
            else ", `fit(shuffle=True)`, which under its fixed seed replays one order every epoch"
        )
        + "), on the same verified images, "
        f"seeds 0-{args.seeds - 1} each, a number stated before either side ran (`--seeds`, default 10). Seeds are "
        "not paired (the programs draw randomness differently): the difference is cnnlab's mean minus the plain "
        "script's; *equivalent* by TOST (two one-sided Welch tests at 5% each: the 90% interval within the claim's "
        "tolerance). Power: the chance TOST shows equivalence at these seeds if the programs agree and the spreads "
        "are as measured (simulated).",
        "",
        "| claim | cnnlab test accuracy per seed, % | plain script, % | difference, points (90% CI) | TOST power at "
        "these seeds | reading |",
        "|---|---|---|---|---|---|",
    ]
    for name, cnnlab, plain, result in rows:
        lines.append(
            f"| {name} | {pct(cnnlab)} | {pct(plain)} | {100 * result['difference']:+.2f} "
            f"[{100 * result['low']:+.2f}, {100 * result['high']:+.2f}] | {100 * result['power']:.0f}% "
            f"| {result['reading']} |"
        )
    if pending:
        lines += ["", f"Not compared yet: {', '.join(pending)} (rerun the command: finished runs are kept)."]
    documents.write_section(ROOT / args.output, "fidelity", "\n".join(lines), REPRODUCTION_HEADER)
    print(f"[fidelity] wrote its section of {args.output}", flush=True)


if __name__ == "__main__":
    main()
