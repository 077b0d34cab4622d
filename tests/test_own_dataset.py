"""A user's own dataset and claim, with no code: a 32x32 RGB image folder described by one YAML file in a config
folder outside the repository, trained, swept, evaluated, served, predicted on and reproduced; KMNIST from a local
folder in its published npz format; and each refusal of a folder, with its message and nothing created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import compose_config, make_mlflow, post_pixels, synthetic_arrays

CLASSES = ("red", "green", "blue")


def write_image_folder(root: Path, per_class: dict[str, int], size=(32, 32), seed: int = 0) -> Path:
    """Colour patches over noise: class k lights its own channel in the top-left quarter."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = rng.integers(0, 60, size=(size[1], size[0], 3)).astype(np.uint8)
                pixels[: size[1] // 2, : size[0] // 2, label] = 240
                Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    return root


DATASET_YAML = """\
name: patches
shape: [32, 32, 3]
classes: [red, green, blue]
subset: null
scale_pixels: true
local_dir: {folder}
sources: [local]
"""
MODEL_YAML = """\
name: tiny
blocks:
  - {type: conv, filters: 4, kernel_size: 3, activation: relu}
  - {type: pool, pool_size: 4}
  - {type: flatten}
  - {type: dense, units: 3, activation: softmax}
"""
CLAIM_YAML = """\
# @package _global_
defaults:
  - override /dataset: patches
  - override /model: tiny
trainer:
  epochs: 1
  batch_size: 32
  validation: test
claim:
  source: "my notebook: colour patches"
  targets:
    - {metric: test_accuracy, value: 0.9, split: test}
"""


@pytest.fixture
def own_configs(tmp_path):
    """A config folder of the user's own: dataset, network and claim, each one file."""
    folder = write_image_folder(tmp_path / "images", {"train": 80, "test": 20})
    configs = tmp_path / "my_configs"
    for group, text in (
        ("dataset/patches.yaml", DATASET_YAML.format(folder=folder)),
        ("model/tiny.yaml", MODEL_YAML),
        ("experiment/patches_claim.yaml", CLAIM_YAML),
    ):
        (configs / group).parent.mkdir(parents=True, exist_ok=True)
        (configs / group).write_text(text)
    return configs, folder


def overrides(configs: Path, store: str, *extra: str) -> list[str]:
    return [
        f"hydra.searchpath=[file://{configs}]",
        "dataset=patches",
        "model=tiny",
        "trainer.epochs=1",
        "trainer.verbose=0",
        f"tracking.uri={store}",
        *extra,
    ]


@pytest.mark.slow
def test_an_rgb_image_folder_dataset_trains_sweeps_evaluates_serves_and_reproduces(
    own_configs, new_store, tmp_path, capsys
):
    import mlflow

    from cnnlab.claims.reproduce import never_decides, reproduce
    from cnnlab.commands.predict_images import predict
    from cnnlab.commands.score_model import evaluate
    from cnnlab.train import train

    configs, folder = own_configs
    store = new_store()
    run = train(compose_config(*overrides(configs, store)))
    client = mlflow.MlflowClient()
    tags = client.get_run(run.run_id).data.tags
    assert tags["dataset"] == "patches" and tags["data.source"] == f"local {folder}"
    assert len(tags["data.digest"]) == 16 and tags["data.verified"] == "no"

    # the logged model takes the dataset's own raw pixels, (N, 32, 32, 3), uint8 values as float32
    uri = f"runs:/{run.run_id}/model"
    info = mlflow.models.get_model_info(uri)
    assert info.signature.inputs.inputs[0].shape == (-1, 32, 32, 3)
    # the path `mlflow models serve` takes, in process (over HTTP: the system test below)
    served = mlflow.pyfunc.load_model(uri)
    pixels = np.stack([np.asarray(Image.open(folder / "test" / name / "000.png")) for name in CLASSES])
    answer = np.asarray(served.predict(pixels.astype("float32")))
    assert answer.shape == (3, 3) and np.allclose(answer.sum(axis=1), 1, atol=1e-4)

    use = ["hydra.searchpath=[file://" + str(configs) + "]", f"tracking.uri={store}", f"model_uri={uri}"]
    evaluation = evaluate(compose_config(*use, config_name="use_config"), [])
    assert [name for name, _, _ in evaluation.per_class] == list(CLASSES)
    big = tmp_path / "big.jpg"
    Image.fromarray(np.full((64, 48), 128, dtype=np.uint8)).save(big)
    (row,) = predict(compose_config(*use, f"images=[{big}]", config_name="use_config"), [])
    assert row["predicted"] in CLASSES
    assert "converted L to RGB" in row["note"] and "resized 48x64 to 32x32" in row["note"]

    # the sweep as a user starts it, with the config folder given by --config-dir
    space = "sweep.space=[{key: optimizer.learning_rate, type: float, min: 1.0e-3, max: 1.0e-2, sampling: log}]"
    sweep = [
        *overrides(configs, store)[1:],
        "sweep.name=patches",
        f"sweep.directory={tmp_path}/sweeps",
        f"sweep.export_dir={tmp_path}/exported",
        "sweep.max_trials=2",
        "sweep.max_epochs=1",
        "sweep.noise_seeds=0",
        "trainer.validation=holdout",
        "trainer.holdout_size=60",
        space,
    ]
    command = [sys.executable, "-m", "cnnlab.sweep", "--config-dir", str(configs), *sweep]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "dataset=patches" in (tmp_path / "exported" / "experiment" / "best.yaml").read_text()

    searchpath = [f"hydra.searchpath=[file://{configs}]"]
    claim = [*searchpath, "seeds=5", "claims=[patches_claim]", f"tracking.uri={store}", "tracking.log_model=false"]
    cfg = compose_config(*claim, config_name="reproduce_config")
    never_decides(cfg)  # the command's own check: five seeds is the smallest design that can decide
    _, results, _ = reproduce(cfg, claim, lambda extra: compose_config(*extra, *searchpath))
    (result,) = results
    assert len(result.runs) == 5 and len({r.data.tags["data.digest"] for r in result.runs}) == 1
    assert "[reproduce] patches_claim: data local" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.system  # `make serve`: MLflow's scoring server, another program end to end
def test_the_rgb_model_is_served_over_http_from_raw_uint8_pixels(own_configs, new_store, tmp_path):
    import mlflow

    from cnnlab.train import train

    configs, folder = own_configs
    store = new_store()
    run = train(compose_config(*overrides(configs, store)))
    uri = f"runs:/{run.run_id}/model"
    # one test image of each class as a user has them: PNG files read as uint8, (3, 32, 32, 3)
    pixels = np.stack([np.asarray(Image.open(folder / "test" / name / "000.png")) for name in CLASSES])
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 32, 32, 3)
    with make_mlflow("serve", store, tmp_path / "serve.log", f"MODEL={uri}") as (address, _):
        served = post_pixels(address, pixels)
    assert served.shape == (3, len(CLASSES)) and np.allclose(served.sum(axis=1), 1, atol=1e-4)
    in_process = np.asarray(mlflow.pyfunc.load_model(uri).predict(pixels.astype("float32")))
    np.testing.assert_allclose(served, in_process, rtol=1e-5, atol=1e-6)


