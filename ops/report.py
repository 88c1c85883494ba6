"""The demo's record of a run: metric snapshots over time, then PNG plots and a summary
(JSON and markdown). Plotting uses matplotlib's file backend; nothing needs a display."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from model.metrics import NAMES as QUALITY


def flatten(samples: list[tuple[str, dict, float]], model: str | None = None) -> dict[str, float]:
    """Scraped samples to flat keys the report plots, e.g. "loss/rec/total",
    "hr/rec/10/prequential", "events", "trained"; of `model` alone where a sample is one
    model's (a trainer of several models labels them)."""
    out: dict[str, float] = {}
    for name, labels, value in samples:
        if model is not None and labels.get("model", model) != model:
            continue
        if name == "unisar_train_loss":
            out[f"loss/{labels['task']}/{labels['term']}"] = value
        elif name in ("unisar_hr", "unisar_ndcg"):
            out[f"{name[7:]}/{labels['task']}/{labels['k']}/{labels['mode']}"] = value
        elif name in ("unisar_hr_by_target", "unisar_ndcg_by_target"):  # warm and cold true items apart
            out[f"{name[7:-10]}/{labels['task']}/{labels['k']}/{labels['mode']}/{labels['targets']}"] = value
        elif name == "unisar_cold_target_share":
            out[f"cold_share/{labels['task']}/{labels['mode']}"] = value
        elif name == "unisar_catalogue_items":
            out["catalogue_items"] = value
        elif name == "unisar_events_total":
            out["events"] = out.get("events", 0.0) + value
        elif name == "unisar_train_samples_total":
            out["trained"] = out.get("trained", 0.0) + value
        elif name == "unisar_model_step":
            out["step"] = value
        elif name == "unisar_offline_eval_step":
            out["offline_step"] = value
        elif name in ("unisar_consumer_lag", "unisar_trainer_consumer_lag"):
            key = "lag/worker" if name == "unisar_consumer_lag" else "lag/trainer"
            out[key] = out.get(key, 0.0) + value
        elif name == "unisar_dead_letters_total":
            out["dead_letters"] = out.get("dead_letters", 0.0) + value
        elif name == "unisar_freshness_seconds_sum":
            out["freshness_sum"] = value
        elif name == "unisar_freshness_seconds_count":
            out["freshness_count"] = value
    return out


@dataclass
class RunRecord:
    started: float = field(default_factory=time.time)
    rows: list[dict[str, float]] = field(default_factory=list)

    def add(self, values: dict[str, float]) -> None:
        self.rows.append({"t": time.time() - self.started, **values})

    def series(self, key: str) -> tuple[list[float], list[float]]:
        pts = [(r["t"], r[key]) for r in self.rows if key in r]
        return [t for t, _ in pts], [v for _, v in pts]

    def last(self, key: str, default: float | None = None) -> float | None:
        for row in reversed(self.rows):
            if key in row:
                return row[key]
        return default

    def rate(self, key: str, span_s: float = 5.0) -> float:
        """Per-second increase of a counter over the last `span_s` seconds."""
        pts = [(r["t"], r[key]) for r in self.rows if key in r]
        if len(pts) < 2:
            return 0.0
        t1, v1 = pts[-1]
        older = [p for p in pts if p[0] <= t1 - span_s] or pts[:1]
        t0, v0 = older[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0


def _plot(path: Path, title: str, lines: dict[str, tuple[list[float], list[float]]], ylabel: str,
          hline: tuple[float, str] | None = None) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = {k: v for k, v in lines.items() if v[0]}
    if not drawn:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for label, (xs, ys) in drawn.items():
        ax.plot(xs, ys, label=label, linewidth=1.6)
    if hline:
        ax.axhline(hline[0], color="grey", linestyle="--", linewidth=1, label=hline[1])
    ax.set_title(title)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_panels(path: Path, title: str, panels: dict[str, dict[str, tuple[list[float], list[float]]]],
                xlabel: str = "seconds since start") -> bool:
    """One small panel per entry, each on its own y scale: loss terms differ by 20x (L_Align
    about 10, a click loss about 0.5), and one shared axis flattens the small ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {name: {k: v for k, v in lines.items() if v[0]} for name, lines in panels.items()}
    panels = {name: lines for name, lines in panels.items() if lines}
    if not panels:
        return False
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.2 * rows), dpi=110, squeeze=False)
    for ax, (name, lines) in zip(axes.flat, panels.items()):
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, label=label, linewidth=1.4)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_report(out: Path, record: RunRecord, summary: dict) -> list[Path]:
    """PNG plots of losses, quality and throughput, plus summary.json and summary.md."""
    out.mkdir(parents=True, exist_ok=True)
    keys = {k for r in record.rows for k in r}
    plots = []
    panels: dict[str, dict] = {}
    for key in sorted(k for k in keys if k.startswith("loss/")):
        _, task, term = key.split("/", 2)
        panels.setdefault(f"loss: {term}", {})[task] = record.series(key)
    if plot_panels(out / "losses.png", "Joint loss terms, one panel per term (lines: tasks)", panels):
        plots.append(out / "losses.png")
    for task in ("rec", "search"):
        quality = {f"{m}@{k} {mode}": record.series(f"{m.lower()}/{task}/{k}/{mode}")
                   for m, k in (("HR", 10), ("NDCG", 10), ("HR", 1)) for mode in ("prequential", "offline")}
        if _plot(out / f"quality_{task}.png", f"{task}: HR and NDCG (sampled, 1 true + 99 negatives)", quality,
                 "metric", hline=(0.10, "random HR@10")):
            plots.append(out / f"quality_{task}.png")
    rates = {}
    for name, (xs, ys) in {"events read by the worker": record.series("events"),
                           "samples trained": record.series("trained")}.items():
        rates[name] = (xs[1:], [(ys[i] - ys[i - 1]) / max(1e-9, xs[i] - xs[i - 1]) for i in range(1, len(xs))])
    if _plot(out / "throughput.png", "Throughput", rates, "per second"):
        plots.append(out / "throughput.png")
    summary = {**summary, "plots": [p.name for p in plots]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(_markdown(summary))
    return plots


def _markdown(summary: dict) -> str:
    lines = ["# unisar demo run", ""]
    for key, value in summary.items():
        if isinstance(value, dict):
            continue
        lines.append(f"- **{key}**: {value}")
    quality = summary.get("quality", {})
    if quality:
        columns = [*QUALITY, "cold_share", "HR@10 warm", "HR@10 cold"]
        lines += ["", "| task | mode | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
        for task, modes in quality.items():
            for mode, metrics in modes.items():
                value = lambda q: metrics.get(q)  # noqa: E731
                cells = " | ".join("-" if value(q) is None else f"{value(q):.4f}" for q in columns)
                lines.append(f"| {task} | {mode} | {cells} |")
        lines += ["", "Sampled metrics: the true item among 99 sampled items the user never touched; ties count "
                      "against the model. Random ranking gives HR@10 = 0.10. cold_share: the share of true items "
                      "the model had never seen (scored through its catalogue features and unknown-item vector); "
                      "HR@10 warm and cold: on those seen in training and those not, apart."]
    losses = summary.get("losses", {})
    if losses:
        lines += ["", "| loss | first | last |", "|---|---|---|"]
        lines += [f"| {k} | {v['first']:.4f} | {v['last']:.4f} |" for k, v in losses.items()]
    lines += [""] + [f"![{p}]({p})" for p in summary.get("plots", [])]
    return "\n".join(lines) + "\n"
