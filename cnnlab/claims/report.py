"""The reproduction report: a claims table (terminal, Markdown, HTML) with learning curves and distributions."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import pandas as pd

from cnnlab import plots
from cnnlab.claims.stats import paired_tost, paired_tost_power, t_interval


def claims_table(results: list[Any]) -> pd.DataFrame:
    """One row per claimed number: its verdict (the median run), the mean's reading beside it, the claim read as
    one run, and what misbehaved; Holm's family-wise reading over the reproduction's verdicts."""
    from cnnlab.claims.verdict import holm, smallest_p_value

    rows, verdicts = [], []
    for result in results:
        minutes = sum(run.data.metrics.get("total_seconds", 0.0) for run in result.runs) / 60
        for target, verdict in result.verdicts():
            mean, single, median = verdict.mean, verdict.single_run, verdict.median
            # the family: every claimed number judged here, decided or not; one definition for Holm and its text
            in_family = (
                not result.unavailable
                and not result.modified
                and target["value"] is not None
                and math.isfinite(verdict.error)
            )
            verdicts.append(verdict if in_family else None)
            status = verdict.status
            why = result.unavailable or verdict.why
            if result.unavailable:
                status = "inconclusive (data unavailable here)"
            elif result.modified and target["value"] is not None:
                status = "modified protocol (no verdict)"
                changes = ", ".join(result.modified)
                why = f"{changes} changes the claim's protocol; under it the rule reads {verdict.status}: {why}"
            rows.append(
                {
                    "claim": result.name,
                    "precision": result.precision,
                    "precision_basis": result.precision_basis,
                    "plain_basis": result.plain_basis,
                    "metric": target["metric"],
                    "split": target.get("split", ""),
                    "claimed": target["value"],
                    "tolerance": result.tolerance,
                    "error_ratio": result.error_ratio,
                    "margin": verdict.margin,
                    "verdict": status,
                    "why": why,
                    "flags": " | ".join(verdict.flags),
                    "seeds": verdict.seeds,
                    "seeds_run": len(result.runs),
                    "reaching_margin": median.reaching if median else math.nan,
                    "median_low": median.low if median and median.bounded else math.nan,
                    "median_high": median.high if median and median.bounded else math.nan,
                    "median_bounds": verdict.median_text,
                    "error": verdict.error,
                    "p_value": verdict.p_value,
                    "in_family": in_family,
                    "p_floor": smallest_p_value(verdict.design) if verdict.design else math.nan,
                    "mean": mean.bounds.mean if mean and mean.bounds else math.nan,
                    "std": mean.bounds.std if mean and mean.bounds else math.nan,
                    "mean_low": mean.bounds.low if mean and mean.bounds else math.nan,
                    "mean_high": mean.bounds.high if mean and mean.bounds else math.nan,
                    "mean_reading": mean.status if mean else "",
                    "mean_seeds": mean.seeds if mean else 0,
                    "single_run_low": single.low if single else math.nan,  # NaN: the lowest seed diverged
                    "single_run_high": single.high if single else math.nan,
                    "single_run_coverage": single.coverage if single else math.nan,
                    "single_run_selected": single.selected if single else False,
                    "p_single_run_reaches": verdict.p_single_run_reaches,
                    "p_single_run_low": verdict.p_single_run_low,
                    "p_single_run_high": verdict.p_single_run_high,
                    "seeds_reaching": verdict.seeds_reaching,
                    "outliers": ",".join(str(i) for i in verdict.outliers),
                    "skew": verdict.skew,
                    "sampling_se": verdict.sampling_se if verdict.sampling_se is not None else math.nan,
                    "minutes": minutes,
                    "sequential": result.design.sequential,
                    "max_seeds": result.design.max_seeds,
                }
            )
    table = pd.DataFrame(rows)
    if len(table):
        table["holm"] = holm(verdicts)
    return table


def percent(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{100 * value:.2f}%"


def _bound(value: float) -> str:
    return percent(value) if math.isfinite(value) else "unbounded"


def _which_number(table: pd.DataFrame) -> dict[str, Any]:
    """The columns that say which claimed number a row is about."""
    return {
        "claim": table["claim"],
        "precision": table["precision"],
        # the split a number scores where it is not the test set (a training accuracy, a validation half)
        "metric": [
            metric if not split or str(split).startswith("test") else f"{metric} ({split})"
            for metric, split in zip(table["metric"], table["split"], strict=True)
        ],
        "claimed": table["claimed"].map(percent),
    }


def _margin_text(row: Any) -> str:
    if row.claimed is None or not math.isfinite(row.claimed):
        return ""
    scale = f"{row.error_ratio:g}x the error rate" if _given(row.error_ratio) else f"{100 * row.tolerance:g} pt"
    return f"{percent(row.margin)} ({scale})"


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The verdicts, each with what it rests on: the margin, the seeds reaching it, the median's bounds, and the
    mean's t reading beside it."""
    rows = list(table.itertuples())
    return pd.DataFrame(
        {
            **_which_number(table),
            "claimed - tolerance": [_margin_text(row) for row in rows],
            "verdict (median run)": table["verdict"],
            "seeds reaching the margin": [
                f"{row.reaching_margin:.0f} of {row.seeds}" if math.isfinite(row.reaching_margin) else ""
                for row in rows
            ],
            "median, one-sided 95% bounds over all looks": table["median_bounds"],
            "mean ± sd (points); t reading (95% over all looks)": [
                (f"{percent(row.mean)} ± {100 * row.std:.2f}" if math.isfinite(row.std) else percent(row.mean))
                + (
                    f"; [{_bound(row.mean_low)}, {_bound(row.mean_high)}] {row.mean_reading} at {row.mean_seeds} seeds"
                    if row.mean_reading
                    else ""
                )
                if math.isfinite(row.mean)
                else ""
                for row in rows
            ],
            "Holm, family of the reproduction": [
                ""
                if row.holm is None or (isinstance(row.holm, float) and math.isnan(row.holm))
                else "holds"
                if row.holm
                else "does not hold"
                for row in rows
            ],
            "seeds (of run)": [f"{n} ({r})" for n, r in zip(table["seeds"], table["seeds_run"], strict=True)],
            "minutes": table["minutes"].map(lambda v: f"{v:.1f}"),
        }
    )