def refused(cfg, match: str, tmp_path: Path):
    """Training ``cfg`` is refused with ``match`` before anything exists: no store, no cache, no outputs."""
    from cnnlab.data import DataError
    from cnnlab.train import train

    before = sorted(path for path in tmp_path.rglob("*"))
    with pytest.raises(DataError, match=match) as error:
        train(cfg)
    assert sorted(path for path in tmp_path.rglob("*")) == before
    return str(error.value)


def _rgb_cfg(configs: Path, store: str, folder: Path, *extra: str):
    return compose_config(*overrides(configs, store, f"dataset.local_dir={folder}", *extra))


def test_refusals_name_the_file_what_was_expected_and_what_was_found(own_configs, tmp_path):
    configs, good = own_configs
    store = f"sqlite:///{tmp_path}/never.db"

    mixed = write_image_folder(tmp_path / "mixed", {"train": 2, "test": 2})
    Image.fromarray(np.zeros((20, 32, 3), dtype=np.uint8)).save(mixed / "train" / "blue" / "odd.png")
    message = refused(_rgb_cfg(configs, store, mixed), "expected 32x32 pixels", tmp_path)
    assert "odd.png" in message and "found 32x20" in message

    stranger = write_image_folder(tmp_path / "stranger", {"train": 2, "test": 2})
    (stranger / "train" / "purple").mkdir()
    message = refused(_rgb_cfg(configs, store, stranger), "named as in dataset.classes", tmp_path)
    assert "found 'purple'" in message

    empty = write_image_folder(tmp_path / "empty", {"train": 2, "test": 0})
    refused(_rgb_cfg(configs, store, empty), "the test split is empty", tmp_path)

    broken = write_image_folder(tmp_path / "broken", {"train": 2, "test": 2})
    (broken / "test" / "red" / "000.png").write_bytes(b"not a png")
    refused(_rgb_cfg(configs, store, broken), r"000.png: not a readable PNG or JPEG", tmp_path)

    flat = tmp_path / "flat"
    for name in CLASSES:
        (flat / name).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(flat / name / "a.png")
    refused(_rgb_cfg(configs, store, flat), "set dataset.split", tmp_path)
    assert not Path(store.removeprefix("sqlite:///")).exists()


