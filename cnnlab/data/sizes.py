"""How many images a dataset's splits hold, known without loading them, so the checks before work can refuse a
holdout or subset the data cannot give in well under a second (loading the arrays takes seconds)."""

from __future__ import annotations

from typing import Any

from cnnlab.config.schema import option


def size_problems(cfg: Any) -> list[str]:
    """``key: message`` for every split size ``cfg`` asks of its dataset that the dataset cannot give.

    The sizes are the dataset file's ``split_sizes``; a dataset without them (a user's own folder, whose size is
    known only once it is read) is checked when its arrays are split (``data.splits``).
    """
    train = (cfg.dataset.get("split_sizes") or {}).get("train")
    if train is None:
        return []
    problems = []
    if option(cfg.trainer.validation) == "holdout":
        if cfg.trainer.holdout_size >= train:
            problems.append(
                f"trainer.holdout_size: {cfg.trainer.holdout_size} leaves no training images ({cfg.dataset.name}'s "
                f"training split has {train}); hold out fewer, e.g. trainer.holdout_size={train // 5}"
            )
        train -= cfg.trainer.holdout_size
    subset = cfg.dataset.subset
    if subset is not None and 0 < train < subset:
        problems.append(
            f"dataset.subset: {subset} is more than the {train} training images {cfg.dataset.name} has here; give "
            f"at most {train}, or drop dataset.subset to train on all of them"
        )
    return problems
