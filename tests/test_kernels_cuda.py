"""The CUDA kernels of gpunn/compute/kernels.cu, proven without a GPU:

- NVRTC compiles their source for sm_80 and sm_90, in float and double
  (the ``nvidia-cuda-nvrtc-cu12`` wheel: no GPU or driver needed);
- on the CuPy test double their source runs on the CPU, thread by
  thread (tests/cuda_on_cpu.py), and each kernel equals the generic
  function it replaces in kernels.py, on small shapes with borders, on
  the book's shapes, with ties, in float32 and float64;
- training on the fused kernels equals training on the generic path,
  step for step, for every chapter-6 model, dropout included.
"""

import numpy
import pytest

import gpunn
from gpunn.compute import backend, kernels, kernels_cuda
from gpunn.activations import ACTIVATIONS
from gpunn.experiments import EXPERIMENTS
from tests import cupy_double

TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
# (conv output (N, F, OH, OW), poolsize): borders, non-square windows,
# the book's two conv layers at mini-batch 10
POOL_CASES = [((2, 3, 6, 4), (2, 2)), ((2, 2, 7, 5), (2, 2)),
              ((1, 3, 6, 9), (3, 2)), ((2, 1, 5, 7), (2, 3)),
              ((1, 2, 3, 3), (1, 1)), ((10, 20, 24, 24), (2, 2)),
              ((10, 40, 8, 8), (2, 2))]


def nvrtc_or_skip():
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
    except Exception as e:  # ImportError, or the library not found
        pytest.skip("NVRTC is not available ({}: {}); pip install "
                    "nvidia-cuda-nvrtc-cu12".format(type(e).__name__, e))
    return nvrtc


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nvrtc_compiles_every_kernel(arch, dtype):
    if cupy_double.real_cupy() is None:
        pytest.skip("cupy is not installed")
    nvrtc = nvrtc_or_skip()
    program = nvrtc.createProgram(kernels_cuda.SOURCE, "gpunn_kernels.cu", [], [])
    options = ["--gpu-architecture=" + arch, *kernels_cuda.options(dtype)]
    try:
        nvrtc.compileProgram(program, options)
    except nvrtc.NVRTCError:
        pytest.fail(nvrtc.getProgramLog(program))
    assert nvrtc.getCUBIN(program)
    for name in kernels_cuda.KERNELS:
        assert 'extern "C" __global__ void {}('.format(name) in kernels_cuda.SOURCE


def on_the_double():
    return backend.xp is cupy_double.module()


def both_paths(monkeypatch, f):
    """``f()`` on the fused kernels and on the generic path, as host
    arrays, and the launches the fused one made (None on a GPU: the
    double counts them)."""
    with cupy_double.counting() as counts:
        fast = [backend.to_numpy(r) for r in f()]
    launches = counts.total("launches") if on_the_double() else None
    monkeypatch.setattr(kernels, "FAST_CUDA", False)
    generic = [backend.to_numpy(r) for r in f()]
    monkeypatch.setattr(kernels, "FAST_CUDA", True)
    return fast, generic, launches


def assert_close(got, want, tolerance):
    """Equal to ``tolerance``, relative to each entry and to the largest
    (sums taken in another order differ by rounding of that size)."""
    numpy.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance *
                                  max(1.0, float(numpy.abs(want).max())))


def with_ties(rng, shape):
    """Values on a coarse grid: many windows hold their maximum twice."""
    return backend.asarray(rng.integers(-3, 4, size=shape) * 0.5)


@pytest.mark.parametrize("conv_shape, poolsize", POOL_CASES, ids=str)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("nabla_layout", ["nchw", "channels-last"])
@pytest.mark.gpu
def test_pool_bias_activation_and_its_backward_equal_the_generic_ones(
        on_cupy, monkeypatch, conv_shape, poolsize, activation, nabla_layout):
    """nabla_a as a fully connected layer above gives it (N, F, PH, PW),
    or as a conv layer does (a view of channels-last data)."""
    fn = ACTIVATIONS[activation]
    rng = numpy.random.default_rng(7)
    N, F, OH, OW = conv_shape
    # Channels-last data seen as (N, F, OH, OW), as conv2d returns it.
    conv = with_ties(rng, (N, OH, OW, F)).transpose(0, 3, 1, 2)
    b = backend.asarray(rng.normal(size=F))
    PH, PW = OH // poolsize[0], OW // poolsize[1]
    if nabla_layout == "nchw":
        nabla_a = backend.asarray(rng.normal(size=(N, F, PH, PW)))
    else:
        nabla_a = backend.asarray(rng.normal(size=(N, PH, PW, F))).transpose(
            0, 3, 1, 2)

    nabla_b = backend.xp.full(F, numpy.nan, dtype=on_cupy)

    def forward_backward():
        z, a, route = kernels.pool_bias_activation(conv, b, poolsize, fn)
        nabla_conv = kernels.pool_bias_activation_backward(
            nabla_a, z, a, route, conv.shape, poolsize, fn, nabla_b)
        return z, a, nabla_conv, nabla_b
    fast, generic, launches = both_paths(monkeypatch, forward_backward)
    for got, want in zip(fast, generic):
        assert got.shape == want.shape
        assert_close(got, want, TOLERANCE[on_cupy])
    assert launches in (None, 3)  # forward 1, backward 1, the bias sum


