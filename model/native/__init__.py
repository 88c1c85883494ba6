"""Kernels in C++ for the few places where PyTorch's eager operators cost several times the
arithmetic: built once per machine with the system's C++ compiler, loaded with ctypes.

Optional by design. Where there is no compiler, the build fails, or UNISAR_NATIVE=0 is set,
`kernel()` returns None and the caller runs its PyTorch path, which computes the same maths
(and is what the kernel is tested against). A build is keyed by the source, the compiler
command and the CPU's flags (it is compiled with -march=native), cached under
$XDG_CACHE_HOME/unisar-stream (default ~/.cache), and takes about a second.

No torch headers, no pybind: a plain C ABI over raw pointers, so the build needs only g++
and the kernel releases the GIL (ctypes does) and runs on OpenMP threads, in the runtime torch
has loaded before it (libgomp.so.1: one runtime, one thread pool).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from model.cpu import cpu_info

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
# compiled with -ffast-math (vectorised exp through glibc's libmvec) but linked without it:
# GCC before 13 links crtfastmath.o into a -ffast-math shared library, which turns on
# flush-to-zero for the whole process the moment it is loaded
COMPILE = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC", "-std=c++17", "-c"]
LINK = ["-shared", "-fopenmp"]
_P, _I64, _U64, _U32, _U16, _F32 = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint32,
                                     ctypes.c_uint16, ctypes.c_float)
SIGNATURES = {  # symbol -> argument types (all return void)
    "infonce_chunk_bf16": [_P, _I64, _I64, _P, _P, _P, _P, _F32, _F32, _P, _P, _P, _P, _P, _P],
    "infonce_chunk_fp32": [_P, _I64, _I64, _P, _P, _P, _P, _F32, _F32, _P, _P, _P, _P, _P, _P],
    "dropout_keep_16": [_P, _I64, _U64, _U32, _U16],
    "dropout_keep_fp32": [_P, _I64, _U64, _U32, _F32],
    "sparse_adam_rows": [_P, _P, _P, _I64, _P, _I64, _P, _F32, _F32, _F32, _F32, _F32],
}


def enabled() -> bool:
    return os.environ.get("UNISAR_NATIVE", "1") != "0"


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "unisar-stream" / "native"


def _build(source: Path) -> Path:
    """The shared library of `source`, compiled unless the cache holds it (written to a
    temporary name and renamed: processes building at once do not see half a file)."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise OSError("no C++ compiler (g++ or c++) on PATH")
    key = hashlib.sha256("\0".join([source.read_text(), compiler, *COMPILE, *LINK, cpu_info("flags")]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        obj, out = Path(tmp) / "kernel.o", Path(tmp) / target.name
        for command in ([compiler, *COMPILE, str(source), "-o", str(obj)], [compiler, *LINK, str(obj), "-o", str(out)]):
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                lines = done.stderr.strip().splitlines()
                raise OSError(f"{compiler} failed: {lines[-1] if lines else f'exit {done.returncode}'}")
        os.replace(out, target)
    log.info("built %s (%s)", target.name, " ".join(COMPILE))
    return target


@functools.cache
def _library(name: str) -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(str(_build(HERE / f"{name}.cpp")))
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("native %s kernels unavailable (%s): using the PyTorch path", name, e)
        return None
    for symbol, argtypes in SIGNATURES.items():
        if hasattr(lib, symbol):
            getattr(lib, symbol).argtypes, getattr(lib, symbol).restype = argtypes, None
    return lib


def kernel(library: str, symbol: str):
    """The C function `symbol` of `library` (model/native/<library>.cpp), or None where
    native kernels are off or cannot be built here."""
    if not enabled():
        return None
    lib = _library(library)
    return getattr(lib, symbol) if lib is not None else None
