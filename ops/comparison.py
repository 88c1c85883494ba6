"""`unisar compare`'s report from a trainer's ledger (stream.train.ledger): the models'
prequential HR@10 and NDCG@10 over event time, each one's difference to the champion with an
interval, their throughput and the share of samples each trained on. Pure but for the plots
(matplotlib's file backend).

The run is cut into `windows` windows of consecutive batches holding equal numbers of
samples (stream order: partitions are read unevenly, so event time is not monotone from one
batch to the next); each window is placed at the median event time of its batches. Within a
window every model scored the same rows on the same candidates, so a window's difference
between two models is paired; the interval is a t-interval over the windows after the
warm-up (the first `--frozen-after` samples, where frozen and periodic still learn like
continual).
"""
from __future__ import annotations

import json
import math
from statistics import median
from pathlib import Path

METRICS = ("HR@10", "NDCG@10")
DAY_MS = 86_400_000
# two-sided 95% Student t quantiles by degrees of freedom (1..30); above 30 the normal's
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def t975(df: int) -> float:
    return T975[df - 1] if 1 <= df <= len(T975) else 1.96


def windows(lines: list[dict], n: int) -> list[dict]:
    """Cut the ledger into `n` windows of about equal samples: per window the samples before
    it and in it, its median event day (since the first batch's), and per model and task the
    rows and the rows-weighted metrics."""
    if not lines:
        return []
    total = sum(line["samples"] for line in lines)
    t0 = min(line["event_ms"] for line in lines)
    out = [{"first_sample": 0, "samples": 0, "days": [], "models": {}} for _ in range(n)]
    seen = 0
    for line in lines:
        w = out[min(n - 1, seen * n // max(1, total))]
        if not w["samples"]:
            w["first_sample"] = seen
        seen += line["samples"]
        w["samples"] += line["samples"]
        w["days"].append((line["event_ms"] - t0) / DAY_MS)
        for model, tasks in line["scores"].items():
            for task, (rows, hr, ndcg) in tasks.items():
                acc = w["models"].setdefault(model, {}).setdefault(task, {"rows": 0, "HR@10": 0.0, "NDCG@10": 0.0})
                acc["rows"] += rows
                acc["HR@10"] += hr * rows
                acc["NDCG@10"] += ndcg * rows
    out = [w for w in out if w["samples"]]
    for w in out:
        w["day"] = float(median(w.pop("days")))
        for tasks in w["models"].values():
            for acc in tasks.values():
                for m in METRICS:
                    acc[m] = acc[m] / acc["rows"] if acc["rows"] else math.nan
    return out


def summarise(lines: list[dict], models: list[str], n_windows: int, warmup: int) -> dict:
    """Every figure of the report (summary.json)."""
    ws = windows(lines, n_windows)
    after = [w for w in ws if w["first_sample"] >= warmup]
    champion = models[0]
    table: dict = {}
    for model in models:
        for task in ("rec", "search"):
            per = [w["models"].get(model, {}).get(task) for w in after]
            per = [p for p in per if p and p["rows"]]
            if not per:
                continue
            rows = sum(p["rows"] for p in per)
            entry = {"rows": rows, **{m: sum(p[m] * p["rows"] for p in per) / rows for m in METRICS}}
            if model != champion:
                for m in METRICS:
                    diffs = [w["models"][model][task][m] - w["models"][champion][task][m] for w in after
                             if w["models"].get(model, {}).get(task, {}).get("rows")
                             and w["models"].get(champion, {}).get(task, {}).get("rows")]
                    entry[f"{m} vs {champion}"] = _interval(diffs)
            table.setdefault(model, {})[task] = entry
    return {
        "models": models, "champion": champion, "windows": n_windows, "warmup_samples": warmup,
        "compared_windows": len(after), "batches": len(lines),
        "warmup_end_day": after[0]["day"] if after else None,
        "samples": sum(line["samples"] for line in lines),
        "event_days": (max(x["event_ms"] for x in lines) - min(x["event_ms"] for x in lines)) / DAY_MS if lines else 0.0,
        "table": table, "throughput": throughput(lines, models), "per_window": ws,
    }


def _interval(diffs: list[float]) -> dict:
    """Mean of the per-window differences and its 95% t-interval (none from one window)."""
    n = len(diffs)
    if not n:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "windows": 0, "wins": 0}
    mean = sum(diffs) / n
    half = math.nan
    if n > 1:
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        half = t975(n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "windows": n, "wins": sum(d > 0 for d in diffs)}


def throughput(lines: list[dict], models: list[str]) -> dict:
    """Per model: samples it trained on, their share of the samples offered, and its samples
    per second of its own step time (scoring and learning; a periodic model's retrains run
    beside the steps and are not in it)."""
    total = sum(line["samples"] for line in lines)
    out = {}
    for model in models:
        trained = max((line["trained"].get(model, 0) for line in lines), default=0)
        seconds = sum(line.get("seconds", {}).get(model, 0.0) for line in lines)
        out[model] = {"trained": trained, "share_trained": trained / total if total else 0.0,
                      "retrains_swapped_in": max((line.get("swaps", {}).get(model, 0) for line in lines), default=0),
                      "step_seconds": round(seconds, 2),
                      "samples_per_s": total / seconds if seconds else math.nan}
    return out


def plot(out: Path, summary: dict) -> list[Path]:
    """quality.png: NDCG@10 and HR@10 along the stream (each window at its middle sample),
    one panel per task and metric, one line per model, the end of the warm-up marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = summary["per_window"]
    if not ws:
        return []
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), dpi=110, squeeze=False)
    mid = [(w["first_sample"] + w["samples"] / 2) / 1000 for w in ws]
    for col, task in enumerate(("rec", "search")):
        for row, metric in enumerate(("NDCG@10", "HR@10")):
            ax = axes[row][col]
            for model in summary["models"]:
                ys = [w["models"].get(model, {}).get(task, {}).get(metric, math.nan) for w in ws]
                ax.plot(mid, ys, marker="o", markersize=3, linewidth=1.5, label=model)
            if summary["warmup_samples"] < summary["samples"]:
                ax.axvline(summary["warmup_samples"] / 1000, color="grey", linestyle=":", linewidth=1,
                           label="end of the warm-up")
            ax.set_title(f"{task}: prequential {metric}", fontsize=10)
            ax.set_xlabel("thousands of samples into the stream", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
    fig.suptitle("Models side by side on one stream (same rows, same 99 negatives per row)")
    fig.tight_layout()
    path = out / "quality.png"
    fig.savefig(path)
    plt.close(fig)
    return [path]


def markdown(summary: dict) -> str:
    champion = summary["champion"]
    lines = [f"# unisar compare: {', '.join(summary['models'])}", "",
             f"{summary['samples']:,} samples over {summary['event_days']:.2f} days of event time, "
             f"{summary['batches']} scored batches; figures over the {summary['compared_windows']} of "
             f"{summary['windows']} windows after the warm-up ({summary['warmup_samples']:,} samples). "
             f"Differences: mean over windows of (model - {champion}), 95% t-interval, windows won.", "",
             "| model | task | rows | HR@10 | NDCG@10 | NDCG@10 vs champion | HR@10 vs champion |",
             "|---|---|---|---|---|---|---|"]
    for model, tasks in summary["table"].items():
        for task, e in tasks.items():
            diff = lambda m: _fmt(e.get(f"{m} vs {champion}"))  # noqa: E731
            lines.append(f"| {model} | {task} | {e['rows']:,} | {e['HR@10']:.4f} | {e['NDCG@10']:.4f} | "
                         f"{diff('NDCG@10')} | {diff('HR@10')} |")
    lines += ["", "| model | samples learnt on the stream | share of samples | retrains swapped in | "
                  "samples/s of its steps |", "|---|---|---|---|---|"]
    for model, t in summary["throughput"].items():
        lines.append(f"| {model} | {t['trained']:,} | {t['share_trained']:.1%} | {t['retrains_swapped_in']} | "
                     f"{t['samples_per_s']:,.0f} |")
    return "\n".join(lines) + "\n"


def _fmt(d: dict | None) -> str:
    if not d:
        return "(champion)"
    if math.isnan(d["mean"]):
        return "-"
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] ({d['wins']}/{d['windows']})"


def _finite(value):
    """NaN (no figure) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write(out: Path, summary: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    plots = plot(out, summary)
    (out / "summary.json").write_text(json.dumps(_finite({**summary, "plots": [p.name for p in plots]}), indent=2))
    (out / "summary.md").write_text(markdown(summary))
    return plots
