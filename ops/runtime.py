"""Process-wide glibc allocator policies, one per kind of process. No maths changes; no-op
where the C library is not glibc.

- A trainer (`keep_freed_memory`): glibc hands large freed blocks (tensors above its mmap
  threshold) back to the kernel and page-faults fresh ones in on the next step. A UniSAR step
  allocates and frees gigabytes of activations, and in a VM a page fault is microseconds: on
  the 2-core benchmark machine this was a third of every training step. Serving every block
  from the heap and keeping freed memory for reuse removes that; the resident size then
  stays at its peak instead of shrinking between steps.
- A stream worker (`return_large_blocks`): the opposite trade. By default glibc raises its
  mmap threshold to the largest block freed so far (up to 32 MiB), after which RocksDB
  memtable arena blocks and Kafka fetch buffers come from the heap and leave holes it cannot
  give back: measured, the worker's RSS crept by about 30 MB per million new users with
  RocksDB's own usage flat. A fixed threshold keeps large blocks on mmap, returned whole.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4


def _mallopt(*settings: tuple[int, int]) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in settings)


def keep_freed_memory() -> bool:
    """Call once at start-up of a training or evaluation process. True if applied."""
    return _mallopt((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 256 << 20))


def return_large_blocks(threshold: int = 256 << 10) -> bool:
    """Call once at start-up of a stream worker: blocks of `threshold` bytes and more are
    mmapped and returned whole. An explicit MALLOC_MMAP_THRESHOLD_ in the environment wins."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return _mallopt((_M_MMAP_THRESHOLD, threshold))
