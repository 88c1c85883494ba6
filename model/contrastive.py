"""UniSAR's contrastive losses: L_Align (TransitionAlignment) and L_Rel (QueryItemRelevance).

L_Rel's InfoNCE against shared negatives is fast on CPU with the same maths.

For pairs p = (anchor u_p, positive) with positive logit s_p, and N shared negatives b_n,
    loss = mean_p [ log(exp(s_p) + sum_n exp(tanh(a_{u_p} . b_n) / tau)) - s_p ]
which is cross-entropy over [positive, negatives] with the positive as target. The
reference builds the (pairs x N) logit matrix and lets autograd keep several copies of it:
two thirds of its forward pass. Here:
  - the negatives' log-sum-exp depends on the anchor only, so it is computed once per
    distinct anchor (a query with three clicks needs one row, not three);
  - rows are processed in chunks that stay in cache and the gradient is formed in the
    same pass (the loss is a plain mean, so dL/dlogit is known as soon as a chunk's
    log-sum-exp is): three matmuls, no (anchors x N) tensor kept for backward;
  - tanh(x) = 2 sigmoid(2x) - 1, and d tanh = 4 sigmoid (1 - sigmoid), the same function:
    PyTorch's CPU sigmoid kernel is several times faster than its tanh kernel;
  - under bf16 autocast its three products run in bf16, as autocast runs every other
    product of the model, and everything after them (sigmoid, log-sum-exp, the gradient's
    scaling) in fp32: in fp32 they took about half of L_Rel's time.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from model import native
from model.layers import gather
from model.precision import full


# Both losses learn their temperature. Unbounded, L_Rel's fell from 0.5 to 0.02-0.03 in 280
# steps of ids-only UniSAR on MovieLens and crossed zero near step 456, where a negative
# temperature turns the log-sum-exp into exp of a large positive number: L_Rel inf, training
# dead. The floor is CLIP's (logit scale at most 100); above it the maths is unchanged.
MIN_TEMPERATURE = 0.01


def temperature(t: nn.Parameter) -> torch.Tensor:
    """A learnable temperature as the loss reads it: never below MIN_TEMPERATURE."""
    return t.clamp_min(MIN_TEMPERATURE)


def _chunk(t: torch.Tensor) -> int:
    return 1024 if t.device.type == "cpu" else 16384  # CPU: rows of a chunk stay in L2/L3


def _equal_keys(keys: torch.Tensor, sorted_neg: torch.Tensor, neg_order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(i, n) for every keys[i] equal to a negative's key (sorted_neg, its order neg_order)."""
    lo = torch.searchsorted(sorted_neg, keys)
    count = torch.searchsorted(sorted_neg, keys, right=True) - lo
    which = torch.repeat_interleave(torch.arange(len(keys), device=keys.device), count)
    first = torch.cumsum(count, 0) - count  # each key's first hit, in the flat list of hits
    offset = torch.arange(len(which), device=keys.device) - first[which]
    return which, neg_order[lo[which] + offset]


