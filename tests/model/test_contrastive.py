import torch
import torch.nn.functional as F

from model.contrastive import QueryItemRelevance, info_nce_shared


def naive(a, b, tau, pos, anchor):
    logits = torch.cat([pos.unsqueeze(1), torch.tanh(a[anchor] @ b.T) / tau], 1)
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long))


def test_shared_negative_infonce_value_and_gradients():
    torch.manual_seed(0)
    a = torch.randn(600, 6, dtype=torch.double, requires_grad=True)  # more anchors than one chunk
    b = torch.randn(30, 6, dtype=torch.double, requires_grad=True)
    tau = torch.tensor(0.3, dtype=torch.double, requires_grad=True)
    anchor = torch.cat([torch.arange(600), torch.randint(0, 600, (400,))])  # anchors with several pairs
    pos_raw = torch.randn(1000, dtype=torch.double, requires_grad=True)
    got = info_nce_shared(a, b, tau, torch.tanh(pos_raw) / tau, anchor)
    expected = naive(a, b, tau, torch.tanh(pos_raw) / tau, anchor)
    torch.testing.assert_close(got, expected)
    grads = torch.autograd.grad(got, (a, b, tau, pos_raw))
    for g, e in zip(grads, torch.autograd.grad(expected, (a, b, tau, pos_raw))):
        torch.testing.assert_close(g, e)


def test_relevance_loss_equals_the_per_pair_reference_formulation():
    """Deduplicated anchors give exactly the reference's per-pair InfoNCE (both directions),
    value and gradients."""
    torch.manual_seed(1)
    rel = QueryItemRelevance(8, 0.5).double()
    V_query = torch.randn(10, 8, dtype=torch.double, requires_grad=True)
    V_item = torch.randn(12, 8, dtype=torch.double, requires_grad=True)
    pair_q = torch.tensor([1, 1, 2, 3, 3, 3, 9])  # repeated queries and items
    pair_i = torch.tensor([4, 5, 4, 6, 7, 4, 11])
    neg_items, neg_queries = torch.arange(12), torch.tensor([0, 2, 4, 6, 8])

    def info_nce(x, pos, negs):
        logits = torch.cat([(x @ rel.W * pos).sum(1, keepdim=True), x @ rel.W @ negs.T], 1)
        return F.cross_entropy(torch.tanh(logits) / rel.temperature, torch.zeros(len(x), dtype=torch.long))

    q, i = V_query[pair_q], V_item[pair_i]
    expected = 0.5 * (info_nce(q, i, V_item[neg_items]) + info_nce(i, q, V_query[neg_queries]))
    got = rel(V_query, V_item, pair_q, pair_i, neg_items, neg_queries)
    torch.testing.assert_close(got, expected)
    inputs = (V_query, V_item, rel.W, rel.temperature)
    for g, e in zip(torch.autograd.grad(got, inputs), torch.autograd.grad(expected, inputs)):
        torch.testing.assert_close(g, e)
