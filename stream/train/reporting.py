"""What the trainer tells Prometheus after a step (ops.metrics.TrainerMetrics), per model:
loss terms, prequential or offline quality, a challenger's lead over the champion, and the
champion's id tables. Bookkeeping only; the trainer decides when."""
from __future__ import annotations

import math

from ops.metrics import TrainerMetrics

TERMS = {"bce": "click", "rel": "rel", "align": "align"}  # loss keys -> the metric's term label


def export_terms(m: TrainerMetrics, model: str, terms: dict[str, float]) -> None:
    """One step's loss terms ("rec/bce" -> task rec, term click; the joint total has no task)."""
    if not all(math.isfinite(v) for v in terms.values()):
        m.nonfinite.labels(model).inc()
    for key, value in terms.items():
        task, _, term = key.partition("/")
        if term:
            m.loss.labels(model, task, TERMS.get(term, term)).set(value)


def export_quality(m: TrainerMetrics, model: str, task: str, mode: str, result: dict) -> None:
    """A model.metrics.report of one task: HR/NDCG at every k, non-finite rows, the cold
    targets' share, and HR/NDCG on warm and cold targets apart."""
    for name, value in result.items():
        metric, _, k = name.partition("@")
        if metric == "HR":
            m.hr.labels(model, task, k, mode).set(value)
        elif metric == "NDCG":
            m.ndcg.labels(model, task, k, mode).set(value)
        elif metric == "nonfinite":
            m.nonfinite_rows.labels(model, task, mode).set(value)
        elif metric == "cold_share":
            m.cold_share.labels(model, task, mode).set(value)
        elif metric in ("warm", "cold"):
            for part_name, part_value in value.items():
                part_metric, _, part_k = part_name.partition("@")
                if part_metric in ("HR", "NDCG"):
                    gauge = m.hr_targets if part_metric == "HR" else m.ndcg_targets
                    gauge.labels(model, task, part_k, mode, metric).set(part_value)


def export_windows(m: TrainerMetrics, windows: dict[str, dict[str, dict]]) -> None:
    """Every model's prequential window, {model: {task: report}}, the champion first; and each
    challenger's NDCG@10 lead over it (the same rows and candidates)."""
    for model, results in windows.items():
        for task, result in results.items():
            export_quality(m, model, task, "prequential", result)
    champion, *challengers = windows
    for model in challengers:
        for task, result in windows[model].items():
            if task in windows[champion]:
                m.ndcg_gain.labels(model, task).set(result["NDCG@10"] - windows[champion][task]["NDCG@10"])


def export_tables(m: TrainerMetrics, ids: dict, seen: dict[str, int]) -> None:
    """The id tables' size, use and evictions since the last call (`seen`: evictions counted
    so far, updated in place)."""
    for kind, table in ids.items():
        m.table_rows.labels(kind).set(table.capacity)
        m.table_used.labels(kind).set(len(table))
        evicted = table.evictions - seen.get(kind, table.evictions)
        if evicted > 0:
            m.evictions.labels(kind).inc(evicted)
        seen[kind] = table.evictions
