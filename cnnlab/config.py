"""Typed schema for the Hydra config, registered in Hydra's ConfigStore.

Hydra merges every YAML file under ``conf/`` into these dataclasses, so a wrong type or an unknown key fails at
composition time with Hydra's own message, before TensorFlow is imported. Range checks that types cannot express
(negative epochs, dropout 1.5, a kernel larger than its feature map) live in :func:`validate`, still pure Python.

This module must stay cheap to import: only the standard library, OmegaConf and Hydra.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from cnnlab.errors import UserError


def option(value: Any) -> Any:
    """The plain value of a config enum (``Validation.test`` -> ``"test"``); any other value unchanged."""
    return getattr(value, "value", value)


class BlockType(Enum):
    conv = "conv"
    pool = "pool"
    dropout = "dropout"
    flatten = "flatten"
    dense = "dense"


class Padding(Enum):
    valid = "valid"
    same = "same"


class OptimizerName(Enum):
    adam = "adam"
    sgd = "sgd"
    rmsprop = "rmsprop"


class Validation(Enum):
    test = "test"  # validate on the whole test set (two tutorials do this; val == test)
    test_halves = "test_halves"  # first half of the test set is test, second half validation
    holdout = "holdout"  # the last `holdout_size` training images are held out for validation
    none = "none"


class Loss(Enum):
    sparse_categorical_crossentropy = "sparse_categorical_crossentropy"
    categorical_crossentropy = "categorical_crossentropy"


class Precision(Enum):
    float32 = "float32"
    bf16 = "bf16"
    auto = "auto"  # bf16 where the machine runs it natively, float32 elsewhere (cnnlab.machine.choose_precision)


@dataclass
class Block:
    type: BlockType = MISSING
    # The Keras layer's name (in the model summary) and the block's address in sweep keys: model.blocks.<name>.units
    # still means the same layer after another block is inserted. Null: Keras names it (conv2d_1, dense, ...).
    name: str | None = None
    filters: int | None = None
    kernel_size: int | None = None
    strides: int = 1
    padding: Padding = Padding.valid
    activation: str | None = None
    pool_size: int = 2
    rate: float | None = None
    units: int | None = None


@dataclass
class ModelConfig:
    name: str = MISSING
    blocks: list[Block] = field(default_factory=list)


@dataclass
class DatasetConfig:
    name: str = MISSING
    classes: list[str] = field(default_factory=list)
    subset: int | None = None  # train on the first N training images (smoke runs)
    scale_pixels: bool = True  # False feeds raw 0-255 pixels, as the 97.57% tutorial does
    local_dir: str | None = None  # a folder of IDX (.gz or not) or npz files to try before downloading
    sources: list[str] = field(default_factory=lambda: ["cache", "local", "download", "mirror"])


@dataclass
class OptimizerConfig:
    name: OptimizerName = MISSING
    learning_rate: float = 0.001
    beta_1: float | None = None
    beta_2: float | None = None
    epsilon: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    rho: float | None = None


# The fields each Keras optimizer takes (models.builder passes exactly these). One schema holds them all, so that a
# sweep may choose optimizer.name; a field another optimizer takes, set on this one, would change nothing, so it is
# refused, as a field of another block kind is.
OPTIMIZER_FIELDS = {
    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon"),
    "sgd": ("learning_rate", "momentum", "nesterov"),
    "rmsprop": ("learning_rate", "rho", "momentum", "epsilon"),
}


def fields_not_taken(optimizer: str) -> list[str]:
    """The optimizer fields that ``optimizer`` does not take (adam: momentum, nesterov, rho)."""
    every_field = {key for fields in OPTIMIZER_FIELDS.values() for key in fields}
    return sorted(every_field - set(OPTIMIZER_FIELDS[optimizer]))


def optimizers_taking(field: str) -> list[str]:
    """The optimizers that take ``field`` (momentum: sgd, rmsprop)."""
    return [name for name, fields in OPTIMIZER_FIELDS.items() if field in fields]


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    monitor: str = "val_loss"
    patience: int = 3
    restore_best_weights: bool = True


@dataclass
class TrainerConfig:
    epochs: int = 3
    batch_size: int = 32
    validation: Validation = Validation.test
    holdout_size: int = 12000
    loss: Loss = Loss.sparse_categorical_crossentropy
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint: bool = False  # keep the best epoch's weights by val_loss (ModelCheckpoint)
    precision: Precision = Precision.float32
    # bf16 on a CPU without native bfloat16 is emulated, about 10x slower; refused unless this is set (to measure it).
    allow_emulated_bf16: bool = False
    jit_compile: bool = False
    steps_per_execution: int = 16  # batches per call into TensorFlow: same batches and math, less Python overhead
    deterministic: bool = True  # tf op determinism: same seed, same numbers
    verbose: int | None = None  # Keras fit verbosity; None: progress bar on a terminal, a line per epoch otherwise


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlruns/mlflow.db"  # MLFLOW_TRACKING_URI in the environment wins
    artifact_root: str | None = None  # None: beside a SQLite database; else the server's default
    experiment: str = MISSING
    run_name: str | None = None
    log_model: bool = True
    system_metrics: bool = True  # CPU, memory (and GPU where present) over time, MLflow's own system metrics logging
    system_metrics_interval: float = 10.0  # seconds between samples


@dataclass
class ClaimTarget:
    metric: str = MISSING  # a metric every run logs: test_accuracy, accuracy, val_accuracy, ...
    value: float | None = MISSING  # the published number as a fraction (0.9137); null: the source gives none
    split: str = ""  # which images the number is measured on, in the source's words


@dataclass
class ClaimConfig:
    """What an experiment reproduces: the source's numbers and how close counts as the same."""

    source: str = ""
    notes: str = ""  # what the text leaves out, and what was chosen
    # How far below the published number the protocol's mean may sit and still reproduce it, in the metric's units
    # (0.005 = half a percentage point); see docs/claims.md, "What a verdict means", for why half a point.
    tolerance: float = 0.005
    targets: list[ClaimTarget] = field(default_factory=list)


