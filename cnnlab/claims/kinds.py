"""Seeds of one claim from several machine kinds: each kind's own table and verdict, whether the kind moves the
outcome (an equivalence test within the claim's tolerance, with its power), and the pooled verdict only where the
kinds are shown equivalent.

A machine kind is the run's ``machine.kind`` tag with its oneDNN cap (``machine.isa_cap``): the same seed through
other kernels is another run, so an AVX-512 machine held to AVX2 kernels is a kind of its own. Runs recorded before
machines were tagged are of kind ``unrecorded``.

The kind effect is read by Hodges-Lehmann's shift between two kinds with its exact Mann-Whitney interval
(docs/statistics.md, "Machine kinds", says why rank-based rather than Welch's t): the kinds are *equivalent* when
the 90% interval lies inside +-tolerance (two one-sided tests at 5% each). Error controlled: when the true shift
between two kinds is exactly +-tolerance, "equivalent" comes out at most 5% of the time, for any continuous
distribution of runs; a failed seed (NaN) ranks below every finished one. With three kinds or more every pair must
be shown equivalent, an intersection-union test, so the 5% holds for the family without correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache
from itertools import combinations
from typing import Any

import numpy as np

UNRECORDED = "unrecorded"
ALPHA = 0.05  # each one-sided test: the interval is 1 - 2 * ALPHA = 90%
FAILED = 0.0  # a diverged seed's value for the ranks: below every finished run's accuracy
POWER_SIMULATIONS = 2000


def kind_label(kind: str | None, isa_cap: str | None) -> str:
    """``avx512_bf16``, or ``avx2 (ONEDNN_MAX_CPU_ISA=AVX2)`` under a oneDNN cap; ``unrecorded`` without a kind."""
    if not kind:
        return UNRECORDED
    return kind if isa_cap in (None, "", "none") else f"{kind} ({isa_cap})"


def run_kind(run: Any) -> str:
    """The machine kind a stored run was trained on (its tags)."""
    tags = run.data.tags
    return kind_label(tags.get("machine.kind"), tags.get("machine.isa_cap"))


def run_threads(run: Any) -> str | None:
    """The TensorFlow intra-op threads a stored run was split over: its ``machine.threads`` tag, or for a run from
    before cnnlab recorded them its ``machine.cores``, a guess: TensorFlow's default was then one thread per CPU the
    process could use, which is the host's count outside a CPU set and unless ``TF_NUM_INTRAOP_THREADS`` was set.
    A wrong guess trains a seed again rather than reusing another run. None if neither is known."""
    tags = run.data.tags
    return tags.get("machine.threads") or tags.get("machine.cores")


def this_kind() -> str:
    """The machine kind runs trained in this process record."""
    from cnnlab import machine

    tags = machine.tags()
    return kind_label(tags["machine.kind"], tags["machine.isa_cap"])


def seed_of(run: Any) -> int:
    return int(run.data.tags.get("cnnlab.seed", -1))


def group_by_kind(runs: list[Any], max_seeds: int | None = None) -> dict[str, list[Any]]:
    """Each kind's runs in seed order, one run per seed (the first given), seeds below ``max_seeds``."""
    kinds: dict[str, dict[int, Any]] = {}
    for run in runs:
        seed = seed_of(run)
        if max_seeds is None or 0 <= seed < max_seeds:
            kinds.setdefault(run_kind(run), {}).setdefault(seed, run)
    return {kind: [by_seed[s] for s in sorted(by_seed)] for kind, by_seed in sorted(kinds.items())}


