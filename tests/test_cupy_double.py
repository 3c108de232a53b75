"""The CuPy test double holds code to CuPy's rules and counts what would
be CUDA work; and, on it, what gpunn's CuPy path must not do: read the
device in im2col, crash at the first step when a CUDA library is
missing, or open a CUDA context just to count GPUs."""

import os
import subprocess
import sys

import numpy
import pytest

import gpunn
from gpunn.compute import backend, kernels
from tests import cupy_double


@pytest.fixture
def cp(on_cupy_double):
    return on_cupy_double


def test_its_names_are_cupys(cp):
    assert cupy_double.names_missing_from_cupy() == []
    real = cupy_double.real_cupy()
    # NumPy has these, CuPy does not: the double has not either.
    for name in ("fromregex", "insert", "geomspace", "nanquantile", "char"):
        assert hasattr(numpy, name) and not hasattr(real, name)
        assert not hasattr(cp, name)


def test_it_refuses_numpy_arrays_and_implicit_conversion(cp):
    a = cp.asarray(numpy.ones(3, dtype=numpy.float32))
    assert not isinstance(a, numpy.ndarray)
    for bad in (lambda: a + numpy.ones(3), lambda: numpy.ones(3) + a,
                lambda: numpy.asarray(a), lambda: cp.maximum(a, numpy.ones(3)),
                lambda: cp.concatenate([a, numpy.ones(3)])):
        with pytest.raises(TypeError):
            bad()
    assert isinstance(a.sum(), cp.ndarray) and a.sum().ndim == 0
    assert isinstance(a.get(), numpy.ndarray)


def test_it_checks_keywords_against_cupys_signatures(cp):
    a = cp.zeros((2, 3), dtype=numpy.float32)
    a.sum(axis=1, keepdims=True)
    with pytest.raises(TypeError, match="unexpected keyword"):
        a.sum(axs=1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        cp.isfinite(a, where=True)  # NumPy's ufuncs take where=, CuPy's not
    with pytest.raises(TypeError):
        cp.take_along_axis(a, cp.zeros((2, 1), dtype=numpy.int64), axis=1,
                           mode="clip")


def test_it_counts_launches_syncs_copies_and_allocations(cp):
    with cupy_double.counting() as counts:
        a = cp.asarray(numpy.arange(6, dtype=numpy.float32))  # upload
        b = a * 2 + 1                                         # 2 launches
        view = b[1:4].reshape(3, 1)                           # views: nothing
        total = float(view.sum())                             # launch, sync
        b[a > 2]                                              # mask: sync
    assert total == 3 + 5 + 7
    assert counts.totals() == {"launches": 6, "syncs": 2, "uploads": 1,
                               "downloads": 2, "allocations": 6}
    assert "test_cupy_double.py" in counts.report("syncs")


def test_a_product_of_a_strided_operand_counts_its_copy(cp):
    w = cp.asarray(numpy.ones((4, 3, 5, 5), dtype=numpy.float32))
    x = cp.asarray(numpy.ones((2, 4), dtype=numpy.float32))
    with cupy_double.counting() as counts:
        x @ w[:, :, 0, 0]  # neither C- nor F-contiguous: CuPy copies it
        x @ w.reshape(4, -1)
    assert counts.total("launches") == 3


def test_cupys_sliding_window_view_reads_the_device(cp):
    """Run from CuPy's source on the double: two syncs and an upload to
    check its arguments; the reason im2col does not use it."""
    x = cp.zeros((2, 6, 6, 3), dtype=numpy.float32)
    with cupy_double.counting() as counts:
        cp.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))
    assert counts.total("syncs") == 2 and counts.total("uploads") == 1


CUPY_FIRST = """\
import sys, numpy, cupy  # as a real-CuPy test does before the double is built
from tests import cupy_double
cp = cupy_double.module()
assert cupy_double.real_cupy() is cupy is sys.modules["cupy"]
assert cp.lib.stride_tricks.as_strided.__globals__["_cupy"] is cp
assert cp.take_along_axis.__globals__["cupy"] is cp
a = cp.arange(6, dtype=numpy.float32)
assert cp.lib.stride_tricks.as_strided(a, (2, 3), (8, 4)).shape == (2, 3)
"""


def test_cupys_own_functions_run_on_it_after_real_cupy_was_imported(cp):
    """CuPy's source functions are rebound to the double, in this
    process and in one that imported real CuPy first (as ``-m gpu`` does:
    the real-CuPy variants run first), never to real CuPy."""
    assert cp.lib.stride_tricks.as_strided.__globals__["_cupy"] is cp
    assert cp.take_along_axis.__globals__["cupy"] is cp
    env = dict(os.environ, PYTHONPATH=cupy_double.REPO)  # not the hook
    child = subprocess.run([sys.executable, "-c", CUPY_FIRST], env=env,
                           cwd=cupy_double.REPO, capture_output=True,
                           text=True, timeout=300)
    assert child.returncode == 0, child.stderr


