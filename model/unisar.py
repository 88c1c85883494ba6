"""UniSAR (Shi et al., SIGIR 2024): "Modeling User Transition Behaviors between Search and
Recommendation", in plain PyTorch.

Read top to bottom it follows the paper: embeddings -> transition extraction (s2s, r2r, and
the masked mixed encoder giving r2s and s2r) -> alignment (L_Align, L_Rel) -> fusion
(a decoder layer per task) -> target attention -> prediction (one-level PLE, the paper's
"MMoE") -> the joint loss. Where the paper is silent the public reference implementation
decides (see shared/DESIGN.md, "Model notes"). The transformer blocks are in model/layers.py,
L_Align and L_Rel in model/contrastive.py. Shapes: B rows, R = 30 rec slots, S = 30 search
slots, L = R + S, K = 5 clicks, C candidates, d = 64.

Ablations (the rows of the paper's Table 5) are config flags:
  use_s2s, use_r2r, use_r2s, use_s2r   False: that transition's encoder is replaced by the
        identity (its behaviours, with positions, pass through unencoded) and the L_Align
        term that uses it is dropped
  use_mask          False: the mixed encoder lets every behaviour attend to every behaviour
  use_align         False: no L_Align          use_rel   False: no L_Rel
  use_rec_fusion, use_search_fusion   False: that task's fusion layer has no cross-attention
  use_mmoe          False: a plain Linear+ReLU bottom per task instead of shared/task experts
  joint             False: separate training: each task gets its own copy of every parameter
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.tensors import UNKNOWN, StepTensors, TaskTensors
from model.config import ZooConfig
from model.contrastive import QueryItemRelevance, TransitionAlignment
from model.layers import Attention, Dropout, Encoder, Fusion, bag_mean, click_labels, gather, mlp
from model.precision import full

TASKS = ("rec", "search")


@dataclass
class UniSARConfig(ZooConfig):
    id_dim: int = 32  # width of a raw id embedding (the reference's 32), projected to d
    init_std: float = 0.1  # of id embeddings; see Embeddings and the README's "Training defaults"
    # item side features from the catalogue (model.catalogue): category tokens by level and
    # caption words, embedded through the word table; False: ids only (the ablation)
    use_item_features: bool = True
    # user profiles from the catalogue (stream.contract.items): the mean of the user's profile
    # field tokens, through the word table; False: the user's id only (the ablation)
    use_user_features: bool = True
    category_levels: int = 2
    caption_words: int = 16
    d: int = 64
    n_layers: int = 1
    n_heads: int = 2
    d_ff: int = 64
    dropout: float = 0.1
    n_shared_experts: int = 4
    n_task_experts: int = 4
    d_expert: int = 64
    tower_dims: tuple[int, ...] = (128, 64)
    head_dims: tuple[int, ...] = (200, 80)  # then 1, sigmoid
    rel_negatives: int = 1024  # shared negative items and queries per step for L_Rel
    rel_temperature: float = 0.5
    align_temperature: float = 0.1
    alpha: float = 0.1  # weight of L_Rel (the reference's 1e-3 left the query unused; README "Training defaults")
    beta: float = 0.1  # weight of L_Align
    gamma: float = 0.1  # weight of the search task's loss
    use_s2s: bool = True
    use_r2r: bool = True
    use_r2s: bool = True
    use_s2r: bool = True
    use_mask: bool = True
    use_align: bool = True
    use_rel: bool = True
    use_rec_fusion: bool = True
    use_search_fusion: bool = True
    use_mmoe: bool = True
    joint: bool = True


# ------------------------------------------------------------------ embeddings


class Embeddings(nn.Module):
    """Users, items and queries: tanh(Linear(id embedding)); a query is the mean of its
    word embeddings. With item features, as the reference: an item is tanh(Linear(concat(id
    embedding, one embedding per category level, mean of its caption words))), categories and
    words through the word table (a caption word and a query word are one row); an absent
    feature embeds to zero. With user features, a user is tanh(Linear(concat(id embedding, mean
    of its profile field tokens))), the tokens through the word table too (the reference
    concatenates one embedding per field; profile fields are open-ended here, so they are
    pooled, each field's tokens its own rows); a user without a profile has zero there, and a
    user the table does not hold but whose profile is known embeds through the profile alone.
    A padding id (row 0; also a user or word the tables do not hold, without a profile) embeds
    to exactly zero; an item the table does not hold (row UNKNOWN) embeds through a learned
    id vector, trained by showing known candidates as unknown now and then (model.tensors).
    Rows start as N(0, init_std^2), 0.1 by default: the reference's xavier-normal over a
    fixed 670k-row table gives std 0.002, a scale that depends on the table's size (a
    recycled, bounded table cannot mimic it) and leaves tanh(Linear(.)) nearly constant for
    hundreds of steps; nn.Embedding's N(0, 1) scatters rarely touched rows, which lazy Adam
    barely moves, and with them the candidates' scores (chosen on validation worlds: README)."""

    def __init__(self, cfg: UniSARConfig) -> None:
        super().__init__()
        self.user = nn.Embedding(cfg.n_users, cfg.id_dim, padding_idx=0, sparse=True)
        self.item = nn.Embedding(cfg.n_items, cfg.id_dim, padding_idx=0, sparse=True)
        self.word = nn.Embedding(cfg.n_words, cfg.id_dim, padding_idx=0, sparse=True)
        self.user_proj = nn.Linear(cfg.id_dim, cfg.d)
        self.item_proj = nn.Linear(cfg.id_dim, cfg.d)
        # Linear(concat(id, features)) written as two blocks: the id block starts as it does
        # without features, the feature block at zero (so the features do not move the start,
        # nor the random initialisation of the rest), and learns from the first step
        self.feature_proj = nn.Parameter(torch.zeros(cfg.d, (cfg.category_levels + 1) * cfg.id_dim)) \
            if cfg.use_item_features else None
        self.profile_proj = nn.Parameter(torch.zeros(cfg.d, cfg.id_dim)) if cfg.use_user_features else None  # the same
        self.unknown_item = nn.Parameter(torch.randn(cfg.id_dim) * cfg.init_std)
        self.query_proj = nn.Linear(cfg.id_dim, cfg.d)
        self.init_std = cfg.init_std
        for table in self.tables().values():
            self.reset_rows(table, torch.arange(1, table.num_embeddings))

    def tables(self) -> dict[str, nn.Embedding]:
        return {"users": self.user, "items": self.item, "words": self.word}

    @torch.no_grad()
    def reset_rows(self, table: nn.Embedding, rows: torch.Tensor) -> None:
        table.weight[rows] = torch.randn(len(rows), table.embedding_dim, device=table.weight.device) * self.init_std

    def users(self, rows: torch.Tensor, profile: torch.Tensor | None, W: torch.Tensor) -> torch.Tensor:
        """(B,) user rows and (B, F) profile tokens (local word indices into W, 0 none) -> (B, d)."""
        x, known = self.user_proj(self.user(rows)), rows != 0
        if self.profile_proj is not None and profile is not None:  # else: profile absent, zero
            x = x + bag_mean(W, profile) @ self.profile_proj.T
            known = known | (profile != 0).any(1)
        return torch.tanh(x) * known.unsqueeze(-1)

    def words(self, word_rows: torch.Tensor) -> torch.Tensor:  # the step's distinct words (V,) -> (V, id_dim)
        return self.word(word_rows)

    def items(self, step: StepTensors, W: torch.Tensor) -> torch.Tensor:  # -> (U, d); W: words()
        rows = step.item_rows
        unknown = (rows == UNKNOWN).unsqueeze(-1)
        x = self.item_proj(torch.where(unknown, self.unknown_item, self.item(rows.clamp_min(0))))
        if self.feature_proj is not None and step.item_categories is not None:  # else: features absent, zero
            features = torch.cat([gather(W, step.item_categories).flatten(1), bag_mean(W, step.item_caption)], -1)
            x = x + features @ self.feature_proj.T  # row 0 of W is the zero padding word
        return torch.tanh(x) * (rows != 0).unsqueeze(-1)

    def queries(self, W: torch.Tensor, words: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        # bags of local word indices over the step's word vectors W (V, id_dim) -> (Q, d)
        mean = F.embedding_bag(words, W, offsets, mode="mean")
        lengths = torch.diff(offsets, append=offsets.new_tensor([len(words)]))
        return torch.tanh(self.query_proj(mean)) * (lengths != 0).unsqueeze(-1)


# ------------------------------------------------------------------ aggregation and prediction


class TargetAttention(nn.Module):
    """Pools a history against each candidate item with a bilinear score."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.W = nn.Parameter(nn.init.xavier_normal_(torch.empty(d, d)))

    def forward(self, H: torch.Tensor, mask: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # H (B, L, d), mask (B, L), items (B, C, d) -> (B, C, d)
        scores = (H @ self.W) @ items.transpose(1, 2)  # (B, L, C)
        has_any = mask.any(1, keepdim=True).unsqueeze(-1)  # (B, 1, 1)
        blocked = (~mask).unsqueeze(-1) & has_any  # an empty history stays finite, then zeroed
        weights = scores.masked_fill(blocked, float("-inf")).softmax(dim=1) * has_any
        return weights.transpose(1, 2) @ H


class CGC(nn.Module):
    """One-level PLE (the paper's "MMoE"): per task, a softmax gate over its own experts and
    the shared ones. Experts are Linear+ReLU, stored stacked so a task runs its 8 experts
    as one matmul."""

    def __init__(self, d_in: int, cfg: UniSARConfig) -> None:
        super().__init__()
        n_t, n_s, d_e = cfg.n_task_experts, cfg.n_shared_experts, cfg.d_expert
        n_all = n_s + n_t * len(TASKS)
        self.expert_w = nn.Parameter(torch.randn(n_all, d_e, d_in) * (2 / (d_in + d_e)) ** 0.5)  # xavier per expert
        self.expert_b = nn.Parameter(torch.zeros(n_all, d_e))
        self.gates = nn.ModuleDict({t: nn.Linear(d_in, n_t + n_s) for t in TASKS})
        shared = list(range(n_t * len(TASKS), n_all))
        self.experts_of = {t: list(range(i * n_t, (i + 1) * n_t)) + shared for i, t in enumerate(TASKS)}
        self.d_e, self.dropout = d_e, Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, row: torch.Tensor, task: str) -> torch.Tensor:
        """x (B, C, d_c) per candidate, row (B, d_in - d_c) the same for every candidate of a
        row -> (B, C, d_e): the input is their concatenation, its products split by part."""
        idx = self.experts_of[task]
        w, b = self.expert_w[idx].flatten(0, 1), self.expert_b[idx].flatten()
        gate = self.gates[task]
        h = split_linear(x, row, w, b)
        experts = self.dropout(F.relu(h)).unflatten(-1, (len(idx), self.d_e))
        weights = split_linear(x, row, gate.weight, gate.bias).softmax(-1)  # (B, C, n)
        # the gate's weighted sum as a product: 3-7x faster on CPU than multiply-then-sum,
        # which writes the whole (B, C, n, d_e) product to memory first
        return (weights.unsqueeze(-2) @ experts).squeeze(-2)


def split_linear(x: torch.Tensor, row: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """F.linear(concat(x, row broadcast over C), weight, bias) for x (B, C, d_c) and row (B,
    d_r), without building the concatenation: the row's product is computed once per row, not
    once per candidate (with 100 candidates, the row part was 2/5 of the prediction layer's
    products)."""
    d_c = x.shape[-1]
    return F.linear(x, weight[:, :d_c], bias) + F.linear(row, weight[:, d_c:]).unsqueeze(-2)


class Predictor(nn.Module):
    """Prediction layer: concat(rec interest, search interest, item, user, query) -> CGC ->
    tower -> head (200-80-1) -> logit (sigmoid gives the click probability)."""

    def __init__(self, cfg: UniSARConfig) -> None:
        super().__init__()
        d_in = 5 * cfg.d
        if cfg.use_mmoe:
            self.bottom = CGC(d_in, cfg)
        else:
            self.bottom = nn.ModuleDict({t: mlp((d_in, cfg.d_expert), cfg.dropout) for t in TASKS})
        self.towers = nn.ModuleDict({t: mlp((cfg.d_expert, *cfg.tower_dims), cfg.dropout) for t in TASKS})
        self.heads = nn.ModuleDict(
            {t: nn.Sequential(mlp((cfg.tower_dims[-1], *cfg.head_dims), cfg.dropout), nn.Linear(cfg.head_dims[-1], 1))
             for t in TASKS}
        )

    def forward(self, x: torch.Tensor, row: torch.Tensor, task: str) -> torch.Tensor:
        """x (B, C, 3d): rec interest, search interest, item; row (B, 2d): user, query -> (B, C)."""
        if isinstance(self.bottom, CGC):
            h = self.bottom(x, row, task)
        else:
            first, *rest = self.bottom[task]  # Linear, then its ReLU and dropout
            h = split_linear(x, row, first.weight, first.bias)
            for layer in rest:
                h = layer(h)
        return self.heads[task](self.towers[task](h)).squeeze(-1)


# ------------------------------------------------------------------ the model


class UniSARNet(nn.Module):
    """One full set of UniSAR parameters serving both tasks."""

    def __init__(self, cfg: UniSARConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        L = cfg.max_rec + cfg.max_search
        self.pos_mixed = nn.Parameter(nn.init.xavier_normal_(torch.empty(L, cfg.d)))
        self.pos_rec = nn.Parameter(nn.init.xavier_normal_(torch.empty(cfg.max_rec, cfg.d)))
        self.pos_search = nn.Parameter(nn.init.xavier_normal_(torch.empty(cfg.max_search, cfg.d)))
        self.s2s = Encoder(cfg) if cfg.use_s2s else None
        self.r2r = Encoder(cfg) if cfg.use_r2r else None
        self.mixed = Encoder(cfg) if cfg.use_r2s or cfg.use_s2r else None  # gives r2s and s2r
        self.align_rec = TransitionAlignment(cfg.d, cfg.align_temperature)  # s2r with r2r
        self.align_search = TransitionAlignment(cfg.d, cfg.align_temperature)  # r2s with s2s
        self.relevance = QueryItemRelevance(cfg.d, cfg.rel_temperature)
        self.fuse_rec = Fusion(cfg, cross=cfg.use_rec_fusion)
        self.fuse_search = Fusion(cfg, cross=cfg.use_search_fusion)
        self.attend_rec = TargetAttention(cfg.d)
        self.attend_search = TargetAttention(cfg.d)
        self.rec_query = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, cfg.d)))  # rec has no query
        self.predict = Predictor(cfg)
        # as the reference: xavier-normal Linear weights, zero biases (attention's packed
        # q/k/v projection keeps xavier-uniform, as in nn.MultiheadAttention)
        in_projs = {id(m.in_proj) for m in self.modules() if isinstance(m, Attention)}
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if id(m) not in in_projs:
                    nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(
        self, step: StepTensors, task: str, V_item: torch.Tensor, V_query: torch.Tensor, W: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, t = self.cfg, step.tasks[task]
        # behaviours: a rec slot is its item; a search slot its query plus the mean of its clicks
        rec_mask, search_mask = t.rec_items != 0, t.search_query != 0  # (B, R), (B, S)
        E_rec = gather(V_item, t.rec_items)  # (B, R, d)
        B, S, K = t.search_clicks.shape
        E_search = gather(V_query, t.search_query) + bag_mean(V_item, t.search_clicks)  # (B, S, d)

        # transition extraction
        X_r2r, X_s2s = E_rec + self.pos_rec, E_search + self.pos_search
        H_r2r = self.r2r(X_r2r, rec_mask.unsqueeze(1)) if self.r2r else X_r2r
        H_s2s = self.s2s(X_s2s, search_mask.unsqueeze(1)) if self.s2s else X_s2s
        H_s2r, H_r2s = self.cross_transitions(t, torch.cat([E_rec, E_search], 1), torch.cat([rec_mask, search_mask], 1))

        # fusion: same-type transition attends to the cross-type one
        F_rec = self.fuse_rec(H_r2r, H_s2r, rec_mask.unsqueeze(1))  # (B, R, d)
        F_search = self.fuse_search(H_s2s, H_r2s, search_mask.unsqueeze(1))  # (B, S, d)

        # target attention and prediction, per candidate item
        v = gather(V_item, t.candidates)  # (B, C, d)
        q = gather(V_query, t.query) if task == "search" else self.rec_query.expand(B, -1)
        interests = [self.attend_rec(F_rec, rec_mask, v), self.attend_search(F_search, search_mask, v)]
        per_candidate = torch.cat([*interests, v], dim=-1)  # (B, C, 3d)
        per_row = torch.cat([self.embed.users(t.user, t.profile, W), q], dim=-1)  # (B, 2d)
        logits = self.predict(per_candidate, per_row, task)  # (B, C)
        if not self.training:
            return logits, {}

        bce_logits = full(logits)  # losses in fp32 whatever the forward pass's precision (model.precision)
        losses = {"bce": F.binary_cross_entropy_with_logits(bce_logits, click_labels(bce_logits, t.label))}
        if cfg.use_align:
            # one row per sample: a search's per-click copies would be in-batch negatives
            # identical to their positive; a rec exposure (label 0) aligns nothing
            one = t.first if t.first is not None else torch.ones(B, dtype=torch.bool, device=logits.device)
            if t.label is not None:
                one = one & (t.label > 0)
            one = one.unsqueeze(1)  # a row left out is a row with no slot to pool
            L_align = logits.new_zeros(())
            if cfg.use_s2r and cfg.use_r2r:
                L_align = L_align + self.align_rec(H_s2r, H_r2r, rec_mask & one)
            if cfg.use_r2s and cfg.use_s2s:
                L_align = L_align + self.align_search(H_r2s, H_s2s, search_mask & one)
            losses["align"] = L_align
        if cfg.use_rel:
            pairs = search_mask.unsqueeze(-1) & (t.search_clicks != 0)  # (B, S, K)
            pair_q = t.search_query.unsqueeze(-1).expand(-1, -1, K)[pairs]
            losses["rel"] = self.relevance(V_query, V_item, pair_q, t.search_clicks[pairs], step.rel_items,
                                           step.rel_queries, step.item_rows)
        return logits, losses

    def cross_transitions(
        self, t: TaskTensors, E: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixed sequence, where a behaviour attends only to behaviours of the other
        type: at rec positions it gives s2r, at search positions r2s. E (B, L, d) and valid
        (B, L) are in slot order (R rec slots, then S search slots)."""
        cfg, R, d = self.cfg, self.cfg.max_rec, E.shape[-1]
        X = E.gather(1, t.mixed.unsqueeze(-1).expand(-1, -1, d)) + self.pos_mixed  # (B, L, d) time order
        H = X
        if self.mixed is not None:
            is_search = t.mixed >= R  # (B, L) type flag; padding keeps its type
            key_valid = valid.gather(1, t.mixed).unsqueeze(1)  # (B, 1, L)
            other_type = is_search.unsqueeze(2) != is_search.unsqueeze(1)  # (B, L, L), diagonal blocked
            H = self.mixed(X, (other_type & key_valid) if cfg.use_mask else key_valid)
        unmix = lambda Z: Z.gather(1, t.unmixed.unsqueeze(-1).expand(-1, -1, d))  # noqa: E731  back to slot order
        H, X = unmix(H), unmix(X)
        H_s2r = H[:, :R] if cfg.use_s2r else X[:, :R]
        H_r2s = H[:, R:] if cfg.use_r2s else X[:, R:]
        return H_s2r, H_r2s


class UniSAR(nn.Module):
    """Both tasks from one set of parameters (two with `joint=False`).

    forward(step) -> (scores, losses): scores[task] are (B, C) logits, column 0 the true
    item. In training, losses hold each task's terms ("rec/bce", "rec/rel", "rec/align", ...)
    and "total" = L_rec + gamma * L_search, L_task = L_bce + alpha * L_rel + beta * L_align.
    """

    def __init__(self, cfg: UniSARConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.nets = nn.ModuleList(UniSARNet(cfg) for _ in range(1 if cfg.joint else len(TASKS)))

    def tables(self) -> dict[str, list[nn.Embedding]]:
        """Embedding tables by id kind, for the learner's row recycling and sparse optimizer."""
        return {kind: [net.embed.tables()[kind] for net in self.nets] for kind in ("users", "items", "words")}

    def reset_rows(self, kind: str, rows: torch.Tensor) -> None:
        for net in self.nets:
            net.embed.reset_rows(net.embed.tables()[kind], rows)

    def forward(self, step: StepTensors) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        cfg = self.cfg
        scores, losses = {}, {}
        total = None
        vectors = {}
        for task in step.tasks:
            net = self.nets[0 if cfg.joint else TASKS.index(task)]
            if id(net) not in vectors:  # each distinct item, word and query is projected once per step
                W = net.embed.words(step.word_rows)
                vectors[id(net)] = (
                    net.embed.items(step, W),
                    net.embed.queries(W, step.query_words, step.query_offsets),
                    W,  # the step's word vectors, for the users' profiles
                )
            scores[task], terms = net(step, task, *vectors[id(net)])
            if not self.training:
                continue
            L_task = terms["bce"] + cfg.alpha * terms.get("rel", 0.0) + cfg.beta * terms.get("align", 0.0)
            losses.update({f"{task}/{k}": v for k, v in terms.items()})
            losses[f"{task}/total"] = L_task
            weighted = L_task * (cfg.gamma if task == "search" else 1.0)
            total = weighted if total is None else total + weighted
        if total is not None:
            losses["total"] = total
        return scores, losses