def reasons(table: pd.DataFrame) -> str:
    """One line per verdict: what decided it, or what it lacks (for an open one, the seeds that would decide it
    with 80% probability); then whatever misbehaved among its seeds."""
    lines = []
    for row in table.itertuples():
        lines.append(f"- {row.claim} ({row.precision}) {row.metric}: {row.verdict}: {row.why}")
        lines += [f"  - flagged: {flag}" for flag in (row.flags.split(" | ") if row.flags else [])]
    bases = dict.fromkeys((row.claim, row.precision_basis) for row in table.itertuples() if row.precision_basis)
    lines += [f"- {claim} runs in {basis}" for claim, basis in bases]
    plain = dict.fromkeys((row.claim, row.plain_basis) for row in table.itertuples() if row.plain_basis)
    lines += [
        f"- {claim}: judged here in float32 (precisions= measures each precision on the same seeds, and float32's "
        f"rows carry the verdict); a reproduction without precisions= (`make reproduce`) runs it in {basis}"
        for claim, basis in plain
    ]
    return "\n".join(lines)


def family(table: pd.DataFrame) -> str:
    """The family-wise error of one reproduction, and what Holm's correction keeps."""
    members = table[table["in_family"]] if len(table) else table
    if not len(members):
        return ""
    errors = list(members["error"])
    independent = 1 - math.prod(1 - e for e in errors)
    decided = members[members["holm"].notna()]
    kept = int(decided["holm"].astype(bool).sum())
    text = (
        f"This reproduction judges {len(errors)} claimed number{'s' if len(errors) != 1 else ''}, "
        f'each with a false "reproduced" rate of at most '
        f"{100 * max(errors):.1f}% at its margin. If every one sat at its margin, at least one would be called "
        f"reproduced falsely up to {100 * independent:.0f}% of the time for independent claims, and at most "
        f"{100 * min(1, sum(errors)):.0f}% in any case. Holm's step-down over all {len(errors)} keeps the "
        f'family-wise rate at 5%: {kept} of {len(decided)} decided verdicts hold at that level (column "Holm")'
    )
    floor = members["p_floor"].min()
    level = 0.05 / len(errors)
    if kept < len(decided) and math.isfinite(floor) and floor > level:
        text += f"; none could, whatever the seeds: {_holm_floor(members.iloc[0], floor, level, len(errors))}"
    return text + "."


