"""validate(cfg): ranges the schema's types cannot express, what depends on the rest of the config, and the
model's shapes, without importing TensorFlow."""

from __future__ import annotations

import difflib
from typing import Any

from cnnlab.config.blocks import check_blocks
from cnnlab.config.compose import group_file, parse_overrides
from cnnlab.config.domains import domain_problems
from cnnlab.config.schema import (
    DATASET_DESCRIPTION,
    DATASET_MAPPINGS,
    OPTIMIZER_FIELDS,
    fields_not_taken,
    image_shape,
    optimizers_taking,
    option,
)
from cnnlab.errors import ConfigError


def logged_metrics(cfg: Any) -> set[str]:
    """The per-epoch metrics a run (or trial) of ``cfg`` logs: loss and trainer.metrics, and val_* with validation."""
    names = {"loss", *cfg.trainer.metrics}
    if option(cfg.trainer.validation) != "none":
        names |= {f"val_{name}" for name in names}
    return names


# What each of the dataset's mappings holds per key, for the messages.
MAPPING_HOLDS = {
    "sha256": ("array", "the SHA-256 of each decoded array, or none to pin nothing"),
    "files": ("array", "a file name for each array, or none to read the folder's IDX or npz files"),
    "split_sizes": ("split", "the images in each split, or none when they are known only once the data is read"),
}


def dataset_mapping_problems(dataset: Any) -> list[str]:
    """``key: message`` for every key of the dataset's mappings (``sha256``, ``files``, ``split_sizes``) that is not
    one they take (a typo such as ``x_trian``), and for every key a mapping that is not empty lacks: a schema of
    ``dict[str, ...]`` checks the values' type but not the keys, and a misspelt pin would otherwise leave an array
    unverified, or a size unknown, without a word. The values' ranges are their domains (:mod:`.domains`)."""
    problems = []
    for key, expected in DATASET_MAPPINGS.items():
        given = [str(name) for name in (dataset.get(key) or {})]
        kind, holds = MAPPING_HOLDS[key]
        meant = set()
        for name in given:
            if name in expected:
                continue
            close = difflib.get_close_matches(name, expected, n=1, cutoff=0.7)
            meant.update(close)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(
                f"dataset.{key}.{name}: no such {kind}{hint}; dataset.{key} takes {', '.join(expected)}: {holds}"
            )
        missing = [name for name in expected if name not in given and name not in meant]
        if given and missing:
            problems.append(
                f"dataset.{key}: {', '.join(missing)} missing; give every one of {', '.join(expected)}: {holds}"
            )
    return problems


def naming_the_dataset_file(cfg: Any, problems: list[str]) -> list[str]:
    """``problems`` with the dataset file named after each one about a key that describes the dataset
    (:data:`DATASET_DESCRIPTION`) and that the command line did not set, so the user knows which file to fix."""
    from omegaconf import OmegaConf

    path = group_file(cfg, "dataset")
    if path is None:
        return problems
    # dataset=<option> picks the file; a dotted key sets a value over it
    overrides = list(OmegaConf.select(cfg, "hydra.overrides.task", default=[]))
    given = [key for key, _ in parse_overrides(overrides) if "." in key]
    described = tuple(f"dataset.{key}" for key in DATASET_DESCRIPTION)

    def from_file(problem: str) -> bool:
        key = problem.partition(":")[0]
        overridden = any(key == k or key.startswith(f"{k}.") or k.startswith(f"{key}.") for k in given)
        return key.startswith(described) and not overridden

    return [f"{problem} (in {path})" if from_file(problem) else problem for problem in problems]


def validate(cfg: Any) -> None:
    """Checks ranges that the schema's types cannot, and the model's shapes, without importing TensorFlow."""
    from pathlib import Path

    problems = domain_problems(cfg) + dataset_mapping_problems(cfg.dataset)

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
    need(len(cfg.dataset.sources) >= 1, "dataset.sources", "empty; list where the data may come from, e.g. [cache]")
    need(len(cfg.dataset.classes) >= 2, "dataset.classes", "needs at least two class names")
    shape = list(cfg.dataset.shape)
    need(
        len(shape) == 3 and shape[2] in (1, 3),
        "dataset.shape",
        f"must be [height, width, channels] with channels 1 (grayscale) or 3 (RGB), got {shape}",
    )
    classes = list(cfg.dataset.classes)
    repeated = sorted({name for name in classes if classes.count(name) > 1})
    need(not repeated, "dataset.classes", f"class names must differ, {repeated} repeat")
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
        raise ConfigError("invalid config:\n  " + "\n  ".join(naming_the_dataset_file(cfg, problems)))
    check_blocks(cfg.model.blocks, input_shape=image_shape(cfg.dataset), num_classes=len(cfg.dataset.classes))