def test_a_stated_split_divides_each_class_and_grayscale_images_load(tmp_path):
    from cnnlab.data import load_arrays

    flat = tmp_path / "flat"
    for name in CLASSES:
        (flat / name).mkdir(parents=True)
        for index in range(5):
            Image.fromarray(np.full((10, 12), index, dtype=np.uint8)).save(flat / name / f"{index}.png")
    cfg = compose_config("dataset=mnist", f"dataset.local_dir={flat}", "dataset.sources=[local]").dataset
    cfg.name, cfg.shape, cfg.classes, cfg.sha256, cfg.split = "grey", [10, 12, 1], list(CLASSES), {}, 0.2
    loaded = load_arrays(cfg)
    assert loaded.x_train.shape == (12, 10, 12) and loaded.x_test.shape == (3, 10, 12)
    assert list(loaded.y_test) == [0, 1, 2] and loaded.verified == ""


def test_kmnist_from_a_local_folder_in_its_published_npz_format(tmp_path, new_store):
    """KMNIST's four npz files as CODH publishes them: they train, unverified and said so, and stay uncached."""
    from cnnlab.data import sources
    from cnnlab.train import train
    from tests.conftest import kmnist_folder

    folder = kmnist_folder(tmp_path, synthetic_arrays())
    result = train(
        compose_config(
            "dataset=kmnist",
            f"dataset.local_dir={folder}",
            "model=simple",
            "trainer.epochs=1",
            "trainer.verbose=0",
            "tracking.log_model=false",
            f"tracking.uri={new_store()}",
        )
    )
    assert result.data_source.startswith(f"local {folder}; digest ") and "NOT VERIFIED" in result.data_source
    assert not (sources.cache_dir() / "kmnist.npz").exists()


# --- the dataset file's mappings, key by key: a typo, a missing key, a value of the wrong kind ----------------------

HASH = "0123456789abcdef" * 4
MAPPINGS_YAML = f"""\
name: mine
shape: [28, 28, 1]
classes: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
sources: [cache]
split_sizes: {{train: 100, test: 20}}
sha256: {{x_train: {HASH}, y_train: {HASH}, x_test: {HASH}, y_test: {HASH}}}
files: {{x_train: a.npz, y_train: b.npz, x_test: c.npz, y_test: d.npz}}
"""


def _dataset_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my_configs" / "dataset" / "mine.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def _checked(tmp_path: Path, *extra: str) -> None:
    """The run command's checks before work, on the config Hydra composes with the user's folder searched."""
    from hydra import compose, initialize_config_dir

    from cnnlab import checks
    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        overrides = [
            f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]",
            "dataset=mine",
            "model=simple",
            f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
            *extra,
        ]
        checks.check_run(compose("config", overrides=overrides, return_hydra_config=True), [])


