"""SASRec (Kang and McAuley, ICDM 2018): "Self-Attentive Sequential Recommendation", the
standard sequential baseline of the zoo, in plain PyTorch.

The floor a sequence model must clear: it reads the user's behaviours as one sequence of
items in time order (rec clicks and search clicks alike) and scores the next item the same
way for both tasks, ignoring the search query. Read top to bottom: item embeddings plus
learned positions -> causal self-attention blocks (pre-norm, as the paper's
x + Dropout(g(LayerNorm(x)))) -> a final LayerNorm -> the output at the latest behaviour
-> inner product with the candidate's embedding (the input table, shared) -> BCE over the
true item and sampled negatives. Shapes: B rows, R = 30 rec slots, S = 30 search slots,
L = R + S, K = 5 clicks, C candidates, d = 64.

Departures from the paper, all forced by the stream's samples (model.batch):
  - One step per behaviour: a rec slot is its item, a search slot the mean of its clicked
    items (up to K; a search without clicks is no step). The paper has one item per step;
    the history keeps searches as behaviours of up to K clicks.
  - The 60-slot mixed history is the sequence (30 rec + 30 search behaviours), not the
    paper's last 50-200 items.
  - One target per sample, read at the latest behaviour. The paper trains every position
    of a stored sequence on its next item; a stream emits one sample per event, so each of
    those positions arrives as a sample of its own, when it happens.
  - Negatives: the learner's, uniform over the items the tables hold (the paper draws one
    per position) and the loss weighs the true item against the mean of its negatives
    (model.layers.sampled_bce; with one negative, the paper's loss).
  - An item the tables do not hold embeds through a learned unknown-item vector; an empty
    history gives a zero user vector (every candidate scores 0).

Ablations (the paper's Table 3 rows that are flags here):
  use_pos      False: no positional embedding ("Remove PE")
  shared_items False: candidates score against a second item table ("Unshared IE")
  n_layers     the number of self-attention blocks ("0/1/3 blocks")
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from model.tensors import StepTensors, TaskTensors
from model.config import ZooConfig
from model.layers import (Attention, Dropout, FeedForward, ItemEmbedding, KeyMask, add_joint_total, bag_mean, gather,
                          sampled_bce)


@dataclass
class SASRecConfig(ZooConfig):
    d: int = 64
    n_layers: int = 2
    n_heads: int = 1  # the paper's single head
    dropout: float = 0.2
    init_std: float = 0.1  # of item embeddings; logits are inner products of them
    gamma: float = 1.0  # weight of the search task's loss
    use_pos: bool = True
    shared_items: bool = True


class Block(nn.Module):
    """x + Dropout(Attention(LayerNorm(x))), then x + Dropout(FFN(LayerNorm(x)))."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d), nn.LayerNorm(cfg.d)
        self.attn = Attention(cfg.d, cfg.n_heads, cfg.dropout)
        self.ff = FeedForward(cfg.d, cfg.d, cfg.dropout)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: KeyMask) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), None, mask))
        return x + self.dropout(self.ff(self.norm2(x)))


class SASRec(nn.Module):
    """forward(step) -> (scores, losses): scores[task] (B, C) logits, column 0 the true item;
    in training "rec/bce", "search/bce", each task's "total" and "total" = L_rec + gamma L_search."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        L = cfg.max_rec + cfg.max_search
        self.item = ItemEmbedding(cfg.n_items, cfg.d, cfg.init_std)
        self.out_item = None if cfg.shared_items else ItemEmbedding(cfg.n_items, cfg.d, cfg.init_std)
        self.pos = nn.Parameter(nn.init.xavier_normal_(torch.empty(L, cfg.d))) if cfg.use_pos else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d)
        self.dropout = Dropout(cfg.dropout)
        self.register_buffer("causal", torch.ones(L, L, dtype=torch.bool).tril(), persistent=False)

    def tables(self) -> dict[str, list[nn.Embedding]]:
        return {"items": [e.table for e in (self.item, self.out_item) if e is not None]}

    def reset_rows(self, kind: str, rows: torch.Tensor) -> None:
        for e in (self.item, self.out_item):
            if e is not None:
                e.reset_rows(rows)

    def sequence(self, t: TaskTensors, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The behaviours in time order: (B, L, d) item vectors and (B, L) which are steps."""
        clicks = bag_mean(V, t.search_clicks)
        E = torch.cat([gather(V, t.rec_items), clicks], 1)  # (B, L, d) slot order
        valid = torch.cat([t.rec_items != 0, (t.search_clicks != 0).any(-1)], 1)  # (B, L)
        E = E.gather(1, t.mixed.unsqueeze(-1).expand(-1, -1, E.shape[-1]))  # time order
        return E, valid.gather(1, t.mixed)

    def user_vector(self, t: TaskTensors, V: torch.Tensor) -> torch.Tensor:  # -> (B, d)
        E, valid = self.sequence(t, V)
        X = E + self.pos if self.pos is not None else E
        X = self.dropout(X) * valid.unsqueeze(-1)
        mask = KeyMask(self.causal & valid.unsqueeze(1))  # a step sees itself and earlier steps
        for block in self.blocks:
            X = block(X, mask) * valid.unsqueeze(-1)
        H = self.norm(X)  # (B, L, d)
        steps = torch.arange(1, valid.shape[1] + 1, device=valid.device)
        last = (valid * steps).argmax(1)  # the latest behaviour (mixed keeps time order)
        return H[torch.arange(len(H)), last] * valid.any(1, keepdim=True)

    def forward(self, step: StepTensors) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        V = self.item(step.item_rows)  # (U, d) each distinct item once
        V_out = V if self.out_item is None else self.out_item(step.item_rows)
        scores, losses = {}, {}
        for task, t in step.tasks.items():
            u = self.user_vector(t, V)  # (B, d)
            scores[task] = (V_out[t.candidates] @ u.unsqueeze(-1)).squeeze(-1)  # (B, C)
            if not self.training:
                continue
            bce = sampled_bce(scores[task], t.label)
            losses[f"{task}/bce"] = losses[f"{task}/total"] = bce
        add_joint_total(losses, self.cfg.gamma)
        return scores, losses
