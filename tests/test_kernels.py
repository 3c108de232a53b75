"""gpunn.compute.kernels and the layers' inference passes against independent
references: plain Python loops of the book's formulas, on NumPy copies.

Each test runs on every backend (the CuPy run is gpu-marked) in float64;
results come back to the host with ``backend.to_numpy``.  Max-pool inputs
are permutations of distinct values, so the argmax is well defined, except
in the test of the tie rule itself.
"""

import math

import numpy as np
import pytest

from gpunn.compute import backend, kernels
from gpunn.activations import ReLU, linear, sigmoid, tanh
from gpunn.layers import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer

from helpers import host, put, use_float64

# (image shape (N, C, H, W), filter shape (F, C, KH, KW))
CONV_SHAPES = [
    ((2, 1, 6, 6), (3, 1, 3, 3)),    # the book's square case, one map
    ((2, 3, 7, 5), (4, 3, 3, 2)),    # several maps, non-square image, filter
    ((1, 2, 5, 9), (2, 2, 2, 4)),    # wide image, wide filter
    ((3, 2, 4, 3), (1, 2, 4, 3)),    # filter as large as the image: 1x1 output
    ((1, 1, 3, 4), (2, 1, 1, 1)),    # 1x1 filter
]
# (input shape (N, F, H, W), poolsize (ph, pw))
POOL_CASES = [
    ((2, 3, 6, 4), (2, 2)),          # no border
    ((2, 2, 7, 5), (2, 2)),          # a border row and column
    ((1, 3, 6, 9), (3, 2)),          # non-square pool, a border column
    ((2, 1, 5, 7), (2, 3)),          # non-square pool, border row and column
    ((1, 2, 3, 3), (1, 1)),          # pooling that changes nothing
    ((1, 1, 4, 6), (4, 6)),          # one window, the whole image
]
ACTIVATIONS = [sigmoid, tanh, ReLU, linear]


def reference_activation(name, z):
    """The activation functions from their definitions, on the host."""
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z))
    if name == "ReLU":
        return np.where(z > 0, z, 0.0)
    assert name == "linear"
    return z.copy()


def distinct(rng, shape):
    """Distinct values in random order (no max-pool ties), centred on 0."""
    n = math.prod(shape)
    return (rng.permutation(n) - n / 2).reshape(shape) * 0.1


# ---------------------------------------------------------------- references

def conv_reference(x, w):
    """out[n,f,i,j] = sum_{c,l,m} w[f,c,l,m] x[n,c,i+l,j+m], by loops."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    out = np.zeros((N, F, H - KH + 1, W - KW + 1))
    for n, f, i, j in np.ndindex(*out.shape):
        s = 0.0
        for c in range(C):
            for l in range(KH):
                for m in range(KW):
                    s += w[f, c, l, m] * x[n, c, i + l, j + m]
        out[n, f, i, j] = s
    return out


def first_max(x, n, f, i, j, poolsize):
    """(value, index) of the first maximum, row-major, of window (i, j)."""
    ph, pw = poolsize
    best, best_k = None, None
    for r in range(ph):
        for s in range(pw):
            v = x[n, f, i * ph + r, j * pw + s]
            if best is None or v > best:
                best, best_k = v, r * pw + s
    return best, best_k


def max_pool_reference(x, poolsize):
    """Max and first-argmax over non-overlapping windows, border ignored."""
    ph, pw = poolsize
    N, F, H, W = x.shape
    out = np.zeros((N, F, H // ph, W // pw))
    argmax = np.zeros(out.shape, dtype=int)
    for idx in np.ndindex(*out.shape):
        out[idx], argmax[idx] = first_max(x, *idx, poolsize)
    return out, argmax


def max_pool_backward_reference(dout, x, poolsize):
    """Each window's gradient to its first maximum (row-major); 0 elsewhere."""
    ph, pw = poolsize
    dx = np.zeros(x.shape)
    for n, f, i, j in np.ndindex(*dout.shape):
        _, k = first_max(x, n, f, i, j, poolsize)
        r, s = divmod(k, pw)
        dx[n, f, i * ph + r, j * pw + s] += dout[n, f, i, j]
    return dx


def col2im_reference(dcol, x_shape):
    dx = np.zeros(x_shape)
    for n, i, j, l, m, c in np.ndindex(*dcol.shape):
        dx[n, c, i + l, j + m] += dcol[n, i, j, l, m, c]
    return dx


