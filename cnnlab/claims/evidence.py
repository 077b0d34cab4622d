"""Whether a claim may be reproduced in bfloat16: its ``claim.bf16_evidence`` seeds file, read and judged again.

A claim stays float32 by rule, because bf16 rounds every product and nothing says in advance that the rounding
leaves the claim's outcome alone. Where the same seeds were trained in both precisions (``cnnlab reproduce
precisions=[float32,bf16]``, then ``cnnlab seeds export``) and the paired TOST shows them equivalent within the
claim's tolerance, the claim names that file in ``claim.bf16_evidence`` and its reproduction runs in bf16 where
bfloat16 is native (half the time or less: BENCHMARKS.md, "Training speed"), float32 elsewhere.

The file is not taken on trust: every reproduction reads it again, keeps only the seeds trained under this
claim's protocol as it stands (the same fingerprint: data, config and library versions), pairs them by seed and
machine kind (this machine's kind only: another kind's kernels round bf16 their own way), and runs the same TOST the
report prints (``stats.paired_tost``). Anything short of "equivalent"
keeps float32 and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.claims.kinds import kind_label
from cnnlab.claims.portable import SeedsFileRefused, read_seeds_file
from cnnlab.claims.report import bounds_points
from cnnlab.claims.stats import paired_tost
from cnnlab.claims.verdict import distance_to_margin
from cnnlab.tracking.provenance import rerun_command

PRECISION = "bf16"


@dataclass(frozen=True)
class Basis:
    """The precision a claim's reproduction runs in, and why."""

    precision: str
    why: str


def locate(path: str) -> Path:
    """``path`` as given (absolute, or from the working directory), else from the repository cnnlab runs from, so
    the shipped claims find their files wherever the command is typed."""
    given = Path(path)
    if given.is_absolute() or given.exists():
        return given
    shipped = Path(__file__).resolve().parents[2] / path
    return shipped if shipped.exists() else given


def pairs(payload: dict[str, Any], claim: str, fingerprints: dict[str, str], metric: str) -> dict[str, list[float]]:
    """Per machine kind, the differences bf16 minus float32 in ``metric``, seed by seed, over the seeds trained in
    both precisions under ``fingerprints`` (precision -> this claim's protocol fingerprint in it)."""
    values: dict[tuple[str, str, str], float] = {}
    for run in payload["runs"]:
        tags = run["tags"]
        precision = tags.get("cnnlab.precision", "float32")
        if (
            "cnnlab.seed" not in tags
            or tags["cnnlab.claim"] != claim
            or tags.get("cnnlab.fingerprint") != fingerprints.get(precision)
        ):
            continue
        kind = kind_label(tags.get("machine.kind"), tags.get("machine.isa_cap"))
        values[(kind, tags["cnnlab.seed"], precision)] = float(run["metrics"].get(metric, float("nan")))
    found: dict[str, list[float]] = {}
    for (kind, seed, precision), value in sorted(values.items()):
        if precision == PRECISION and (kind, seed, "float32") in values:
            found.setdefault(kind, []).append(value - values[(kind, seed, "float32")])
    return found


def bf16_basis(
    claim: dict[str, Any],
    name: str,
    fingerprints: dict[str, str],
    native: str | None,
    kind: str,
    overrides: Sequence[str] = (),
) -> Basis:
    """The precision claim ``name`` runs in on machine kind ``kind``: bf16 when ``native`` (what runs bfloat16
    natively here, or None) and its evidence file shows bf16 equivalent to float32 for every claimed number on this
    same kind, each within its own margin (the tolerance in points, or on the error-rate scale); float32, with the
    reason, otherwise. Another kind's evidence does not count: its kernels round bf16 their own way. The command a
    reason suggests carries the reproduction's own ``overrides`` (data folder, store), so it measures the same
    protocol where the user runs it."""
    measure = rerun_command("cnnlab.reproduce", [f"claims=[{name}]", "precisions=[float32,bf16]", *overrides])
    path = claim.get("bf16_evidence")
    if not path:
        return Basis("float32", "")
    stay = "float32 (the claim's rule)"
    try:
        payload = read_seeds_file(str(locate(path)))
    except SeedsFileRefused as error:
        return Basis("float32", f"{stay}: its bf16 evidence cannot be read: {error}")
    shown = []
    for target in claim.get("targets", []):
        if target.get("value") is None:
            continue
        value = target["value"]
        allowed = distance_to_margin(claim, value)
        within = f"within +-{100 * allowed:.2f} pt (the claim's margin)"
        by_kind = pairs(payload, name, fingerprints, target["metric"])
        if kind not in by_kind:
            found = f"pairs measured on {', '.join(by_kind)} only" if by_kind else "no seed trained in both precisions"
            return Basis(
                "float32",
                f"{stay}: {path} has {found}, none on this machine's kind ({kind}) under this protocol's fingerprint, "
                f"and each kind's kernels round bf16 their own way; `{measure}` measures it here",
            )
        differences = by_kind[kind]
        e = paired_tost(differences, allowed)
        bounds = f"{len(differences)} seeds paired on {kind}, median difference bounds "
        bounds += bounds_points(e.low, e.high, allowed)
        if not e.equivalent:
            return Basis(
                "float32",
                f"{stay}: {path} does not show bf16 equivalent to float32 for {target['metric']} {within} ({bounds}); "
                f"more seeds in both precisions (`{measure} max_seeds=...`) may",
            )
        shown.append(f"{target['metric']} bf16 minus float32 {within} ({bounds})")
    if not shown:
        return Basis("float32", f"{stay}: it has no claimed number to show bf16 equivalent on")
    where = f"paired TOST over {path}: " + "; ".join(shown)
    if not native:
        return Basis("float32", f"float32: bf16 is shown equivalent ({where}) but is not native here")
    return Basis(PRECISION, f"bf16, as {native}: shown equivalent to float32 by {where}")
