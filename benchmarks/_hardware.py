"""The hardware line every benchmark prints beside its figures: machines differ between runs."""
from __future__ import annotations

import os
from pathlib import Path

from model.cpu import cpu_info


def hardware_line() -> str:
    model, flags = cpu_info("model name") or "?", cpu_info("flags").split()
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags] or ["none"]
    mem = next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"hardware: {model}; {os.cpu_count()} CPUs; bf16 instructions: {', '.join(bf16)}; "
            f"{int(mem) / 2**20:.1f} GiB RAM; device: cpu; load average now {load}")
