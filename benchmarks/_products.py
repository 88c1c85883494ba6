"""The matrix products of a call, recorded and replayed alone: a ceiling at their real shapes.

A ceiling from FLOPs over the best product rate assumes every product runs at that rate. At
d = 64 they do not: on a 2-core EPYC a (512, 2, 30, 32) attention runs at about 25 GFLOP/s
in bf16, a (1024, 1024) x (1024, 64) product at about 240. Replaying the products a call
ran (forward and backward: mm, addmm, bmm, baddbmm, scaled-dot-product attention), on fresh
tensors of the same shapes, strides and dtypes and with nothing between them, times what
this maths costs with these kernels on this device and nothing else. No implementation of
the same maths through the same kernels runs the call faster.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

PRODUCTS = ("mm", "addmm", "bmm", "baddbmm")


def is_product(func) -> bool:
    name = func.overloadpacket.__name__
    return name in PRODUCTS or name.startswith("_scaled_dot_product")


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device

    def make(self) -> torch.Tensor:
        t = torch.empty_strided(self.shape, self.stride, dtype=self.dtype, device=self.device)
        return t.normal_() if self.dtype.is_floating_point else t.zero_()


@dataclass(frozen=True)
class Product:
    func: Any  # an aten OpOverload
    args: tuple  # TensorSpec where the call had a tensor, the value itself elsewhere
    kwargs: dict

    def prepare(self) -> tuple[Callable, tuple, dict]:
        make = lambda a: a.make() if isinstance(a, TensorSpec) else a  # noqa: E731
        return self.func, tuple(make(a) for a in self.args), {k: make(v) for k, v in self.kwargs.items()}


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.products: list[Product] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if is_product(func):
            spec = lambda a: TensorSpec(tuple(a.shape), a.stride(), a.dtype, a.device) \
                if isinstance(a, torch.Tensor) else a  # noqa: E731
            self.products.append(Product(func, tuple(spec(a) for a in args), {k: spec(v) for k, v in kwargs.items()}))
        return func(*args, **kwargs)


def record_products(call: Callable[[], Any]) -> list[Product]:
    """The matrix products `call()` runs, forward and backward, in order."""
    recorder = _Recorder()
    with recorder:
        call()
    return recorder.products


def replay_seconds(products: list[Product], sync: Callable[[], None], repeats: int = 3) -> float:
    """The fastest of `repeats` runs of the products back to back, each on its own tensors
    (made once, before the timing), after one untimed run."""
    prepared = [p.prepare() for p in products]
    best = float("inf")
    for i in range(repeats + 1):
        sync()
        start = time.perf_counter()
        for func, args, kwargs in prepared:
            func(*args, **kwargs)
        sync()
        if i:
            best = min(best, time.perf_counter() - start)
    return best
