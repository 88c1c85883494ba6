"""What the CPU says of itself in /proc/cpuinfo: the one reader of that file, without torch
(benchmarks print it beside figures that do not need torch)."""
from __future__ import annotations

from pathlib import Path


def cpu_info(field: str, cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The value of the first `field` line of /proc/cpuinfo ("flags", "model name"); "" where
    the file or the line is missing (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.split(":", 1)[0].strip() == field), "")
