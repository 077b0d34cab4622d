"""The reproduction report: a claims table (terminal, Markdown, HTML) with learning curves and distributions."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import pandas as pd

from cnnlab import plots
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
    axis.set_title(f"{result.name}: learning curves over seeds")
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
    axis.set_xticks(range(len(targets)), [f"{r.name}\n{t['metric']}" for r, t in targets], fontsize=7)
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


def to_html(table: pd.DataFrame, figures: dict[str, Any], header: str) -> str:
    images = "".join(
        f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' src='data:image/png;base64,{_png(fig)}'>"
        for name, fig in figures.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>cnnlab reproduction</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
        f"<h1>cnnlab reproduction</h1><p>{html.escape(header)}</p>"
        f"{readable(table).to_html(index=False, escape=True)}{images}</body></html>"
    )
