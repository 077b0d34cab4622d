"""The tracking store before and during work: checked first within seconds, looked up without being created,
damaged between commands, and filling up mid-run."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cnnlab.checks import check_run
from cnnlab.errors import ConfigError
from tests.conftest import compose_config, free_port, mounted_tmpfs

MISSING_RUN = "0123456789abcdef0123456789abcdef"


def cli(module: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store_with_a_run(tmp_path, new_store):
    """A store holding one finished run (with a ``model`` artifact folder) and one registered model."""
    uri = new_store()
    client = MlflowClient(uri)
    experiment = client.create_experiment("cnnlab-mnist")
    run = client.create_run(experiment, run_name="mnist-simple-s0")
    note = tmp_path / "MLmodel"
    note.write_text("flavor: keras\n")
    client.log_artifact(run.info.run_id, str(note), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("fashion-deep")
    version = client.create_model_version("fashion-deep", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("fashion-deep", "champion", version.version)
    note.unlink()
    return uri, run.info.run_id


@pytest.mark.parametrize(
    "module,arguments,expected",
    [
        ("cnnlab.evaluate", [f"model_uri=runs:/{MISSING_RUN}/model"], f"no run '{MISSING_RUN}' in sqlite:///"),
        ("cnnlab.predict", ["model_uri=runs:/{run}/weights"], "has no artifact 'weights'; it has: model"),
        ("cnnlab.register", [f"model_uri=runs:/{MISSING_RUN}/model", "name=x"], "its latest runs: mnist-simple-s0 ("),
        ("cnnlab.evaluate", ["model_uri=models:/nosuch@champion"], "registered models: fashion-deep"),
        ("cnnlab.evaluate", ["model_uri=models:/fashion-deep@best"], "has no alias @best; its aliases: @champion"),
        ("cnnlab.predict", ["model_uri=/etc/passwd"], "model_uri: /etc/passwd is not a .keras file"),
        ("cnnlab.verify", [f"run_id={MISSING_RUN}"], "its latest runs: mnist-simple-s0 ("),
        ("cnnlab.compare", ["experiments=[nope]"], "no experiment named ['nope'] in this store (sqlite:///"),
    ],
)
def test_a_failed_lookup_names_what_the_store_has_and_changes_nothing(
    tmp_path, store_with_a_run, module, arguments, expected
):
    uri, run_id = store_with_a_run
    database = Path(uri.removeprefix("sqlite:///"))
    before, files = digest(database), sorted(tmp_path.rglob("*"))
    key = "tracking_uri" if module in ("cnnlab.compare", "cnnlab.verify") else "tracking.uri"
    result = cli(module, *(a.format(run=run_id) for a in arguments), f"{key}={uri}", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1  # one line
    assert digest(database) == before and sorted(tmp_path.rglob("*")) == files  # no outputs/, no mlruns/


@pytest.mark.parametrize(
    "module,arguments",
    [
        ("cnnlab.evaluate", [f"model_uri=runs:/{MISSING_RUN}/model"]),
        ("cnnlab.evaluate", ["model_uri=models:/nosuch@champion"]),
        ("cnnlab.evaluate", ["model_uri=/etc/passwd"]),
        ("cnnlab.register", [f"model_uri=runs:/{MISSING_RUN}/model", "name=x"]),
        ("cnnlab.compare", []),
        ("cnnlab.verify", [f"run_id={MISSING_RUN}"]),
        ("cnnlab.reproduce", ["claims=[]"]),
    ],
)
def test_a_read_only_command_refused_without_a_store_creates_nothing(tmp_path, module, arguments):
    """With the default store (mlruns/mlflow.db under the working folder), which does not exist yet."""
    result = cli(module, *arguments, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert any(
        words in result.stderr
        for words in ("no MLflow store at mlruns/mlflow.db", "is not a .keras file", "claims: empty; name at least")
    )
    assert list(tmp_path.iterdir()) == []


def _refused_store(tmp_path, uri: str) -> str:
    cfg = compose_config(f"tracking.uri={uri}")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ConfigError) as refused:
        check_run(cfg, [])
    assert sorted(tmp_path.rglob("*")) == before
    return str(refused.value)


def test_a_tracking_server_that_is_not_there_is_refused_within_seconds(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    message = _refused_store(tmp_path, uri)
    assert f"tracking.uri={uri}: no tracking server answers there within 3 s" in message
    assert "make server" in message


def test_a_wrong_scheme_from_the_environment_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://store")
    message = _refused_store(tmp_path, "sqlite:///ignored.db")
    assert "MLFLOW_TRACKING_URI=ftp://store: ftp:// is not a tracking store MLflow can use" in message


def test_a_database_that_is_not_mlflows_is_refused_and_left_alone(tmp_path):
    import sqlite3

    other = tmp_path / "inventory.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE parts (name TEXT)")
    before = digest(other)
    message = _refused_store(tmp_path, f"sqlite:///{other}")
    assert f"{other} is a SQLite database, but not MLflow's (its tables: ['parts'])" in message
    assert digest(other) == before


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    notes = tmp_path / "notes.db"
    notes.write_text("not a database\n" * 20)
    assert f"{notes} is not a SQLite database" in _refused_store(tmp_path, f"sqlite:///{notes}")


def test_a_store_truncated_between_commands_is_named_with_how_to_recover(tmp_path, store_with_a_run):
    """What the user sees: one Error: line naming the file, what is wrong, and how to recover; the file as it was."""
    uri, _ = store_with_a_run
    database = Path(uri.removeprefix("sqlite:///"))
    with open(database, "r+b") as handle:
        handle.truncate(database.stat().st_size // 2)
    before, files = digest(database), sorted(tmp_path.rglob("*"))
    for module, key in (("cnnlab.run", "tracking.uri"), ("cnnlab.compare", "tracking_uri")):
        result = cli(module, f"{key}={uri}", cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"the store {database} is damaged (" in result.stderr and "truncated" in result.stderr
        assert f"mv {database} {database}.damaged" in result.stderr and "nothing was changed" in result.stderr
        assert digest(database) == before and sorted(tmp_path.rglob("*")) == files


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs for the store and its artifacts."""
    yield from mounted_tmpfs(tmp_path / "disk", "4m")


