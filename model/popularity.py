"""Popularity: the trivial baseline of the zoo. One learned logit per item, trained with the
same BCE over 1 positive and sampled negatives as UniSAR; against uniform negatives it
learns how often each item is clicked. Same interface as UniSAR."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.tensors import UNKNOWN, StepTensors
from model.config import ZooConfig
from model.layers import click_labels


@dataclass
class PopularityConfig(ZooConfig):
    rel_negatives: int = 0


class Popularity(nn.Module):
    def __init__(self, cfg: PopularityConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.logit = nn.Embedding(cfg.n_items, 1, padding_idx=0, sparse=True)
        nn.init.zeros_(self.logit.weight)
        self.unknown = nn.Parameter(torch.zeros(1))  # an item it has never counted

    def tables(self) -> dict[str, list[nn.Embedding]]:
        return {"items": [self.logit]}

    @torch.no_grad()
    def reset_rows(self, kind: str, rows: torch.Tensor) -> None:
        self.logit.weight[rows] = 0.0

    def forward(self, step: StepTensors) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        rows = step.item_rows
        per_item = torch.where(rows == UNKNOWN, self.unknown, self.logit(rows.clamp_min(0)).squeeze(-1))  # (U,)
        scores = {task: per_item[t.candidates] for task, t in step.tasks.items()}  # (B, C)
        if not self.training:
            return scores, {}
        losses = {}
        for task, logits in scores.items():
            labels = click_labels(logits, step.tasks[task].label)
            losses[f"{task}/bce"] = F.binary_cross_entropy_with_logits(logits, labels)
        losses["total"] = sum(losses.values())
        return scores, losses