def finished_runs(client: Any, experiment_id: str, tags: dict[str, str], kind: str | None = None) -> list[Any]:
    """The FINISHED runs carrying every one of ``tags``, newest first; with ``kind``, only those trained on that
    machine kind and on as many intra-op threads as this process has: what a reproduction may reuse, since another
    kind's run of a seed, or one split over other threads, is another run (its kernels round differently,
    docs/runs.md). What it reports is every kind's."""
    clauses = [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    found = client.search_runs(
        [experiment_id],
        filter_string=" and ".join([*clauses, "attributes.status = 'FINISHED'"]),
        order_by=["attributes.start_time DESC"],
        max_results=5000,
    )
    if kind is None:
        return found
    from cnnlab.machine import intra_op_threads

    threads = str(intra_op_threads())
    return [run for run in found if run_kind(run) == kind and run_threads(run) == threads]


# --- the kind effect: Hodges-Lehmann shift, exact Mann-Whitney interval, TOST --------------------------------------


@cache
def mann_whitney_null(n: int, m: int) -> np.ndarray:
    """P(U = u), u = 0..n*m: U counts the pairs (a_i, b_j) with a_i > b_j when both samples come from one continuous
    distribution. By the largest of the n + m values: an a (chance n/(n+m)) beats all m b's, so
    U(n, m) = m + U(n-1, m); a b leaves U(n, m-1) (Mann & Whitney 1947, the recursion of their eq. 2)."""
    previous = [np.ones(1) for _ in range(m + 1)]  # n = 0: U = 0 whatever m
    for i in range(1, n + 1):
        row = [np.ones(1)]  # m = 0: U = 0
        for j in range(1, m + 1):
            pmf = np.zeros(i * j + 1)
            pmf[j : j + (i - 1) * j + 1] += i / (i + j) * previous[j]
            pmf[: i * (j - 1) + 1] += j / (i + j) * row[j - 1]
            row.append(pmf)
        previous = row
    return previous[m]


def interval_rank(n: int, m: int, alpha: float = ALPHA) -> int | None:
    """The k for which [D_(k), D_(nm+1-k)] of the n*m sorted differences a_i - b_j is a (1 - 2 alpha) interval for
    the shift (Lehmann 1975, Nonparametrics, ch. 2.6): the largest k with P(U <= k - 1) <= alpha. None when even the
    widest interval misses that confidence (too few seeds: 3 a side is the least at 5%)."""
    cdf = np.cumsum(mann_whitney_null(n, m))
    k = int(np.searchsorted(cdf, alpha * (1 + 1e-9), side="right"))  # P(U <= k - 1) <= alpha
    return k if k >= 1 else None


@dataclass(frozen=True)
class KindEquivalence:
    """Kind ``a`` against kind ``b`` (a minus b) on one metric."""

    a: str
    b: str
    seeds_a: int
    seeds_b: int
    shift: float  # Hodges-Lehmann: the median of the pairwise differences
    low: float  # the exact 90% interval (nan when too few seeds for one)
    high: float
    equivalent: bool
    power: float  # simulated chance of showing equivalence at these seeds if the kinds were equal

    @property
    def differs(self) -> bool:
        """The interval excludes zero: the kinds differ (at 5% a side), not merely unproven equivalent."""
        return self.low > 0 or self.high < 0


def _failed_low(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array), array, FAILED)