def _left_out(anchor, pos_key, neg_key, anchor_key, n_anchors: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (anchor, negative) entries left out, as rows of a CSR matrix: (ptr (U + 1,), col):
    a negative equal to one of the anchor's positives, or to the anchor itself. One binary
    search per key, not a (pairs x N) comparison."""
    sorted_neg, neg_order = torch.sort(neg_key)
    pair, col = _equal_keys(pos_key, sorted_neg, neg_order)
    row = anchor[pair]
    if anchor_key is not None:
        own, own_col = _equal_keys(anchor_key, sorted_neg, neg_order)
        row, col = torch.cat([row, own]), torch.cat([col, own_col])
    by_row = torch.argsort(row * len(neg_key) + col)
    ptr = torch.zeros(n_anchors + 1, dtype=torch.long, device=anchor.device)
    ptr[1:] = torch.cumsum(torch.bincount(row, minlength=n_anchors), 0)
    return ptr, col[by_row]


def _chunk_torch(z, left_ptr, left_col, pair_ptr, pos, inv_tau, inv_pairs, lse, grad_pos, loss, dot, coef):
    """One chunk of anchors in PyTorch operators, the reference the native kernel
    (model/native/infonce.cpp) agrees with. z (c, N): 2 a . b in the products' dtype; the
    chunk's left-out entries (left_ptr (c + 1,) and left_col) and pairs (pair_ptr (c + 1,),
    their positive logits pos, in anchor order) as CSR rows. Writes lse, loss (per anchor:
    its pairs' summed loss), dot (sum of dL/ds * sig), coef (dL/dlse) per anchor and
    grad_pos per pair; returns (sig - sig^2) dL/ds in z's dtype (4 / tau is the caller's)."""
    c = len(z)
    rows = torch.arange(c, device=z.device)
    out = (torch.repeat_interleave(rows, torch.diff(left_ptr)), left_col)  # (anchor, negative) left out
    u = torch.repeat_interleave(rows, torch.diff(pair_ptr))  # each pair's anchor
    sig = torch.sigmoid_(full(z))  # (c, N); tanh = 2 sig - 1
    # a left-out entry reads as tanh -1 so it cannot set the row's maximum: were it far
    # above the rest (an anchor's similarity to itself, at a low temperature), every
    # kept exp would underflow to 0 and the log-sum-exp with them
    sig[out] = 0.0
    top = sig.amax(1, keepdim=True)
    e = torch.add(top * (-2 * inv_tau), sig, alpha=2 * inv_tau).exp_()  # exp((tanh - max tanh) / tau)
    e[out] = 0.0
    total = e.sum(1).clamp_min_(torch.finfo(e.dtype).tiny)
    lse.copy_((2 * top.squeeze(1) - 1) * inv_tau + total.log())
    gap = lse[u] - pos  # the pairs' loss is softplus(gap); dL/dpos = sigmoid(pos - lse) - 1
    loss.zero_().index_add_(0, u, torch.nn.functional.softplus(gap))
    grad_pos.copy_(-torch.sigmoid(gap) * inv_pairs)
    coef.zero_().index_add_(0, u, torch.sigmoid(gap) * inv_pairs)  # d/dlse, per anchor
    g_s = e.mul_((coef / total).unsqueeze(1))  # dL/d(tanh / tau): softmax times coef
    dot.copy_((g_s * sig).sum(1))
    return sig.addcmul_(sig, sig, value=-1).mul_(g_s).to(z.dtype)  # (sig - sig^2) dL/ds


def _chunk_native(z, left_ptr, left_col, pair_ptr, pos, inv_tau, inv_pairs, lse, grad_pos, loss, dot, coef):
    """_chunk_torch through the C++ kernel: one pass per row instead of a dozen over the
    whole chunk (about 2.5x faster for L_Rel at the paper's shapes on a 2-core EPYC)."""
    fn = native.kernel("infonce", "infonce_chunk_bf16" if z.dtype == torch.bfloat16 else "infonce_chunk_fp32")
    gz = torch.empty_like(z)
    p = lambda t: t.data_ptr()  # noqa: E731
    fn(p(z), len(z), z.shape[1], p(left_ptr), p(left_col), p(pair_ptr), p(pos), float(inv_tau), inv_pairs,
       p(gz), p(lse), p(grad_pos), p(loss), p(dot), p(coef))
    return gz


def native_usable(a: torch.Tensor, pos: torch.Tensor, products: torch.dtype) -> bool:
    """Whether the chunks run through the native kernel: CPU, fp32 with fp32 or bf16
    products, and the kernel built here (model.native)."""
    return (a.device.type == "cpu" and a.dtype == pos.dtype == torch.float32 and products in (torch.float32, torch.bfloat16)
            and native.kernel("infonce", "infonce_chunk_fp32") is not None)


class _SharedNegativeInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, tau, pos, anchor, pos_key, neg_key, anchor_key, products):
        # a (U, d) anchors, b (N, d) negatives, tau (), pos (P,) positive logits, anchor (P,) in [0, U);
        # pos_key (P,) and neg_key (N,): what each pair's positive and each negative is; a
        # negative equal to one of its anchor's positives is no negative and is left out;
        # anchor_key (U,) or None: what each anchor itself is, a negative equal to it is left
        # out too; products: the dtype of the three matrix products (the rest in a's dtype)
        U, P, inv_tau = len(a), len(pos), 1.0 / tau
        order = torch.argsort(anchor)  # pairs in anchor order: each chunk's pairs are a slice
        pair_ptr = torch.zeros(U + 1, dtype=torch.long, device=a.device)
        pair_ptr[1:] = torch.cumsum(torch.bincount(anchor, minlength=U), 0)
        left_ptr, left_col = _left_out(anchor, pos_key, neg_key, anchor_key, U)
        pos_sorted = pos[order].contiguous()
        b_p, a_p = b.to(products), a.to(products)
        b2 = 2 * b_p  # tanh(z) = 2 sigmoid(2z) - 1: fold the 2 into the matmul (exact in any dtype)
        lse, loss, dot, coef = (a.new_empty(U) for _ in range(4))
        grad_a, grad_b, grad_pos_sorted = torch.empty_like(a), torch.zeros_like(b), torch.empty_like(pos)
        run = _chunk_native if native_usable(a, pos, products) else _chunk_torch
        step = _chunk(a)
        for s in range(0, U, step):
            e = min(s + step, U)  # this chunk's anchors: rows s .. e
            pairs = slice(int(pair_ptr[s]), int(pair_ptr[e]))
            g_z = run(a_p[s:e] @ b2.T, left_ptr[s : e + 1] - left_ptr[s], left_col[left_ptr[s] : left_ptr[e]],
                      pair_ptr[s : e + 1] - pair_ptr[s], pos_sorted[pairs], inv_tau, 1.0 / P,
                      lse[s:e], grad_pos_sorted[pairs], loss[s:e], dot[s:e], coef[s:e])
            grad_a[s:e] = g_z @ b_p
            grad_b += g_z.T @ a_p[s:e]
        grad_pos = torch.empty_like(pos).index_copy_(0, order, grad_pos_sorted)
        scale = 4 * inv_tau
        # through the negatives: dL/dtau = sum dL/ds * (-tanh / tau^2), tanh = 2 sig - 1, and
        # dL/ds sums to coef over each row
        grad_tau = -(2 * dot.sum() - coef.sum()) * inv_tau**2
        ctx.save_for_backward(grad_a * scale, grad_b * scale, grad_tau, grad_pos)
        return loss.sum() / P

    @staticmethod
    def backward(ctx, grad):
        grad_a, grad_b, grad_tau, grad_pos = ctx.saved_tensors
        return grad_a * grad, grad_b * grad, grad_tau * grad, grad_pos * grad, None, None, None, None, None