def _holm_floor(row: Any, floor: float, level: float, size: int) -> str:
    """Why no decision of this design can hold under Holm, and the design that could."""
    from cnnlab.claims.stats import Design, seeds_for_level
    from cnnlab.claims.verdict import smallest_p_value

    needed = seeds_for_level(level)
    if row.sequential:
        design = Design(needed, max(needed, int(row.max_seeds)))
        knob = f"min_seeds={needed}" + (f" max_seeds={needed}" if needed > row.max_seeds else "")
    else:
        design, knob = Design.fixed(needed), f"seeds={needed}"
    return (
        f"this design's strongest evidence (every seed reaching the margin at its first deciding look) has p = "
        f"{100 * floor:.1f}%, above Holm's first step, 5% / {size} = {100 * level:.2f}%; {knob} can (all {needed} "
        f"of {needed} reaching has p = {100 * smallest_p_value(design):.2f}%)"
    )


def readable_single_run(table: pd.DataFrame) -> pd.DataFrame:
    """The tutorial's number read as what it is, one run, from every seed run for the claim."""
    claimed = table[table["claimed"].notna() & (table["seeds_run"] > 0)]
    rows = list(claimed.itertuples())
    return pd.DataFrame(
        {
            **_which_number(claimed),
            "one run falls between the lowest and highest seed (its chance, any distribution)": [
                _prediction_text(row) for row in rows
            ],
            "P(one run >= claimed), exact 95% interval": [
                f"{100 * row.p_single_run_reaches:.0f}% [{100 * row.p_single_run_low:.0f}, "
                f"{100 * row.p_single_run_high:.0f}]"
                if math.isfinite(row.p_single_run_reaches)
                else ""
                for row in rows
            ],
            "seeds reaching the claimed number": [f"{row.seeds_reaching} of {row.seeds_run}" for row in rows],
            "seeds far from the rest": [row.outliers or "none" for row in rows],
            "skew": [f"{row.skew:+.2f}" if math.isfinite(row.skew) else "" for row in rows],
            "sampling SE of the split scored": claimed["sampling_se"].map(
                lambda v: "" if not math.isfinite(v) else f"{100 * v:.2f} pt"
            ),
        }
    )


def _prediction_text(row: Any) -> str:
    if not math.isfinite(row.single_run_coverage):
        return f"none from {row.seeds_run} seed"
    low = percent(row.single_run_low) if math.isfinite(row.single_run_low) else "a diverged run"
    n, coverage = row.seeds_run, row.single_run_coverage
    # a design that stops early selects the seeds it keeps: its guarantee holds over reproductions, not for a
    # reproduction that stopped at its first look (docs/statistics.md, "Single-run figures")
    early = row.single_run_selected
    chance = f"at least {100 * coverage:.0f}% over reproductions" if early else f"{100 * coverage:.0f}%"
    return f"[{low}, {percent(row.single_run_high)}]: {chance} from {n} seeds" + (
        " (the design stops early)" if early else ""
    )


def report_markdown(table: pd.DataFrame) -> str:
    """The claims section's tables: verdicts, reasons and flags, the family, the claim as one run."""
    text = to_markdown(readable(table)) + "\n\n" + reasons(table)
    if family_text := family(table):
        text += "\n\n" + family_text
    return (
        text + "\n\nThe claim as one run (every seed run for the claim):\n\n" + to_markdown(readable_single_run(table))
    )