def _bounds(a: np.ndarray, b: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hodges-Lehmann shift and the interval's bounds for samples stacked on the last axis (a: (..., n))."""
    differences = np.sort((a[..., :, None] - b[..., None, :]).reshape(*a.shape[:-1], -1), axis=-1)
    shift = np.median(differences, axis=-1)
    if k is None:
        nan = np.full(shift.shape, math.nan)
        return shift, nan, nan
    return shift, differences[..., k - 1], differences[..., -k]


def kind_equivalence(
    a: list[float], b: list[float], tolerance: float, names: tuple[str, str] = ("a", "b"), seed: int = 0
) -> KindEquivalence:
    """TOST at 5% a side on the Hodges-Lehmann shift of ``a`` over ``b``: equivalent when its exact 90% interval is
    inside +-``tolerance`` (module docstring). Its power: equivalence's simulated chance with these seeds a side if
    the kinds were equal, each draw resampling the seeds of both kinds centred on their own median (a failed seed
    stays failed), ``POWER_SIMULATIONS`` draws."""
    x, y = _failed_low(a), _failed_low(b)
    k = interval_rank(len(x), len(y))
    shift, low, high = (float(v) for v in _bounds(x, y, k))
    equivalent = k is not None and -tolerance < low and high < tolerance
    power = 0.0
    if k is not None:
        residuals = np.concatenate([x - np.median(x), y - np.median(y)])
        rng = np.random.default_rng(seed)
        draws_a = rng.choice(residuals, (POWER_SIMULATIONS, len(x)))
        draws_b = rng.choice(residuals, (POWER_SIMULATIONS, len(y)))
        _, lows, highs = _bounds(draws_a, draws_b, k)
        power = float(((lows > -tolerance) & (highs < tolerance)).mean())
    return KindEquivalence(names[0], names[1], len(x), len(y), shift, low, high, bool(equivalent), power)


# --- the report's section ----------------------------------------------------------------------------------------


def kinds_of(result: Any) -> dict[str, list[Any]]:
    """The claim's runs by machine kind: every kind's seeds in the store (this machine's kind: the seeds this
    reproduction judged), or the result's own runs' kinds."""
    kinds = dict(result.by_kind or group_by_kind(result.runs))
    if result.kind and result.runs:
        kinds[result.kind] = result.runs
    return kinds


def comparisons(result: Any, target: dict[str, Any]) -> list[KindEquivalence]:
    """Every pair of kinds with seeds, on ``target``'s metric, within its margin's distance (``allowed``)."""
    kinds = kinds_of(result)
    metric = target["metric"]
    values = {kind: [run.data.metrics.get(metric, math.nan) for run in runs] for kind, runs in kinds.items()}
    return [
        kind_equivalence(values[a], values[b], result.allowed(target["value"]), (a, b))
        for a, b in combinations(sorted(values), 2)
        if values[a] and values[b]
    ]


def per_kind_rows(result: Any) -> list[dict[str, Any]]:
    """One row per (claimed number, kind): seeds, median, mean, sd and the kind's own verdict; then the pooled row,
    whose verdict is given only where every pair of kinds is shown equivalent."""
    from cnnlab.claims.stats import Design
    from cnnlab.claims.verdict import judge

    kinds = kinds_of(result)
    rows = []
    for target in (result.claim or {}).get("targets", []):
        metric = target["metric"]
        for kind, runs in kinds.items():
            alone = replace(result, runs=runs, by_kind={kind: runs}, earlier_designs=[])
            verdict = dict((t["metric"], v) for t, v in alone.verdicts())[metric]
            rows.append(_row(result, kind, alone.values(metric), _status(result, verdict.status), metric))
        pairs = comparisons(result, target)
        pooled = [v for runs in kinds.values() for v in replace(result, runs=runs).values(metric)]
        if all(pair.equivalent for pair in pairs):
            verdict = judge(
                pooled,
                target["value"],
                Design.fixed(len(pooled)),
                result.tolerance,
                result.split_sizes.get(metric, 0),
                result.error_ratio,
            )
            status = _status(result, f"{verdict.status} (kinds equivalent; {len(pooled)} seeds, one look)")
        else:
            status = "not given: the kinds are not shown equivalent"
        rows.append(_row(result, "all kinds pooled", pooled, status, metric))
    return rows


def _status(result: Any, status: str) -> str:
    return f"modified protocol (no verdict); the rule reads {status}" if result.modified else status


def _row(result: Any, kind: str, values: list[float], verdict: str, metric: str) -> dict[str, Any]:
    from cnnlab.claims.report import percent

    finite = np.asarray([v for v in values if math.isfinite(v)])
    return {
        "claim": result.label,
        "precision": result.precision,
        "metric": metric,
        "machine kind": kind,
        "seeds": len(values),
        "failed": len(values) - len(finite),
        "median": percent(float(np.median(_failed_low(values)))) if values else "",
        "mean": percent(float(finite.mean())) if len(finite) else "",
        "sd, points": f"{100 * finite.std(ddof=1):.2f}" if len(finite) > 1 else "",
        "verdict": verdict,
    }


def equivalence_lines(result: Any) -> list[str]:
    """What the equivalence test says for each pair of kinds, in words."""
    from cnnlab.claims.report import bounds_points, points

    lines = []
    for target in (result.claim or {}).get("targets", []):
        allowed = result.allowed(target["value"])
        tolerance = f"+-{100 * allowed:.2f} pt"
        for pair in comparisons(result, target):
            head = (
                f"- {result.label} {target['metric']}: {pair.a} minus {pair.b} (Hodges-Lehmann, {pair.seeds_a} and "
                f"{pair.seeds_b} seeds): {points(pair.shift)} pt, 90% interval "
                f"{bounds_points(pair.low, pair.high, allowed)}"
            )
            if math.isnan(pair.low):
                reading = "too few seeds for a 90% interval (3 a side at least): equivalence cannot be shown"
            elif pair.equivalent:
                reading = f"inside {tolerance}: equivalent"
            elif pair.differs:
                reading = f"excludes 0: {pair.a} differs from {pair.b} by {points(pair.shift)} pt"
            else:
                reading = f"not inside {tolerance}: not shown equivalent (nor shown to differ)"
            power = f"power at these seeds if the kinds were equal: {100 * pair.power:.0f}% (simulated)"
            lines.append(f"{head}; {reading}; {power}.")
    return lines


def kinds_html(results: list[Any]) -> str:
    """The machine-kind section for the HTML report: the per-kind table and the equivalence lines, where a claim's
    seeds come from several kinds."""
    import html

    import pandas as pd

    several = [result for result in results if len(kinds_of(result)) > 1]
    if not several:
        return ""
    rows = [row for result in several for row in per_kind_rows(result)]
    lines = [line[2:] for result in several for line in equivalence_lines(result)]
    return (
        "<h2>Machine kinds</h2>"
        + pd.DataFrame(rows).to_html(index=False, escape=True)
        + "<ul>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        + "</ul>"
    )


def kinds_markdown(results: list[Any]) -> str:
    """The report's machine-kind section: a line naming the kind where a claim's seeds come from one, and the
    per-kind table with the equivalence reading where they come from several."""
    import pandas as pd

    from cnnlab.claims.report import to_markdown

    single, rows, lines = [], [], []
    for result in results:
        kinds = kinds_of(result)
        if len(kinds) == 1:
            single.append(f"{result.label}: `{next(iter(kinds))}`")
        elif len(kinds) > 1:
            rows += per_kind_rows(result)
            lines += equivalence_lines(result)
    text = []
    if single:
        text.append("Machine kind of every seed: " + "; ".join(single) + ".")
    if rows:
        text += [
            "Seeds from several machine kinds: each kind's verdict, and the pooled one only where the kinds are "
            'shown equivalent within the claim\'s tolerance (docs/statistics.md, "Machine kinds").',
            to_markdown(pd.DataFrame(rows)),
            "\n".join(lines),
        ]
    return "\n\n".join(text)
