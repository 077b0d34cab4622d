"""The real config composes for every option, and bad input fails fast, clearly, before TensorFlow loads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cnnlab.config import NUMERIC_DOMAINS, ConfigError, check_domains, validate
from tests.conftest import CONF_DIR, compose_config

GROUPS = {
    group: sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))
    for group in ("dataset", "model", "optimizer", "trainer", "tracking")
}


@pytest.mark.parametrize("group,option", [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_option_composes_and_validates(group, option):
    cfg = compose_config(f"{group}={option}")
    validate(cfg)
    assert cfg[group] is not None


def test_contract_keys_other_commands_rely_on():
    cfg = compose_config()
    assert (cfg.dataset.name, cfg.model.name) == ("fashion", "deep")
    for key in (
        "seed",
        "trainer.epochs",
        "trainer.batch_size",
        "dataset.subset",
        "tracking.uri",
        "tracking.experiment",
    ):
        assert OmegaConf.select(cfg, key, throw_on_missing=True) is not None or key == "dataset.subset"
    assert cfg.tracking.uri == "sqlite:///mlruns/mlflow.db"
    assert cfg.tracking.experiment == "cnnlab-fashion"


def test_wrong_type_fails_at_composition():
    with pytest.raises(Exception, match="trainer.epochs"):
        compose_config("trainer.epochs=three")


@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.batch_size=-4", "trainer.batch_size"),
        ("dataset.subset=0", "dataset.subset"),
        ("optimizer.learning_rate=0", "optimizer.learning_rate"),
        ("model=dropout model.blocks.3.rate=1.5", r"model.blocks\[3\] \(dropout"),
        ("model=simple model.blocks.0.filters=0", r"model.blocks\[0\].*filters"),
        ("model=simple model.blocks.0.kernel_size=29", "larger than the 28x28"),
        ("model=pooled model.blocks.5.pool_size=5", r"model.blocks\[5\].*below 1x1"),
        ("model=simple model.blocks.3.units=7", "units=10"),
        ("model=simple model.blocks.0.activation=relux", "unknown activation"),
        ("trainer.metrics=[accuracy,f1]", "unknown metric"),
    ],
)
def test_out_of_range_values_name_the_key(override, message):
    cfg = compose_config(*override.split())
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def run_cli(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "cnnlab.run", *args], cwd=cwd, capture_output=True, text=True)
    return result, time.perf_counter() - started


@pytest.mark.parametrize(
    "override,expected",
    [
        ("dataset=cifar", "Available options in 'dataset'"),
        ("model=resnet", "Available options in 'model'"),
        ("trainer.epochs=three", "trainer.epochs"),
        ("trainer.learning_rate=0.1", "trainer.learning_rate"),
        ("optimizer.name=adamw", "optimizer.name"),
        ("trainer.epochs=-1", "trainer.epochs: must be >= 1"),
        ("model.blocks.0.kernel_size=0", "kernel_size must be a positive integer"),
    ],
)
def test_cli_rejects_bad_input_before_anything_is_created(tmp_path, override, expected):
    result, seconds = run_cli(override, f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns").exists()
    assert seconds < 5, f"rejecting {override} took {seconds:.1f}s"  # generous: this is a test, not a benchmark


def test_config_path_never_imports_tensorflow():
    code = (
        "import sys; from tests.conftest import compose_config; from cnnlab.config import validate; "
        "import cnnlab.run; validate(compose_config()); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow', 'keras_tuner') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module,override,expected",
    [
        ("cnnlab.sweep", "sweep.name=../../x", "sweep.name: must not contain path separators"),
        ("cnnlab.sweep", 'sweep.name="a\'b"', "sweep.name: must not contain path separators, quotes"),
        ("cnnlab.run", "tracking.experiment=team/../x", "tracking.experiment: must not contain"),
        ("cnnlab.run", "tracking.experiment=" + "x" * 101, "tracking.experiment: must be at most 100 characters"),
        ("cnnlab.reproduce", "claims=[../mnist_simple]", "claims: must not contain"),
        ("cnnlab.register", "name=../evil", "name: must not contain"),
    ],
)
def test_names_that_become_paths_or_mlflow_names_are_refused(tmp_path, module, override, expected):
    extra = ["model_uri=runs:/" + "0" * 32 + "/model"] if module == "cnnlab.register" else []
    result = subprocess.run(
        [sys.executable, "-m", module, override, *extra, f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "sweeps").exists()
    assert not (tmp_path.parent.parent / "x").exists()


def test_a_store_on_the_command_line_that_the_environment_would_overrule_is_refused(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/env.db"}
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab.run", f"tracking.uri=sqlite:///{tmp_path}/mine.db", "trainer.epochs=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"MLFLOW_TRACKING_URI=sqlite:///{tmp_path}/env.db is set" in result.stderr
    assert "unset MLFLOW_TRACKING_URI" in result.stderr
    assert not (tmp_path / "env.db").exists() and not (tmp_path / "mine.db").exists()


def _config_holding(key: str):
    if key == "limit":
        return compose_config(config_name="compare_config")
    if key in ("min_seeds", "max_seeds"):
        return compose_config(config_name="reproduce_config")
    if key in ("worst", "samples"):
        return compose_config("model_uri=runs:/x/model", config_name="use_config")
    if key.startswith(("sweep.", "tuner.", "distributed.")):
        return compose_config("tuner=hyperband", config_name="sweep_config")
    if key.startswith("claim."):
        return compose_config("experiment=fashion_deep")
    optimizer = {"momentum": "sgd", "rho": "rmsprop"}.get(key.rpartition(".")[2], "adam")
    return compose_config(f"optimizer={optimizer}", "trainer.early_stopping.enabled=true")


@pytest.mark.parametrize("key", sorted(NUMERIC_DOMAINS))
def test_every_numeric_domain_refuses_a_value_outside_it(key):
    domain = NUMERIC_DOMAINS[key]
    cfg = _config_holding(key)
    OmegaConf.update(cfg, key, domain.outside, force_add=False)
    with pytest.raises(ConfigError, match=re.escape(f"{key}: must be {domain.says}, got {domain.outside}")):
        validate(cfg) if "trainer" in cfg else check_domains(cfg)


def _numeric_leaves(node, prefix=""):
    container = OmegaConf.to_container(node, resolve=True, enum_to_str=True) if OmegaConf.is_config(node) else node
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, dict | list):
            yield from _numeric_leaves(value, path + ".")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield path


CHECKED_ELSEWHERE = ("model.blocks.", "sweep.space.", "claim.targets.")  # shapes, search space, published numbers


def test_every_numeric_key_of_the_composed_configs_has_a_domain():
    """A numeric key added later without a domain fails here, so the table cannot silently fall behind."""
    configs = [
        compose_config("experiment=kmnist"),
        compose_config("tuner=bayesian", "tuner.num_initial_points=2", config_name="sweep_config"),
        compose_config("sweep=dropout_rates", "distributed.threads_per_worker=1", config_name="sweep_config"),
        compose_config("model_uri=runs:/x/model", config_name="use_config"),
        compose_config(config_name="compare_config"),
        compose_config(config_name="reproduce_config"),
    ]
    keys = {key for cfg in configs for key in _numeric_leaves(cfg)}
    missing = sorted(k for k in keys if k not in NUMERIC_DOMAINS and not k.startswith(CHECKED_ELSEWHERE))
    assert not missing, f"numeric keys without a domain in cnnlab.config.NUMERIC_DOMAINS: {missing}"
    assert len(keys) > 25


@pytest.mark.parametrize(
    "override,message",
    [
        ("sweep.objective=val_f1", "sweep.objective: 'val_f1' is not logged by a trial"),
        ("trainer.early_stopping.monitor=val_auc", "trainer.early_stopping.monitor: 'val_auc' is not logged"),
        ("dataset.local_dir=/nonexistent/folder", "dataset.local_dir: no such folder"),
    ],
)
def test_metric_names_and_folders_are_checked_against_what_exists(override, message):
    cfg = compose_config(override, "trainer.early_stopping.enabled=true", config_name="sweep_config")
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(cfg)


@pytest.mark.parametrize(
    "module,arguments,expected",
    [
        ("cnnlab.evaluate", ["model_uri=runs:/x/model", "worst=-1"], "worst: must be >= 0, got -1"),
        ("cnnlab.predict", ["model_uri=runs:/x/model", "samples=0"], "samples: must be >= 1, got 0"),
        ("cnnlab.predict", ["model_uri=runs:/x/model", "images=[nope.png]"], "images: no such file: nope.png"),
        ("cnnlab.compare", ["limit=0"], "limit: must be >= 1, got 0"),
    ],
)
def test_commands_that_do_not_train_check_their_options_first(tmp_path, module, arguments, expected):
    result = subprocess.run(
        [sys.executable, "-m", module, *arguments, f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db"]
        if module != "cnnlab.compare"
        else [sys.executable, "-m", module, *arguments, f"tracking_uri=sqlite:///{tmp_path}/mlruns/mlflow.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns").exists()
