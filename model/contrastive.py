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


class _SharedNegativeInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, tau, pos, anchor, pos_key, neg_key, anchor_key, products):
        # a (U, d) anchors, b (N, d) negatives, tau (), pos (P,) positive logits, anchor (P,) in [0, U);
        # pos_key (P,) and neg_key (N,): what each pair's positive and each negative is; a
        # negative equal to one of its anchor's positives is no negative and is left out;
        # anchor_key (U,) or None: what each anchor itself is, a negative equal to it is left
        # out too; products: the dtype of the three matrix products (the rest in a's dtype)
        P, inv_tau = len(pos), 1.0 / tau
        order = torch.argsort(anchor)
        starts = torch.zeros(len(a) + 1, dtype=torch.long, device=a.device)
        starts[1:] = torch.cumsum(torch.bincount(anchor, minlength=len(a)), 0)
        b_p, a_p = b.to(products), a.to(products)
        b2 = 2 * b_p  # tanh(z) = 2 sigmoid(2z) - 1: fold the 2 into the matmul (exact in any dtype)
        lse = a.new_empty(len(a))
        grad_a, grad_b = torch.empty_like(a), torch.zeros_like(b)
        grad_pos, loss = torch.empty_like(pos), a.new_zeros(())
        dot_gs_sig, coef_sum = a.new_zeros(()), a.new_zeros(())  # for the temperature's gradient
        step = _chunk(a)
        for s in range(0, len(a), step):
            c = min(step, len(a) - s)  # this chunk's anchors: rows s .. s + c
            pairs = order[starts[s] : starts[s + c]]  # this chunk's pairs
            u = anchor[pairs] - s
            same = (pos_key[pairs].unsqueeze(1) == neg_key.unsqueeze(0)).nonzero()  # (hits, 2): pair, negative
            out = (u[same[:, 0]], same[:, 1])  # (anchor, negative) entries left out
            if anchor_key is not None:
                own = (anchor_key[s : s + c].unsqueeze(1) == neg_key.unsqueeze(0)).nonzero()
                out = (torch.cat([out[0], own[:, 0]]), torch.cat([out[1], own[:, 1]]))
            sig = torch.sigmoid_(full(a_p[s : s + c] @ b2.T))  # (c, N); tanh = 2 sig - 1
            # a left-out entry reads as tanh -1 so it cannot set the row's maximum: were it far
            # above the rest (an anchor's similarity to itself, at a low temperature), every
            # kept exp would underflow to 0 and the log-sum-exp with them
            sig[out] = 0.0
            top = sig.amax(1, keepdim=True)
            e = torch.add(top * (-2 * inv_tau), sig, alpha=2 * inv_tau).exp_()  # exp((tanh - max tanh) / tau)
            e[out] = 0.0
            # the pairs' loss, and dL/d(negatives' lse) summed per anchor
            total = e.sum(1).clamp_min_(torch.finfo(e.dtype).tiny)
            lse[s : s + c] = (2 * top.squeeze(1) - 1) * inv_tau + total.log()
            gap = lse[s + u] - pos[pairs]
            loss = loss + (torch.logaddexp(pos[pairs], lse[s + u]) - pos[pairs]).sum()
            grad_pos[pairs] = -torch.sigmoid(gap) / P  # d/dpos = sigmoid(pos - lse) - 1
            coef = a.new_zeros(c).index_add_(0, u, torch.sigmoid(gap) / P)  # d/dlse, per anchor
            coef_sum = coef_sum + coef.sum()
            g_s = e.mul_((coef / total).unsqueeze(1))  # dL/d(tanh / tau): softmax times coef
            dot_gs_sig = dot_gs_sig + torch.dot(g_s.view(-1), sig.view(-1))
            g_z = sig.addcmul_(sig, sig, value=-1).mul_(g_s).to(products)  # (sig - sig^2) dL/ds; times 4 / tau below
            grad_a[s : s + c] = g_z @ b_p
            grad_b += g_z.T @ a_p[s : s + c]
        scale = 4 * inv_tau
        # through the negatives: dL/dtau = sum dL/ds * (-tanh / tau^2), tanh = 2 sig - 1, and
        # dL/ds sums to coef over each row
        grad_tau = -(2 * dot_gs_sig - coef_sum) * inv_tau**2
        ctx.save_for_backward(grad_a * scale, grad_b * scale, grad_tau, grad_pos)
        return loss / P

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

