"""The data a run trained on, as MLflow dataset inputs: one per split, found by digest in the UI and in search."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import mlflow

log = logging.getLogger(__name__)

SPLIT_CONTEXTS = {"train": "training", "validation": "validation", "test": "test"}


def dataset_source_uri(arrays: Any, dataset_name: str) -> str:
    """Where the verified arrays came from, as a URI MLflow's dataset sources understand.

    A download names its URL, a local folder itself; a mirror's files are read once into cnnlab's cache, so the
    source is the cached file.
    """
    from cnnlab.data.sources import cache_dir

    kind, _, rest = arrays.source.partition(" ")
    if kind == "download":
        return rest
    if kind in ("cache", "local"):  # a local folder nothing verified is never cached: name the folder itself
        return Path(rest).resolve().as_uri()
    return (cache_dir() / f"{dataset_name}.npz").resolve().as_uri()


def log_datasets(data: Any, dataset_name: str) -> None:
    """Logs each split as an MLflow dataset input: name, digest, source and context (training/validation/test).

    The digest joins the first 16 hex digits of the split's images' SHA-256 and of its labels': for a whole split
    they are the pinned hashes' own, so runs on identical data are found by digest in the UI and in search.
    """
    from mlflow.data import from_numpy
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    from cnnlab.data.sources import sha256_of

    with warnings.catch_warnings():  # MLflow registers its local-file source under two schemes and says so
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        source = resolve_dataset_source(dataset_source_uri(data.arrays, dataset_name))
    for split_name, context in SPLIT_CONTEXTS.items():
        split = getattr(data.splits, split_name)
        if split is None:
            continue
        digest = sha256_of(split.x)[:16] + sha256_of(split.y)[:16]
        dataset = from_numpy(
            split.x, source=source, targets=split.y, name=f"{dataset_name}-{split_name}", digest=digest
        )
        log_input(dataset, context)


# How each database backing an MLflow store words a broken unique key (PostgreSQL, SQLite, MySQL).
DUPLICATE_KEY = ("duplicate key value violates unique constraint", "UNIQUE constraint failed", "Duplicate entry")


def log_input(dataset: Any, context: str) -> None:
    """``mlflow.log_input``, tried once more when another process logged the same dataset at the same moment.

    The store looks the dataset up, then inserts it, in one transaction: two workers' first trials logging one
    dataset can both miss it, and the second insert breaks the store's unique key (PostgreSQL's UniqueViolation on
    ``dataset_pk`` failed a trial in tests/test_multihost.py). The transaction is rolled back whole, so the second
    try finds the other process's row and only links it to this run.
    """
    try:
        mlflow.log_input(dataset, context=context)
    except mlflow.exceptions.MlflowException as error:
        if not any(words in str(error) for words in DUPLICATE_KEY):
            raise
        log.info("dataset %s was logged by another process at the same moment; linking it", dataset.name)
        mlflow.log_input(dataset, context=context)
