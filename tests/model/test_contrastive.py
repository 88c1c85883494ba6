import pytest
import torch
import torch.nn.functional as F

from model import contrastive, native
from model.contrastive import QueryItemRelevance, info_nce_shared


@pytest.fixture(params=["torch", "native"])
def chunk_path(request, monkeypatch):
    """Each fp32 test runs twice: through PyTorch's operators and through the C++ kernel
    (model/native), where this machine can build it. float64 always takes the PyTorch path."""
    if request.param == "torch":
        monkeypatch.setattr(contrastive, "native_usable", lambda *args: False)
    elif native.kernel("infonce", "infonce_chunk_fp32") is None:
        pytest.skip("no native kernel here (no C++ compiler, or UNISAR_NATIVE=0)")
    return request.param


def naive(a, b, tau, pos, anchor, pos_key=None, neg_key=None):
    """Per-pair cross-entropy; a negative equal to one of its anchor's positives is left out."""
    logits = torch.cat([pos.unsqueeze(1), torch.tanh(a[anchor] @ b.T) / tau], 1)
    if pos_key is not None:
        owned = torch.zeros(int(anchor.max()) + 1, len(b)).index_add_(
            0, anchor, (pos_key.unsqueeze(1) == neg_key.unsqueeze(0)).float()) > 0
        logits = logits.masked_fill(torch.cat([torch.zeros(len(pos), 1, dtype=torch.bool), owned[anchor]], 1),
                                    float("-inf"))
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long))


def no_keys(n_pairs, n_negatives):
    return torch.full((n_pairs,), -1), torch.arange(n_negatives)


def test_shared_negative_infonce_value_and_gradients():
    torch.manual_seed(0)
    a = torch.randn(600, 6, dtype=torch.double, requires_grad=True)  # more anchors than one chunk
    b = torch.randn(30, 6, dtype=torch.double, requires_grad=True)
    tau = torch.tensor(0.3, dtype=torch.double, requires_grad=True)
    anchor = torch.cat([torch.arange(600), torch.randint(0, 600, (400,))])  # anchors with several pairs
    pos_raw = torch.randn(1000, dtype=torch.double, requires_grad=True)
    got = info_nce_shared(a, b, tau, torch.tanh(pos_raw) / tau, anchor, *no_keys(1000, 30))
    expected = naive(a, b, tau, torch.tanh(pos_raw) / tau, anchor)
    torch.testing.assert_close(got, expected)
    grads = torch.autograd.grad(got, (a, b, tau, pos_raw))
    for g, e in zip(grads, torch.autograd.grad(expected, (a, b, tau, pos_raw))):
        torch.testing.assert_close(g, e)


def test_a_negative_equal_to_its_anchors_positive_is_left_out():
    """No false negatives: values and gradients match the per-pair formulation with those
    negatives removed, and differ from keeping them."""
    torch.manual_seed(2)
    a = torch.randn(50, 6, dtype=torch.double, requires_grad=True)
    b = torch.randn(20, 6, dtype=torch.double, requires_grad=True)
    tau = torch.tensor(0.3, dtype=torch.double, requires_grad=True)
    anchor = torch.cat([torch.arange(50), torch.randint(0, 50, (30,))])
    pos_raw = torch.randn(80, dtype=torch.double, requires_grad=True)
    pos_key = torch.randint(0, 25, (80,))  # what each positive is; negatives are keys 0..19
    neg_key = torch.arange(20)
    got = info_nce_shared(a, b, tau, torch.tanh(pos_raw) / tau, anchor, pos_key, neg_key)
    expected = naive(a, b, tau, torch.tanh(pos_raw) / tau, anchor, pos_key, neg_key)
    torch.testing.assert_close(got, expected)
    assert not torch.isclose(got, naive(a, b, tau, torch.tanh(pos_raw) / tau, anchor))
    for g, e in zip(torch.autograd.grad(got, (a, b, tau, pos_raw)), torch.autograd.grad(expected, (a, b, tau, pos_raw))):
        torch.testing.assert_close(g, e)


