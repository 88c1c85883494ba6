"""Transformer building blocks for UniSAR's encoders and fusion layers.

Post-norm layers as nn.TransformerEncoderLayer / nn.TransformerDecoderLayer, with two
differences that matter for speed and robustness on CPU: dropout draws its mask from numpy
(`dropout`), and attention takes a `KeyMask` built once per stack of layers, under which a
query with no allowed key gets a zero output instead of NaN.

`ItemEmbedding` is the item table of the zoo's sequential models (SASRec, UnifiedSSR), which
embed an id straight into the model width and score by inner product with the same table.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from model import native
from model.tensors import UNKNOWN
from model.precision import full


class Shape(Protocol):
    """A stack's sizes (UniSARConfig has them)."""

    d: int
    n_heads: int
    d_ff: int
    dropout: float
    n_layers: int


def gather(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`table[index]` for a 2-D table and an integer index of any shape, through
    index_select: its backward is an index_add, several times faster on CPU than the
    index_put that advanced indexing's backward runs (it was 40% of a UniSAR training step:
    benchmarks/train_speed.py's profile). Same values, same gradients."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[-1])


def bag_mean(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The mean of each bag's rows, `index` (..., K) padded with 0 -> (..., d); the padding
    takes no part in the mean and an all-padding bag is zero. Through embedding_bag, which
    never builds the (..., K, d) gather: for a step's 100k distinct items with 16 caption
    slots that was a 200 MB tensor, written in the forward pass and scattered in the backward."""
    flat = F.embedding_bag(index.reshape(-1, index.shape[-1]), table, mode="mean", padding_idx=0)
    return flat.view(*index.shape[:-1], table.shape[-1])


_GAMMA, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def keep_bits(seed: int, n: int) -> np.ndarray:
    """n uniform 16-bit draws (uint16): element i is bits 16 (i % 4) .. of splitmix64(seed +
    (i // 4 + 1) * gamma). model/native/dropout.cpp draws the same; this is its fallback
    and its reference."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as in C
        z = np.uint64(seed) + (np.arange(1, (n + 3) // 4 + 1, dtype=np.uint64) * _GAMMA)
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z ^= z >> np.uint64(31)
    return z.astype("<u8").view("<u2")[:n]


def keep_multipliers(shape: torch.Size, p: float, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Dropout's multipliers, 0 or 1 / (1 - p) in `dtype` (the scale rounded to it), drawn
    from `seed`: element i is kept iff its 16-bit draw (keep_bits) is at least p * 65536,
    rounded. Natively where model.native can build its kernel (one pass, about 8x faster
    than numpy's bits then torch's compare, cast and scale), else with numpy: the same bits."""
    n, threshold = int(np.prod(shape)), round(p * 65536)
    scale = torch.tensor(1.0 / (1.0 - p), dtype=dtype)
    fn = None
    if dtype in (torch.bfloat16, torch.float16):
        fn = native.kernel("dropout", "dropout_keep_16")
        arg = int(scale.view(torch.int16)) & 0xFFFF
    elif dtype == torch.float32:
        fn = native.kernel("dropout", "dropout_keep_fp32")
        arg = float(scale)
    if fn is not None:
        out = torch.empty(shape, dtype=dtype)
        fn(out.data_ptr(), n, seed, threshold, arg)
        return out
    kept = torch.from_numpy(keep_bits(seed, n).astype(np.int32) >= threshold).view(shape)
    return kept.to(dtype) * scale


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout. On CPU the mask comes from keep_multipliers (16 random bits per
    element from a counter-based generator, seeded from torch's generator, so
    torch.manual_seed still fixes it): F.dropout's bernoulli_ costs ~10 ns per element
    there, a fifth of a training step. The drop probability is p rounded to 1/65536
    (0.1 -> 0.100006)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    seed = int(torch.randint(0, 2**62, ()))
    return x * keep_multipliers(x.shape, p, seed, x.dtype)


class Dropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class KeyMask:
    """Which keys each query may see, from `allowed` (B, Lq or 1, Lk), prepared once per
    stack of layers: an additive bias (0 or -inf) for the attention scores, and which
    queries have any key at all. A query with no allowed key attends anywhere and is then
    zeroed, so it gets a zero output instead of NaN."""

    def __init__(self, allowed: torch.Tensor) -> None:
        self.has_key = allowed.any(-1, keepdim=True)  # (B, Lq or 1, 1)
        blocked = ~(allowed | ~self.has_key)
        self.bias = torch.zeros(blocked.shape, dtype=torch.float32, device=allowed.device)
        self.bias = self.bias.masked_fill_(blocked, float("-inf")).unsqueeze(1)  # (B, 1, Lq or 1, Lk)


class Attention(nn.Module):
    """Multi-head attention restricted by a `KeyMask`."""

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.in_proj = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        nn.init.xavier_uniform_(self.in_proj.weight)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, mask: KeyMask) -> torch.Tensor:
        B, Lq, d = x.shape
        if memory is None:  # self-attention: one projection for q, k, v
            q, k, v = self.in_proj(x).split(d, dim=-1)
        else:
            w, b = self.in_proj.weight, self.in_proj.bias
            q = F.linear(x, w[:d], b[:d])
            k, v = F.linear(memory, w[d:], b[d:]).split(d, dim=-1)
        q, k, v = (t.view(B, t.shape[1], self.n_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, h, L, d/h)
        if self.training and self.dropout > 0:  # softmax(q k^T / sqrt(d_h) + bias), dropped, times v
            # SDPA has no fast CPU path with dropout (about 30x slower), hence by hand
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
            out = dropout(scores.add_(mask.bias).softmax(-1), self.dropout, True) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.bias.to(q.dtype))
        return self.out_proj(out.transpose(1, 2).reshape(B, Lq, d)) * mask.has_key


class FeedForward(nn.Module):
    def __init__(self, d: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.linear1, self.linear2, self.dropout = nn.Linear(d, d_ff), nn.Linear(d_ff, d), Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (as nn.TransformerEncoderLayer)."""

    def __init__(self, cfg: Shape) -> None:
        super().__init__()
        self.attn = Attention(cfg.d, cfg.n_heads, cfg.dropout)
        self.ff = FeedForward(cfg.d, cfg.d_ff, cfg.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d), nn.LayerNorm(cfg.d)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: KeyMask) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attn(x, None, mask)))
        return self.norm2(x + self.dropout(self.ff(x)))


class Encoder(nn.Module):
    def __init__(self, cfg: Shape) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        mask = KeyMask(allowed)
        for layer in self.layers:
            x = layer(x, mask)
        return x


class FusionLayer(nn.Module):
    """Post-norm transformer decoder layer: self-attention over the same-type transition
    (target), cross-attention to the cross-type one (memory), feed-forward."""

    def __init__(self, cfg: Shape, cross: bool) -> None:
        super().__init__()
        self.self_attn = Attention(cfg.d, cfg.n_heads, cfg.dropout)
        self.cross_attn = Attention(cfg.d, cfg.n_heads, cfg.dropout) if cross else None
        self.ff = FeedForward(cfg.d, cfg.d_ff, cfg.dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(cfg.d), nn.LayerNorm(cfg.d), nn.LayerNorm(cfg.d)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: KeyMask) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attn(x, None, mask)))
        if self.cross_attn is not None:
            x = self.norm2(x + self.dropout(self.cross_attn(x, memory, mask)))
        return self.norm3(x + self.dropout(self.ff(x)))


class Fusion(nn.Module):
    def __init__(self, cfg: Shape, cross: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(FusionLayer(cfg, cross) for _ in range(cfg.n_layers))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        mask = KeyMask(allowed)
        for layer in self.layers:
            x = layer(x, memory, mask)
        return x


def mlp(dims: tuple[int, ...], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims, dims[1:]):
        layers += [nn.Linear(d_in, d_out), nn.ReLU(), Dropout(dropout)]
    return nn.Sequential(*layers)



class ItemEmbedding(nn.Module):
    """An id table: row 0 (padding) embeds to exactly zero, a row UNKNOWN (an item the table
    does not hold) to a learned vector, every other row to its own. Rows start as
    N(0, init_std^2) and a recycled row starts there again (`reset_rows`)."""

    def __init__(self, n_rows: int, d: int, init_std: float) -> None:
        super().__init__()
        self.table = nn.Embedding(n_rows, d, padding_idx=0, sparse=True)
        self.unknown = nn.Parameter(torch.randn(d) * init_std)
        self.init_std = init_std
        self.reset_rows(torch.arange(1, n_rows))

    @torch.no_grad()
    def reset_rows(self, rows: torch.Tensor) -> None:
        w = self.table.weight
        w[rows] = torch.randn(len(rows), w.shape[1], device=w.device) * self.init_std

    def forward(self, rows: torch.Tensor) -> torch.Tensor:  # (...,) -> (..., d)
        known = self.table(rows.clamp_min(0))
        return torch.where((rows == UNKNOWN).unsqueeze(-1), self.unknown, known)


def click_labels(logits: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
    """BCE targets (B, C) of rows whose column 0 is the row's item and the others sampled
    negatives: column 0 is the row's label (1 a click; 0 a rec exposure, a labelled
    negative: model.batch), every other column 0."""
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0 if label is None else label.to(logits.dtype)
    return labels


def sampled_bce(logits: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of rows (B, C) whose column 0 is the row's item (labelled by
    `label`, as click_labels) and the others sampled negatives, column 0 and the negatives
    weighted equally (the mean over the negatives, not over all columns): with plain BCE
    over C columns the true item's share of the gradient falls as 1/C, so the number of
    negatives would change what the model learns, not only how noisy its gradient is."""
    logits = full(logits)  # a loss: fp32 whatever the forward pass's precision (model.precision)
    first = F.binary_cross_entropy_with_logits(logits[:, 0], click_labels(logits, label)[:, 0], reduction="none")
    negatives = F.softplus(logits[:, 1:]).mean(1) if logits.shape[1] > 1 else torch.zeros_like(first)
    return (first + negatives).mean() / 2


def add_joint_total(losses: dict[str, torch.Tensor], gamma: float) -> None:
    """losses["total"] = L_rec + gamma L_search from each task's "{task}/total" present (no
    task in training: no total)."""
    parts = [v * (gamma if key == "search/total" else 1.0) for key, v in losses.items()
             if key in ("rec/total", "search/total")]
    if parts:
        losses["total"] = sum(parts[1:], parts[0])
