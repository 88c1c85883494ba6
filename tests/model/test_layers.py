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
