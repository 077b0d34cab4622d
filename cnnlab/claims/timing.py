"""How long a reproduction takes: each claim's design and time before the first seed, progress after each seed.

A seed's time is estimated from the claim's epochs and the seconds per epoch of stored runs of the same claim and
precision on this machine kind (tag ``machine.kind``; speed on another kind says little), plus what those runs
spent around training (building, scoring, logging). Without such runs the time is unknown until the first seed
finishes; from then on the seeds this process trained are the estimate.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any


def duration(seconds: float) -> str:
    """``45 s``, ``3.2 min``, ``1.4 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _epochs(epochs: int) -> str:
    return f"{epochs} epoch{'s' if epochs != 1 else ''}"


@dataclass(frozen=True)
class SeedCost:
    seconds: float  # one seed, training and what surrounds it
    source: str  # where the figure comes from, in words


def stored_seed_cost(client: Any, experiment_id: str, result: Any, epochs: int, fingerprint: str) -> SeedCost | None:
    """One seed's time from stored FINISHED runs of this claim and precision on this machine kind (None: none).

    A modified protocol (a data subset, other epochs, ...) trains at another speed: only runs of the same
    fingerprint count for it.
    """
    from cnnlab.claims.kinds import finished_runs

    kind = result.kind
    runs = finished_runs(
        client, experiment_id, {"cnnlab.claim": result.name, "cnnlab.precision": result.precision}, kind
    )
    if result.modified:
        runs = [run for run in runs if run.data.tags.get("cnnlab.fingerprint") == fingerprint]
    per_epoch = [run.data.metrics["seconds_per_epoch"] for run in runs if "seconds_per_epoch" in run.data.metrics]
    if not per_epoch:
        return None
    around = [
        run.data.metrics["total_seconds"] - run.data.metrics["train_seconds"]
        for run in runs
        if {"total_seconds", "train_seconds"} <= set(run.data.metrics)
    ]
    epoch = statistics.median(per_epoch)
    extra = statistics.median(around) if around else 0.0
    return SeedCost(
        epochs * epoch + extra,
        f"{_epochs(epochs)} x {epoch:.1f} s, the median of {len(per_epoch)} stored runs of {result.label} on this "
        f"machine kind ({kind})" + (f", and {duration(extra)} around training" if around else ""),
    )


def reused_seeds(client: Any, experiment_id: str, result: Any, fingerprint: str) -> set[int]:
    """The seeds the reproduction will reuse instead of training: FINISHED with this fingerprint on this machine
    kind and thread count, as ``run_seed`` looks them up (another kind's seeds are another kind's, and this one
    trains its own)."""
    from cnnlab.claims.kinds import finished_runs

    runs = finished_runs(client, experiment_id, {"cnnlab.fingerprint": fingerprint}, result.kind)
    return {int(run.data.tags["cnnlab.seed"]) for run in runs if run.data.tags.get("cnnlab.seed", "").isdigit()}


def design_text(design: Any) -> str:
    """``seeds=auto: 3 to 10 seeds, 8 looks (after each seed from 3; the first that can decide is at 5)``."""
    from cnnlab.claims.stats import first_deciding_look

    first = first_deciding_look(design)
    deciding = f"the first that can decide is at {first}" if first else "none can decide"
    if not design.sequential:
        return f"seeds={design.max_seeds}: {design.max_seeds} seeds, one look ({deciding})"
    looks = len(design.looks)
    return (
        f"seeds=auto: {design.min_seeds} to {design.max_seeds} seeds, {looks} look{'s' if looks != 1 else ''} "
        f"(after each seed from {design.min_seeds}; {deciding})"
    )


@dataclass
class Clock:
    """The reproduction's plan and progress; ``plan`` before training, ``after_seed`` after every seed."""

    started: float = field(default_factory=time.perf_counter)
    stored: dict[str, SeedCost | None] = field(default_factory=dict)  # by claim label
    trained: dict[str, list[float]] = field(default_factory=dict)  # seconds of the seeds this process trained
    reused: dict[str, int] = field(default_factory=dict)
    workers: int = 1  # processes training seeds at once (reproduce workers=N): the wall time is their seeds' / N

    def plan(self, result: Any, epochs: int, fingerprint: str, client: Any, experiment_id: str) -> str:
        """One claim's design, the seeds it may reuse, and the time its seeds still to train take."""
        design = result.design
        cost = self.stored[result.label] = stored_seed_cost(client, experiment_id, result, epochs, fingerprint)
        done = reused_seeds(client, experiment_id, result, fingerprint)
        fewest = len(set(range(design.min_seeds)) - done)
        most = len(set(range(design.max_seeds)) - done)
        line = f"[reproduce] {result.label}: {design_text(design)}"
        if done & set(range(design.max_seeds)):
            line += f"; {len(done & set(range(design.max_seeds)))} seed(s) already finished are reused"
        seeds = f"{most}" if fewest == most else f"at most {most}" if fewest == 0 else f"{fewest} to {most}"
        if most == 0:
            return line + "; nothing left to train"
        if cost is None:
            return (
                line + f"; {seeds} seed(s) to train of {_epochs(epochs)} each: time unknown until the first seed "
                f"finishes (no stored run of {result.label} on this machine kind, {result.kind})"
            )
        each = cost.seconds / self.workers
        span = f"{duration(fewest * each)} to {duration(most * each)}" if 0 < fewest < most else duration(most * each)
        at_once = f", {self.workers} at once" if self.workers > 1 else ""
        return (
            line + f"; about {span} for {seeds} seed(s) to train, {duration(cost.seconds)} each{at_once} "
            f"({cost.source})"
        )

    def seed_seconds(self, label: str) -> float | None:
        """A seed's time: the mean of the seeds trained here, else the stored estimate, else unknown."""
        if self.trained.get(label):
            return statistics.fmean(self.trained[label])
        cost = self.stored.get(label)
        return cost.seconds if cost else None

    def after_seed(self, result: Any, seconds: float, results: list[Any]) -> str:
        """The progress line after one seed of ``result``: how many of at most how many seeds are done, the time so
        far, and at most how long the seeds still open take (every open claim running to its ``max_seeds``)."""
        label = result.label
        if result.skipped > self.reused.get(label, 0):
            self.reused[label] = result.skipped
            how = "reused"
        else:
            self.trained.setdefault(label, []).append(seconds)
            how = f"trained in {duration(seconds)}"
        left, unknown = 0.0, []
        for other in results:
            if not other.needs_more_seeds():
                continue
            each = self.seed_seconds(other.label)
            if each is None:
                unknown.append(other.label)
            else:
                left += (other.design.max_seeds - len(other.runs)) * each / self.workers
        remaining = (
            f"time left unknown until a seed of {', '.join(unknown)} finishes"
            if unknown
            else f"at most about {duration(left)} left"
            if left
            else "nothing left to train"
        )
        return (
            f"[reproduce] {label}: {len(result.runs)} of at most {result.design.max_seeds} seeds done ({how}); "
            f"{duration(time.perf_counter() - self.started)} elapsed; {remaining}"
        )
