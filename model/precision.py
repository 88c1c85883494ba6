"""Numeric precision of the forward pass, chosen by the hardware.

bf16 autocast runs the matrix products in bfloat16 where the device computes it natively
(a CUDA device with bf16, or a CPU with AVX512-BF16 or AMX-BF16); elsewhere bf16 is emulated
and slower than fp32. Weights, optimiser state, losses and metrics stay fp32: autocast only
changes the dtype of the products, and the models compute their losses on logits cast back
to fp32 (model.layers.sampled_bce and the models' own losses)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from model.cpu import cpu_info

PRECISIONS = ("auto", "bf16", "fp32")


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    flags = cpu_info("flags", cpuinfo).split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, device: torch.device) -> bool:
    """`precision` auto: bf16 on a CUDA device with bf16 and on CPUs with bf16 instructions,
    fp32 otherwise; bf16 and fp32 force it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def name(bf16: bool) -> str:
    """The precision a forward pass runs in, as logs and reports say it: bf16 or fp32."""
    return "bf16" if bf16 else "fp32"


def autocast(bf16: bool, device: torch.device):
    """The forward pass's context: bf16 autocast, or nothing (fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def full(x: torch.Tensor) -> torch.Tensor:
    """`x` in at least fp32 (a bf16 or fp16 tensor cast up; fp32 and fp64 as they are): what
    losses compute in."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
