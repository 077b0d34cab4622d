"""The reproduction report: a claims table (terminal, Markdown, HTML) with learning curves and distributions."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import pandas as pd

from cnnlab import plots
from cnnlab.claims.stats import t_interval
from cnnlab.claims.verdict import judge


def claims_table(results: list[Any]) -> pd.DataFrame:
    rows = []
    for result in results:
        claim = result.claim or {}
        for target in claim.get("targets", []):
            metric = target["metric"]
            values = [run.data.metrics[metric] for run in result.runs if metric in run.data.metrics]
            verdict = judge(values, target["value"], result.split_sizes.get(metric, 0))
            interval = verdict.interval
            minutes = sum(run.data.metrics.get("total_seconds", 0.0) for run in result.runs) / 60
            rows.append(
                {
                    "claim": result.name,
                    "precision": result.precision,
                    "metric": metric,
                    "split": target.get("split", ""),
                    "claimed": target["value"],
                    "mean": interval.mean if interval else math.nan,
                    "std": interval.std if interval else math.nan,
                    "ci95_low": interval.low if interval else math.nan,
                    "ci95_high": interval.high if interval else math.nan,
                    "sampling_se": verdict.sampling_se if verdict.sampling_se is not None else math.nan,
                    "verdict": verdict.status if not result.unavailable else "inconclusive (data unavailable here)",
                    "seeds": len(values),
                    "minutes": minutes,
                    "why": result.unavailable or verdict.why,
                }
            )
    return pd.DataFrame(rows)


def _percent(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{100 * value:.2f}%"


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The columns people read: claimed, mean ± half-width [low, high], verdict."""
    shown = pd.DataFrame(
        {
            "claim": table["claim"],
            "precision": table["precision"],
            "metric": table["metric"],
            "claimed": table["claimed"].map(_percent),
            "measured (95% CI)": [
                f"{_percent(m)} ± {100 * (h - m):.2f} [{_percent(lo)}, {_percent(h)}]"
                if math.isfinite(h)
                else _percent(m)
                for m, lo, h in zip(table["mean"], table["ci95_low"], table["ci95_high"], strict=True)
            ],
            "sampling SE": table["sampling_se"].map(lambda v: "" if not math.isfinite(v) else f"{100 * v:.2f} pt"),
            "verdict": table["verdict"],
            "seeds": table["seeds"],
            "minutes": table["minutes"].map(lambda v: f"{v:.1f}"),
        }
    )
    return shown


def _by_seed(runs: list[Any], metric: str) -> dict[str, float]:
    return {run.data.tags.get("cnnlab.seed"): run.data.metrics[metric] for run in runs if metric in run.data.metrics}


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
            reference, candidate = _by_seed(baseline.runs, metric), _by_seed(result.runs, metric)
            seeds = sorted(set(reference) & set(candidate))
            if not seeds:
                continue
            differences = t_interval([candidate[seed] - reference[seed] for seed in seeds])
            rows.append(
                {
                    "claim": result.name,
                    "metric": metric,
                    "precision": result.precision,
                    "seeds": len(seeds),
                    "float32_mean": sum(reference[seed] for seed in seeds) / len(seeds),
                    "mean": sum(candidate[seed] for seed in seeds) / len(seeds),
                    "difference": differences.mean,
                    "difference_ci95_low": differences.low,
                    "difference_ci95_high": differences.high,
                }
            )
    return pd.DataFrame(rows)


def _points(value: float) -> str:
    return f"{100 * value:+.2f}" if math.isfinite(value) else "unbounded"


def readable_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim": pairs["claim"],
            "metric": pairs["metric"],
            "float32": pairs["float32_mean"].map(_percent),
            "other precision": [f"{p}: {_percent(m)}" for p, m in zip(pairs["precision"], pairs["mean"], strict=True)],
            "difference, points (95% CI over seeds)": [
                f"{_points(d)} [{_points(lo)}, {_points(hi)}]"
                for d, lo, hi in zip(
                    pairs["difference"], pairs["difference_ci95_low"], pairs["difference_ci95_high"], strict=True
                )
            ],
            "seeds": pairs["seeds"],
        }
    )


def to_markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


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
    axis.set_xticks(range(len(targets)), [f"{r.label}\n{t['metric']}" for r, t in targets], fontsize=7)
    axis.set_ylabel("accuracy per seed")
    axis.set_title("measured accuracy per seed (dots) against the claim (red)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plots.plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def to_html(table: pd.DataFrame, pairs: pd.DataFrame, figures: dict[str, Any], header: str) -> str:
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
        + (
            "<h2>Other precisions against float32, paired by seed</h2>"
            + readable_pairs(pairs).to_html(index=False, escape=True)
            if len(pairs)
            else ""
        )
        + f"{images}</body></html>"
    )