def test_the_disk_filling_under_store_and_artifacts_fails_the_run_and_loses_nothing(
    small_disk, store_template, idx_dir, pin_mnist
):
    """The store and its artifacts share a disk that fills during the run: the run ends FAILED with the reason, the
    run recorded before is whole, and the store opens and passes the check every command runs first."""
    import os
    import shutil

    from cnnlab.tracking.preflight import check_sqlite
    from cnnlab.train import train
    from tests.conftest import tiny_run

    database = small_disk / "mlflow.db"
    shutil.copyfile(store_template, database)
    uri = f"sqlite:///{database}"
    client = MlflowClient(uri)
    earlier = client.create_run(client.create_experiment("earlier"), run_name="before-the-disk-filled")
    client.log_metric(earlier.info.run_id, "test_accuracy", 0.9)
    client.set_terminated(earlier.info.run_id)
    # Leave room for the run's rows and plots (tens of KB each), not for its model (about 2 MB with the optimizer's
    # state): the model's copy fails, MLflow removes its partial file, and the FAILED status still fits.
    free = shutil.disk_usage(small_disk).free
    with open(small_disk / "filler", "wb") as filler:
        filler.write(b"\0" * (free - 640 * 1024))
    with pytest.raises(Exception) as full:  # MLflow's clean-up on the full disk may raise in front of the OSError
        train(compose_config(*tiny_run(idx_dir, uri)))
    from cnnlab.tracking.runs import disk_full

    assert "No space left on device" in str(disk_full(full.value))
    os.remove(small_disk / "filler")
    check_sqlite(database, uri, must_exist=True)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("cnnlab-mnist").experiment_id])
    assert run.info.status == "FAILED" and "No space left on device" in run.data.tags["cnnlab.status_reason"]
    kept = client.get_run(earlier.info.run_id)
    assert kept.info.status == "FINISHED" and kept.data.metrics == {"test_accuracy": 0.9}


def _installed_schema() -> tuple[str, str]:
    """The revision the installed MLflow expects, and the one before it."""
    from cnnlab.compat import mlflow_schema_revisions

    _, known = mlflow_schema_revisions()
    (head,) = set(known) - {parent for parents in known.values() for parent in parents}
    return head, known[head][0]


def _set_revision(database: Path, revision: str) -> None:
    import sqlite3

    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    connection.close()


@pytest.mark.parametrize("made_by", ["older", "newer"])
def test_a_store_of_another_mlflow_schema_is_refused_and_left_alone(tmp_path, new_store, made_by):
    head, before_head = _installed_schema()
    revision = before_head if made_by == "older" else "0123abcd4567"
    uri = new_store()
    database = Path(uri.removeprefix("sqlite:///"))
    _set_revision(database, revision)
    before = digest(database)
    message = _refused_store(tmp_path, uri)
    assert f"tracking.uri={uri}: the store {database} has MLflow's schema revision {revision}" in message
    assert f"{head}" in message and "nothing was changed" in message
    if made_by == "older":
        assert f"Back it up (cp {database} {database}.bak), then migrate it with `mlflow db upgrade {uri}`" in message
    else:
        assert "a newer MLflow made it" in message and "Open it with that MLflow" in message
    assert digest(database) == before


def test_a_store_of_an_older_schema_is_refused_by_the_command(tmp_path, new_store):
    """What the user sees: one Error: line with the two revisions and what to do; nothing created or changed."""
    head, before_head = _installed_schema()
    uri = new_store()
    database = Path(uri.removeprefix("sqlite:///"))
    _set_revision(database, before_head)
    before, files = digest(database), sorted(tmp_path.rglob("*"))
    result = cli("cnnlab.run", f"tracking.uri={uri}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"Error: tracking.uri={uri}: the store {database} has MLflow's schema revision")
    assert f"older than the revision {head} the installed MLflow" in result.stderr
    assert digest(database) == before and sorted(tmp_path.rglob("*")) == files


def test_an_older_schema_that_moves_while_watched_is_a_store_being_made_and_passes(new_store):
    """Another process creating the store steps its revision through MLflow's migrations: not a refusal."""
    import threading

    from cnnlab.tracking.preflight import check_sqlite

    head, before_head = _installed_schema()
    database = Path(new_store().removeprefix("sqlite:///"))
    _set_revision(database, before_head)
    migrating = threading.Timer(0.5, _set_revision, (database, head))
    migrating.start()
    try:
        check_sqlite(database, "tracking.uri", must_exist=True)
    finally:
        migrating.join()