@dataclass
class Config:
    seed: int = 0
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    claim: ClaimConfig | None = None  # what an experiment reproduces; see conf/experiment/


class ParamType(Enum):
    choice = "choice"
    int = "int"
    float = "float"
    boolean = "boolean"


class Sampling(Enum):
    linear = "linear"
    log = "log"


class Direction(Enum):
    max = "max"
    min = "min"


class TunerName(Enum):
    random = "random"
    bayesian = "bayesian"
    hyperband = "hyperband"
    grid = "grid"


class Pruning(Enum):
    none = "none"
    median = "median"  # Optuna's MedianPruner: worse than the median of the trials that reached the same epoch
    percentile = "percentile"  # Optuna's PercentilePruner at sweep.pruning_percentile


@dataclass
class SearchParam:
    """One searched config field: ``key`` is any dotted config key, e.g. ``model.blocks.0.filters``."""

    key: str = MISSING
    type: ParamType = ParamType.choice
    values: list[Any] | None = None  # for choice
    min: float | None = None  # for int and float
    max: float | None = None
    step: float | None = None
    sampling: Sampling = Sampling.linear
    parent: str | None = None  # only searched while the parent (a choice) takes one of parent_values
    parent_values: list[Any] | None = None


@dataclass
class FinalistsConfig:
    top_k: int = 0  # 0: no finalists; else retrain the best k configurations over `seeds` seeds
    seeds: int = 3


@dataclass
class SweepConfig:
    name: str = MISSING  # the study: its state lives in sweeps/<name>/, its runs in experiment cnnlab-sweep-<name>
    objective: str = "val_accuracy"
    direction: Direction = Direction.max
    max_trials: int = 10
    max_epochs: int = 3  # epochs per trial (random, bayesian); the largest budget of a trial (hyperband)
    executions_per_trial: int = 1
    early_stopping_patience: int | None = 2  # stop a trial whose objective stalls this many epochs; null: never
    overwrite: bool = False  # true starts the study over, discarding its state in sweeps/<name>/
    directory: str = "sweeps"
    export_dir: str | None = None  # the best trial goes to <export_dir>/experiment/best.yaml; null: the study folder
    finalists: FinalistsConfig = field(default_factory=FinalistsConfig)
    # Trial 0 trains the study's base configuration (the tutorial's values), so no study reports a best below it.
    warm_start: bool = True
    # Stop a trial at an epoch where it is worse than the others at that epoch (random, bayesian and grid; Hyperband
    # prunes by its brackets). Off by default so that an older study resumes as it was started.
    pruning: Pruning = Pruning.none
    pruning_percentile: float = 25.0  # percentile: keep trials in the top 25% at each epoch (Optuna's meaning)
    pruning_warmup_trials: int = 5  # trials that finish before any is pruned (Optuna's default n_startup_trials)
    pruning_warmup_epochs: int = 1  # epochs every trial trains before it can be pruned
    # Seeds each of two trials (the best and a median one) is retrained on, to measure the objective's seed noise:
    # the floor a hyperparameter's importance must rise above. 0: no noise measurement, importance without a floor.
    noise_seeds: int = 2
    space: list[SearchParam] = field(default_factory=list)


