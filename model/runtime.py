"""Process settings that make CPU training fast without changing any maths.

glibc hands large freed blocks (tensors above its mmap threshold) back to the kernel and
page-faults fresh ones in on the next step. A UniSAR step allocates and frees gigabytes of
activations, and in a VM a page fault is microseconds: on the 2-core benchmark machine this
was a third of every training step. `keep_freed_memory()` makes glibc serve every block
from its heap and keep freed memory for reuse. The process's resident size then stays at
its peak instead of shrinking between steps. No-op where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """Call once at start-up of a training or evaluation process. True if applied."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(
        mallopt(option, value) == 1
        for option, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 256 << 20))
    )
