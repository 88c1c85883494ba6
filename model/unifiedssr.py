"""UnifiedSSR (Xie et al., 2023, arXiv:2310.13921): "A Unified Framework of Sequential
Search and Recommendation", in plain PyTorch (paper text: shared/papers/unifiedssr.txt).

Read top to bottom it follows the paper: embeddings (a product plus the user at every
position, plus positions; a query is the mean of its words) -> the Siamese encoder, one
stack of layers shared by the product and query branches and by both tasks (self-attention,
cross-attention between products and queries in search, with self inputs in rec,
feed-forward) -> intent-oriented session modelling (ISM: N learned sessions per sequence,
each position enhanced by the mean of its sessions; the self-supervised session loss
L_ssl) -> task predictors (rec: inner product of the last product position with the
candidate; search: a learned mix w f_p + (1 - w) f_q of the last product position and the
current query's position) -> BCE with sampled negatives + alpha * L_ssl. Shapes: B rows,
R = 30 rec slots, S = 30 search slots (the query sequence has S + 1: the search's own query
after the history's), K = 5 clicks, N sessions, C candidates, d = 64.

Rec reads only the rec history and search only the search history, as in the paper (it
models r2r and s2s, not the cross-type transitions UniSAR adds).

Departures from the paper (streaming adaptations and ambiguities settled):
  - History: the stream's last 30 searches and 30 rec clicks (the paper: up to 100 per
    scenario, longer ones cut into sub-sequences offline). One target per sample, read at
    the last position, as the paper's predictor.
  - A search behaviour's product is the mean of its clicked items (up to K; the paper pairs
    one product with each query). A search without clicks keeps its position (the two
    sequences stay aligned), with the user embedding alone on the product side.
  - ISM geometry (not given): the N initial sessions split a sequence's own length n into
    equal parts of width w = n / N; Delta x and s (the paper's Eq. 5-6, from one Linear over
    the concatenated chunk means) are in units of w: session i is centred on
    x_i + Delta x_i * w / 2 (inside its own chunk) with half-length (1/4 + 3/4 s_i) * w. The
    bias b starts at atanh(1/3), so the sessions start as the uniform split. The bounds are
    ours: taken literally (centre offsets up to a width, half-length s_i), L_ssl's "adjacent
    sessions apart" is minimised by empty sessions, whose mean is zero, and training moved or
    shrank sessions out of the sequence. Membership is soft at the edges (linear ramps
    `ism_temperature` positions wide, 0 or 1 elsewhere) so the boundaries get gradients;
    the paper does not say how they do. An empty session represents as zero. One set of ISM
    parameters serves the three sequences (Siamese, as the encoder).
  - L_ssl is the paper's raw sum of cosines over a sample's sessions, averaged over the
    batch (one row per search sample). w = sigmoid(omega), so the search mix stays a mix.
  - Negatives: the learner's, uniform over the items the tables hold. Eq. 12 sums the
    negatives' terms, so the true item's share of the gradient falls with their number (the
    paper does not give it); here the true item weighs as much as the mean of its negatives
    (model.layers.sampled_bce): at the learner's 16 negatives, plain BCE left the planted
    test's rec HR@10 at 0.14 after 8 epochs, the balanced form above 0.3. A constant learning rate (the paper's warm-up and
    decay needs a known number of steps; a stream has none).
  - The two-stage schedule (joint pre-training, then a fine-tuned copy per task) in a
    stream: the joint model learns both tasks on every step and is always kept. With
    `finetune_every` = N > 0, each task also has its own copy, which learns only that task's
    loss and serves that task's scores; every N training steps both copies re-branch from
    the joint model (its parameters copied over theirs), so a copy is never more than N
    steps of single-task tuning away from the current joint model, and the joint model
    keeps pre-training on everything the stream brings. The copies' optimiser moments carry
    over a re-branch. Off by default: the joint model serves both tasks.
  - No timestamps reach the model (model.batch carries time order only), so the paper's
    "w/o ISM (a)" (sessions cut at the largest time gaps) is not offered.
  - An item the tables do not hold embeds through a learned unknown-item vector; a user or
    word they do not hold embeds to zero; an empty history scores every candidate 0 (rec)
    or by the current query alone (search).

Ablations (the paper's Table 3 rows):
  finetune_every 0: "w/o FT" (the default, see above); N > 0: per-task copies
  use_cross      False: "w/o CA", no cross-attention sub-layer
  siamese        False: "w/o SE (a)", the query branch has its own encoder
  shared_product False: "w/o SE (b)", rec's product branch has its own encoder
  use_ism        False: "w/o ISM (b)", no session modelling and no L_ssl
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.tensors import StepTensors, TaskTensors
from model.config import ZooConfig
from model.layers import Attention, Dropout, FeedForward, ItemEmbedding, KeyMask, bag_mean, gather, sampled_bce
from model.precision import full

TASKS = ("rec", "search")


@dataclass
class UnifiedSSRConfig(ZooConfig):
    d: int = 64
    n_layers: int = 2  # L
    n_heads: int = 2
    d_ff: int = 128  # 2d, as the paper
    dropout: float = 0.1
    init_std: float = 0.1  # of id embeddings; logits are inner products of them
    n_sessions: int = 2  # N
    ism_temperature: float = 1.0  # width of a session's soft edges, in positions
    alpha: float = 0.1  # weight of L_ssl
    gamma: float = 1.0  # weight of the search task's loss
    finetune_every: int = 0
    use_cross: bool = True
    siamese: bool = True
    shared_product: bool = True
    use_ism: bool = True


# ------------------------------------------------------------------ embeddings


class Embeddings(nn.Module):
    """M^u, M^p and M^w; a query is the mean of its words (queries are short, unordered)."""

    def __init__(self, cfg: UnifiedSSRConfig) -> None:
        super().__init__()
        self.user = nn.Embedding(cfg.n_users, cfg.d, padding_idx=0, sparse=True)
        self.item = ItemEmbedding(cfg.n_items, cfg.d, cfg.init_std)
        self.word = nn.Embedding(cfg.n_words, cfg.d, padding_idx=0, sparse=True)
        self.init_std = cfg.init_std
        for table in (self.user, self.word):
            self.reset_rows(table, torch.arange(1, table.num_embeddings))

    def tables(self) -> dict[str, nn.Embedding]:
        return {"users": self.user, "items": self.item.table, "words": self.word}

    @torch.no_grad()
    def reset_rows(self, table: nn.Embedding, rows: torch.Tensor) -> None:
        table.weight[rows] = torch.randn(len(rows), table.embedding_dim, device=table.weight.device) * self.init_std

    def queries(self, step: StepTensors) -> torch.Tensor:  # -> (Q, d), row 0 (the empty query) zero
        return F.embedding_bag(step.query_words, self.word(step.word_rows), step.query_offsets, mode="mean")


# ------------------------------------------------------------------ the Siamese encoder


class SiameseLayer(nn.Module):
    """One encoder layer in three post-norm sub-layers (residual, LayerNorm, dropout), called
    one at a time so the two branches can meet between them: MSA, MCA, FFN (Eq. 3-4)."""

    def __init__(self, cfg: UnifiedSSRConfig) -> None:
        super().__init__()
        self.msa = Attention(cfg.d, cfg.n_heads, cfg.dropout)
        self.mca = Attention(cfg.d, cfg.n_heads, cfg.dropout) if cfg.use_cross else None
        self.ffn = FeedForward(cfg.d, cfg.d_ff, cfg.dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(cfg.d), nn.LayerNorm(cfg.d), nn.LayerNorm(cfg.d)
        self.dropout = Dropout(cfg.dropout)

    def self_attend(self, x: torch.Tensor, mask: KeyMask) -> torch.Tensor:
        return self.norm1(x + self.dropout(self.msa(x, None, mask)))

    def cross_attend(self, x: torch.Tensor, other: torch.Tensor, mask: KeyMask) -> torch.Tensor:
        if self.mca is None:  # "w/o CA"
            return x
        return self.norm2(x + self.dropout(self.mca(x, other, mask)))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm3(x + self.dropout(self.ffn(x)))


class SiameseEncoder(nn.Module):
    """L layers. Search: each branch self-attends, then products attend to queries and queries
    to products, then each feeds forward. Rec: the query branch is off and MCA takes the
    products themselves (it then acts as a second self-attention)."""

    def __init__(self, cfg: UnifiedSSRConfig) -> None:
        super().__init__()
        self.product = nn.ModuleList(SiameseLayer(cfg) for _ in range(cfg.n_layers))
        self.query = self.product if cfg.siamese else nn.ModuleList(SiameseLayer(cfg) for _ in range(cfg.n_layers))
        self.rec = self.product if cfg.shared_product else nn.ModuleList(SiameseLayer(cfg) for _ in range(cfg.n_layers))

    def search(self, X_p: torch.Tensor, X_q: torch.Tensor, valid_p: torch.Tensor, valid_q: torch.Tensor):
        # X_p (B, S, d), X_q (B, S + 1, d) -> H_p, H_q of the same shapes
        to_p, to_q = KeyMask(valid_p.unsqueeze(1)), KeyMask(valid_q.unsqueeze(1))
        for lp, lq in zip(self.product, self.query):
            Hp, Hq = lp.self_attend(X_p, to_p), lq.self_attend(X_q, to_q)
            Hp, Hq = lp.cross_attend(Hp, Hq, to_q), lq.cross_attend(Hq, Hp, to_p)
            X_p, X_q = lp.feed_forward(Hp), lq.feed_forward(Hq)
        return X_p, X_q

    def recommend(self, X: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:  # (B, R, d) -> (B, R, d)
        mask = KeyMask(valid.unsqueeze(1))
        for layer in self.rec:
            H = layer.self_attend(X, mask)
            X = layer.feed_forward(layer.cross_attend(H, H, mask))
        return X


# ------------------------------------------------------------------ intent-oriented sessions


class SessionModel(nn.Module):
    """ISM extraction (Eq. 5-8): N sessions over a sequence's n valid positions, their means
    I (B, N, d), and each position enhanced by the sessions it belongs to."""

    def __init__(self, cfg: UnifiedSSRConfig) -> None:
        super().__init__()
        self.N, self.tau = cfg.n_sessions, cfg.ism_temperature
        self.f = nn.Linear(cfg.n_sessions * cfg.d, cfg.n_sessions, bias=False)  # W of Eq. 5
        self.b = nn.Parameter(torch.full((cfg.n_sessions,), math.atanh(1 / 3)))  # s starts at 1/3: the uniform split

    def forward(self, H: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # H (B, L, d), valid (B, L) with the n valid positions first
        n = valid.sum(1, keepdim=True).float()  # (B, 1)
        width = n / self.N  # (B, 1) of an initial session
        j = torch.arange(H.shape[1], device=H.device).float().unsqueeze(0)  # (1, L)
        i = torch.arange(self.N, device=H.device).float().unsqueeze(0)  # (1, N)
        chunk = (j.unsqueeze(1) >= i.unsqueeze(-1) * width.unsqueeze(-1)) & (j.unsqueeze(1) < (i + 1).unsqueeze(-1) * width.unsqueeze(-1))
        chunk = chunk & valid.unsqueeze(1)  # (B, N, L): the uniform split
        f = F.relu(self.mean(H, chunk.float())).flatten(1)  # (B, N d)
        f = self.f(f)  # (B, N)
        dx, s = torch.tanh(f), F.relu(torch.tanh(f + self.b))
        centre = (i + 0.5 + dx / 2) * width  # (B, N), in positions, inside the session's own chunk
        half = (0.25 + 0.75 * s) * width  # never under a quarter of the uniform width: see the docstring
        left, right = centre - half, centre + half
        at = j.unsqueeze(1) + 0.5  # (1, 1, L) the middle of each position
        # soft edges: linear ramps `tau` positions wide, exactly 0 or 1 elsewhere (sigmoids would
        # leave subnormal floats far from a session, which slow CPU arithmetic a hundredfold)
        ramp = lambda x: (x / self.tau + 0.5).clamp(0.0, 1.0)  # noqa: E731
        member = ramp(at - left.unsqueeze(-1)) * ramp(right.unsqueeze(-1) - at) * valid.unsqueeze(1)  # (B, N, L)
        I = self.mean(H, member)  # (B, N, d)  # noqa: E741
        return H + member.transpose(1, 2) @ I, I  # F (B, L, d): each position plus its sessions' means

    @staticmethod
    def mean(H: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # (B, L, d), (B, N, L) -> (B, N, d)
        return (weights @ H) / weights.sum(-1, keepdim=True).clamp_min(1e-6)


def adjacent_similarity(I: torch.Tensor) -> torch.Tensor:  # noqa: E741  (B, N, d) -> (B,)
    return F.cosine_similarity(I[:, :-1], I[:, 1:], dim=-1).sum(-1)


# ------------------------------------------------------------------ the model


class UnifiedSSRNet(nn.Module):
    """One full set of UnifiedSSR parameters serving both tasks."""

    def __init__(self, cfg: UnifiedSSRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        self.pos = nn.Parameter(nn.init.xavier_normal_(torch.empty(max(cfg.max_rec, cfg.max_search + 1), cfg.d)))
        self.encoder = SiameseEncoder(cfg)
        self.ism = SessionModel(cfg) if cfg.use_ism else None
        self.omega = nn.Parameter(torch.zeros(()))  # w = sigmoid(omega) of Eq. 11
        self.dropout = Dropout(cfg.dropout)
        for m in self.modules():  # Xavier, as the paper
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def inputs(self, E: torch.Tensor, u: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # E (B, L, d) behaviours, u (B, d) user -> E + e^u + P at valid positions (Sec. 3.3)
        X = (E + u.unsqueeze(1) + self.pos[: E.shape[1]]) * valid.unsqueeze(-1)
        return self.dropout(X)

    def sessions(self, H: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.ism(H, valid) if self.ism is not None else (H, None)

    def forward(self, step: StepTensors, task: str, V: torch.Tensor, V_query: torch.Tensor):
        t = step.tasks[task]
        u = self.embed.user(t.user)  # (B, d)
        v = gather(V, t.candidates)  # (B, C, d) e^p of each candidate
        if task == "rec":
            valid = t.rec_items != 0  # (B, R)
            H = self.encoder.recommend(self.inputs(gather(V, t.rec_items), u, valid), valid)
            F_p, I_p = self.sessions(H, valid)
            f = last(F_p, valid.sum(1))  # (B, d)
            logits = (v @ f.unsqueeze(-1)).squeeze(-1)  # Eq. 10
            ssl = None if I_p is None else adjacent_similarity(I_p)
        else:
            f, ssl = self.search(t, V, V_query, u)
            logits = (v @ f.unsqueeze(-1)).squeeze(-1)  # Eq. 11
        if not self.training:
            return logits, {}
        terms = {"bce": sampled_bce(logits, t.label)}
        if ssl is not None:
            one = t.first if t.first is not None else torch.ones(len(ssl), dtype=torch.bool, device=ssl.device)
            terms["ssl"] = full(ssl[one]).mean()  # a search's per-click rows are one sample
        return logits, terms

    def search(self, t: TaskTensors, V: torch.Tensor, V_query: torch.Tensor, u: torch.Tensor):
        """The search predictor's mixed vector (B, d) and each row's L_ssl (B,) or None."""
        valid_p = t.search_query != 0  # (B, S) a search behaviour, with or without clicks
        n = valid_p.sum(1)  # (B,)
        clicks = bag_mean(V, t.search_clicks)
        queries = torch.cat([t.search_query, torch.zeros_like(t.search_query[:, :1])], 1)  # (B, S + 1)
        queries = queries.scatter(1, n.unsqueeze(1), t.query.unsqueeze(1))  # the search's own query after the history
        valid_q = torch.cat([valid_p, torch.zeros_like(valid_p[:, :1])], 1).scatter(1, n.unsqueeze(1), True)
        H_p, H_q = self.encoder.search(self.inputs(clicks, u, valid_p),
                                       self.inputs(gather(V_query, queries), u, valid_q), valid_p, valid_q)
        F_p, I_p = self.sessions(H_p, valid_p)
        F_q, I_q = self.sessions(H_q, valid_q)
        w = torch.sigmoid(self.omega)
        f = w * last(F_p, n) + (1 - w) * last(F_q, n + 1)
        ssl = None
        if I_p is not None:  # Eq. 9: adjacent sessions apart, the i-th product and query sessions together
            ssl = adjacent_similarity(I_p) + adjacent_similarity(I_q) - F.cosine_similarity(I_p, I_q, dim=-1).sum(-1)
        return f, ssl


def last(H: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """(B, L, d) at position n - 1 of each row, zero where n = 0."""
    row = H[torch.arange(len(H)), (n - 1).clamp_min(0)]
    return row * (n > 0).unsqueeze(-1)


class UnifiedSSR(nn.Module):
    """The joint model, and with `finetune_every` one fine-tuned copy per task.

    forward(step) -> (scores, losses): scores[task] (B, C) logits, column 0 the true item.
    In training, losses hold each task's "bce", "ssl" and "total" (L_task = L_bce + alpha
    L_ssl; a copy's as "ft_bce", "ft_ssl", "ft_total") and "total" = L_rec + gamma L_search,
    summed over the joint model and the copies (each copy counts only its own task)."""

    def __init__(self, cfg: UnifiedSSRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        joint = UnifiedSSRNet(cfg)
        copies = [copy.deepcopy(joint) for _ in TASKS] if cfg.finetune_every > 0 else []
        self.nets = nn.ModuleList([joint, *copies])
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))  # training steps taken (re-branching)

    def tables(self) -> dict[str, list[nn.Embedding]]:
        return {kind: [net.embed.tables()[kind] for net in self.nets] for kind in ("users", "items", "words")}

    def reset_rows(self, kind: str, rows: torch.Tensor) -> None:
        for net in self.nets:
            table = net.embed.tables()[kind]
            if kind == "items":
                net.embed.item.reset_rows(rows)
            else:
                net.embed.reset_rows(table, rows)

    @torch.no_grad()
    def rebranch(self) -> None:
        """Every copy takes the joint model's current parameters."""
        for net in self.nets[1:]:
            for mine, theirs in zip(net.parameters(), self.nets[0].parameters()):
                mine.copy_(theirs)

    def forward(self, step: StepTensors) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        cfg = self.cfg
        if self.training and cfg.finetune_every > 0:
            if int(self.steps) % cfg.finetune_every == 0:
                self.rebranch()
            self.steps += 1
        scores, losses = {}, {}
        total = None
        first = 1 if len(self.nets) > 1 and not self.training else 0  # serving: only the copies
        for i in range(first, len(self.nets)):
            net = self.nets[i]
            V = net.embed.item(step.item_rows)  # (U, d) each distinct item once
            V_query = net.embed.queries(step)  # (Q, d)
            for task in step.tasks:
                if i > 0 and TASKS[i - 1] != task:
                    continue  # a copy learns and serves only its own task
                scores[task], terms = net(step, task, V, V_query)  # a copy's scores replace the joint's
                if not self.training:
                    continue
                L_task = terms["bce"] + cfg.alpha * terms.get("ssl", 0.0)
                prefix = "" if i == 0 else "ft_"  # the fine-tuned copy's terms: "rec/ft_bce", ...
                losses.update({f"{task}/{prefix}{k}": v for k, v in terms.items()})
                losses[f"{task}/{prefix}total"] = L_task
                weighted = L_task * (cfg.gamma if task == "search" else 1.0)
                total = weighted if total is None else total + weighted
        if total is not None:
            losses["total"] = total
        return scores, losses