@pytest.mark.parametrize("m, n", [(1, 1), (10, 100), (64, 1000), (7, 3)])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.gpu
def test_fully_connected_bias_activation_and_delta_equal_the_generic_ones(
        on_cupy, monkeypatch, m, n, activation):
    fn = ACTIVATIONS[activation]
    rng = numpy.random.default_rng(m + n)
    product_host, b = rng.normal(size=(m, n)), backend.asarray(rng.normal(size=n))
    nabla_a = backend.asarray(rng.normal(size=(m, n)))

    nabla_b = backend.xp.full(n, numpy.nan, dtype=on_cupy)

    def forward_backward():
        z, a = kernels.bias_activation(backend.asarray(product_host), b, fn)
        delta = kernels.delta_bias_gradient(nabla_a, z, a, fn, nabla_b)
        return z, a, delta, nabla_b
    fast, generic, launches = both_paths(monkeypatch, forward_backward)
    for got, want in zip(fast, generic):
        assert got.shape == want.shape
        assert_close(got, want, TOLERANCE[on_cupy])
    assert launches in (None, 2)


@pytest.mark.parametrize("m, n", [(1, 10), (10, 10), (64, 10), (7, 3)])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("outputs", ["returned", "written"])
@pytest.mark.gpu
def test_softmax_cost_delta_equals_the_generic_one(on_cupy, monkeypatch,
                                                   m, n, with_bias, outputs):
    """The cost returned, or written into a given 0-d array (a slot of
    the epoch's costs) with the bias gradient into a given array."""
    rng = numpy.random.default_rng(m)
    z_host = rng.normal(scale=5, size=(m, n))
    z_host[0, 0] = 120  # the others underflow in a; ln a_y must not
    y = backend.asarray(rng.integers(0, n, m), dtype="int32")
    b = backend.asarray(rng.normal(size=n)) if with_bias else None

    costs = backend.xp.full(3, numpy.nan, dtype=on_cupy)
    nabla_b = backend.xp.full(n, numpy.nan, dtype=on_cupy)

    def softmax():
        if outputs == "returned":
            return kernels.softmax_cost_delta(backend.asarray(z_host), y, b)
        z, a, cost, delta = kernels.softmax_cost_delta(
            backend.asarray(z_host), y, b, nabla_b, costs[1:2].reshape(()))
        return z, a, cost, delta, nabla_b, costs[1]
    fast, generic, launches = both_paths(monkeypatch, softmax)
    for got, want in zip(fast, generic):
        assert_close(got, want, TOLERANCE[on_cupy])
    if outputs == "written":
        assert fast[5] == fast[2]  # the cost went into its slot
        assert_close(fast[4], (fast[1] - numpy.eye(n)[backend.to_numpy(y)]
                               ).sum(axis=0) / m, TOLERANCE[on_cupy])
    assert numpy.isfinite(fast[2]) and launches in (None, 2)  # rows, sums


@pytest.mark.parametrize("x_shape, w_shape", [
    ((2, 1, 6, 6), (3, 1, 3, 3)), ((2, 3, 7, 5), (4, 3, 3, 2)),
    ((3, 2, 4, 3), (1, 2, 4, 3)), ((10, 20, 12, 12), (40, 20, 5, 5))], ids=str)
@pytest.mark.gpu
def test_col2im_gather_equals_the_full_convolution(on_cupy, monkeypatch,
                                                   x_shape, w_shape):
    rng = numpy.random.default_rng(11)
    N, C, H, W = x_shape
    F, _, KH, KW = w_shape
    dout2 = backend.asarray(rng.normal(size=(N * (H - KH + 1) * (W - KW + 1), F)))
    w = backend.asarray(rng.normal(size=w_shape))
    fast, generic, launches = both_paths(
        monkeypatch, lambda: [kernels.col2im_matmul(dout2, w, x_shape)])
    assert fast[0].shape == x_shape
    assert_close(fast[0], generic[0], TOLERANCE[on_cupy])
    assert launches is None or launches <= 3  # filter matrix, product, gather