def info_nce_shared(a: torch.Tensor, b: torch.Tensor, tau: torch.Tensor, pos: torch.Tensor,
                    anchor: torch.Tensor, pos_key: torch.Tensor, neg_key: torch.Tensor,
                    anchor_key: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over pairs of cross-entropy([pos_p, tanh(a_{anchor_p} . b_n) / tau], target 0),
    leaving out the negatives n of an anchor with neg_key[n] equal to one of its pairs' pos_key,
    or to the anchor's own anchor_key (when given: NT-Xent leaves out a row's self-similarity).

    a (U, d) distinct anchors, b (N, d) shared negatives, tau the temperature, pos (P,) the
    pairs' positive logits (already divided by tau), anchor (P,) each pair's row of a. A loss:
    computed in fp32 whatever the forward pass's autocast (model.precision), but for its
    products, which follow the autocast (bf16 under bf16 autocast)."""
    device, a, b = a.device.type, full(a), full(b)
    products = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else a.dtype
    with torch.autocast(device, enabled=False):
        return _SharedNegativeInfoNCE.apply(a, b, full(tau), full(pos), anchor, pos_key, neg_key, anchor_key,
                                            products)


class TransitionAlignment(nn.Module):
    """L_Align for one pair of transitions (s2r with r2r, or r2s with s2s): NT-Xent between
    their mean-pooled histories, other rows of the batch as negatives, bilinear tanh
    similarity, learnable temperature. Rows with an empty history take no part.

    NT-Xent over 2n pooled rows z is the shared-negative InfoNCE with every row an anchor,
    its partner the positive, and all rows the negatives but itself and its partner: the
    (2n x 2n) similarities are formed chunk by chunk with their gradient, as for L_Rel,
    instead of kept whole (with their softmax, mask and casts) for autograd, and the
    tanh and log-sum-exp are in fp32 under bf16 autocast (the similarities were rounded to
    bf16 before). At the paper's batch of 1,024 rows, one call with its backward went from
    about 45 to 27 ms."""

    def __init__(self, d: int, temperature: float) -> None:
        super().__init__()
        self.W = nn.Parameter(nn.init.xavier_normal_(torch.empty(d, d)))
        self.temperature = nn.Parameter(torch.tensor(temperature))

    def forward(self, H_a: torch.Tensor, H_b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """H_a, H_b (B, L, d) and mask (B, L): the rows, and which of their slots to pool; a
        row with no slot set takes no part (so a caller leaves a row out by clearing it)."""
        valid = mask.any(1)  # (B,)
        n = int(valid.sum())
        if n == 0:
            return H_a.new_zeros(())
        # pool every row as one batched product, then keep the valid ones: selecting the
        # (B, L, d) inputs first would copy them, and scatter them back in the backward
        w = (mask / mask.sum(1, keepdim=True).clamp_min(1)).unsqueeze(1)  # (B, 1, L)
        pool = lambda H: (w.to(H.dtype) @ H).squeeze(1)[valid]  # noqa: E731  (n, d)
        z = torch.cat([pool(H_a), pool(H_b)])  # (2n, d)
        tau, a = temperature(self.temperature), z @ self.W
        rows = torch.arange(2 * n, device=z.device)
        partner = rows.roll(n)  # row i of H_a with row i of H_b
        pos = torch.tanh((full(a) * full(gather(z, partner))).sum(-1)) / tau
        return info_nce_shared(a, z, tau, pos, rows, partner, rows, anchor_key=rows)


class QueryItemRelevance(nn.Module):
    """L_Rel: InfoNCE between past queries and the items clicked for them, both ways, with
    a shared set of negative items and negative queries; one bilinear W with tanh."""

    def __init__(self, d: int, temperature: float) -> None:
        super().__init__()
        self.W = nn.Parameter(nn.init.xavier_normal_(torch.empty(d, d)))
        self.temperature = nn.Parameter(torch.tensor(temperature))

    def forward(
        self, V_query: torch.Tensor, V_item: torch.Tensor, pair_q: torch.Tensor, pair_i: torch.Tensor,
        neg_items: torch.Tensor, neg_queries: torch.Tensor, item_rows: torch.Tensor,
    ) -> torch.Tensor:
        """Query and item indices are local to the step; `item_rows` maps an item index to its
        table row (two indices can hold one item), a query index is one distinct query."""
        if len(pair_q) == 0 or len(neg_items) == 0 or len(neg_queries) == 0:
            return V_query.new_zeros(())
        tau = temperature(self.temperature)
        # a query's negatives do not depend on which of its clicks is the positive: one
        # log-sum-exp per distinct query (and per distinct item), not per pair
        uq, iq = torch.unique(pair_q, return_inverse=True)
        ui, ii = torch.unique(pair_i, return_inverse=True)
        a_q, a_i = gather(V_query, uq) @ self.W, gather(V_item, ui) @ self.W  # (Uq, d), (Ui, d)
        pos_q = torch.tanh((gather(a_q, iq) * gather(V_item, pair_i)).sum(-1)) / tau  # (P,) query -> item
        pos_i = torch.tanh((gather(a_i, ii) * gather(V_query, pair_q)).sum(-1)) / tau  # (P,) item -> query
        L_q = info_nce_shared(a_q, gather(V_item, neg_items), tau, pos_q, iq, item_rows[pair_i], item_rows[neg_items])
        L_i = info_nce_shared(a_i, gather(V_query, neg_queries), tau, pos_i, ii, pair_q, neg_queries)
        return 0.5 * (L_q + L_i)