def dense_reference(x, w, b, scale):
    """z[n, j] = scale * sum_k x[n, k] w[k, j] + b[j], by loops."""
    z = np.zeros((x.shape[0], w.shape[1]))
    for n, j in np.ndindex(*z.shape):
        s = sum(x[n, k] * w[k, j] for k in range(w.shape[0]))
        z[n, j] = scale * s + b[j]
    return z


def softmax_reference(z):
    out = np.zeros(z.shape)
    for n in range(len(z)):
        e = [math.exp(v) for v in z[n]]
        out[n] = [v / sum(e) for v in e]
    return out


# ------------------------------------------------------------ conv2d, im2col

@pytest.mark.parametrize("x_shape, w_shape", CONV_SHAPES, ids=str)
def test_conv2d_matches_the_books_formula(backend_name, x_shape, w_shape):
    use_float64(backend_name)
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=x_shape), rng.normal(size=w_shape)
    out, col = kernels.conv2d(put(x), put(w))
    expected = conv_reference(x, w)
    assert out.shape == expected.shape
    np.testing.assert_allclose(host(out), expected, rtol=1e-12, atol=1e-12)
    # The col it keeps for the backward pass is the im2col of x.
    np.testing.assert_array_equal(host(col),
                                  host(kernels.im2col(put(x), *w_shape[2:])))


@pytest.mark.parametrize("x_shape, w_shape", CONV_SHAPES, ids=str)
def test_im2col_entries(backend_name, x_shape, w_shape):
    use_float64(backend_name)
    x = np.random.default_rng(1).normal(size=x_shape)
    N, C, H, W = x_shape
    KH, KW = w_shape[2:]
    col = host(kernels.im2col(put(x), KH, KW))
    assert col.shape == (N, H - KH + 1, W - KW + 1, KH, KW, C)
    for n, i, j, l, m, c in np.ndindex(*col.shape):
        assert col[n, i, j, l, m, c] == x[n, c, i + l, j + m]


@pytest.mark.parametrize("x_shape, w_shape", CONV_SHAPES, ids=str)
def test_col2im_is_the_adjoint_of_im2col(backend_name, x_shape, w_shape):
    use_float64(backend_name)
    rng = np.random.default_rng(2)
    N, C, H, W = x_shape
    KH, KW = w_shape[2:]
    x = rng.normal(size=x_shape)
    c = rng.normal(size=(N, H - KH + 1, W - KW + 1, KH, KW, C))
    col = host(kernels.im2col(put(x), KH, KW))
    dx = host(kernels.col2im(put(c), x_shape))
    assert dx.shape == x_shape
    lhs, rhs = np.sum(col * c), np.sum(x * dx)
    assert abs(lhs - rhs) <= 1e-12 * np.sum(np.abs(col * c))
    np.testing.assert_allclose(dx, col2im_reference(c, x_shape),
                               rtol=1e-12, atol=1e-12)


@pytest.fixture(params=[True, False], ids=["compiled", "generic"])
def fast_cpu(request, monkeypatch):
    """Run with the compiled CPU kernels (kernels_cpu, numba) and without."""
    if request.param and kernels.kernels_cpu is None:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(kernels, "FAST_CPU", request.param)
    return request.param


@pytest.mark.parametrize("x_shape, w_shape", CONV_SHAPES, ids=str)
def test_col2im_matmul_equals_col2im_of_the_product(backend_name, fast_cpu,
                                                    x_shape, w_shape):
    """The backward pass's col2im_matmul, compiled and generic, against
    its reference, col2im of the product."""
    use_float64(backend_name)
    rng = np.random.default_rng(5)
    N, C, H, W = x_shape
    F, _, KH, KW = w_shape
    OH, OW = H - KH + 1, W - KW + 1
    dout2 = rng.normal(size=(N * OH * OW, F))
    w = rng.normal(size=w_shape)
    w_matrix = w.transpose(0, 2, 3, 1).reshape(F, -1)  # patches are (KH, KW, C)
    expected = col2im_reference((dout2 @ w_matrix).reshape(N, OH, OW, KH, KW, C),
                                x_shape)
    got = host(kernels.col2im_matmul(put(dout2), put(w), x_shape))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- max-pooling

