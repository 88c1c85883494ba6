"""USER (Yao et al., CIKM 2021, arXiv:2109.15012): "USER: A Unified Information Search and
Recommendation Model based on Integrated Behavior Sequence", in plain PyTorch (paper text:
shared/papers/user.txt, notes in shared/papers/NOTES.md part B).

Read top to bottom it follows the paper: text encoder (an item, the stand-in for a
document, is its id plus the mean of its caption words; a query the mean of its words) ->
the integrated behaviour sequence (rec clicks and searches in time order, a search being
MLP([r_Q; r_D]) of its query and the mean of its clicked items), cut into sessions at 30
minutes of inactivity (model.batch `session`) -> target intent I (the search's own query;
the user embedding for rec: "rec is search with an empty query") -> session encoder (a
transformer whose attention stays inside each session, the target token in the current
one, plus positions and behaviour types; its output at the target is the session-enhanced
intent I_s) -> history encoder (a transformer over the session-encoded behaviours and I_s;
its output at I_s is I_l) and candidate enhancement (each candidate r_D attends over the
same behaviours: r_D') -> the unified score Phi(f), a Linear without activation over the
cosines f = [cos(I, r_D), cos(I_s, r_D), cos(I_l, r_D), cos(I_s, r_D'), cos(I_l, r_D')] ->
softmax cross-entropy of the true item against its negatives (Eq. 13). Shapes: B rows,
R = 30 rec slots, S = 30 search slots, L = R + S, K = 5 clicks, C candidates, d = 64.

Departures from the paper (streaming adaptations and ambiguities settled):
  - Items stand in for documents: an item's text is its caption words from the item
    catalogue where present, else its id alone (id embedding + Linear(mean caption word),
    the caption block starting at zero so it does not move the id path). Queries and
    captions are bags of words here, so the word-level transformer and attention pooling of
    the text encoder are a mean of word embeddings, and the co-attention between a
    historical query and its clicked documents (Eq. 4-6, lost in the paper's text) is the
    paper's own MLP([r_Q; r_D]) over the query and the mean of its clicked items.
  - No word2vec pre-training over all logs and no look-ahead sampling of sessions: both
    need the future, which a stream does not have. Word embeddings learn from the stream.
  - History: the stream's 30 rec + 30 search behaviours in one time-ordered sequence (the
    paper: up to 20 sessions of up to 5 behaviours). Sessions count back from the sample's
    own time, so the current session is empty when the user was away over 30 minutes.
  - The history encoder and the candidate enhancement read every behaviour of the history,
    each contextualised within its own session by the session encoder, not only the earlier
    sessions: a 60-behaviour window often lies inside one session (an active hour), which
    would leave the paper's long-term encoder with nothing to read. The session split still
    shapes the model through the session encoder's attention.
  - The KNRM interaction score and the relevance features F_{Q,D} (not given in the paper)
    need documents' full text and corpus statistics: cos(I, r_D) (query or user against the
    candidate) stands in for the interaction. Candidate enhancement has its own weights (the
    paper leaves open whether it shares the history encoder's). Layer counts, heads and the
    feed-forward size are not given: n_layers, n_heads, d_ff below.
  - Negatives: the learner's, uniform over the items the tables hold (the paper: the
    impression's unclicked documents; rec impressions were synthesised offline from
    global popularity, which a stream cannot know ahead). The loss is a softmax over a
    clicked item and its negatives, so rec exposures (Learner(exposures=True)) do not train it
    (`learns_exposures`).
  - The two-stage schedule (joint pre-training, then a fine-tuned copy per task): the joint
    model learns both tasks on every step and serves both ("w/o fine-tuning"); the paper's
    "w/o Unified Pre-train" is training on one task's samples, which the learner's
    callers choose, not a flag here.
  - An item the tables do not hold embeds through a learned unknown-item vector; a user or
    word they do not hold embeds to zero; an empty history leaves only the target token.

Ablations (the paper's Table 3 rows):
  use_session_encoder False: "w/o Session Encoder", I_s = I and behaviours stay uncontextualised
  use_history_encoder False: "w/o History Encoder", no I_l and no candidate enhancement
  use_item_features   False: ids only (items without caption words)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.tensors import StepTensors, TaskTensors
from model.config import ZooConfig
from model.layers import (Attention, Dropout, Encoder, FeedForward, ItemEmbedding, KeyMask, add_joint_total, bag_mean,
                          gather)
from model.precision import full

REC, SEARCH, TARGET = 0, 1, 2  # behaviour types of the type embedding


@dataclass
class USERConfig(ZooConfig):
    d: int = 64
    n_layers: int = 1  # per encoder (not given)
    n_heads: int = 2
    d_ff: int = 128
    dropout: float = 0.1
    init_std: float = 0.1  # of id embeddings
    gamma: float = 1.0  # weight of the search task's loss
    caption_words: int = 16  # caption words the catalogue keeps per item
    use_item_features: bool = True
    use_session_encoder: bool = True
    use_history_encoder: bool = True


class CandidateEnhancer(nn.Module):
    """r_D' = the last position of Transformer([H, r_D]): one post-norm layer whose query is
    the candidate, attending over the behaviours H (B, L, d) only; each candidate alone."""

    def __init__(self, cfg: USERConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg.d, cfg.n_heads, cfg.dropout)
        self.ff = FeedForward(cfg.d, cfg.d_ff, cfg.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d), nn.LayerNorm(cfg.d)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, r: torch.Tensor, H: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self.norm1(r + self.dropout(self.attn(r, H, KeyMask(valid.unsqueeze(1)))))
        return self.norm2(x + self.dropout(self.ff(x)))


class USER(nn.Module):
    """forward(step) -> (scores, losses): scores[task] (B, C) logits, column 0 the true item;
    in training "rec/nll", "search/nll", each task's "total" and "total" = L_rec + gamma L_search."""

    learns_exposures = False  # its softmax needs a clicked item in column 0 (model.learner)

    def __init__(self, cfg: USERConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, L = cfg.d, cfg.max_rec + cfg.max_search
        self.user = nn.Embedding(cfg.n_users, d, padding_idx=0, sparse=True)
        self.word = nn.Embedding(cfg.n_words, d, padding_idx=0, sparse=True)
        self.item = ItemEmbedding(cfg.n_items, d, cfg.init_std)
        for table in (self.user, self.word):
            self._reset(table, torch.arange(1, table.num_embeddings))
        # the caption block of the item's text starts at zero: features do not move the start
        self.caption = nn.Parameter(torch.zeros(d, d)) if cfg.use_item_features else None
        self.search = nn.Sequential(nn.Linear(2 * d, d), nn.Tanh())  # r_S = MLP([r_Q; r_D])
        self.kind = nn.Embedding(3, d)  # behaviour type: REC, SEARCH, TARGET
        self.pos = nn.Parameter(nn.init.xavier_normal_(torch.empty(L + 1, d)))  # the target last
        self.session_encoder = Encoder(cfg) if cfg.use_session_encoder else None
        self.history_encoder = Encoder(cfg) if cfg.use_history_encoder else None
        self.enhance = CandidateEnhancer(cfg) if cfg.use_history_encoder else None
        n_features = 2 + 3 * cfg.use_history_encoder
        self.phi = nn.Linear(n_features, 1, bias=False)  # Phi: an MLP layer without activation
        nn.init.constant_(self.phi.weight, 10.0 / n_features)  # cosines in [-1, 1]: logits need a scale
        self.dropout = Dropout(cfg.dropout)

    def tables(self) -> dict[str, list[nn.Embedding]]:
        return {"users": [self.user], "items": [self.item.table], "words": [self.word]}

    @torch.no_grad()
    def _reset(self, table: nn.Embedding, rows: torch.Tensor) -> None:
        table.weight[rows] = torch.randn(len(rows), table.embedding_dim, device=table.weight.device) * self.cfg.init_std

    def reset_rows(self, kind: str, rows: torch.Tensor) -> None:
        if kind == "items":
            self.item.reset_rows(rows)
        else:
            self._reset(self.user if kind == "users" else self.word, rows)

    def items(self, step: StepTensors, W: torch.Tensor) -> torch.Tensor:  # -> (U, d); W (V, d) the step's words
        x = self.item(step.item_rows)
        if self.caption is not None and step.item_caption is not None:
            x = x + bag_mean(W, step.item_caption) @ self.caption.T
        return x * (step.item_rows != 0).unsqueeze(-1)

    def behaviours(self, t: TaskTensors, V: torch.Tensor, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The integrated sequence in time order: (B, L, d) behaviour + type + position, and
        (B, L) which positions are behaviours."""
        clicks = bag_mean(V, t.search_clicks)
        searches = self.search(torch.cat([gather(Q, t.search_query), clicks], -1))
        E = torch.cat([gather(V, t.rec_items), searches], 1)  # slot order
        E = E.gather(1, t.mixed.unsqueeze(-1).expand(-1, -1, E.shape[-1]))  # time order
        kind = (t.mixed >= t.rec_items.shape[1]).long()  # REC or SEARCH
        valid = t.session >= 0
        return (E + self.kind(kind) + self.pos[:-1]) * valid.unsqueeze(-1), valid

    def task(self, t: TaskTensors, task: str, V: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:  # -> (B, C) logits
        X, valid = self.behaviours(t, V, Q)
        I = Q[t.query] if task == "search" else self.user(t.user)  # noqa: E741  (B, d) target intent (Eq. 3)
        target = I + self.kind.weight[TARGET] + self.pos[-1]
        tokens = self.dropout(torch.cat([X, target.unsqueeze(1)], 1))  # (B, L + 1, d)
        real = torch.cat([valid, torch.ones_like(valid[:, :1])], 1)
        if self.session_encoder is not None:  # attention inside each session; the target in the current one
            session = torch.cat([t.session, torch.zeros_like(t.session[:, :1])], 1)
            allowed = (session.unsqueeze(2) == session.unsqueeze(1)) & real.unsqueeze(1)
            H = self.session_encoder(tokens, allowed) * real.unsqueeze(-1)
            I_s = H[:, -1]
        else:
            H, I_s = tokens, I
        r = gather(V, t.candidates)  # (B, C, d)
        sims = [I, I_s]
        features = [F.cosine_similarity(v.unsqueeze(1), r, dim=-1) for v in sims]
        if self.history_encoder is not None:
            Y = torch.cat([H[:, :-1], I_s.unsqueeze(1)], 1) + self.pos  # positions 1..t again (Eq. 8)
            I_l = self.history_encoder(Y, real.unsqueeze(1))[:, -1]
            r_enh = self.enhance(r, H[:, :-1], valid)  # (B, C, d)
            features += [F.cosine_similarity(I_l.unsqueeze(1), r, dim=-1)]
            features += [F.cosine_similarity(v.unsqueeze(1), r_enh, dim=-1) for v in (I_s, I_l)]
        return self.phi(torch.stack(features, -1)).squeeze(-1)

    def forward(self, step: StepTensors) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        W = self.word(step.word_rows)  # (V, d) each distinct word once
        V = self.items(step, W)  # (U, d) each distinct item once
        Q = F.embedding_bag(step.query_words, W, step.query_offsets, mode="mean")  # (Q, d); the empty query 0
        scores, losses = {}, {}
        for task, t in step.tasks.items():
            scores[task] = self.task(t, task, V, Q)
            if not self.training:
                continue
            # Eq. 13: the true item (column 0) against its negatives
            nll = F.cross_entropy(full(scores[task]), torch.zeros(len(scores[task]), dtype=torch.long, device=V.device))
            losses[f"{task}/nll"] = losses[f"{task}/total"] = nll
        add_joint_total(losses, self.cfg.gamma)
        return scores, losses