def test_relevance_loss_equals_the_per_pair_reference_formulation():
    """Deduplicated anchors give exactly the reference's per-pair InfoNCE (both directions),
    value and gradients, with the negatives equal to a positive left out."""
    torch.manual_seed(1)
    rel = QueryItemRelevance(8, 0.5).double()
    V_query = torch.randn(10, 8, dtype=torch.double, requires_grad=True)
    V_item = torch.randn(12, 8, dtype=torch.double, requires_grad=True)
    item_rows = torch.arange(12)
    pair_q = torch.tensor([1, 1, 2, 3, 3, 3, 9])  # repeated queries and items
    pair_i = torch.tensor([4, 5, 4, 6, 7, 4, 11])
    neg_items, neg_queries = torch.arange(12), torch.tensor([0, 2, 4, 6, 8])  # query 2 and items 4..7, 11 are positives

    def info_nce(anchors, pos, negs, left_out):
        logits = torch.cat([(anchors @ rel.W * pos).sum(1, keepdim=True), anchors @ rel.W @ negs.T], 1)
        logits = torch.tanh(logits) / rel.temperature
        return F.cross_entropy(logits.masked_fill(torch.cat([torch.zeros(len(anchors), 1, dtype=torch.bool),
                                                             left_out], 1), float("-inf")),
                               torch.zeros(len(anchors), dtype=torch.long))

    def owned(anchor_ids, positive_ids, negative_ids):  # (P, N): negative n is a positive of pair p's anchor
        same_anchor = anchor_ids.unsqueeze(1) == anchor_ids.unsqueeze(0)  # (P, P)
        is_positive = positive_ids.unsqueeze(1) == negative_ids.unsqueeze(0)  # (P, N)
        return (same_anchor.double() @ is_positive.double()) > 0

    q, i = V_query[pair_q], V_item[pair_i]
    expected = 0.5 * (info_nce(q, i, V_item[neg_items], owned(pair_q, pair_i, neg_items))
                      + info_nce(i, q, V_query[neg_queries], owned(pair_i, pair_q, neg_queries)))
    got = rel(V_query, V_item, pair_q, pair_i, neg_items, neg_queries, item_rows)
    torch.testing.assert_close(got, expected)
    inputs = (V_query, V_item, rel.W, rel.temperature)
    for g, e in zip(torch.autograd.grad(got, inputs), torch.autograd.grad(expected, inputs)):
        torch.testing.assert_close(g, e)


def test_a_temperature_that_falls_below_the_floor_is_read_at_the_floor(chunk_path):
    """The learnable temperatures can fall through zero (L_Rel's did on MovieLens: inf, training
    dead); both losses read them at MIN_TEMPERATURE or above, finite whatever the parameter."""
    from model.contrastive import MIN_TEMPERATURE, TransitionAlignment

    torch.manual_seed(3)
    V_query, V_item = torch.randn(10, 8), torch.randn(12, 8)
    args = (V_query, V_item, torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6]), torch.arange(12),
            torch.tensor([0, 2, 4, 6, 8]), torch.arange(12))
    rel, align = QueryItemRelevance(8, 0.5), TransitionAlignment(8, 0.1)
    H_a, H_b, mask = torch.randn(6, 5, 8), torch.randn(6, 5, 8), torch.ones(6, 5, dtype=torch.bool)
    losses = {}
    for value in (MIN_TEMPERATURE, 1e-4, -1e-3):
        with torch.no_grad():
            rel.temperature.fill_(value)
            align.temperature.fill_(value)
        losses[value] = (rel(*args), align(H_a, H_b, mask))
        assert all(torch.isfinite(loss) for loss in losses[value]), (value, losses[value])
    for value in (1e-4, -1e-3):
        torch.testing.assert_close(losses[value], losses[MIN_TEMPERATURE])
    with torch.no_grad():  # above the floor the temperature is what it says
        rel.temperature.fill_(0.5)
    assert not torch.isclose(rel(*args), losses[MIN_TEMPERATURE][0])


def test_under_bf16_autocast_only_the_products_are_bf16(chunk_path):
    """The loss and its gradients come back in fp32 and stay close to the fp32 ones: the
    products are rounded, the log-sum-exp is not."""
    torch.manual_seed(0)
    a = torch.randn(300, 16, requires_grad=True)
    b = torch.randn(64, 16, requires_grad=True)
    tau = torch.tensor(0.2, requires_grad=True)
    anchor = torch.cat([torch.arange(300), torch.randint(0, 300, (200,))])
    pos_raw = torch.randn(500, requires_grad=True)

    def loss_and_grads():
        loss = info_nce_shared(a, b, tau, torch.tanh(pos_raw) / tau, anchor, *no_keys(500, 64))
        return loss, torch.autograd.grad(loss, (a, b, tau, pos_raw))

    fp32, fp32_grads = loss_and_grads()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16, bf16_grads = loss_and_grads()
    assert bf16.dtype == torch.float32 and all(g.dtype == torch.float32 for g in bf16_grads)
    assert bf16 != fp32  # the products were rounded: the switch is live
    torch.testing.assert_close(bf16, fp32, rtol=1e-2, atol=1e-2)
    for g, e in zip(bf16_grads, fp32_grads):
        assert (g - e).norm() <= 0.05 * e.norm()


def test_alignment_loss_equals_nt_xent_over_the_batch():
    """L_Align through the shared-negative InfoNCE is NT-Xent over the 2n pooled rows (the
    paper's form, as the reference computes it), value and gradients, empty rows left out."""
    from model.contrastive import TransitionAlignment

    torch.manual_seed(4)
    align = TransitionAlignment(8, 0.2).double()
    H_a = torch.randn(700, 5, 8, dtype=torch.double, requires_grad=True)  # 2n rows: more than one chunk
    H_b = torch.randn(700, 5, 8, dtype=torch.double, requires_grad=True)
    mask = torch.rand(700, 5) > 0.3
    mask[:3] = False  # empty histories take no part

    def nt_xent():
        valid = mask.any(1)
        w = (mask[valid] / mask[valid].sum(1, keepdim=True)).unsqueeze(-1)
        z = torch.cat([(H_a[valid] * w).sum(1), (H_b[valid] * w).sum(1)])
        n = int(valid.sum())
        sim = torch.tanh(z @ align.W @ z.T) / align.temperature
        sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        return F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))

    got, expected = align(H_a, H_b, mask), nt_xent()
    torch.testing.assert_close(got, expected)
    inputs = (H_a, H_b, align.W, align.temperature)
    for g, e in zip(torch.autograd.grad(got, inputs), torch.autograd.grad(expected, inputs)):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("left_out_as", ["a positive", "the anchor itself"])
