"""The real config composes for every option, and bad input fails fast, clearly, before TensorFlow loads."""

from __future__ import annotations

import ast
import copy
import functools
import os
import re
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cnnlab import checks
from cnnlab.config import DOMAINS, ConfigError, domain_of, leaves, validate
from cnnlab.config.domains import INT_LIMIT
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


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_validates(name):
    cfg = compose_config(f"experiment={name}")
    validate(cfg)
    assert cfg.claim is not None, f"conf/experiment/{name}.yaml: a tutorial's protocol names its claim"


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(CONF_DIR) / "sweep").glob("*.yaml")))
def test_every_study_composes_and_its_space_checks(name):
    from cnnlab.tuning.space import check_space

    cfg = compose_config(f"sweep={name}", config_name="sweep_config")
    validate(cfg)
    check_space(cfg)


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
        ("trainer.metrics=[accuracy,f1]", r"trainer.metrics.1: must be one of \['accuracy', 'auc'\]"),
    ],
)
def test_out_of_range_values_name_the_key(override, message):
    cfg = compose_config(*override.split())
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab.run", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("dataset=cifar", "Available options in 'dataset'"),
        ("model=resnet", "Available options in 'model'"),
        ("trainer.epochs=[1", "trainer.epochs=[1"),  # Hydra's override grammar
        ("trainer.epochs=three", "trainer.epochs"),
        ("trainer.learning_rate=0.1", "trainer.learning_rate"),
        ("optimizer.name=adamw", "optimizer.name"),
        ("trainer.epochs=-1", "trainer.epochs: must be >= 1"),
        ("model.blocks.0.kernel_size=0", "kernel_size must be a positive integer"),
        ("optimizer.rho=0.8", "optimizer.rho: has no effect on adam"),  # the default optimizer
    ],
)
def test_cli_rejects_bad_input_before_anything_is_created(tmp_path, override, expected):
    result = run_cli(override, f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and "HYDRA_FULL_ERROR" not in result.stderr
    assert result.stderr.startswith("Error: ")
    assert list(tmp_path.iterdir()) == []  # no store, no outputs/ folder


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
        ("cnnlab.sweep", "sweep.name=../../x", "sweep.name: must be a plain name (no path separators"),
        ("cnnlab.sweep", 'sweep.name="a\'b"', "sweep.name: must be a plain name (no path separators, quotes"),
        ("cnnlab.run", "tracking.experiment=team/../x", "tracking.experiment: must be a plain name"),
        (
            "cnnlab.run",
            "tracking.experiment=" + "x" * 101,
            "tracking.experiment: must be a plain name (no path separators, quotes, control characters or '..'; "
            "at most 100",
        ),
        ("cnnlab.reproduce", "claims=[../mnist_simple]", "claims.0: must be a plain name"),
        ("cnnlab.register", "name=../evil", "name: must be a plain name"),
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


# One composed config per command, each option set so that every key a command has is present.
# The checks each command's entry point hands to the launcher.
CHECKS = {
    "run": checks.check_run,
    "sweep": checks.check_sweep,
    "predict": checks.check_use,
    "compare": checks.check_compare,
    "reproduce": checks.check_reproduce,
    "verify": checks.check_verify,
    "seeds": checks.check_seeds,
}
COMMAND_CONFIGS = {
    "run": (
        "config",
        [
            "experiment=kmnist",
            "trainer.early_stopping.enabled=true",
            "dataset.local_dir=.",
            "tracking.run_name=r",
            "trainer.verbose=1",
            "seed_init=1",
            "seed_data_order=2",
            "seed_dropout=3",
        ],
    ),
    "sweep": (
        "sweep_config",
        ["tuner=hyperband", "sweep.export_dir=exports", "distributed.threads_per_worker=1"],
    ),
    "predict": ("use_config", ["model_uri=runs:/x/model", "name=n", "images=[conftest.py]"]),
    "compare": ("compare_config", ["plot_x=seed", "filter=x", "dataset=d", "model=m", "experiments=[e]"]),
    "reproduce": (
        "reproduce_config",
        ["claims=[mnist_simple]", "precisions=[float32]", "report_path=R.md", "claim.error_ratio=1.25"],
    ),
    "verify": ("verify_config", ["run_id=" + "0" * 32]),
    "seeds": ("seeds_config", ["action=export", "path=s.json", "claims=[mnist_simple]", "machine_kind=amx"]),
}
# Per optimizer, the keys only it has.
OPTIMIZER_KEYS = {"momentum": "sgd", "nesterov": "sgd", "rho": "rmsprop"}
CHECKED_ELSEWHERE = ("model.blocks.", "sweep.space.", "claim.targets.", "defaults.")  # shapes, space, data; Hydra's


def _composed(command: str, *extra: str):
    config_name, overrides = COMMAND_CONFIGS[command]
    if command == "compare":  # its dataset= and model= are options, which Hydra's search path would read as groups
        from cnnlab.config import CompareConfig

        return OmegaConf.merge(OmegaConf.structured(CompareConfig), OmegaConf.from_dotlist([*overrides, *extra]))
    return compose_config(*overrides, *extra, config_name=config_name)


@functools.cache
def _composed_once() -> tuple:
    return (
        *((command, _composed(command)) for command in COMMAND_CONFIGS),
        *(("run", _composed("run", f"optimizer={optimizer}")) for optimizer in ("sgd", "rmsprop")),
        ("sweep", _composed("sweep", "tuner=bayesian", "tuner.num_initial_points=2")),
        ("run", _composed("run", "dataset.split=0.2")),  # an image folder's split, unset in the shipped datasets
    )


def _every_config():
    """Each command's composed config, and the variants that add keys; copies, so a test may change them."""
    for command, cfg in _composed_once():
        yield command, copy.deepcopy(cfg)


def _holding(key: str):
    """The command and a composed config that has ``key`` (``*``: the list's first element)."""
    concrete = key.replace("*", "0")
    optimizer = OPTIMIZER_KEYS.get(key.rpartition(".")[2])
    for command, cfg in _every_config():
        if optimizer and "optimizer" in cfg and cfg.optimizer.get(key.rpartition(".")[2]) is None:
            continue
        if key in leaves(cfg) or concrete in leaves(cfg):
            return command, cfg, concrete
        # a mapping's keys are names, not positions (dataset.sha256.x_train)
        if "*" in key and (named := [k for k in leaves(cfg) if fnmatchcase(k, key)]):
            return command, cfg, named[0]
    raise AssertionError(f"no composed config holds {key}; extend COMMAND_CONFIGS")


def test_every_key_of_the_composed_configs_has_a_domain():
    """A key added later without a domain fails here, so the table cannot silently fall behind."""
    keys = {key for _, cfg in _every_config() for key in leaves(cfg)}
    # A boolean or an option's domain is its type in the schema (next test); a number's is also its range.
    by_type = {key for key, (_, kind) in _every_typed_key() if kind in ("BooleanNode", "EnumNode")}
    missing = sorted(k for k in keys - by_type if domain_of(k) is None and not k.startswith(CHECKED_ELSEWHERE))
    assert not missing, f"keys without a domain in cnnlab.config.DOMAINS: {missing}"
    assert len(keys) > 150


def test_a_dataset_is_its_file_and_the_code_names_none():
    """Every dataset in conf/dataset/ composes with its shape; no Python under cnnlab/ names a dataset or a shape."""
    import re

    for path in sorted((Path(CONF_DIR) / "dataset").glob("*.yaml")):
        cfg = compose_config(f"dataset={path.stem}")
        assert cfg.dataset.name == path.stem and len(cfg.dataset.shape) == 3
        validate(cfg)
    names = re.compile(rf"\\b({'|'.join(path.stem for path in (Path(CONF_DIR) / 'dataset').glob('*.yaml'))})\\b")
    found = []
    for source in sorted((Path(CONF_DIR).parent / "cnnlab").rglob("*.py")):
        tree = ast.parse(source.read_text())
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or id(node) in docstrings:
                continue
            if node.value == 28 or (isinstance(node.value, str) and names.search(node.value)):
                found.append(f"{source.name}:{node.lineno}: {node.value!r}")
    assert not found, found


@pytest.mark.parametrize("key", sorted(k for k, domain in DOMAINS.items() if domain.outside is not None))
def test_every_domain_refuses_a_value_outside_it_naming_the_key(key, tmp_path, monkeypatch):
    """Through the same check the commands run before Hydra creates anything, so nothing can be created."""
    monkeypatch.chdir(Path(__file__).parent)  # images=[conftest.py] and dataset.local_dir=. exist from here
    domain = DOMAINS[key]
    command, cfg, concrete = _holding(key)
    OmegaConf.update(cfg, concrete, domain.outside, force_add=False)
    with pytest.raises(ConfigError) as refused:
        CHECKS[command](cfg, [])
    assert f"{concrete}: " in str(refused.value)
    if domain.ok is not None:
        assert f"must be {domain.says}" in str(refused.value)


def _typed_leaves(cfg, prefix=""):
    from omegaconf.nodes import BooleanNode, EnumNode, FloatNode, IntegerNode

    for key in cfg.keys() if OmegaConf.is_dict(cfg) else range(len(cfg)):
        node = cfg._get_node(key)
        path = f"{prefix}{key}"
        if OmegaConf.is_config(node):
            if not node._is_none() and not path.startswith(("hydra", "sweep.space")):
                yield from _typed_leaves(cfg[key], path + ".")
        elif isinstance(node, BooleanNode | EnumNode | FloatNode | IntegerNode):
            yield path, type(node).__name__


def _every_typed_key():
    """Each typed key once. The elements of a list share one schema (every block is a ``Block``), so the first
    element that has a field stands for the list: the same field of the twelfth block is the same node type."""
    found = {}
    for command, cfg in _every_config():
        for key, kind in _typed_leaves(cfg):
            found.setdefault(re.sub(r"\.\d+\.", ".*.", key), (key, (command, kind)))
    return sorted(found.values())


def test_every_typed_key_refuses_a_wrong_type_at_composition():
    """Booleans, options, whole numbers and numbers: Hydra's schema refuses a wrong type with the key named."""
    typed = _every_typed_key()
    assert len(typed) > 60
    for key, (command, kind) in typed:
        with pytest.raises(Exception) as refused:
            _composed(command, f"{key}=not_a_{kind}")
        assert key in str(refused.value) or key in str(refused.value.__cause__), (key, str(refused.value))


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
        ("cnnlab.predict", ["model_uri=runs:/x/model", "images=[nope.png]"], "images.0: no such file: nope.png"),
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


# --- each way of addressing a key: blocks by name, keys added with + or ++, numbers at their type's limits ---------

MODEL_OPTIONS = GROUPS["model"]
BLOCK_NUMBERS = {"filters", "kernel_size", "strides", "pool_size", "units", "rate"}


def _refusal(config_name: str, *overrides: str) -> str | None:
    """The refusal the commands' checks give ``overrides`` (composition included), or None when accepted."""
    command = {"config": "run", "sweep_config": "sweep"}[config_name]
    try:
        CHECKS[command](compose_config(*overrides, config_name=config_name), [])
    except Exception as error:  # Hydra's composition errors and cnnlab's ConfigError alike
        return str(error)
    return None


def _block_fields():
    """Each numeric field set on a named block, per model option, at the field's last block (a position other than
    0, where a name and an index are easiest to confuse): the cases for addressing blocks by name."""
    cases = {}
    for model in MODEL_OPTIONS:
        cfg = compose_config(f"model={model}")
        for index, block in enumerate(cfg.model.blocks):
            for field in sorted(BLOCK_NUMBERS & {k for k, v in block.items() if v is not None}):
                cases[model, field] = (model, index, block.name, field)
    return sorted(cases.values())


BLOCK_CASES = list(_block_fields())


@pytest.mark.parametrize("model,index,name,field", BLOCK_CASES)
def test_a_block_field_by_name_is_the_field_by_index(model, index, name, field):
    """Same value, same config; a bad value (negative, beyond the type's range) the same refusal by name or index."""
    by_name = compose_config(f"model={model}", f"model.blocks.{name}.{field}=1")
    by_index = compose_config(f"model={model}", f"model.blocks.{index}.{field}=1")
    assert by_name == by_index and by_name.model.blocks[index][field] == 1
    for bad in (-1, INT_LIMIT + 1):
        refused = _refusal("config", f"model={model}", f"model.blocks.{name}.{field}={bad}")
        assert refused is not None and refused == _refusal(
            "config", f"model={model}", f"model.blocks.{index}.{field}={bad}"
        )
        assert "model.blocks" in refused


def test_an_unknown_block_name_is_refused_naming_the_blocks():
    refused = _refusal("config", "model=simple", "model.blocks.conv9.filters=32")
    names = [block.name for block in compose_config("model=simple").model.blocks]
    assert f"no block named 'conv9' in model 'simple'; its blocks: {names}" in refused


def _sections():
    """Every section (a schema dataclass) of every command's config, once, with a config that has it. A ``dict``
    field (a dataset's ``sha256``, ``files``, ``split_sizes``) is data keyed by name, not a section."""
    from omegaconf import DictConfig

    found = {}

    def walk(node, prefix, command):
        for key in node:
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none() and key != "hydra":
                if OmegaConf.get_type(child) is dict:
                    continue
                found.setdefault(f"{prefix}{key}", command)
                walk(child, f"{prefix}{key}.", command)

    for command, cfg in _every_config():
        walk(cfg, "", command)
        found.setdefault("", command)
    return sorted(found.items())


SECTIONS = _sections()


@pytest.mark.parametrize("section,command", SECTIONS)
@pytest.mark.parametrize("plus", ["+", "++"])
def test_a_key_added_outside_the_schema_is_refused_naming_it(section, command, plus):
    """A typo under + or ++ in any section (and in a block, by index and by name) is a refusal, never a no-op."""
    from omegaconf import open_dict

    key = f"{section}.not_a_key" if section else "not_a_key"
    cfg = _composed(command)
    if command != "compare":  # compare's own test config is merged without Hydra (above); its + is Hydra's
        cfg = _composed(command, f"{plus}{key}=1")
    else:
        with open_dict(cfg):
            OmegaConf.update(cfg, key, 1, force_add=True)
    with pytest.raises(ConfigError) as refused:
        CHECKS[command](cfg, [])
    assert key in str(refused.value) and "not a key of this command's config" in str(refused.value)


@pytest.mark.parametrize("address", ["model.blocks.0.not_a_key", "model.blocks.conv1.not_a_key"])
def test_a_key_added_to_a_block_is_refused_by_index_and_by_name(address):
    for plus in ("+", "++"):
        assert "model.blocks.0.not_a_key" in _refusal("config", "model=simple", f"{plus}{address}=1")


def beyond_type_cases() -> list[tuple[str, str, object]]:
    """(key, command, value) for every whole-number and float key of every command, blocks and spaces included, at
    its type's limits: beyond a 32-bit integer either way, or inf and nan."""
    cases = []
    for key, (command, kind) in _every_typed_key():
        if kind in ("IntegerNode", "FloatNode"):
            limits = (INT_LIMIT + 1, -INT_LIMIT - 1) if kind == "IntegerNode" else (float("inf"), float("nan"))
            cases += [(key, command, value) for value in limits]
    return cases


def test_every_number_beyond_its_type_is_refused_naming_the_key(monkeypatch):
    """Through each command's checks, on its composed config with the one key set. The config is composed once per
    command and the key put back after each case (composing it again per case took a minute and checked the same);
    that it is put back is checked, so no case sees another's value."""
    monkeypatch.chdir(Path(__file__).parent)
    configs = {}
    for command, cfg in _every_config():
        configs.setdefault(command, cfg)
    pristine = {command: OmegaConf.to_yaml(cfg) for command, cfg in configs.items()}
    cases = beyond_type_cases()
    for key, command, value in cases:
        cfg = configs[command]
        before = OmegaConf.select(cfg, key)
        OmegaConf.update(cfg, key, value)
        try:
            with pytest.raises(ConfigError) as refused:
                CHECKS[command](cfg, [])
        finally:
            OmegaConf.update(cfg, key, before)
        assert f"{key}: must be" in str(refused.value), (key, str(refused.value))
    assert {command: OmegaConf.to_yaml(cfg) for command, cfg in configs.items()} == pristine
    assert len(cases) > 60


def test_reliability_md_states_the_walks_counts_as_the_code_has_them():
    """RELIABILITY.md's counts of this walk are written by `make reliability-counts`; a key or domain added since
    fails here, naming the command, rather than leaving a stale figure."""
    from cnnlab.documents import sections
    from tests import walk_counts

    written = sections(walk_counts.RELIABILITY.read_text()).get(walk_counts.SECTION)
    assert written == walk_counts.section_text(), "RELIABILITY.md's walk counts are stale: run make reliability-counts"


def test_split_sizes_come_from_the_dataset_file_and_a_dataset_without_them_is_checked_after_loading():
    """holdout and subset are refused from conf/dataset/*.yaml's split_sizes, before any data is read; a user's own
    dataset (no split_sizes) passes here, its sizes checked once its arrays are split."""
    from cnnlab.data.sizes import size_problems

    train = compose_config("dataset=kmnist").dataset.split_sizes.train
    cfg = compose_config("dataset=kmnist", "trainer.validation=holdout", f"trainer.holdout_size={train}")
    with pytest.raises(ConfigError, match=rf"trainer.holdout_size: {train} leaves no training images"):
        checks.check_sizes(cfg)
    cfg = compose_config(
        "dataset=kmnist", "trainer.validation=holdout", "trainer.holdout_size=10", f"dataset.subset={train}"
    )
    assert size_problems(cfg) == [
        f"dataset.subset: {train} is more than the {train - 10} training images kmnist has here; give at most "
        f"{train - 10}, or drop dataset.subset to train on all of them"
    ]
    cfg.dataset.split_sizes = {}
    assert size_problems(cfg) == []
