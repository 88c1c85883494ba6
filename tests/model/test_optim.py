import pytest
import torch

from model import native, optim
from model.optim import TableAdam


def sparse_grad(rows, values, shape):
    return torch.sparse_coo_tensor(rows.unsqueeze(0), values, shape, check_invariants=False)


def lazy_adam_reference(w, grads, lr, betas, eps, l2):
    """Adam with L2 on the rows each step touches, moments moving only there, in float64."""
    w, m, v = w.double().clone(), torch.zeros_like(w, dtype=torch.double), torch.zeros_like(w, dtype=torch.double)
    for t, (rows, g) in enumerate(grads, 1):
        g = g.double() + l2 * w[rows]
        m[rows] = betas[0] * m[rows] + (1 - betas[0]) * g
        v[rows] = betas[1] * v[rows] + (1 - betas[1]) * g * g
        step_size = lr * (1 - betas[1] ** t) ** 0.5 / (1 - betas[0] ** t)
        w[rows] -= step_size * m[rows] / (v[rows].sqrt() + eps)
    return w


@pytest.fixture(params=["torch", "native"])
def path(request, monkeypatch):
    if request.param == "torch":
        monkeypatch.setattr(optim, "_native", lambda *args: False)
    elif native.kernel("sparse_adam", "sparse_adam_rows") is None:
        pytest.skip("no native kernel here")
    return request.param


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_table_adam_is_lazy_adam_with_l2_on_the_touched_rows(path, l2):
    """Three steps touching overlapping rows (one row twice in a step: summed), against
    the float64 reference; untouched rows do not move at all."""
    torch.manual_seed(0)
    w0 = torch.randn(50, 8)
    table = torch.nn.Parameter(w0.clone())
    opt = TableAdam([table], lr=0.01, weight_decay=l2)
    steps = [torch.tensor([1, 4, 9, 4]), torch.tensor([4, 20, 33]), torch.tensor([1, 2, 3, 49])]
    grads = []
    for rows in steps:
        values = torch.randn(len(rows), 8)
        table.grad = sparse_grad(rows, values, table.shape)
        opt.step()
        summed = torch.zeros(50, 8).index_add_(0, rows, values)
        unique = torch.unique(rows)
        grads.append((unique, summed[unique]))
    expected = lazy_adam_reference(w0, grads, 0.01, (0.9, 0.999), 1e-8, l2)
    torch.testing.assert_close(table.detach().double(), expected, rtol=1e-5, atol=1e-6)
    untouched = [r for r in range(50) if r not in {1, 2, 3, 4, 9, 20, 33, 49}]
    assert torch.equal(table.detach()[untouched], w0[untouched])


def test_both_paths_agree_and_keep_sparse_adams_state_layout(monkeypatch):
    """The kernel and PyTorch's path give the same tables and moments; the state is
    SparseAdam's, so a checkpoint of either loads into the other."""
    if native.kernel("sparse_adam", "sparse_adam_rows") is None:
        pytest.skip("no native kernel here")
    torch.manual_seed(1)
    w0, rows, values = torch.randn(1000, 32), torch.randint(0, 1000, (300,)), torch.randn(300, 32)
    out = {}
    for which in ("native", "torch"):
        if which == "torch":
            monkeypatch.setattr(optim, "_native", lambda *args: False)
        table = torch.nn.Parameter(w0.clone())
        opt = TableAdam([table], lr=0.05, weight_decay=0.01)
        for _ in range(3):
            table.grad = sparse_grad(rows, values, table.shape)
            opt.step()
        out[which] = (table.detach(), opt.state[table]["exp_avg"], opt.state[table]["exp_avg_sq"])
        assert set(opt.state[table]) == {"step", "exp_avg", "exp_avg_sq"} and opt.state[table]["step"] == 3
    for a, b in zip(out["native"], out["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # FMA contraction moves the last bits

    table = torch.nn.Parameter(w0.clone())
    sparse = torch.optim.SparseAdam([table], lr=0.05)
    table.grad = sparse_grad(rows, values, table.shape)
    sparse.step()
    restored = TableAdam([table], lr=0.05, weight_decay=0.01)
    restored.load_state_dict(sparse.state_dict())  # an older checkpoint: no weight_decay in its groups
    table.grad = sparse_grad(rows, values, table.shape)
    restored.step()
    assert restored.state[table]["step"] == 2