@dataclass
class TunerConfig:
    name: TunerName = MISSING
    num_initial_points: int | None = None  # bayesian: random trials before the Gaussian process
    alpha: float = 1e-4  # bayesian
    beta: float = 2.6  # bayesian
    factor: int = 3  # hyperband
    hyperband_iterations: int = 1  # hyperband


@dataclass
class DistributedConfig:
    """keras-tuner's chief/worker mode: a chief serves the oracle over gRPC, workers run trials."""

    workers: int = 0  # 0: one process; N: a chief and N workers on this machine
    oracle_host: str = "127.0.0.1"  # the chief's address (KERASTUNER_ORACLE_IP); another host's for multi-host
    oracle_port: int = 8000  # KERASTUNER_ORACLE_PORT
    threads_per_worker: int | None = None  # TensorFlow threads per worker; null: cores // workers
    max_restarts: int = 3  # a worker that dies is restarted (its trial is retried) this many times


@dataclass
class SweepEntryConfig(Config):
    sweep: SweepConfig = MISSING
    tuner: TunerConfig = MISSING
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


@dataclass
class UseConfig(Config):
    """`cnnlab.evaluate`, `cnnlab.predict` and `cnnlab.register`: a trained model and what to do with it."""

    model_uri: str = MISSING  # runs:/<run_id>/model, models:/<name>@<alias>, or a local .keras file
    worst: int = 16  # evaluate: how many worst-misclassified test images to show
    samples: int = 4  # predict: the first N test images, as the tutorials do
    images: list[str] = field(default_factory=list)  # predict: image files instead of test images
    name: str | None = None  # register: the registered model's name
    alias: str = "champion"  # register: the alias to point at the new version


@dataclass
class ReproduceConfig(Config):
    """`cnnlab.reproduce`: which claims (conf/experiment names), over how many seeds."""

    # auto: look after every seed from min_seeds on and stop a claim once its verdict is decided (or at max_seeds);
    # a number N: exactly N seeds and one look at the end.
    seeds: str = "auto"
    min_seeds: int = 3
    max_seeds: int = 10
    # Never None here, so that `claim.tolerance=0.01` parses; like every other override it reaches each claim.
    claim: ClaimConfig = field(default_factory=ClaimConfig)
    claims: list[str] = field(
        default_factory=lambda: ["mnist_simple", "mnist_pooled", "fashion_deep", "mnist_dropout", "kmnist"]
    )
    report_path: str | None = None  # also write the Markdown report here (make reproduce: REPRODUCTION.md)
    # e.g. [float32,bf16]: every claim in each precision on the same seeds, compared pairwise in the report;
    # null keeps the config's trainer.precision.
    precisions: list[Precision] | None = None


class OutputFormat(Enum):
    table = "table"
    csv = "csv"
    markdown = "markdown"


@dataclass
class CompareConfig:
    """`cnnlab.compare`: runs from MLflow as a table, best first, and a metric against a hyperparameter."""

    defaults: list[Any] = field(default_factory=lambda: ["hydra_settings", "_self_"])  # Hydra's, not an option
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"  # MLFLOW_TRACKING_URI in the environment wins
    experiments: list[str] | None = None  # null: every cnnlab-* experiment
    dataset: str | None = None  # shortcut for tags.dataset = '<name>'
    model: str | None = None  # shortcut for tags.model = '<name>'
    filter: str | None = None  # any MLflow search filter, e.g. "metrics.test_accuracy > 0.9"
    status: str | None = "FINISHED"  # null: every status
    params: list[str] = field(default_factory=lambda: ["model.name", "optimizer.name", "trainer.epochs", "seed"])
    metrics: list[str] = field(default_factory=lambda: ["test_accuracy", "val_accuracy", "seconds_per_epoch"])
    sort_by: str = "test_accuracy"
    ascending: bool = False
    limit: int = 50
    format: OutputFormat = OutputFormat.table
    plot_x: str | None = None  # a param (e.g. optimizer.learning_rate): plot sort_by against it
    plot_path: str = "compare.png"


