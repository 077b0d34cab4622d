"""Portable seeds: a reproduction's seeds exported from one store and imported into another are reused there by
``cnnlab.reproduce`` as if trained there; a file that is not whole, not ours or of an unknown version is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cnnlab.claims import portable
from cnnlab.claims.portable import IMPORTED_FROM, IMPORTED_RUN, SeedsFileRefused, export_seeds, import_seeds


def reproduction(idx_dir: Path, store: str) -> list[str]:
    return [
        "seeds=2",
        "claims=[mnist_simple]",
        f"dataset.local_dir={idx_dir}",
        "dataset.sources=[local]",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "tracking.log_model=false",
        f"tracking.uri={store}",
    ]


def run_reproduction(overrides: list[str]):
    from cnnlab.claims.reproduce import reproduce
    from tests.conftest import compose_config

    cfg = compose_config(*overrides, config_name="reproduce_config")
    return reproduce(cfg, overrides, lambda extra: compose_config(*extra))


def children(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cnnlab-reproductions")
    if experiment is None:
        return []
    return [run for run in client.search_runs([experiment.experiment_id]) if "cnnlab.claim" in run.data.tags]


@pytest.mark.slow
def test_seeds_exported_from_one_store_are_reused_by_a_reproduction_in_another(
    tmp_path, idx_dir, pin_mnist, monkeypatch, capsys
):
    from cnnlab import machine
    from cnnlab import train as train_module

    first, second = f"sqlite:///{tmp_path}/first.db", f"sqlite:///{tmp_path}/second.db"
    _, trained, _ = run_reproduction(reproduction(idx_dir, first))
    path = tmp_path / "results" / "seeds" / f"mnist_simple-{machine.kind()}.json"

    exported = export_seeds(first, str(path), ["mnist_simple"], machine.kind())
    assert exported.runs == 2 and exported.claims == ("mnist_simple",) and exported.kinds == (machine.kind(),)
    payload = json.loads(path.read_text())
    assert payload["format"] == "cnnlab-seeds" and payload["version"] == 1
    assert path.stat().st_size < 40_000  # params, tags and metrics of two seeds; no model, no artifact
    run = payload["runs"][0]
    assert run["tags"]["machine.kind"] == machine.kind() and "version.tensorflow" in run["tags"]
    assert "data.digest" in run["tags"] and run["params"]["seed"] == "0" and "test_accuracy" in run["metrics"]
    assert run["history"]["loss"] == [[1, pytest.approx(run["metrics"]["loss"])]]  # epoch 1 of 1, step 1

    imported = import_seeds(second, str(path))
    assert (imported.runs, imported.already) == (2, 0)
    again = import_seeds(second, str(path))
    assert (again.runs, again.already) == (0, 2)
    assert "nothing new" in portable.summary("import", again, second)
    copies = children(second)
    assert len(copies) == 2  # the second import added nothing
    assert {copy.data.tags[IMPORTED_FROM] for copy in copies} == {path.name}
    assert {copy.data.tags[IMPORTED_RUN] for copy in copies} == {r.info.run_id for r in trained[0].runs}
    assert all(copy.info.status == "FINISHED" for copy in copies)
    assert import_seeds(first, str(path)).runs == 0  # the very runs exported are not imported back

    def no_training(*args, **kwargs):
        raise AssertionError("a seed was trained again instead of reusing the imported one")

    monkeypatch.setattr(train_module, "train", no_training)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # what the last store contacted left; tracking.uri names the second
    capsys.readouterr()
    _, results, _ = run_reproduction(reproduction(idx_dir, second))
    assert capsys.readouterr().out.count("already FINISHED") == 2
    (result,) = results
    assert result.skipped == 2
    reused = {run.data.tags["cnnlab.seed"]: run for run in result.runs}
    originals = {run.data.tags["cnnlab.seed"]: run for run in trained[0].runs}
    for seed, original in originals.items():
        copy = reused[seed]
        assert copy.data.tags[IMPORTED_RUN] == original.info.run_id
        assert copy.data.tags["machine.kind"] == original.data.tags["machine.kind"]
        assert copy.data.metrics["test_accuracy"] == original.data.metrics["test_accuracy"]
        assert copy.data.params == original.data.params
    # The curves the report draws travel too.
    there, here = MlflowClient(first), MlflowClient(second)
    for seed, original in originals.items():
        for metric in ("loss", "val_accuracy", "test_accuracy"):
            steps = [(point.step, point.value) for point in there.get_metric_history(original.info.run_id, metric)]
            copied = here.get_metric_history(reused[seed].info.run_id, metric)
            assert [(point.step, point.value) for point in copied] == steps, metric

    # Exporting the second store again carries the same origins, so a third store would not take them twice.
    again_path = tmp_path / "again.json"
    export_seeds(second, str(again_path), None, None)
    assert {r["origin"] for r in json.loads(again_path.read_text())["runs"]} == {r["origin"] for r in payload["runs"]}


def valid_payload() -> dict:
    parents = {"p" * 32: {"run_name": "reproduction", "design": "[2, 2, false]"}}
    runs = [
        {
            "origin": "o" * 32,
            "parent": "p" * 32,
            "run_name": "mnist_simple-s0",
            "start_time": 1,
            "end_time": 2,
            "params": {"seed": "0"},
            "tags": {"cnnlab.claim": "mnist_simple", "cnnlab.seed": "0", "cnnlab.fingerprint": "f"},
            "metrics": {"test_accuracy": 0.97},
            "history": {},
        }
    ]
    return {
        "format": "cnnlab-seeds",
        "version": 1,
        "parents": parents,
        "runs": runs,
        "sha256": portable.checksum(parents, runs),
    }


def versioned(version: int) -> dict:
    payload = valid_payload()
    payload["version"] = version
    return payload


def edited() -> dict:
    payload = valid_payload()
    payload["runs"][0]["metrics"]["test_accuracy"] = 0.99
    return payload


def without_tag(tag: str) -> dict:
    payload = valid_payload()
    del payload["runs"][0]["tags"][tag]
    payload["sha256"] = portable.checksum(payload["parents"], payload["runs"])
    return payload


REFUSED = [
    ("truncated", lambda: json.dumps(valid_payload())[:80], "is not JSON"),
    ("foreign", lambda: json.dumps({"runs": []}), "is not a cnnlab seeds file"),
    ("future version", lambda: json.dumps(versioned(2)), "a seeds file of version 2, and this cnnlab reads version 1"),
    ("edited", lambda: json.dumps(edited()), "does not match its checksum"),
    ("no fingerprint", lambda: json.dumps(without_tag("cnnlab.fingerprint")), "run 0 lacks cnnlab.fingerprint"),
    ("no seed nor cell", lambda: json.dumps(without_tag("cnnlab.seed")), "lacks cnnlab.seed or cnnlab.sources_cell"),
]


@pytest.mark.parametrize(("case", "content", "message"), REFUSED, ids=[case for case, _, _ in REFUSED])
def test_a_file_that_is_not_a_whole_seeds_file_of_a_known_version_is_refused_and_nothing_is_created(
    tmp_path, case, content, message
):
    seeds = tmp_path / "seeds.json"
    seeds.write_text(content())
    run = subprocess.run(
        [sys.executable, "-m", "cnnlab.seeds", "import", f"path={seeds}", f"tracking_uri=sqlite:///{tmp_path}/s.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.startswith(f"Error: path: {seeds} ") and message in run.stderr, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seeds.json"]  # no store, no outputs/


def test_a_refused_file_adds_nothing_to_an_existing_store(tmp_path):
    store = f"sqlite:///{tmp_path}/s.db"
    good = tmp_path / "good.json"
    good.write_text(json.dumps(valid_payload()))
    assert import_seeds(store, str(good)).runs == 1
    before = {run.info.run_id for run in children(store)}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(edited()))
    with pytest.raises(SeedsFileRefused, match="does not match its checksum"):
        import_seeds(store, str(bad))
    assert {run.info.run_id for run in children(store)} == before


def test_export_of_seeds_the_store_does_not_hold_writes_nothing(tmp_path):
    store = f"sqlite:///{tmp_path}/s.db"
    good = tmp_path / "good.json"
    good.write_text(json.dumps(valid_payload()))
    import_seeds(store, str(good))
    target = tmp_path / "out.json"
    with pytest.raises(SeedsFileRefused, match=r"no FINISHED seed of claims \['fashion_deep'\]"):
        export_seeds(store, str(target), ["fashion_deep"], None)
    with pytest.raises(SeedsFileRefused, match="on machine kind amx"):
        export_seeds(store, str(target), None, "amx")
    with pytest.raises(SeedsFileRefused, match="no FINISHED variance-by-source run of any claim in cnnlab-rep"):
        export_seeds(store, str(target), None, None, "sources")  # the store holds a seed, no design's run
    assert not target.exists()
    assert export_seeds(store, str(target), None, None, "seeds").runs == 1
    target.unlink()
    assert export_seeds(store, str(target), None, None).runs == 1  # the imported seed itself travels on


def test_an_export_never_overwrites_a_file_holding_seeds_it_would_lose(tmp_path):
    target = tmp_path / "out.json"
    stores = []
    for index, origin in enumerate(("a" * 32, "b" * 32)):
        payload = valid_payload()
        payload["runs"][0]["origin"] = origin
        payload["sha256"] = portable.checksum(payload["parents"], payload["runs"])
        source = tmp_path / f"in{index}.json"
        source.write_text(json.dumps(payload))
        stores.append(f"sqlite:///{tmp_path}/s{index}.db")
        import_seeds(stores[-1], str(source))
    export_seeds(stores[0], str(target), None, None)
    written = target.read_text()
    export_seeds(stores[0], str(target), None, None)  # the same seeds again: an update, allowed
    with pytest.raises(SeedsFileRefused, match="already holds 1 seed"):
        export_seeds(stores[1], str(target), None, None)
    assert json.loads(target.read_text())["runs"] == json.loads(written)["runs"]