@pytest.mark.parametrize("x_shape, poolsize", POOL_CASES, ids=str)
def test_max_pool_matches_a_loop(backend_name, x_shape, poolsize):
    use_float64(backend_name)
    x = distinct(np.random.default_rng(3), x_shape)
    out = kernels.max_pool(put(x), poolsize)
    expected, _ = max_pool_reference(x, poolsize)
    assert out.shape == expected.shape
    np.testing.assert_array_equal(host(out), expected)


@pytest.mark.parametrize("x_shape, poolsize", POOL_CASES, ids=str)
def test_max_pool_backward_routes_to_the_maximum(backend_name, x_shape,
                                                 poolsize):
    use_float64(backend_name)
    rng = np.random.default_rng(4)
    x = distinct(rng, x_shape)
    out = kernels.max_pool(put(x), poolsize)
    ph, pw = poolsize
    dout = rng.normal(size=(x_shape[0], x_shape[1],
                            x_shape[2] // ph, x_shape[3] // pw))
    dx = host(kernels.max_pool_backward(put(dout), put(x), out, poolsize))
    assert dx.shape == x_shape
    np.testing.assert_array_equal(
        dx, max_pool_backward_reference(dout, x, poolsize))


def test_max_pool_ties_go_to_the_first_maximum_in_row_major_order(
        backend_name):
    use_float64(backend_name)
    # Two (2, 3) windows side by side, and a border column.  Window 0 has
    # its maximum 7 at (0, 2) and (1, 0): row-major order picks (0, 2),
    # column-major would pick (1, 0).  Window 1 is all ties: index 0.
    x = np.array([[[[0., 0., 7., 3., 3., 3., 9.],
                    [7., 0., 7., 3., 3., 3., 9.]]]])
    out = kernels.max_pool(put(x), (2, 3))
    np.testing.assert_array_equal(host(out), [[[[7., 3.]]]])
    dx = host(kernels.max_pool_backward(put([[[[10., 20.]]]]), put(x), out,
                                        (2, 3)))
    expected = np.zeros(x.shape)
    expected[0, 0, 0, 2], expected[0, 0, 0, 3] = 10., 20.
    np.testing.assert_array_equal(dx, expected)
    # The loop reference follows the same rule.
    np.testing.assert_array_equal(
        max_pool_backward_reference(np.array([[[[10., 20.]]]]), x, (2, 3)),
        expected)

    # (2, 2) windows: [[1, 5], [5, 2]] -> 1; [[-2, -1], [-1, -3]] -> 1.
    x = np.array([[[[1., 5., -2., -1.],
                    [5., 2., -1., -3.]]]])
    out = kernels.max_pool(put(x), (2, 2))
    np.testing.assert_array_equal(host(out), [[[[5., -1.]]]])
    dx = host(kernels.max_pool_backward(put([[[[1., 2.]]]]), put(x), out,
                                        (2, 2)))
    expected = np.zeros(x.shape)
    expected[0, 0, 0, 1], expected[0, 0, 0, 3] = 1., 2.
    np.testing.assert_array_equal(dx, expected)


# ---------------------------------------------------------------- layers

@pytest.mark.parametrize("activation_fn", ACTIVATIONS, ids=str)
def test_conv_pool_layer_feedforward_matches_a_loop(backend_name,
                                                    activation_fn):
    use_float64(backend_name)
    rng = np.random.default_rng(5)
    image_shape, filter_shape, poolsize = (2, 3, 9, 8), (4, 3, 3, 2), (2, 3)
    layer = ConvPoolLayer(filter_shape, image_shape, poolsize, activation_fn)
    w, b = host(layer.w), rng.normal(size=4)
    layer.b[...] = put(b)
    x = rng.normal(size=image_shape)
    pooled, _ = max_pool_reference(conv_reference(x, w), poolsize)
    # network3: the bias and the activation come after the pooling.
    expected = reference_activation(activation_fn.__name__,
                                    pooled + b.reshape(1, -1, 1, 1))
    assert expected.shape == (2,) + layer.output_shape
    # Inputs as network3 gives them: one flattened image per row.
    out = host(layer.feedforward(put(x.reshape(2, -1))))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    # Training (no dropout on conv layers) computes the same output.
    np.testing.assert_allclose(host(layer.forward(put(x))), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p_dropout", [0.0, 0.5])
@pytest.mark.parametrize("activation_fn", ACTIVATIONS, ids=str)
def test_fully_connected_layer_feedforward_matches_the_formula(
        backend_name, activation_fn, p_dropout):
    use_float64(backend_name)
    rng = np.random.default_rng(6)
    layer = FullyConnectedLayer(5, 4, activation_fn, p_dropout=p_dropout)
    x = rng.normal(size=(3, 5))
    z = dense_reference(x, host(layer.w), host(layer.b), 1 - p_dropout)
    expected = reference_activation(activation_fn.__name__, z)
    out = host(layer.feedforward(put(x)))
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p_dropout", [0.0, 0.3])
def test_softmax_layer_feedforward_is_a_softmax(backend_name, p_dropout):
    use_float64(backend_name)
    rng = np.random.default_rng(7)
    layer = SoftmaxLayer(5, 4, p_dropout=p_dropout)
    w, b = rng.normal(size=(5, 4)), rng.normal(size=4)
    layer.w[...], layer.b[...] = put(w), put(b)
    x = rng.normal(size=(3, 5))
    out = host(layer.feedforward(put(x)))
    np.testing.assert_allclose(out.sum(axis=1), np.ones(3), rtol=1e-12)
    expected = softmax_reference(dense_reference(x, w, b, 1 - p_dropout))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-15)


def test_softmax_layer_does_not_overflow(backend_name):
    use_float64(backend_name)
    layer = SoftmaxLayer(2, 3)
    layer.w[...] = put([[1., 0., 0.], [0., 1., 0.]])
    layer.b[...] = put([800., 800., 800.])   # exp(800) overflows float64
    x = np.array([[0., 0.], [1., -2.], [2., 1.]])
    out = host(layer.feedforward(put(x)))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(axis=1), np.ones(3), rtol=1e-12)
    # Softmax is unchanged by a shift: compare with the softmax of z - 800.
    expected = softmax_reference(dense_reference(x, host(layer.w),
                                                 np.zeros(3), 1.0))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-15)


