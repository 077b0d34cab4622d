"""Every config key's domain, in one table (:data:`DOMAINS`), and the checks that read it.

Pure Python: the commands that do not train check their options here without importing TensorFlow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cnnlab.config.schema import option
from cnnlab.errors import ConfigError
from cnnlab.machine import KINDS

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


# The type's range of every whole-number key: TensorFlow takes counts, sizes and shapes as 32-bit integers, and
# NumPy's seeding stops at 2**32 - 1, so a larger number would end in an overflow deep inside a library.
INT_LIMIT = 2**31 - 1


def beyond_type(value: Any) -> str | None:
    """What ``value`` breaks of its type's range (a whole number beyond :data:`INT_LIMIT`, a float that is not
    finite), or None. Every number of every config is held to this, whether or not its key has a domain."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
        return f"within [{-INT_LIMIT}, {INT_LIMIT}] (its type's range: a 32-bit integer)"
    return None


def type_problem(value: Any) -> str | None:
    beyond = beyond_type(value)
    return f"must be {beyond}, got {value}" if beyond else None


KNOWN_ACTIVATIONS = {"relu", "linear", "softmax", "sigmoid", "tanh", "elu", "selu", "gelu", "swish", "silu"}
KNOWN_METRICS = {"accuracy", "auc"}


@dataclass(frozen=True)
class Domain:
    """What a key may hold: ``ok(value)``, said in words, and one value outside it (the tests feed it).

    ``ok=None`` marks a key whose domain depends on the rest of the config or on what exists (a metric the run logs,
    a folder, a column compare shows); the commands' checks (:mod:`cnnlab.checks`) check those, and the tests feed
    ``outside`` to them all the same. ``outside=None`` marks free text (a note, a class name, a path to be created).
    """

    ok: Any
    says: str
    outside: Any

    def problem(self, value: Any) -> str | None:
        if beyond := beyond_type(value):
            return f"must be {self.says} and {beyond}, got {value}"
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
SHA256 = Domain(
    lambda value: len(str(value)) == 64 and all(c in "0123456789abcdef" for c in str(value)),
    "a SHA-256 (64 lowercase hexadecimal digits)",
    "abc",
)
SOURCES = ("cache", "local", "download", "mirror")
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")

# Every key's domain, in one place: the checks read it, and their messages say what it says. Keys may use * for
# list positions. A key that a config does not have (a sweep key in a run config) or leaves null (an optional one)
# is not checked. Block fields depend on the block's kind and on the shapes before it (config.blocks.check_blocks),
# search ranges on the space (tuning.space.check_space), published numbers are data; tests/test_config.py fails for
# any other key of the composed configs that is not listed here.
DOMAINS: dict[str, Domain] = {
    "seed": between(0, INT_LIMIT, high_included=True),  # room below NumPy's 2**32 - 1 for the seeds derived from it
    "seed_init": between(0, INT_LIMIT, high_included=True),  # each source's seed is a seed like `seed`
    "seed_data_order": between(0, INT_LIMIT, high_included=True),
    "seed_dropout": between(0, INT_LIMIT, high_included=True),
    "dataset.name": NAME,  # the cache file and the runs' tags are named by it
    "dataset.shape.*": at_least(1),  # [height, width, channels]; the count and the channels: config.validation
    "dataset.split_sizes.*": at_least(1),  # images per split, known without loading: data.sizes checks them
    "dataset.split": Domain(lambda value: 0 < value < 1, "a fraction in (0, 1) of each class held out as test", 1.5),
    "dataset.sha256.*": SHA256,
    "dataset.files.*": Domain(lambda value: bool(str(value).strip()), "a file name in dataset.local_dir", ""),
    "dataset.download.base": FREE_TEXT,  # a URL; the message of a failed download names it
    "dataset.download.files.*.name": FREE_TEXT,
    "dataset.download.files.*.sha256": Domain(
        lambda value: value == "" or SHA256.ok(value), "a SHA-256, or empty when the file is not pinned", "abc"
    ),
    "dataset.mirror.package": FREE_TEXT,
    "dataset.mirror.version": FREE_TEXT,
    "dataset.mirror.member": FREE_TEXT,
    "dataset.mirror.installed_dir": FREE_TEXT,
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
    "claim.tolerance_reason": FREE_TEXT,
    "claim.error_ratio": Domain(lambda value: value is None or 1 < value <= 3, "null or in (1, 3]", 0.5),
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
    "workers": at_least(1),
    "claims.*": NAME,
    "sources.levels": at_least(2),  # a source needs two seeds to vary
    "sources.replicates": at_least(1),
    "sources.bootstrap": at_least(50),  # fewer draws leave a 95% interval's ends to chance
    "report_path": FREE_TEXT,  # where REPRODUCTION.md goes; outside the project on purpose is allowed
    # seeds
    "path": FREE_TEXT,  # a seeds file anywhere; import checks what it holds
    "machine_kind": one_of(*KINDS),
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
        problem = domain.problem(value) if domain else type_problem(value)
        if problem:
            problems.append(f"{key}: {problem}")
    return problems


def check_domains(cfg: Any) -> None:
    """Raises ConfigError naming every key outside its domain (the commands that do not train use this)."""
    problems = domain_problems(cfg)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