@dataclass
class VerifyConfig:
    """`cnnlab.verify`: a logged run to train again from what MLflow holds."""

    defaults: list[Any] = field(default_factory=lambda: ["hydra_settings", "_self_"])  # Hydra's, not an option
    run_id: str = MISSING
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"  # MLFLOW_TRACKING_URI in the environment wins


# Hydra's own settings, shared by every command's primary config (its defaults list names "hydra_settings").
HYDRA_SETTINGS = {
    "hydra": {
        # cnnlab/checks.py: every check runs after composing and before Hydra creates anything
        "callbacks": {"check_before_work": {"_target_": "cnnlab.checks.CheckBeforeWork"}},
        # relative paths (mlruns/, dataset.local_dir) stay relative to where the command was run
        "job": {"chdir": False},
        "run": {"dir": "outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}"},
    }
}


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="hydra_settings", node=HYDRA_SETTINGS, package="_global_")
    store.store(name="cnnlab_schema", node=Config)
    store.store(name="cnnlab_sweep_schema", node=SweepEntryConfig)
    store.store(name="cnnlab_use_schema", node=UseConfig)
    store.store(name="cnnlab_reproduce_schema", node=ReproduceConfig)
    store.store(name="compare_config", node=CompareConfig)
    store.store(name="verify_config", node=VerifyConfig)


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """``(key, value)`` per command-line override, read by Hydra's own override grammar (``+a.b=[1,2]`` ->
    ``("a.b", [1, 2])``), so cnnlab never splits an override by hand."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return [(parsed.key_or_group, parsed.value()) for parsed in OverridesParser.create().parse_overrides(overrides)]


class ConfigError(UserError, ValueError):
    """A config that composes but cannot be trained: names the key and what is valid."""


def seeds_design(cfg: Any) -> tuple[int, int, bool]:
    """``(min_seeds, max_seeds, sequential)`` from reproduce's ``seeds``, ``min_seeds`` and ``max_seeds``."""
    seeds = str(cfg.seeds).strip()
    check_domains(cfg)
    if seeds == "auto":
        if cfg.max_seeds < cfg.min_seeds:
            raise ConfigError(f"max_seeds: must be >= min_seeds ({cfg.min_seeds}), got {cfg.max_seeds}")
        return cfg.min_seeds, cfg.max_seeds, True
    if not seeds.isdigit() or int(seeds) < 1:
        raise ConfigError(f"seeds: 'auto' or a whole number >= 1, got {cfg.seeds!r}")
    return int(seeds), int(seeds), False


NAME_LIMIT = 100


def name_problem(value: Any) -> str | None:
    """Why ``value`` cannot name a study, experiment, claim or registered model (those become paths and MLflow
    names and land in search filters), or None when it can."""
    text = str(value)
    if not text.strip() or text != text.strip():
        return f"must be a non-empty name without leading or trailing spaces, got {text!r}"
    if len(text) > NAME_LIMIT:
        return f"must be at most {NAME_LIMIT} characters, got {len(text)}"
    bad = sorted({c for c in text if c in "/\\'\"`" or ord(c) < 32 or ord(c) == 127})
    if bad or ".." in text:
        shown = ", ".join(repr(c) for c in bad) or "'..'"
        return f"must not contain path separators, quotes, control characters or '..' (found {shown}), got {text!r}"
    return None


KNOWN_ACTIVATIONS = {"relu", "linear", "softmax", "sigmoid", "tanh", "elu", "selu", "gelu", "swish", "silu"}
KNOWN_METRICS = {"accuracy", "auc"}