# Random123's known answers for Philox4x32-10 (kat_vectors): counter,
# key, and the four output words.
PHILOX_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2,
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


@pytest.mark.parametrize("counter, key, answer", PHILOX_ANSWERS)
def test_philox_gives_random123s_known_answers(backend_name, counter, key,
                                               answer):
    use_float64(backend_name)
    xp = backend.xp
    words = kernels.philox([xp.full(3, c, dtype=np.uint32) for c in counter], key)
    for got, want in zip(words, answer):
        assert host(got).tolist() == [want] * 3


def philox_mask_loop(shape, p_dropout, key, draw):
    """kernels.dropout's mask, entry by entry, from the generic philox."""
    threshold = kernels.dropout_threshold(p_dropout)
    mask = np.empty(shape)
    for i in range(mask.size):
        word = kernels.philox([np.uint32(i), np.uint32(draw % 2**32),
                               np.uint32(draw >> 32), np.uint32(0)], key)[0]
        mask.flat[i] = int(word) >> 8 >= threshold
    return mask


@pytest.mark.parametrize("p_dropout", [0.5, 0.2, 0.9])
@pytest.mark.parametrize("draw", [0, 3, 2**32 + 1])
def test_dropout_keeps_what_philox_says(backend_name, fast_cpu, p_dropout, draw):
    """Compiled (numba, on NumPy) and generic; the mask from a loop over
    the entries; the kept fraction near 1 - p_dropout."""
    use_float64(backend_name)
    x = np.random.default_rng(1).normal(size=(7, 13))
    key = (12345, 2**32 - 3)
    masked, mask = kernels.dropout(put(x), p_dropout, key, draw)
    want = philox_mask_loop(x.shape, p_dropout, key, draw)
    np.testing.assert_array_equal(host(mask), want)
    np.testing.assert_array_equal(host(masked), x * want)
    assert host(mask).dtype == np.float64
    big = host(kernels.dropout(put(np.ones((200, 500))), p_dropout, key, draw)[1])
    assert abs(big.mean() - (1 - p_dropout)) < 0.01
    other = host(kernels.dropout(put(np.ones((200, 500))), p_dropout, key,
                                 draw + 1)[1])
    assert (big != other).mean() > 0.5 * min(p_dropout, 1 - p_dropout)


# (conv output (N, F, OH, OW), poolsize): borders, non-square windows,
# the book's two conv layers at mini-batch 10
COMPILED_POOL_CASES = POOL_CASES + [((10, 20, 24, 24), (2, 2)),
                                    ((10, 40, 8, 8), (2, 2))]