def _by_seed(runs: list[Any], metric: str) -> dict[str, float]:
    return {run.data.tags.get("cnnlab.seed"): run.data.metrics[metric] for run in runs if metric in run.data.metrics}


def paired_difference(reference: list[Any], candidate: list[Any], metric: str, tolerance: float) -> dict[str, Any]:
    """Two ways of training the same seeds, paired by seed on ``metric``: their means, the mean difference with its
    95% t interval, and the paired TOST within +-``tolerance`` (stats.paired_tost) with its power if the two were
    equal; empty when no seed is in both."""
    by_reference, by_candidate = _by_seed(reference, metric), _by_seed(candidate, metric)
    seeds = sorted(set(by_reference) & set(by_candidate))
    if not seeds:
        return {}
    paired = [by_candidate[seed] - by_reference[seed] for seed in seeds]
    differences = t_interval(paired)
    equivalence = paired_tost(paired, tolerance)
    spread = differences.std if len(seeds) > 1 and math.isfinite(differences.std) else math.nan
    return {
        "seeds": len(seeds),
        "reference_mean": sum(by_reference[seed] for seed in seeds) / len(seeds),
        "mean": sum(by_candidate[seed] for seed in seeds) / len(seeds),
        "difference": differences.mean,
        "difference_ci95_low": differences.low,
        "difference_ci95_high": differences.high,
        "tolerance": tolerance,
        "median_difference_low": equivalence.low,
        "median_difference_high": equivalence.high,
        "equivalent": equivalence.equivalent,
        # The chance this many seeds show equivalence if the two were truly equal, with the paired differences'
        # observed spread: how much a "not shown" says.
        "power_if_equal": paired_tost_power(0.0, spread, len(seeds), tolerance) if math.isfinite(spread) else math.nan,
    }


def precision_table(results: list[Any]) -> pd.DataFrame:
    """Each non-float32 variant of a claim against its float32 runs, paired by seed: the accuracy it costs."""
    baselines = {r.name: r for r in results if r.precision == "float32" and r.runs}
    rows = []
    for result in results:
        baseline = baselines.get(result.name)
        if result.precision == "float32" or baseline is None or not result.runs:
            continue
        for target in (result.claim or {}).get("targets", []):
            metric = target["metric"]
            paired = paired_difference(baseline.runs, result.runs, metric, result.allowed(target["value"]))
            if not paired:
                continue
            seeds, reference = paired.pop("seeds"), paired.pop("reference_mean")
            rows.append(
                {
                    "claim": result.name,
                    "metric": metric,
                    "precision": result.precision,
                    "seeds": seeds,
                    "float32_mean": reference,
                    **paired,
                }
            )
    return pd.DataFrame(rows)


def points(value: float, digits: int = 2) -> str:
    return f"{100 * value:+.{digits}f}" if math.isfinite(value) else "unbounded"


def bounds_points(low: float, high: float, tolerance: float) -> str:
    """``[low, high]`` in points, with a third (or fourth) decimal where two would print a bound as +-tolerance
    itself, so "not inside +-0.50" never sits beside a bound that reads -0.50."""
    digits = 2
    while digits < 4 and any(
        math.isfinite(v)
        and f"{100 * abs(v):.{digits}f}" == f"{100 * tolerance:.{digits}f}"
        and not math.isclose(abs(v), tolerance, rel_tol=1e-9)  # on the tolerance itself (a tie): as it is
        for v in (low, high)
    ):
        digits += 1
    return f"[{points(low, digits)}, {points(high, digits)}]"


