"""The benchmarks' short modes, on synthetic KMNIST-format files, so the scripts cannot rot. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab import machine
from tests.conftest import kmnist_folder

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their shared helpers as `common`
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_settings_are_paired_with_random_search_by_study_seed():
    paired = load_benchmark("sweep").paired_with_random

    def study(tuner: str, seed: int, reached: float | None) -> dict:
        return {"tuner": tuner, "study_seed": seed, "reached": reached}

    studies = [
        *(study("random", seed, reached) for seed, reached in enumerate([100.0, 50.0, None, None])),
        *(study("pruned", seed, reached) for seed, reached in enumerate([60.0, 80.0, 200.0, None])),
    ]
    # seed 0 faster, seed 1 slower, seed 2 reached where random missed (faster), seed 3 both missed (tied)
    assert paired(studies, budget_s=240.0)["pruned"] == {"faster": 2, "slower": 1, "tied": 1}
    assert paired(studies, budget_s=240.0)["random"] == {"faster": 0, "slower": 0, "tied": 4}


def test_memory_verdict_calls_steady_growth_growing_and_a_one_off_rise_flat():
    verdict = load_benchmark("sweep").memory_verdict
    leak = [900.0] + [1000.0 + 4 * trial for trial in range(19)]  # +4 MB every trial: +7.2% over the study
    assert not verdict(leak)["flat"]
    assert verdict(leak)["growth"] == pytest.approx(4)

    one_off = [900.0] + [1000.0] * 9 + [1050.0] * 10  # one +50 MB rise at trial 11, flat either side
    result = verdict(one_off)
    assert result["flat"] and result["growth"] == 0
    assert (result["largest_rise"], result["largest_rise_trial"]) == (50, 11)
    assert result["trend"] > 3  # the least-squares trend alone would call it growing (+3.9 MB a trial, +7.1%)


@pytest.fixture
def synthetic_kmnist(tmp_path, arrays) -> dict:
    folder = kmnist_folder(tmp_path, arrays)
    # TMPDIR: the scripts keep their work folders (logs, stores) for a reader; a test's belong in its own folder
    env = {**os.environ, "CNNLAB_DATA": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return {"args": ["--short", "--dataset", "kmnist", "--local-dir", str(folder)], "env": env}


def run(script: str, extra: list[str], env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *extra], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.mark.system
def test_training_benchmark_short_mode_writes_its_section(tmp_path, synthetic_kmnist):
    output = tmp_path / "BENCHMARKS.md"
    output.write_text("# Benchmarks\n\n<!-- section: sweep -->\nkept as it was\n<!-- end of section: sweep -->\n")
    run("run.py", [*synthetic_kmnist["args"], "--output", str(output)], synthetic_kmnist["env"])

    text = output.read_text()
    assert "kept as it was" in text  # another benchmark's section survives
    rows = re.findall(r"^\| simple \| (.+?) \| (\d+) \(", text, flags=re.M)
    bf16 = ["cnnlab bf16 (auto)"] if machine.native_bf16() else []  # emulated bf16 is not worth timing
    assert [path for path, _ in rows] == [
        "plain Keras script",
        "cnnlab float32",
        *bf16,
        "cnnlab float32 + XLA",
        "float32 step alone (bound)",
    ]
    kind = machine.kind()
    assert f"<!-- section: training / {kind} -->" in text  # one section per machine kind
    assert f"Machine kind `{kind}`: {machine.cpu_description()}; measured " in text
    assert all(int(samples) > 0 for _, samples in rows)
    assert re.search(r"- simple: float32 \d+\.\d+x the plain script .+ float32 step alone runs at \d+\.\d+x", text)
    verdict = r"XLA runs at \d+\.\d+x cnnlab float32 without it \(per repeat: \d+\.\d+\): "
    verdict += "(faster|slower|no consistent difference)"
    assert re.search(verdict, text)
    assert re.search(r"`python -m cnnlab.run --help`: \d+\.\d+ s", text)


@pytest.mark.system
def test_sweep_benchmark_short_mode_reports_each_setting_and_memory(tmp_path, synthetic_kmnist):
    """One part alone keeps the other's section; a rerun with --resume reads the finished studies back (it trains
    none of them again) and writes the same rows, and its memory part replaces the older memory section."""
    output, figure, memory_figure = tmp_path / "BENCHMARKS.md", tmp_path / "sweep.png", tmp_path / "memory.png"
    kind = machine.kind()
    older_memory = f"<!-- section: sweep-memory / {kind} -->\nan older memory section\n"
    output.write_text(f"# Benchmarks\n\n{older_memory}<!-- end of section: sweep-memory / {kind} -->\n")
    arguments = [*synthetic_kmnist["args"], "--output", str(output), "--plot", str(figure)]
    arguments += ["--memory-plot", str(memory_figure)]
    first = run("sweep.py", [*arguments, "--part", "efficiency"], synthetic_kmnist["env"])

    text = output.read_text()
    assert older_memory in text  # the efficiency part alone left the memory section as it was
    assert re.findall(r"<!-- section: ([\w /-]+?) -->", text) == [
        "summary",
        f"sweep-memory / {kind}",
        f"sweep / {kind}",
    ]
    studies = re.findall(
        r"^\| (random|random \+ median pruning) \| 0 \| .+? \| (\d\.\d{4}) \| (\d+) \| (\d+) \|", text, flags=re.M
    )
    assert [s[0] for s in studies] == ["random", "random + median pruning"]
    assert all(int(finished) >= 1 and float(best) > 0 for _, best, _, finished in studies)
    medians = re.findall(r"^\| (random|random \+ median pruning) \| (>= )?\d+\.\d min \(.+?\) \| [01]/1 \|", text, re.M)
    assert [m[0] for m in medians] == ["random", "random + median pruning"]
    assert re.search(r"^\| random \+ median pruning \| .+ \| [01] / [01] / [01] \|$", text, flags=re.M)
    settings = "Settings, as overrides: random: `tuner=random`; random + median pruning: `tuner=random sweep.pruning"
    assert settings in text
    assert figure.stat().st_size > 10_000 and not memory_figure.exists()

    folder = re.search(r"work folder, kept for its logs and MLflow store: (\S+)", first.stdout).group(1)
    again = run("sweep.py", [*arguments, "--part", "all", "--resume", folder], synthetic_kmnist["env"])
    assert again.stdout.count("finished before, read back") == 2 and " min ...\n" not in again.stdout
    both = output.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| random")]
    assert rows and all(row in both for row in rows)
    assert re.findall(r"<!-- section: ([\w /-]+?) -->", both) == [
        "summary",
        f"sweep-memory / {kind}",
        f"sweep / {kind}",
    ]
    assert "an older memory section" not in both and both.count("## Sweep memory") == 1
    per_trial = re.search(r"RSS after each trial, MB: (.+)", both).group(1).split(", ")
    assert len(per_trial) == 3 and all(float(v) > 100 for v in per_trial)
    growth = r"Growth per trial over trials 2-3 .+: [+-]\d+\.\d MB, [+-]\d+\.\d% over the study: (flat|GROWING)"
    assert re.search(growth, both)
    assert memory_figure.stat().st_size > 10_000


@pytest.mark.system
def test_fidelity_compares_cnnlab_seeds_with_the_plain_script_and_writes_its_section(tmp_path, synthetic_kmnist):
    folder = synthetic_kmnist["args"][-1]
    output = tmp_path / "REPRODUCTION.md"
    output.write_text("# Reproduction\n\n<!-- section: claims -->\nkept\n<!-- end of section: claims -->\n")
    overrides = [
        "dataset=kmnist",
        f"dataset.local_dir={folder}",
        "dataset.sources=[local]",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "tracking.log_model=false",
        f"tracking.uri=sqlite:///{tmp_path}/fidelity.db",
    ]
    record = tmp_path / "record"
    arguments = ["--claims", "mnist_simple", "--seeds", "2", "--output", str(output), "--record", str(record)]
    arguments += overrides
    result = run("fidelity.py", arguments, synthetic_kmnist["env"])
    assert result.stdout.count("plain script, seed") == 2
    text = output.read_text()
    assert "kept" in text and "<!-- section: fidelity -->" in text
    assert "a new seeded order of the training images each epoch" in text  # the default plain protocol, named
    # the command a reader reruns: the make target, without this machine's store
    assert "Command: `make fidelity  # python benchmarks/fidelity.py --claims mnist_simple --seeds 2" in text
    assert "fidelity.db" not in text and "an MLflow store of its own (tracking.uri=...)" in text
    row = next(line for line in text.splitlines() if line.startswith("| mnist_simple |"))
    assert re.search(
        r"\| [+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\] \| \d+% \| (equivalent|different|not shown)", row
    )
    # a second run trains nothing: both sides are found in MLflow
    again = run("fidelity.py", arguments, synthetic_kmnist["env"])
    assert "plain script, seed" not in again.stdout and "training" not in again.stdout
    # another checkout (a new store) takes the plain runs from the record, trains only cnnlab's side again
    (kept,) = record.glob("plain-*.json")
    assert len(json.loads(kept.read_text())) == 2
    elsewhere = [*arguments[:-1], f"tracking.uri=sqlite:///{tmp_path}/elsewhere.db"]
    third = run("fidelity.py", elsewhere, synthetic_kmnist["env"])
    assert third.stdout.count(f"from {kept}") == 2 and "plain script, seed 0\n" not in third.stdout
    assert row in output.read_text()  # the same figures, from the record


def test_fidelity_trains_cnnlab_in_float32_as_the_plain_script_does_even_where_bf16_evidence_holds():
    command = load_benchmark("fidelity").cnnlab_command
    assert command("mnist_simple", 10, [])[3:] == [
        "seeds=10",
        "claims=[mnist_simple]",
        "verdicts=false",
        "trainer.precision=float32",
    ]
    assert command("mnist_simple", 10, ["trainer.precision=bf16"]).count("trainer.precision=float32") == 0


def test_fidelity_reading_of_the_interval():
    compare = load_benchmark("fidelity").compare
    same = compare([0.900, 0.901, 0.899, 0.900], [0.900, 0.899, 0.901, 0.900], tolerance=0.005)
    assert same["reading"].startswith("equivalent") and same["low"] > -0.005
    apart = compare([0.93, 0.931, 0.929], [0.90, 0.901, 0.899], tolerance=0.005)
    assert apart["reading"].startswith("different") and apart["difference"] == pytest.approx(0.03)
    noisy = compare([0.90, 0.92, 0.88], [0.90, 0.91, 0.89], tolerance=0.005)
    assert noisy["reading"].startswith("not shown equivalent")
    p_text = load_benchmark("fidelity").p_text
    assert (p_text(0.0004), p_text(0.001), p_text(0.0321)) == ("p < 0.001", "p = 0.001", "p = 0.032")


def test_fidelity_names_the_seeds_that_would_show_equivalence():
    import numpy as np

    fidelity = load_benchmark("fidelity")

    def sample(n: int, mean: float, sd: float) -> list[float]:
        """n values with exactly this mean and sample sd: what "the means and spreads hold" means."""
        z = np.random.default_rng(n).standard_normal(n)
        return list(mean + sd * (z - z.mean()) / z.std(ddof=1))

    from cnnlab.claims.stats import welch_tost

    cnnlab, plain = sample(10, 0.9154, 0.0043), sample(10, 0.9134, 0.0050)
    reading = fidelity.compare(cnnlab, plain, tolerance=0.005)["reading"]
    found = re.search(r"(\d+) seeds a side would show it with (\d+)% probability", reading)
    needed = int(found.group(1))
    assert needed > 10 and int(found.group(2)) >= 80
    # known truth equal to the estimate: TOST at that many seeds a side shows equivalence >= 80% of the time
    rng = np.random.default_rng(23)
    shown = np.mean(
        [
            welch_tost(
                list(rng.normal(0.9154, 0.0043, needed)), list(rng.normal(0.9134, 0.0050, needed)), 0.005
            ).equivalent
            for _ in range(1000)
        ]
    )
    assert shown >= 0.8 - 3 * (0.16 / 1000) ** 0.5
    hopeless = fidelity.compare(sample(10, 0.9180, 0.004), sample(10, 0.9128, 0.004), tolerance=0.005)["reading"]
    assert hopeless.endswith("sits at or past the tolerance, so more seeds would not show it")


@pytest.mark.parametrize("feed", ["arrays", "tfdata", "arrays --epoch-order=reshuffled"])
def test_plain_script_trains_from_arrays_and_from_cnnlabs_pipeline(tmp_path, arrays, feed, monkeypatch, capsys):
    """In this process: the benchmark and fidelity tests above run the script as a program."""
    import json

    import numpy as np

    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    source, *order = feed.split()
    arguments = [f"--data={data}", "--network=simple", "--images=200", "--epochs=2", f"--input={source}", *order]
    monkeypatch.setattr(sys, "argv", ["plain_keras.py", *arguments])
    load_benchmark("plain_keras").main()
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 200 and len(result["epoch_seconds"]) == 2
    assert result["test_accuracy"] > 0.3  # ten learnable classes: chance is 0.1, so it trained on what it was fed


@pytest.mark.system
def test_packing_benchmark_writes_a_row_per_packing_and_a_reading(tmp_path, synthetic_kmnist):
    output = tmp_path / "BENCHMARKS.md"
    small = ["--networks", "simple", "--images", "64", "--epochs", "2", "--repeats", "1", "--output", str(output)]
    run("packing.py", small, synthetic_kmnist["env"])
    text = output.read_text()
    assert f"<!-- section: packing / {machine.kind()} -->" in text
    precisions = ["float32", *(["bf16"] if machine.native_bf16() else [])]
    rows = re.findall(r"^\| simple \| (\w+) \| (\d) \| (\d+) \| (\d+) \| (\d+\.\d+)x", text, flags=re.M)
    assert [(precision, pack) for precision, pack, *_ in rows] == [(p, k) for p in precisions for k in ("2", "4")]
    assert all(int(alone) > 0 and int(packed) > 0 for _, _, alone, packed, _ in rows)
    assert re.search(r"^Reading: packing is (worth adopting|not worth a second training path) \(", text, flags=re.M)


@pytest.mark.system
def test_options_benchmark_writes_a_row_per_variant_and_a_reading(tmp_path, synthetic_kmnist):
    """Every variant on the step alone, then (``--whole-from 0``: wherever side by side was measured at all) the
    network's claim as whole runs, one after the other and side by side, each seed's job logged in the work folder."""
    output = tmp_path / "BENCHMARKS.md"
    small = ["--networks", "simple", "--images", "64", "--epochs", "2", "--repeats", "1", "--output", str(output)]
    folder = synthetic_kmnist["args"][-1]
    whole = f"dataset=kmnist dataset.local_dir={folder} dataset.sources=[local]"
    small += ["--whole-from", "0", "--whole-epochs", "1", "--whole-overrides", whole]
    out = run("options.py", small, synthetic_kmnist["env"]).stdout
    text = output.read_text()
    assert f"<!-- section: options / {machine.kind()} -->" in text
    precisions = ["float32", *(["bf16"] if machine.native_bf16() else [])]
    rows = re.findall(r"^\| simple \| (\w+) \| ([\w ]+) \| (\d+) \| (\d+) \| (\d+\.\d+)x", text, flags=re.M)
    variants = ["oneDNN off", "channels first", "seeds side by side"]
    assert [(precision, variant) for precision, variant, *_ in rows] == [(p, v) for p in precisions for v in variants]
    assert all(int(default) > 0 and int(variant) > 0 for *_, default, variant, _ in rows)
    assert re.search(r"^Reading: on the step alone, the best option is (worth a fidelity|not worth)", text, flags=re.M)
    whole_rows = re.findall(r"^\| simple \(mnist_simple\) \| (\w+) \| (\d+) \| (\d+) \| (\d+\.\d+)x", text, re.M)
    assert [precision for precision, *_ in whole_rows] == precisions
    assert all(int(alone) > 0 and int(side) > 0 for _, alone, side, _ in whole_rows)
    assert re.search(r"^Reading, whole runs: as whole runs, seeds side by side (is worth|does not pay)", text, re.M)
    work = Path(re.search(r"work folder, kept for its logs and MLflow store: (\S+)", out).group(1))
    cpus = machine.usable_cpus()
    assert len(list(work.glob("whole-simple-*/seed*.db"))) == 2 * cpus * len(precisions)  # each seed's own store


def test_the_channels_first_step_has_the_same_weights_and_outputs():
    """The layout variant computes the same function: equal weights at the start, equal outputs up to rounding."""
    import keras
    import numpy as np

    from cnnlab import train
    from cnnlab.config import compose_run_config

    model = train.build_compiled_model(compose_run_config(["model=pooled"]))
    clone = load_benchmark("compute_bound").channels_first(model)
    assert clone.count_params() == model.count_params() and clone.input_shape == (None, 1, 28, 28)
    for a, b in zip(model.get_weights(), clone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(clone.predict(np.transpose(images, (0, 3, 1, 2)), verbose=0), expected, atol=1e-5)
    assert keras.config.image_data_format() == "channels_last"  # the layout stays the variant's own


@pytest.mark.system
def test_time_to_verdicts_reproduces_in_a_store_of_its_own_and_writes_its_section(tmp_path, synthetic_kmnist):
    folder = synthetic_kmnist["args"][-1]
    output = tmp_path / "BENCHMARKS.md"
    overrides = ["seeds=2", "verdicts=false", "dataset=kmnist", f"dataset.local_dir={folder}"]
    overrides += ["dataset.sources=[local]", "trainer.epochs=2", "trainer.verbose=0", "tracking.log_model=false"]
    record = tmp_path / "record"
    arguments = ["--claims", "mnist_simple", "--matmul-repeats", "2", "--output", str(output), "--record", str(record)]
    arguments += overrides
    result = run("verdicts.py", arguments, synthetic_kmnist["env"])
    (work,) = tmp_path.glob("cnnlab-verdicts-*")  # the store is the benchmark's own, in its work folder
    assert (work / "mlflow.db").exists() and (work / "REPRODUCTION.md").exists()
    assert len(json.loads((work / "wall.json").read_text())) == 1
    text = output.read_text()
    assert f"<!-- section: verdicts / {machine.kind()} -->" in text
    minutes = re.search(r"one process: \*\*(\d+\.\d) min\*\*", text)
    assert minutes and float(minutes.group(1)) > 0, text
    # one claim of several: the total so far, and no reading against the goal until every claim is measured
    assert "not measured yet, so the goal (60 minutes) is not judged" in text and "mnist_dropout" in text
    (measurement,) = json.loads((record / f"verdicts-{machine.kind()}.json").read_text())
    assert measurement["claims"] == ["mnist_simple"] and measurement["minutes"] == pytest.approx(
        float(minutes.group(1)), abs=0.051
    )
    assert re.search(
        r"^\| mnist_simple \| float32 \| test_accuracy \| modified protocol \(no verdict\) \| 2 \(2\) \|", text, re.M
    )
    speed = re.search(r"^\| mnist_simple \| simple \| float32 \| 2 \| (\d+\.\d) \| (\d+\.\d)% \|$", text, re.M)
    # counted on the few synthetic images the runs trained on, not the 60,000 the config names: below the peak
    assert speed and float(speed.group(1)) > 0 and float(speed.group(2)) < 100, text
    assert "## Time to verdicts: claims mnist_simple reproduced from nothing" in text
    assert "0 of 1 claimed numbers decided" in text  # a modified protocol (2 epochs) is measured, not decided
    assert "time to verdicts of mnist_simple:" in result.stdout

    # resumed: nothing is trained again, and the section adds the second process's time
    again = run("verdicts.py", [*arguments, "--resume", str(work)], synthetic_kmnist["env"])
    assert "training" not in again.stdout
    assert "2 processes, resumed" in output.read_text()
    # the resumed measurement replaces the first in the record, rather than adding it again
    assert len(json.loads((record / f"verdicts-{machine.kind()}.json").read_text())) == 1


def test_time_to_verdicts_adds_up_measurements_of_separate_claims_and_judges_the_goal_once_all_are_in(tmp_path):
    verdicts = load_benchmark("verdicts")

    def measured(claims: list[str], minutes: float) -> dict:
        rows = [
            {"claim": c, "precision": "float32", "metric": "test_accuracy", "claimed": 0.97, "verdict": "reproduced"}
            | {"seeds": 5, "seeds_run": 5, "minutes": minutes / len(claims)}
            for c in claims
        ]
        speeds = [{"claim": c, "network": "simple", "precision": "float32", "seeds": 5, "gflops": 50.0} for c in claims]
        return {"claims": claims, "command": "make bench-verdicts", "minutes": minutes, "processes": 1} | {
            "machine": "a CPU",
            "peaks": {"float32": 100.0},
            "rows": rows,
            "speeds": [s | {"share": 0.5} for s in speeds],
        }

    path, output = tmp_path / "verdicts-avx512.json", tmp_path / "BENCHMARKS.md"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        verdicts.remember(path, measured(["a", "b"], 20.0))
        record = verdicts.remember(path, measured(["c"], 30.0))
        verdicts.write_report(output, record, ["a", "b", "c", "d"])
        text = output.read_text()
        assert "Total, the sum of its 2 measurements: **50.0 min**, so far; d not measured yet" in text
        assert "within the goal" not in text and "over the goal" not in text
        # a claim measured again replaces the measurement that held it; with every claim in, the goal is judged
        record = verdicts.remember(path, measured(["b", "d"], 15.0))
        assert [m["claims"] for m in record] == [["c"], ["b", "d"]]  # a and b's measurement is gone with b
        record = verdicts.remember(path, measured(["a"], 5.0))
        verdicts.write_report(output, record, ["a", "b", "c", "d"])
        text = output.read_text()
        assert "Time to verdicts: every claim reproduced from nothing" in text
        assert "**50.0 min**, within the goal of 60 minutes on 2 cores" in text
        record = verdicts.remember(path, measured(["c"], 45.0))
        verdicts.write_report(output, record, ["a", "b", "c", "d"])
        assert "**65.0 min**, over the goal of 60 minutes on 2 cores" in output.read_text()
        assert "| c | simple | float32 | 5 | 50.0 | 50.0% |" in output.read_text()
        # a claim whose data are not here is named, not counted; one that is simply missing keeps the goal open
        verdicts.write_report(output, record, ["a", "b", "c", "d", "k"])
        assert "d not measured yet" not in output.read_text() and "k not measured yet" in output.read_text()
        record = verdicts.remember(path, measured(["a"], 5.0) | {"unavailable": ["k"]})
        verdicts.write_report(output, record, ["a", "b", "c", "d", "k"])
        assert (
            "over the goal" in output.read_text()
            and "Data unavailable here, so not part of it: k." in output.read_text()
        )
        # a measurement that found only missing data names what it was asked, and a new one of that claim replaces it
        alone = measured(["a"], 0.2) | {"claims": [], "unavailable": ["k"], "rows": [], "speeds": []}
        verdicts.remember(path, alone)
        record = verdicts.remember(path, alone | {"minutes": 0.3})
        assert [m["unavailable"] for m in record if not m["claims"]] == [["k"]]
        verdicts.write_report(output, record, ["a", "b", "c", "d", "k"])
        assert "- k (data unavailable here): `make bench-verdicts`, one process: **0.3 min**" in output.read_text()
        # a measurement under overrides (a test's tiny protocol) is not the user's wait: the goal is not judged
        record = verdicts.remember(path, measured(["a"], 5.0) | {"overrides": ["trainer.epochs=1"]})
        verdicts.write_report(output, record, ["a", "b", "c", "d"])
        assert "with overrides (trainer.epochs=1), so the goal (60 minutes) is not judged" in output.read_text()
        # workers side by side: a section and record of their own, beside one process's, which stays as it was
        section = re.compile(r"<!-- section: verdicts / .*?<!-- end of section: verdicts / [^>]*-->", re.S)
        one_process = section.search(output.read_text()).group(0)
        side_by_side = verdicts.remember(
            tmp_path / "verdicts-workers2-avx512.json", measured(["a", "b", "c", "d"], 40.0)
        )
        verdicts.write_report(output, side_by_side, ["a", "b", "c", "d"], workers=2)
        text = output.read_text()
        assert section.search(text).group(0) == one_process and "<!-- section: verdicts-workers2 / " in text
        assert "## Time to verdicts: every claim reproduced from nothing by 2 workers side by side" in text
        assert "`cnnlab reproduce workers=2` (2 processes on one store" in text
        assert "**40.0 min**, within the goal of 60 minutes on 2 cores" in text
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.mark.system
def test_side_by_side_pairs_each_seed_of_one_process_with_the_workers_and_writes_its_section(
    tmp_path, synthetic_kmnist
):
    if machine.usable_cpus() < 2:
        pytest.skip("two workers need two CPUs")
    folder = synthetic_kmnist["args"][-1]
    output = tmp_path / "REPRODUCTION.md"
    output.write_text("# Reproduction\n\n<!-- section: claims -->\nkept\n<!-- end of section: claims -->\n")
    overrides = ["dataset=kmnist", f"dataset.local_dir={folder}", "dataset.sources=[local]", "trainer.epochs=1"]
    overrides += ["trainer.verbose=0", "tracking.log_model=false", f"tracking.uri=sqlite:///{tmp_path}/s.db"]
    arguments = ["mnist_simple:2", "--output", str(output), "--overrides", *overrides]
    result = run("side_by_side.py", arguments, synthetic_kmnist["env"])
    assert result.stdout.count(": training (") == 4  # 2 seeds in one process, the same 2 by the workers
    text = output.read_text()
    assert "kept" in text and "<!-- section: side-by-side -->" in text
    cpus = machine.usable_cpus()
    assert f"| {cpus} thread(s) | {cpus // 2} thread(s) |" in text
    row = next(line for line in text.splitlines() if line.startswith("| mnist_simple |"))
    # two pairs are too few for the sign test's bounds: unbounded, never "equivalent"
    assert re.search(r"\| test_accuracy \| 2 \| \d+\.\d\d% \| \d+\.\d\d% \| ", row), row
    assert "not shown equivalent" in row
    again = run("side_by_side.py", arguments, synthetic_kmnist["env"])  # every seed is in the store now
    assert ": training (" not in again.stdout and row in output.read_text()


def test_a_section_made_under_a_onednn_cap_shows_it_in_its_command(monkeypatch):
    """The AVX2 kind's stand-in is a setting, not a machine: its sections' command must carry it to be rerun, and
    leave out this machine's work folder and store."""
    command_line = load_benchmark("common").command_line
    for name in machine.ARITHMETIC_ENV:
        monkeypatch.delenv(name, raising=False)
    arguments = ["--resume", "/tmp/folder", "--networks", "pooled", "tracking.uri=sqlite:////tmp/x.db"]
    monkeypatch.setattr(sys, "argv", ["benchmarks/options.py", *arguments])
    plain = command_line("make bench-options")
    assert plain.startswith("make bench-options  # python benchmarks/options.py --networks pooled;")
    assert "/tmp" not in plain and "read back from an earlier run's work folder" in plain
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert command_line("make bench-options") == f"ONEDNN_MAX_CPU_ISA=AVX2 {plain}"
