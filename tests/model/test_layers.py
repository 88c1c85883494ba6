"""Small shared pieces of the models (model.layers)."""
import pytest
import torch
import torch.nn.functional as F

from model.layers import sampled_bce


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