@pytest.mark.parametrize("conv_shape, poolsize", COMPILED_POOL_CASES, ids=str)
@pytest.mark.parametrize("activation_fn", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_pool_bias_activation_equals_the_generic_one(
        monkeypatch, conv_shape, poolsize, activation_fn, dtype):
    """kernels_cpu's pooling forward and backward against the generic
    ones, on values with many ties (the first maximum must win), with
    nabla_a as a fully connected layer gives it (N, F, PH, PW) and as a
    conv layer does (a view of channels-last data)."""
    if kernels.kernels_cpu is None:
        pytest.skip("numba is not installed")
    backend.use("numpy", dtype)
    rng = np.random.default_rng(8)
    N, F, OH, OW = conv_shape
    PH, PW = OH // poolsize[0], OW // poolsize[1]
    conv = (rng.integers(-3, 4, size=(N, OH, OW, F)) * 0.5).astype(dtype)
    conv = conv.transpose(0, 3, 1, 2)  # as conv2d returns it
    b = rng.normal(size=F).astype(dtype)
    nabla_nchw = rng.normal(size=(N, F, PH, PW)).astype(dtype)
    for nabla_a in (nabla_nchw, kernels.channels_last(nabla_nchw).transpose(
            0, 3, 1, 2)):
        results = {}
        for compiled in (True, False):
            monkeypatch.setattr(kernels, "FAST_CPU", compiled)
            nabla_b = np.full(F, np.nan, dtype=dtype)
            z, a, route = kernels.pool_bias_activation(conv, b, poolsize,
                                                       activation_fn)
            nabla_conv = kernels.pool_bias_activation_backward(
                nabla_a, z, a, route, conv.shape, poolsize, activation_fn,
                nabla_b)
            results[compiled] = z, a, nabla_conv, nabla_b
        z, a, nabla_conv, nabla_b = results[True]
        for got, want in zip((z, a, nabla_conv), results[False]):
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)  # bit for bit
        # The bias sums, taken in another order: equal to rounding.
        want = results[False][3]
        tolerance = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(nabla_b, want, rtol=tolerance,
                                   atol=tolerance * np.abs(want).max())


@pytest.mark.system
def test_first_use_of_the_compiled_kernels_from_several_threads_at_once():
    """kernels_cpu is imported at a kernel's first use; network3's
    threads (gpunn plot's predict, the shards) may all get there at once.
    In a fresh interpreter, four threads pool at the same moment: each
    gets the compiled kernel's result (a lazily loaded module once gave
    three of them "no attribute pool_bias_activation")."""
    import subprocess
    import sys
    if not kernels.FAST_CPU_AVAILABLE:
        pytest.skip("numba is not installed")
    code = """if True:
        import sys, threading
        import numpy as np
        from gpunn.compute import kernels
        from gpunn.activations import ReLU
        assert "gpunn.compute.kernels_cpu" not in sys.modules
        x = np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)
        b = np.zeros(3, np.float32)
        start, results, errors = threading.Barrier(4), [], []
        def pool():
            start.wait()
            try:
                results.append(kernels.pool_bias_activation(x, b, (2, 2), ReLU))
            except Exception as e:
                errors.append(repr(e))
        threads = [threading.Thread(target=pool) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert errors == [], errors
        assert len(results) == 4
        assert all(not isinstance(route, tuple) for _, _, route in results)
        print("OK")
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stderr[-2000:]


@pytest.mark.parametrize("x_shape, kh, kw", [
    ((2, 1, 6, 6), 3, 3), ((3, 1, 7, 5), 3, 2), ((1, 1, 4, 9), 1, 4),
    ((2, 1, 4, 3), 4, 3), ((4, 1, 28, 28), 5, 5)], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_one_channel_im2col_equals_the_generic_one(
        monkeypatch, x_shape, kh, kw, dtype):
    """kernels_cpu's im2col of one-channel images against NumPy's copy,
    bit for bit, for an (N, C, H, W) array and for a view of a larger
    one (a mini-batch's rows of the training set)."""
    if kernels.kernels_cpu is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(9)
    whole = rng.normal(size=(2 * x_shape[0],) + x_shape[1:]).astype(dtype)
    for x in (whole[:x_shape[0]], whole[1::2]):
        results = {}
        for compiled in (True, False):
            monkeypatch.setattr(kernels, "FAST_CPU", compiled)
            results[compiled] = kernels.im2col(x, kh, kw)
        got, want = results[True], results[False]
        assert got.shape == want.shape and got.dtype == want.dtype
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