def readable_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim": pairs["claim"],
            "metric": pairs["metric"],
            "float32": pairs["float32_mean"].map(percent),
            "other precision": [f"{p}: {percent(m)}" for p, m in zip(pairs["precision"], pairs["mean"], strict=True)],
            "difference, points (95% CI over seeds)": [
                f"{points(d)} [{points(lo)}, {points(hi)}]"
                for d, lo, hi in zip(
                    pairs["difference"], pairs["difference_ci95_low"], pairs["difference_ci95_high"], strict=True
                )
            ],
            "seeds": pairs["seeds"],
            "TOST within the tolerance (bounds of the median difference, paired by seed)": [
                f"{bounds_points(lo, hi, tol)} {'inside' if eq else 'not inside'} +-{100 * tol:.2f}: "
                + ("equivalent" if eq else "not shown equivalent")
                + (f"; power if equal {power:.0%}" if math.isfinite(power) else "")
                for lo, hi, tol, eq, power in zip(
                    pairs["median_difference_low"],
                    pairs["median_difference_high"],
                    pairs["tolerance"],
                    pairs["equivalent"],
                    pairs["power_if_equal"],
                    strict=True,
                )
            ],
        }
    )


def to_markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def looks_figure(result: Any) -> Any:
    """Each look of the sequential verdict: the mean's one-sided bounds after n seeds against claim - tolerance.

    A verdict is the first look where a bound clears the margin, so the picture shows why a claim stopped where it
    did, or how far an open one is from stopping.
    """
    from cnnlab.claims.stats import one_sided_bounds, t_critical_values

    critical = t_critical_values(result.design)
    targets = [t for t in (result.claim or {}).get("targets", []) if t["value"] is not None]
    figure, axes = plots.plt.subplots(1, max(1, len(targets)), figsize=(5.5 * max(1, len(targets)), 3.6), squeeze=False)
    for axis, target in zip(axes[0], targets, strict=False):
        values = result.values(target["metric"])
        looks = [n for n in result.design.looks if 2 <= n <= len(values)]
        bounds = [one_sided_bounds(values[:n], 0.0, critical[n]) for n in looks]
        axis.scatter(range(1, len(values) + 1), values, color="tab:blue", s=14, label="seed's value", zorder=3)
        axis.plot(looks, [b.mean for b in bounds], "o-", color="black", label="mean")
        axis.fill_between(
            looks,
            [b.low for b in bounds],
            [b.high for b in bounds],
            color="grey",
            alpha=0.3,
            label="the mean's t bounds at each look (95% over all looks)",
        )
        axis.axhline(target["value"], color="red", lw=1, label="claimed")
        margin = target["value"] - result.allowed(target["value"])
        axis.axhline(margin, color="red", ls="--", lw=1, label="claimed - tolerance")
        spread = [*values, margin, target["value"]]
        axis.set_ylim(min(spread) - 0.01, max(spread) + 0.01)  # unbounded early looks would flatten the rest
        axis.set_xlabel("seeds")
        axis.xaxis.set_major_locator(plots.plt.MaxNLocator(integer=True))
        axis.set_ylabel(target["metric"])
        axis.set_title(f"{result.label} {target['metric']}: the looks", fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    figure.tight_layout()
    return figure


def learning_curves_figure(result: Any, client: Any) -> Any:
    figure, axis = plots.plt.subplots(figsize=(6, 3.6))
    for run in result.runs:
        seed = run.data.tags.get("cnnlab.seed", "?")
        for metric, style in (("accuracy", "--"), ("val_accuracy", "-")):
            history = client.get_metric_history(run.info.run_id, metric)
            if history:
                axis.plot([p.step for p in history], [p.value for p in history], style, label=f"{metric} s{seed}")
    for target in (result.claim or {}).get("targets", []):
        if target["value"] is not None:
            axis.axhline(target["value"], color="red", lw=0.8, label=f"claimed {target['metric']}")
    axis.set_xlabel("epoch")
    axis.set_ylabel("accuracy")
    axis.set_title(f"{result.label}: learning curves over seeds")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=6)
    figure.tight_layout()
    return figure