@dataclass(frozen=True)
class Domain:
    """What a key may hold: ``ok(value)``, said in words, and one value outside it (the tests feed it).

    ``ok=None`` marks a key whose domain depends on the rest of the config or on what exists (a metric the run logs,
    a folder, a column compare shows); :func:`cnnlab.checks.check` checks those, and the tests feed ``outside`` to
    it all the same. ``outside=None`` marks free text (a note, a class name, a path that will be created).
    """

    ok: Any
    says: str
    outside: Any

    def problem(self, value: Any) -> str | None:
        if self.ok is None or self.ok(value):
            return None
        return f"must be {self.says}, got {value!r}" if isinstance(value, str) else f"must be {self.says}, got {value}"


def at_least(low: float) -> Domain:
    return Domain(lambda value: value >= low, f">= {low}", low - 1)


def above(low: float) -> Domain:
    return Domain(lambda value: value > low, f"> {low}", low)


def between(low: float, high: float, high_included: bool = False) -> Domain:
    if high_included:
        return Domain(lambda value: low <= value <= high, f"in [{low}, {high}]", high + 1)
    return Domain(lambda value: low <= value < high, f"in [{low}, {high})", high)


def one_of(*options: str) -> Domain:
    return Domain(lambda value: value in options, f"one of {sorted(options)}", "nope")


def in_context(says: str, outside: Any) -> Domain:
    return Domain(None, says, outside)


FREE_TEXT = Domain(lambda value: True, "any text", None)
NAME = Domain(
    lambda value: name_problem(value) is None,
    f"a plain name (no path separators, quotes, control characters or '..'; at most {NAME_LIMIT} characters)",
    "../x",
)
STORE_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
STORE = Domain(
    lambda value: "://" not in value or value.partition("://")[0].partition("+")[0] in STORE_SCHEMES,
    f"an MLflow tracking URI ({', '.join(s + '://' for s in STORE_SCHEMES)}...) or a folder",
    "ftp://store",
)
DATASETS = ("mnist", "fashion", "kmnist")  # cnnlab.data.catalog.CATALOG; a test keeps the two in step
SOURCES = ("cache", "local", "download", "mirror")
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")