@pytest.mark.parametrize("n_weights, size", [(0, 5), (5, 5), (7, 12),
                                              (1000, 1300)])
@pytest.mark.parametrize("decay", [0.0, 1e-3])
@pytest.mark.gpu
def test_sgd_step_equals_the_generic_one_and_the_formula(
        on_cupy, monkeypatch, n_weights, size, decay):
    """Every parameter of a network in one array, weights first."""
    rng = numpy.random.default_rng(9)
    params0, nablas0 = rng.normal(size=size), rng.normal(size=size)

    def step():
        params, nablas = backend.asarray(params0), backend.asarray(nablas0)
        kernels.sgd_step(params, nablas, n_weights, 0.1, decay)
        return [params]
    fast, generic, launches = both_paths(monkeypatch, step)
    assert_close(fast[0], generic[0], TOLERANCE[on_cupy])
    decayed = numpy.where(numpy.arange(size) < n_weights, 1 - decay, 1.0)
    numpy.testing.assert_allclose(fast[0], decayed * params0 - 0.1 * nablas0,
                                  rtol=TOLERANCE[on_cupy] * 10)
    assert launches in (None, 1)


@pytest.mark.parametrize("shape", [(1, 1), (10, 640), (7, 333)])
@pytest.mark.parametrize("p_dropout", [0.5, 0.2])
@pytest.mark.parametrize("draw", [0, 5, 2**33 + 7])
@pytest.mark.gpu
def test_dropout_equals_the_generic_one(on_cupy, monkeypatch, shape,
                                        p_dropout, draw):
    x = backend.asarray(numpy.random.default_rng(2).normal(size=shape))
    fast, generic, launches = both_paths(
        monkeypatch, lambda: kernels.dropout(x, p_dropout, (99, 2**31), draw))
    for got, want in zip(fast, generic):
        numpy.testing.assert_array_equal(got, want)
    assert launches in (None, 1)


@pytest.mark.parametrize("M, K, N", [(1, 1, 1), (10, 640, 100), (5760, 25, 20),
                                     (7, 3, 5)])
@pytest.mark.parametrize("a_layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("b_layout", ["contiguous", "transposed"])
@pytest.mark.gpu
def test_gemm_equals_the_product(on_cupy, M, K, N, a_layout, b_layout):
    """Operands read through their strides (a transposed view: no copy),
    into a new array or a given one."""
    rng = numpy.random.default_rng(M + K + N)
    a, b = rng.normal(size=(M, K)), rng.normal(size=(K, N))
    a_dev = backend.asarray(a) if a_layout == "contiguous" else \
        backend.asarray(a.T.copy()).T
    b_dev = backend.asarray(b) if b_layout == "contiguous" else \
        backend.asarray(b.T.copy()).T
    with cupy_double.counting() as counts:
        c = kernels_cuda.gemm(a_dev, b_dev)
    if on_the_double():
        assert counts.total("launches") == 1 and counts.total("allocations") == 1
    assert_close(backend.to_numpy(c), a @ b, TOLERANCE[on_cupy])
    out = backend.xp.zeros((M, N), dtype=on_cupy)
    assert kernels_cuda.gemm(a_dev, b_dev, out) is out
    assert_close(backend.to_numpy(out), a @ b, TOLERANCE[on_cupy])


@pytest.mark.parametrize("name", list(EXPERIMENTS))
@pytest.mark.gpu
def test_training_on_the_fused_kernels_equals_the_generic_path(
        on_cupy, monkeypatch, name):
    """Three SGD steps from the same network and dropout seed."""
    experiment = EXPERIMENTS[name]
    rng = numpy.random.default_rng(3)
    x, y = rng.random((30, 784)), rng.integers(0, 10, 30)
    weights = {}
    for fast in (True, False):
        monkeypatch.setattr(kernels, "FAST_CUDA", fast)
        gpunn.use("cupy", on_cupy, seed=4)
        net = experiment.network(10)
        costs = [float(net.update_mini_batch(x[k:k + 10], y[k:k + 10],
                                             experiment.eta, 1.0, 5))
                 for k in (0, 10, 20)]
        weights[fast] = costs, [backend.to_numpy(p) for p in net.params]
    tolerance = 1e-10 if on_cupy == "float64" else 1e-4
    numpy.testing.assert_allclose(weights[True][0], weights[False][0],
                                  rtol=tolerance)
    for got, want in zip(weights[True][1], weights[False][1]):
        numpy.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)
