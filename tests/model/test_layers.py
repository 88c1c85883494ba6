"""Small shared pieces of the models (model.layers)."""
import pytest
import torch
import torch.nn.functional as F

from model.layers import bag_mean, gather, sampled_bce


@pytest.mark.parametrize("n_negatives", [1, 4, 16, 99])
def test_sampled_bce_weighs_the_true_item_as_much_as_all_its_negatives(n_negatives):
    logits = torch.zeros(3, 1 + n_negatives, requires_grad=True)
    sampled_bce(logits).backward()
    grad = logits.grad
    # the push up on the true item equals the total push down on the negatives, whatever their number
    torch.testing.assert_close(-grad[:, 0], grad[:, 1:].sum(1))


def test_sampled_bce_is_plain_bce_with_one_negative():
    logits = torch.randn(5, 2)
    labels = torch.tensor([[1.0, 0.0]]).expand(5, 2)
    torch.testing.assert_close(sampled_bce(logits), F.binary_cross_entropy_with_logits(logits, labels))


def test_a_labelled_negative_in_column_0_is_pushed_down_like_the_sampled_ones():
    logits = torch.zeros(2, 5, requires_grad=True)
    sampled_bce(logits, torch.tensor([1.0, 0.0])).backward()
    assert logits.grad[0, 0] < 0 and logits.grad[1, 0] > 0  # a click rises, an exposure falls
    assert (logits.grad[:, 1:] > 0).all()


def test_bag_mean_is_the_mean_of_the_non_padding_rows_and_zero_for_an_empty_bag():
    torch.manual_seed(0)
    table = torch.randn(9, 4, requires_grad=True)
    index = torch.tensor([[[1, 2, 0], [0, 0, 0]], [[3, 3, 8], [5, 0, 0]]])  # (2, 2, 3) bags of 3 slots
    got = bag_mean(table, index)
    assert got.shape == (2, 2, 4)
    counts = (index != 0).sum(-1, keepdim=True).clamp_min(1)
    want = (gather(table, index) * (index != 0).unsqueeze(-1)).sum(-2) / counts
    assert torch.allclose(got, want)
    assert torch.equal(got[0, 1], torch.zeros(4))
    (g_got,) = torch.autograd.grad(got.square().sum(), table)
    (g_want,) = torch.autograd.grad(want.square().sum(), table)
    assert torch.allclose(g_got[1:], g_want[1:])  # the padding row takes no gradient
    assert torch.equal(g_got[0], torch.zeros(4))


from hypothesis import given, settings, strategies as st  # noqa: E402

from model import native  # noqa: E402
from model.layers import dropout, keep_bits, keep_multipliers  # noqa: E402


def _numpy_only(monkeypatch):
    monkeypatch.setattr(native, "kernel", lambda *args: None)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 5000), p=st.floats(0.0, 0.95), seed=st.integers(0, 2**62),
       dtype=st.sampled_from([torch.bfloat16, torch.float16, torch.float32]))
def test_the_native_dropout_mask_is_the_numpy_one_bit_for_bit(n, p, seed, dtype):
    """One random stream, two implementations: a machine without a compiler drops the same
    elements (and scales by the same rounded 1 / (1 - p))."""
    if native.kernel("dropout", "dropout_keep_fp32") is None:
        pytest.skip("no native kernel here")
    got = keep_multipliers(torch.Size([n]), p, seed, dtype)
    with pytest.MonkeyPatch.context() as m:
        _numpy_only(m)
        expected = keep_multipliers(torch.Size([n]), p, seed, dtype)
    assert got.dtype == expected.dtype == dtype and torch.equal(got, expected)


def test_keep_bits_are_splitmix64_words_cut_in_four():
    """Element 4w + k is bits 16k .. 16k + 15 of splitmix64 at counter w + 1 (checked against
    a scalar Python splitmix64)."""
    def splitmix(x):
        m = 2**64 - 1
        z = x & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    seed = 2**61 + 12345
    bits = keep_bits(seed, 10)
    for i in range(10):
        word = splitmix(seed + (i // 4 + 1) * 0x9E3779B97F4A7C15)
        assert int(bits[i]) == (word >> (16 * (i % 4))) & 0xFFFF


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_drops_p_of_the_elements_and_keeps_the_mean(dtype):
    torch.manual_seed(0)
    x = torch.ones(400, 1000, dtype=dtype)
    y = dropout(x, 0.1, True)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 0.1) < 5 * (0.1 * 0.9 / x.numel()) ** 0.5  # five standard errors
    assert set(torch.unique(y).tolist()) == {0.0, float(torch.tensor(1 / 0.9, dtype=dtype))}
    assert abs(float(y.float().mean()) - 1.0) < 0.01
    torch.manual_seed(0)
    assert torch.equal(dropout(x, 0.1, True), y)  # torch's seed fixes the mask
    assert not torch.equal(dropout(x, 0.1, True), y)
    assert dropout(x, 0.1, False) is x
