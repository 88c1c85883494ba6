import logging
import shutil

import pytest

from model import native


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty build cache, and no library loaded yet in this process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    native._library.cache_clear()
    yield tmp_path
    native._library.cache_clear()


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler here")
def test_the_kernels_build_where_there_is_a_compiler(fresh):
    """With a compiler the kernel must build (a silent fall back would lose the speed), once:
    the second process finds it in the cache."""
    assert native.kernel("infonce", "infonce_chunk_bf16") is not None
    built = list(fresh.glob("unisar-stream/native/infonce-*.so"))
    assert len(built) == 1
    native._library.cache_clear()
    mtime = built[0].stat().st_mtime_ns
    assert native.kernel("infonce", "infonce_chunk_fp32") is not None
    assert built[0].stat().st_mtime_ns == mtime


def test_switched_off_there_is_no_kernel(fresh, monkeypatch):
    monkeypatch.setenv("UNISAR_NATIVE", "0")
    assert native.kernel("infonce", "infonce_chunk_fp32") is None


@pytest.mark.parametrize("compiler", ["false", "/nonexistent/g++"])
def test_a_failing_build_falls_back_with_one_warning(fresh, monkeypatch, caplog, compiler):
    """A compiler that fails or is missing: no kernel, one warning that says why, no exception."""
    monkeypatch.setenv("CXX", compiler)
    with caplog.at_level(logging.WARNING, logger="model.native"):
        assert native.kernel("infonce", "infonce_chunk_fp32") is None
        assert native.kernel("infonce", "infonce_chunk_bf16") is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "model.native"]
    assert len(warnings) == 1 and "using the PyTorch path" in warnings[0]


def test_loading_the_kernels_leaves_subnormal_numbers_alone(fresh):
    """A -ffast-math library can turn on flush-to-zero for the whole process when loaded
    (GCC before 13 links crtfastmath.o into it): every other float in the process would
    change. The kernels are compiled with it and linked without it."""
    import numpy as np

    native.kernel("infonce", "infonce_chunk_fp32")
    native.kernel("dropout", "dropout_keep_fp32")
    assert np.float32(1e-40) * np.float32(1.0) > 0