def distribution_figure(table: pd.DataFrame, results: list[Any]) -> Any:
    targets = [(r, t) for r in results for t in (r.claim or {}).get("targets", []) if r.runs]
    figure, axis = plots.plt.subplots(figsize=(max(5, 1.8 * len(targets)), 3.8))
    for index, (result, target) in enumerate(targets):
        values = [run.data.metrics.get(target["metric"]) for run in result.runs]
        values = [v for v in values if v is not None]
        axis.scatter([index] * len(values), values, color="tab:blue", zorder=3)
        if target["value"] is not None:
            axis.hlines(target["value"], index - 0.3, index + 0.3, color="red", label="claimed" if index == 0 else None)
            axis.hlines(
                target["value"] - result.allowed(target["value"]),
                index - 0.3,
                index + 0.3,
                color="red",
                linestyles="dashed",
                label="claimed - tolerance" if index == 0 else None,
            )
    axis.set_xticks(range(len(targets)), [f"{r.label}\n{t['metric']}" for r, t in targets], fontsize=7)
    axis.set_ylabel("accuracy per seed")
    axis.set_title("accuracy per seed (dots) against the claim (red) and claim - tolerance (dashed)")
    if targets:
        axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plots.plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def to_html(table: pd.DataFrame, pairs: pd.DataFrame, figures: dict[str, Any], header: str, kinds: str = "") -> str:
    """The self-contained page; ``kinds``: the machine-kind section's HTML (cnnlab.claims.kinds.kinds_html)."""
    images = "".join(
        f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' src='data:image/png;base64,{_png(fig)}'>"
        for name, fig in figures.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>cnnlab reproduction</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
        f"<h1>cnnlab reproduction</h1><p>{html.escape(header)}</p>"
        f"{readable(table).to_html(index=False, escape=True)}"
        + "<ul>"
        + "".join(f"<li>{html.escape(line[2:])}</li>" for line in reasons(table).splitlines())
        + "</ul>"
        + f"<p>{html.escape(family(table))}</p>"
        "<h2>The claim as one run</h2>"
        f"{readable_single_run(table).to_html(index=False, escape=True)}"
        + (
            "<h2>Other precisions against float32, paired by seed</h2>"
            + readable_pairs(pairs).to_html(index=False, escape=True)
            if len(pairs)
            else ""
        )
        + kinds
        + f"{images}</body></html>"
    )


REPRODUCTION_HEADER = (
    "# Reproduction of the tutorials' claims\n\nEach section below was written by the command it names, on the "
    "machine it names.\n"
)