# Every key's domain, in one place: the checks read it, and their messages say what it says. Keys may use * for
# list positions. A key that a config does not have (a sweep key in a run config) or leaves null (an optional one)
# is not checked. Block fields depend on the block's kind and on the shapes before it (models.shapes.check_blocks),
# search ranges on the space (tuning.space.check_space), published numbers are data; tests/test_config.py fails for
# any other key of the composed configs that is not listed here.
DOMAINS: dict[str, Domain] = {
    "seed": at_least(0),
    "dataset.name": one_of(*DATASETS),
    "dataset.subset": at_least(1),
    "dataset.sources.*": one_of(*SOURCES),
    "dataset.local_dir": in_context("an existing folder when dataset.sources has 'local'", "/nonexistent/folder"),
    "dataset.classes.*": FREE_TEXT,
    "model.name": FREE_TEXT,  # a label for the tags and the UI
    "model.blocks.*.name": Domain(
        lambda value: value.replace("_", "").isalnum() and not value.isdigit(),
        "a block name of letters, digits and _ (not a number: numbers are list positions)",
        "conv-1",
    ),
    "trainer.epochs": at_least(1),
    "trainer.batch_size": at_least(1),
    "trainer.steps_per_execution": at_least(1),
    "trainer.holdout_size": at_least(1),
    "trainer.metrics.*": one_of(*KNOWN_METRICS),
    "trainer.early_stopping.patience": at_least(0),
    "trainer.early_stopping.monitor": in_context("a metric the run logs", "val_f1"),
    "trainer.verbose": between(0, 2, high_included=True),  # Keras: silent, progress bar, a line per epoch
    "optimizer.learning_rate": above(0),
    "optimizer.beta_1": between(0, 1),  # Adam's moment decays: 1 or more never forgets, and training diverges
    "optimizer.beta_2": between(0, 1),
    "optimizer.epsilon": above(0),
    "optimizer.momentum": between(0, 1),
    "optimizer.rho": between(0, 1),
    "tracking.uri": STORE,
    "tracking.experiment": NAME,
    "tracking.run_name": FREE_TEXT,
    "tracking.artifact_root": FREE_TEXT,  # a folder, created when first used
    "tracking.system_metrics_interval": above(0),
    "claim.source": FREE_TEXT,
    "claim.notes": FREE_TEXT,
    "claim.tolerance": Domain(
        lambda value: 0 < value < 0.1, "in (0, 0.1) in the metric's units (0.005 = half a point)", 0.5
    ),
    "sweep.name": NAME,
    "sweep.directory": FREE_TEXT,  # created when first used; every study lands inside it
    "sweep.export_dir": FREE_TEXT,
    "sweep.objective": in_context("a metric every trial logs", "val_f1"),
    "sweep.max_trials": at_least(1),
    "sweep.max_epochs": at_least(1),
    "sweep.executions_per_trial": at_least(1),
    "sweep.early_stopping_patience": at_least(0),
    "sweep.finalists.top_k": at_least(0),
    "sweep.finalists.seeds": at_least(1),
    "sweep.pruning_percentile": between(0, 100, high_included=True),
    "sweep.pruning_warmup_trials": at_least(1),  # the first trial has nothing to be compared with
    "sweep.pruning_warmup_epochs": at_least(0),
    "sweep.noise_seeds": at_least(0),
    "tuner.num_initial_points": at_least(1),
    "tuner.alpha": above(0),
    "tuner.beta": above(0),
    "tuner.factor": at_least(2),  # Hyperband keeps 1/factor of the trials per round: 1 never narrows down
    "tuner.hyperband_iterations": at_least(1),
    "distributed.workers": at_least(0),
    "distributed.oracle_host": Domain(
        lambda value: bool(value) and all(c.isalnum() or c in ".-:" for c in value), "a host name or address", "a b"
    ),
    "distributed.oracle_port": between(1, 65535, high_included=True),
    "distributed.threads_per_worker": at_least(1),
    "distributed.max_restarts": at_least(0),
    # evaluate, predict, register
    "model_uri": Domain(
        lambda value: value.startswith(("runs:/", "models:/", "file:", "/", ".")) or "://" not in value,
        "runs:/<run id>/model, models:/<name>@<alias> or a folder",
        "ftp://model",
    ),
    "worst": at_least(0),
    "samples": at_least(1),
    "images.*": in_context("an existing image file", "nope.png"),
    "name": NAME,
    "alias": NAME,
    # compare
    "tracking_uri": STORE,
    "limit": at_least(1),
    "params.*": FREE_TEXT,  # a column that no run has is shown empty
    "metrics.*": FREE_TEXT,
    "sort_by": in_context("a shown column (params or metrics)", "nope"),
    "plot_x": in_context("a shown column (params or metrics)", "nope"),
    "plot_path": FREE_TEXT,
    "status": one_of(*RUN_STATUSES),
    "filter": in_context("an MLflow search filter (MLflow reads it first thing)", None),
    "experiments.*": in_context("an experiment of the store (looked up first thing)", None),
    "dataset": FREE_TEXT,  # compare: a tag value to match
    "model": FREE_TEXT,
    # reproduce
    "seeds": Domain(
        lambda value: str(value).strip() == "auto" or (str(value).strip().isdigit() and int(value) >= 1),
        "'auto' or a whole number >= 1",
        "some",
    ),
    "min_seeds": at_least(2),  # a spread needs two seeds
    "max_seeds": at_least(2),
    "claims.*": NAME,
    "report_path": FREE_TEXT,  # where REPRODUCTION.md goes; outside the project on purpose is allowed
    # verify
    "run_id": Domain(
        lambda value: re.fullmatch(r"[0-9a-f]{32}", str(value)) is not None,
        "an MLflow run id (32 hexadecimal characters)",
        "x",
    ),
}


def leaves(cfg: Any) -> dict[str, Any]:
    """Every set leaf of ``cfg`` by dotted key (``model.blocks.0.filters``), enums as their values; not hydra's."""
    from omegaconf import OmegaConf

    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, dict | list):
                walk(value, f"{prefix}{key}.")
            elif value is not None and value != "???":
                out[f"{prefix}{key}"] = value

    # Hydra's own node is left out before resolving: parts of it resolve only once a job runs.
    keys = [key for key in cfg if key != "hydra" and not OmegaConf.is_missing(cfg, key)]
    values = {key: cfg[key] for key in keys}
    walk(
        {
            key: OmegaConf.to_container(value, resolve=True, enum_to_str=True)
            if OmegaConf.is_config(value)
            else option(value)
            for key, value in values.items()
        },
        "",
    )
    return out