def test_a_left_out_negative_far_above_the_rest_does_not_underflow_the_loss(left_out_as, chunk_path):
    """At the temperature floor a left-out negative (an anchor's similarity to itself, or a
    negative equal to its positive) can sit 200 above every kept logit: exp(-200) is 0 in
    fp32. The loss must still be the exact one."""
    from model.contrastive import MIN_TEMPERATURE

    n = 40
    a = 10.0 * torch.eye(n)  # anchor p . negative j = 10 b[j, p]
    b = torch.full((n, n), -10.0)  # a kept negative: tanh(-100) = -1
    even = torch.arange(0, n, 2)
    b[even, even] = 10.0  # the left-out negative of an even anchor: tanh(100) = 1
    tau = torch.tensor(MIN_TEMPERATURE)
    anchor, keys = torch.arange(n), torch.arange(n)
    pos = torch.full((n,), -0.5) / tau
    if left_out_as == "a positive":
        got = info_nce_shared(a, b, tau, pos, anchor, keys, keys)
    else:
        got = info_nce_shared(a, b, tau, pos, anchor, torch.full((n,), -1), keys, anchor_key=keys)
    # either way the left-out negatives are the diagonal: the per-pair reference in float64
    expected = naive(a.double(), b.double(), tau.double(), pos.double(), anchor, keys, keys)
    torch.testing.assert_close(got.double(), expected)


@pytest.mark.parametrize("products", [torch.float32, torch.bfloat16])
def test_the_native_kernel_gives_the_pytorch_paths_loss_and_gradients(products, monkeypatch):
    """The C++ chunk against the PyTorch chunk on the same fp32 inputs: several chunks,
    anchors with several pairs, negatives left out as positives and as the anchor itself;
    and both against the per-pair reference in float64."""
    if native.kernel("infonce", "infonce_chunk_fp32") is None:
        pytest.skip("no native kernel here (no C++ compiler, or UNISAR_NATIVE=0)")
    torch.manual_seed(5)
    U, N, P = 2500, 300, 4000  # three chunks of 1,024 anchors
    a, b = torch.randn(U, 16) * 0.5, torch.randn(N, 16) * 0.5
    tau = torch.tensor(0.2)
    anchor = torch.cat([torch.arange(U), torch.randint(0, U, (P - U,))])
    pos_raw = torch.randn(P)
    pos_key, neg_key = torch.randint(0, 600, (P,)), torch.randint(0, 600, (N,))  # some repeat: left out
    anchor_key = torch.randint(0, 3000, (U,))

    def run(native_path: bool):
        monkeypatch.setattr(contrastive, "native_usable", lambda *args: native_path)
        x = [t.clone().requires_grad_() for t in (a, b, tau, pos_raw)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=products == torch.bfloat16):
            loss = info_nce_shared(x[0], x[1], x[2], torch.tanh(x[3]) / x[2], anchor, pos_key, neg_key, anchor_key)
        return loss, torch.autograd.grad(loss, x)

    (got, got_grads), (ref, ref_grads) = run(True), run(False)
    tol = {} if products == torch.float32 else dict(rtol=1e-3, atol=1e-4)  # bf16: rounding order of g_z
    torch.testing.assert_close(got, ref, **tol)
    for g, e in zip(got_grads, ref_grads):
        torch.testing.assert_close(g, e, **(tol or dict(rtol=1e-4, atol=1e-6)))
    if products == torch.float32:  # the float64 reference, per pair, with both kinds of left-out
        x = [t.double().requires_grad_() for t in (a, b, tau, pos_raw)]
        keys = torch.cat([pos_key, anchor_key[anchor]])  # a pair's own anchor key leaves that negative out too
        pairs = torch.cat([anchor, anchor])
        owned = torch.zeros(U, N).index_add_(0, pairs, (keys.unsqueeze(1) == neg_key.unsqueeze(0)).float()) > 0
        logits = torch.cat([(torch.tanh(x[3]) / x[2]).unsqueeze(1), torch.tanh(x[0][anchor] @ x[1].T) / x[2]], 1)
        logits = logits.masked_fill(torch.cat([torch.zeros(P, 1, dtype=torch.bool), owned[anchor]], 1), float("-inf"))
        expected = F.cross_entropy(logits, torch.zeros(P, dtype=torch.long))
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
        for g, e in zip(got_grads, torch.autograd.grad(expected, x)):
            torch.testing.assert_close(g.double(), e, rtol=1e-3, atol=1e-6)