def write_reproduction_md(
    path: Path, report: dict[str, Any], parent_id: str, results: list[Any], claims: list[str]
) -> None:
    """Writes the reproduction's section of REPRODUCTION.md (other sections, e.g. harness fidelity, stay)."""
    import platform

    from cnnlab import documents
    from cnnlab.machine import cpu_description
    from cnnlab.tracking.provenance import versions

    library = versions()
    done = {r.name for r in results}
    not_run = "".join(f"\n- **{name}**: not run yet." for name in claims if name not in done)
    pending = [r.label for r in results if r.needs_more_seeds()]
    status = (
        f"**In progress**: {', '.join(pending)} still take seeds; rerun the command to resume."
        if pending
        else "Complete: every claim is decided or has its last seed."
    )
    precision_section = (
        "\n### Other precisions against float32, on the same seeds\n\n"
        "Each seed trained in both precisions; the two accuracy columns are means over every seed run in both (so "
        "they may differ from a verdict's mean, taken at its deciding look); the difference is the other precision's "
        "accuracy minus float32's, "
        "with a 95% t-interval over the paired seeds, and a paired TOST on the median difference that holds for "
        "any distribution (two one-sided sign tests at 5% each: the order-statistic bounds of the median difference "
        "inside +-the claim's tolerance; with 5 seeds, the lowest and highest difference) that shows the precisions "
        "equivalent for this claim, with its power at these seeds if they were truly equal (simulated, normal "
        "differences of the observed spread). A seed that failed in either precision widens both bounds. "
        "Speed lives in BENCHMARKS.md.\n\n" + report["precision_markdown"] + "\n"
        if report.get("precision_markdown")
        else ""
    )
    notes = "\n".join(
        f"- **{r.name}**: {(r.claim or {}).get('source', '')}. {(r.claim or {}).get('notes', '')}"
        + (f" *Data unavailable here: {r.unavailable}*" if r.unavailable else "")
        for r in {r.name: r for r in results}.values()  # one note per claim, whatever its precisions
    )
    tolerance_text = "; ".join(
        f"{r.name}: "
        + (f"{r.error_ratio:g}x the claimed error rate" if r.error_ratio else f"{100 * r.tolerance:g} points")
        + (f" ({(r.claim or {}).get('tolerance_reason')})" if (r.claim or {}).get("tolerance_reason") else "")
        for r in {r.name: r for r in results if r.claim}.values()
    )
    design = results[0].design if results else None
    design_text = (
        f"seeds {design.min_seeds} to {design.max_seeds}, a look after each (`seeds=auto`)"
        if design and design.sequential
        else f"{design.max_seeds} seeds, one look"
        if design
        else ""
    )
    body = f"""## Claims: verdicts

Command: `{report["command"]}`

Machine: {cpu_description()}; Python {platform.python_version()}, TensorFlow {library["version.tensorflow"]}, Keras
{library["version.keras"]}. MLflow parent run `{parent_id}` (experiment `cnnlab-reproductions`; `make ui`, its
report.html). Design: {design_text}; tolerances: {tolerance_text}. {status}

{report["markdown"]}
{precision_section}{not_run}

How to read it (docs/statistics.md): the verdict is on the protocol's *median run*, the level one run reaches at
least half of the time. *Reproduced* when enough of the seeds so far reach claimed - tolerance, the margin (the
count needed at each look is exact for any distribution of runs, so skewed runs, a run near 100% or a failed seed
cannot fool it); *exceeds* when the median's lower bound is above claimed + tolerance; *not reproduced* when few
enough reach it; *inconclusive* otherwise. With the median run at the margin, "reproduced" comes out at most 5% of
the time (4.1% exactly for seeds=auto 3..10), and so does "not reproduced". The verdict rows rest on the seeds of
this machine's kind (other kinds' seeds are in the machine-kind table). Columns: the median's bounds are
one-sided 95% bounds over all the looks the design takes; the mean's t reading stands beside it (sd in points;
valid when runs are roughly normal; its bounds at the look where it decided, or its last, "at" that many seeds)
and a disagreement is flagged, as are seeds far from the rest and skew; "Holm" is blank for a number that is
undecided or outside the family; "seeds (of run)" is the seeds the verdict rests on (its deciding look) and, in
brackets, the seeds trained for the claim in that precision (more when another of its numbers was still open);
"minutes" is their training time, shared by the claim's numbers. A modified protocol (an override that changes
data, epochs, network, optimizer or precision) is measured, not judged. The second table reads the tutorial's
number as one run, from every seed run: where one more run falls (between the lowest and the highest seed, which
holds (n - 1)/(n + 1) of the time for any distribution of runs in a fixed design, 82% with 10 seeds; under
seeds=auto at least 67% over reproductions, less for one that stopped at its first look), and how often one run
reaches the claimed number, with its exact interval; its sampling SE is the binomial error of the images of the
split the metric scores. Before a design's first deciding look the median cannot be bounded, and the table says
how many seeds that takes.

### What each text leaves out, and what was chosen

{notes}
"""
    documents.write_section(path, "claims", body, REPRODUCTION_HEADER)


def reproduction_writer(cfg: Any) -> Any:
    """The callback that rewrites ``cfg.report_path``'s claims section after every round (None without a path)."""
    if not cfg.report_path:
        return None

    def write(report: dict[str, Any], results: list[Any], parent_id: str) -> None:
        claims = list(cfg.claims) if cfg.claims is not None else list(dict.fromkeys(r.name for r in results))
        write_reproduction_md(Path(cfg.report_path), report, parent_id, results, claims)

    return write


def reproduction_summary(report: dict[str, Any], parent_id: str, report_path: str | None) -> str:
    """What `python -m cnnlab.reproduce` prints at the end: the verdict table and where the reports are."""
    lines = ["\n" + report["markdown"] + "\n"]
    lines.append(f"  parent run {parent_id} (experiment cnnlab-reproductions): report.html, report.md, claims.csv")
    if report_path:
        lines.append(f"  wrote {report_path}")
    return "\n".join(lines)