def domain_of(key: str) -> Domain | None:
    from fnmatch import fnmatchcase

    if key in DOMAINS:
        return DOMAINS[key]
    return next((domain for pattern, domain in DOMAINS.items() if "*" in pattern and fnmatchcase(key, pattern)), None)


def domain_problems(cfg: Any) -> list[str]:
    """``key: must be ...`` for every key of ``cfg`` outside its DOMAINS entry."""
    problems = []
    for key, value in leaves(cfg).items():
        domain = domain_of(key)
        problem = domain.problem(value) if domain else None
        if problem:
            problems.append(f"{key}: {problem}")
    return problems


def check_domains(cfg: Any) -> None:
    """Raises ConfigError naming every key outside its domain (the commands that do not train use this)."""
    problems = domain_problems(cfg)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def logged_metrics(cfg: Any) -> set[str]:
    """The per-epoch metrics a run (or trial) of ``cfg`` logs: loss and trainer.metrics, and val_* with validation."""
    names = {"loss", *cfg.trainer.metrics}
    if option(cfg.trainer.validation) != "none":
        names |= {f"val_{name}" for name in names}
    return names


def validate(cfg: Any) -> None:
    """Checks ranges that the schema's types cannot, and the model's shapes, without importing TensorFlow."""
    from pathlib import Path

    from cnnlab.models.shapes import check_blocks

    problems = domain_problems(cfg)

    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            problems.append(f"{key}: {message}")

    trainer = cfg.trainer
    logged = logged_metrics(cfg)
    if trainer.early_stopping.enabled:
        monitor = trainer.early_stopping.monitor
        need(monitor in logged, "trainer.early_stopping.monitor", f"{monitor!r} is not logged; one of {sorted(logged)}")
    if cfg.get("sweep") is not None:
        objective = cfg.sweep.objective
        need(objective in logged, "sweep.objective", f"{objective!r} is not logged by a trial; one of {sorted(logged)}")
        if option(cfg.sweep.pruning) != "none":
            need(
                option(cfg.tuner.name) != "hyperband",
                "sweep.pruning",
                "Hyperband already stops trials by its brackets; use sweep.pruning=none with tuner=hyperband",
            )
    need(
        trainer.validation.value != "none" or not (trainer.checkpoint or trainer.early_stopping.enabled),
        "trainer.validation",
        "early stopping and checkpointing need a validation set; pick test, test_halves or holdout",
    )
    need(len(cfg.dataset.classes) >= 2, "dataset.classes", "needs at least two class names")
    optimizer = option(cfg.optimizer.name)
    for key in fields_not_taken(optimizer):
        need(
            cfg.optimizer.get(key) is None,
            f"optimizer.{key}",
            f"has no effect on {optimizer} (it takes {', '.join(OPTIMIZER_FIELDS[optimizer])}); remove it, or pick "
            f"an optimizer that takes it: {', '.join(optimizers_taking(key))}",
        )
    if option(trainer.precision) == "bf16":
        from cnnlab.machine import bf16_impossible, cpu_description, native_bf16

        impossible = bf16_impossible()
        need(impossible is None, "trainer.precision", f"bf16 cannot run here: {impossible}")
        if impossible is None and not trainer.allow_emulated_bf16:
            need(
                native_bf16() is not None,
                "trainer.precision",
                f"bf16 has no native support on this machine ({cpu_description()}): TensorFlow would emulate it, "
                "roughly 10x slower than float32 (10.8x measured on an AVX2 EPYC). Use trainer.precision=float32, or "
                "auto (bf16 only where native); to measure the emulation anyway, add trainer.allow_emulated_bf16=true",
            )
    local_dir = cfg.dataset.local_dir
    if local_dir is not None and "local" in cfg.dataset.sources:
        need(Path(local_dir).is_dir(), "dataset.local_dir", f"no such folder: {local_dir}")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    check_blocks(cfg.model.blocks, input_shape=(28, 28, 1), num_classes=len(cfg.dataset.classes))


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_run_config(overrides: list[str]) -> Any:
    """``conf/config.yaml`` with ``overrides``, inside a Hydra application (its search path) or outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=overrides)
    register_configs()  # a script's own composition: no Hydra application registered the schema
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)