def test_im2col_makes_no_sync_and_one_launch(cp):
    """The patches are copied straight from (N, C, H, W) data."""
    gpunn.use("cupy", "float32")
    x = backend.asarray(numpy.random.default_rng(0).random((2, 3, 6, 5)))
    with cupy_double.counting() as counts:
        col = kernels.im2col(x, 3, 2)
    assert counts.totals() == {"launches": 1, "syncs": 0, "uploads": 0,
                               "downloads": 0, "allocations": 1}, \
        counts.report("launches")
    host = backend.to_numpy(x)
    assert col.shape == (2, 4, 4, 3, 2, 3)
    assert float(col[1, 2, 3, 1, 0, 2]) == host[1, 2, 2 + 1, 3 + 0]


def test_a_missing_cuda_library_is_a_backend_error_at_use(cp, monkeypatch):
    """As CuPy fails where cuRAND's library cannot be loaded."""
    def no_curand(seed=None):
        raise RuntimeError("CuPy failed to load libcurand.so.10: OSError: "
                           "libcurand.so.10: cannot open shared object file")
    monkeypatch.setattr(cp.random, "default_rng", no_curand)
    with pytest.raises(gpunn.BackendError, match="libcurand.*gpunn\\[cuda12\\]"):
        gpunn.use("cupy")
    assert gpunn.use("auto") == "numpy"


def test_a_missing_cublas_is_a_backend_error_at_use(cp, monkeypatch):
    def no_cublas(a, b, **kwargs):
        raise RuntimeError("CuPy failed to load libcublas.so.12")
    monkeypatch.setattr(cupy_double.ndarray, "__matmul__", no_cublas)
    with pytest.raises(gpunn.BackendError, match="libcublas"):
        gpunn.use("cupy")


def test_counting_gpus_opens_no_cuda_context_here(cp):
    """backend.gpu_count asks a child process (which gets the double
    through the tests' hook): this process launches nothing."""
    with cupy_double.counting() as counts:
        assert backend.gpu_count() == 1
    assert counts.totals() == dict.fromkeys(cupy_double.KINDS, 0)
    assert backend._cupy is None


def test_a_capture_records_and_a_graph_launch_replays(cp):
    """As CUDA: work queued while a stream captures does not run; each
    launch of the graph runs all of it, as one launch."""
    a = cp.zeros(3, dtype=numpy.float64)
    stream = cp.cuda.Stream(non_blocking=True)
    pool = cp.cuda.MemoryPool()
    with stream, cp.cuda.using_allocator(pool.malloc):
        stream.begin_capture()
        assert stream.is_capturing()
        a += 1
        b = a * 2  # a new array: its values come at each replay
        a[1:] += b[:2]
        graph = stream.end_capture()
    assert a.get().tolist() == [0, 0, 0]
    with cupy_double.counting() as counts:
        graph.launch()
    assert counts.totals()["launches"] == 1
    assert a.get().tolist() == [1, 3, 3] and b.get().tolist() == [2, 2, 2]
    graph.launch()
    assert a.get().tolist() == [2, 8, 12] and b.get().tolist() == [4, 8, 8]


@pytest.mark.parametrize("work, error", [
    (lambda cp, a: float(a.sum()), "capturing"),
    (lambda cp, a: a.get(), "capturing"),
    (lambda cp, a: cp.asarray(numpy.ones(3)), "capturing"),
    (lambda cp, a: cp.cuda.get_current_stream().synchronize(), "capturing"),
    (lambda cp, a: a @ a, "cuBLAS"),
    (lambda cp, a: cp.random.default_rng(0).random(3), "cuRAND"),
])
def test_a_capture_refuses_what_cuda_and_cupy_refuse(cp, work, error):
    a = cp.ones(3, dtype=numpy.float64)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream, cp.cuda.using_allocator(cp.cuda.MemoryPool().malloc):
        stream.begin_capture()
        try:
            with pytest.raises((RuntimeError, NotImplementedError), match=error):
                work(cp, a)
        finally:
            stream.end_capture()


def test_a_capture_refuses_memory_from_the_default_pool(cp):
    a = cp.ones(3, dtype=numpy.float64)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        with pytest.raises(RuntimeError, match="default memory pool"):
            a * 2
        stream.end_capture()
    with pytest.raises(RuntimeError, match="legacy"):
        cp.cuda.get_current_stream().begin_capture()