@pytest.mark.parametrize(
    "line,replacement,expected",
    [
        (
            "sha256: {x_train:",
            "sha256: {x_trian:",
            "dataset.sha256.x_trian: no such array (did you mean x_train?); "
            "dataset.sha256 takes x_train, y_train, x_test, y_test",
        ),
        (
            "files: {x_train: a.npz, y_train:",
            "files: {x_train: a.npz, y_tran:",
            "dataset.files.y_tran: no such array (did you mean y_train?)",
        ),
        (
            "split_sizes: {train: 100, test: 20}",
            "split_sizes: {train: 100, tset: 20}",
            "dataset.split_sizes.tset: no such split (did you mean test?); dataset.split_sizes takes train, test",
        ),
        (
            "split_sizes: {train: 100, test: 20}",
            "split_sizes: {train: 100}",
            "dataset.split_sizes: test missing; give every one of train, test",
        ),
        (f", y_test: {HASH}}}", "}", "dataset.sha256: y_test missing; give every one of x_train, y_train, x_test"),
        (f"x_test: {HASH}", f"x_test: {HASH[:-1]}", "dataset.sha256.x_test: must be a SHA-256 (64 lowercase"),
        (f"x_test: {HASH}", f"x_test: {HASH.upper()}", "dataset.sha256.x_test: must be a SHA-256 (64 lowercase"),
        ("train: 100", "train: -5", "dataset.split_sizes.train: must be >= 1, got -5"),
        ("train: 100", "train: 99999999999999999999", "dataset.split_sizes.train: must be >= 1 and within"),
        ("c.npz", "''", "dataset.files.x_test: must be a file name in dataset.local_dir, got ''"),
    ],
)
def test_each_key_of_the_dataset_mappings_is_checked_naming_the_file(
    tmp_path, monkeypatch, line, replacement, expected
):
    from cnnlab.config import ConfigError

    monkeypatch.chdir(tmp_path)
    assert line in MAPPINGS_YAML
    path = _dataset_file(tmp_path, MAPPINGS_YAML.replace(line, replacement, 1))
    with pytest.raises(ConfigError) as refusal:
        _checked(tmp_path)
    problem = next(p for p in str(refusal.value).splitlines() if expected in p)
    assert problem.endswith(f" (in {path})")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_configs"]  # no store, no outputs/


def test_the_dataset_mappings_as_written_pass_and_a_value_set_on_the_command_line_is_not_blamed_on_the_file(
    tmp_path, monkeypatch
):
    from cnnlab.config import ConfigError

    monkeypatch.chdir(tmp_path)
    _dataset_file(tmp_path, MAPPINGS_YAML)
    _checked(tmp_path)  # every key a mapping takes, each value in its domain: no refusal
    with pytest.raises(ConfigError) as refusal:
        _checked(tmp_path, "dataset.split_sizes.train=-5")
    assert str(refusal.value).splitlines()[1:] == ["  dataset.split_sizes.train: must be >= 1, got -5"]


@pytest.mark.parametrize(
    "line,replacement,expected",
    [
        # the schema's types refuse these while Hydra composes; the message names the file and the key
        (
            "train: 100",
            "train: 1.5",
            "Value '1.5' of type 'float' could not be converted to Integer\n    full_key: dataset.split_sizes.train",
        ),
        (
            "split_sizes: {train: 100, test: 20}",
            "split_sizes: [100, 20]",
            "dataset.split_sizes in {path} is not of the type the schema gives it",
        ),
        ("sha256: {x_train:", "sha256: {x_trian:", "dataset.sha256.x_trian: no such array (did you mean x_train?)"),
    ],
)
def test_a_bad_dataset_file_is_refused_by_the_command_naming_the_file(tmp_path, line, replacement, expected):
    path = _dataset_file(tmp_path, MAPPINGS_YAML.replace(line, replacement, 1))
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab.run",
            "--config-dir",
            str(path.parents[1]),
            "dataset=mine",
            f"tracking.uri=sqlite:///{work}/mlruns/mlflow.db",
        ],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert expected.format(path=path) in result.stderr and str(path) in result.stderr
    assert list(work.iterdir()) == []  # no store, no outputs/
