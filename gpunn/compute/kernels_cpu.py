"""kernels_cpu.py
~~~~~~~~~~~~~~~~~

Compiled CPU versions (numba) of kernels in ``kernels.py``, for NumPy
arrays, where the generic version pays for many small NumPy calls.  They
take and return the same arrays; ``kernels.py`` calls them when numba is
installed, and the generic versions there stay the reference the tests
hold them to (tests/test_kernels.py checks col2im_matmul compiled and
generic against col2im).

``dropout`` is here because its generic form, Philox's ten rounds as
whole-array NumPy passes, took 32 ms for a 256 x 1000 mask (2-core AMD
EPYC), where NumPy's own generator takes 1; compiled, one loop per entry.

col2im is here because its generic form is one strided add per filter
position (25 for a 5x5 filter), and the compiled loop does them in one
pass, 2.7 times faster at mini-batch 10 and 1.5 times at 64 (2-core
AMD EPYC, float32, the book's second conv layer, product included).
im2col is here for one-channel images only (every chapter-6 net's
first layer): there NumPy's copy moves runs of kw numbers (5), and a
loop compiled for the filter's size, its loops over the filter unrolled,
took 0.076 ms instead of 0.32 for a shard of 32 MNIST images (2-core AMD
EPYC, float32).  With the filter's size as arguments it took 0.78, and
for the second layer's 20 channels (runs of 100 numbers) 0.16 against
NumPy's 0.085, so that one stays NumPy's.

The ConvPoolLayer's pooling is here with its backward pass: one pass
finds each window's maximum and keeps its position (a byte), and the
backward pass writes each window's delta where its maximum was.  The
generic versions find the maxima in ph*pw whole-array passes and, in
the backward pass, find the positions again by comparing; at mini-batch
256 on the book's first conv layer (2-core AMD EPYC, float32) the
forward pass went from 7.5 to 5.5 ms and the backward from 16-25 to
6.5.  The loops are branch-free: with a branch on random data (is this
entry larger?), mispredicted half of the time, the pooling took 15 ms.

Each loop runs on one thread, on purpose, and releases the GIL
(``nogil``): the cores are used by running shards of the mini-batch
at once (shards.py), each with its own loops and a one-thread BLAS.
Parallel loops (numba's prange) were tried for col2im, im2col and
pooling: with numba's OpenMP layer, whose idle threads busy-wait, they
fought the BLAS's threads for the cores (a col2im right after a product
ran 9 times slower than alone); with its "workqueue" layer, each launch
cost more than it saved (dbl_conv_relu's step took 1.8 ms instead of
1.2 at mini-batch 10, and 9.8 instead of 7.8 at 64).
"""

import threading

import numpy
from numba import njit


@njit(cache=True, nogil=True)
def _col2im(dcol, H, W):
    N, OH, OW, kh, kw, C = dcol.shape
    dx = numpy.zeros((N, H, W, C), dtype=dcol.dtype)
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                for l in range(kh):
                    for m in range(kw):
                        for c in range(C):
                            dx[n, i + l, j + m, c] += dcol[n, i, j, l, m, c]
    return dx


def col2im(dcol, H, W):
    """``kernels.col2im`` of ``dcol`` (N, OH, OW, kh, kw, C), returned
    channels-last: an (N, H, W, C) array."""
    return _col2im(numpy.ascontiguousarray(dcol), H, W)


_IM2COL = {}  # (kh, kw): the compiled one-channel im2col for that filter
_IM2COL_LOCK = threading.Lock()
IM2COL_DTYPES = (numpy.float32, numpy.float64)


def _im2col_kernel(kh, kw):
    """The one-channel im2col compiled for (kh, kw) filters, made once
    per size (under a lock: the shards' threads may ask at once), with
    the sizes as constants so that the loops over the filter unroll."""
    with _IM2COL_LOCK:
        if (kh, kw) not in _IM2COL:
            @njit(["void({0}[:, :, ::1], {0}[:, :, :, :, ::1])".format(t)
                   for t in ("float32", "float64")], nogil=True)
            def kernel(x, col):
                N, OH, OW = col.shape[0], col.shape[1], col.shape[2]
                for n in range(N):
                    for i in range(OH):
                        for j in range(OW):
                            for l in range(kh):
                                for m in range(kw):
                                    col[n, i, j, l, m] = x[n, i + l, j + m]
            _IM2COL[kh, kw] = kernel
        return _IM2COL[kh, kw]


def im2col(x, kh, kw):
    """``kernels.im2col`` of one-channel images ``x`` (N, H, W, 1),
    channels-last, float32 or float64: ``col`` (N, OH, OW, kh, kw, 1)."""
    N, H, W, C = x.shape
    assert C == 1 and x.dtype in IM2COL_DTYPES
    col = numpy.empty((N, H - kh + 1, W - kw + 1, kh, kw, 1), x.dtype)
    _im2col_kernel(kh, kw)(numpy.ascontiguousarray(x.reshape(N, H, W)),
                           col.reshape(col.shape[:5]))
    return col


@njit(cache=True, nogil=True)
def _dropout(inpt, threshold, k0, k1, draw, masked, mask):
    low = numpy.uint64(0xFFFFFFFF)
    for i in range(inpt.size):
        # Philox4x32-10 of the counter (i, draw low, draw high, 0), in
        # 64-bit integers masked to 32 bits (kernels.philox).
        c0, c1 = numpy.uint64(i), numpy.uint64(draw) & low
        c2, c3 = numpy.uint64(draw) >> numpy.uint64(32), numpy.uint64(0)
        key0, key1 = numpy.uint64(k0), numpy.uint64(k1)
        for _ in range(10):
            p0 = c0 * numpy.uint64(0xD2511F53)
            p1 = c2 * numpy.uint64(0xCD9E8D57)
            c0, c1, c2, c3 = ((p1 >> numpy.uint64(32)) ^ c1 ^ key0, p1 & low,
                              (p0 >> numpy.uint64(32)) ^ c3 ^ key1, p0 & low)
            key0 = (key0 + numpy.uint64(0x9E3779B9)) & low
            key1 = (key1 + numpy.uint64(0xBB67AE85)) & low
        keep = 1.0 if (c0 >> numpy.uint64(8)) >= threshold else 0.0
        mask[i] = keep
        masked[i] = inpt[i] * keep


def dropout(inpt, threshold, key, draw):
    """``kernels.dropout`` of ``inpt`` (m, n) with the threshold of its
    p_dropout: returns ``(inpt * mask, mask)``."""
    inpt = numpy.ascontiguousarray(inpt)
    masked, mask = numpy.empty_like(inpt), numpy.empty_like(inpt)
    _dropout(inpt.reshape(-1), numpy.uint64(threshold), numpy.uint64(key[0]),
             numpy.uint64(key[1]), numpy.uint64(draw), masked.reshape(-1),
             mask.reshape(-1))
    return masked, mask


@njit(cache=True, nogil=True)
def _max_pool_route(conv, ph, pw, pooled, route):
    N, PH, PW, F = pooled.shape
    for n in range(N):
        for i in range(PH):
            best, where = pooled[n, i], route[n, i]  # (PW, F)
            # Window entry k = 0 .. ph*pw-1 (row-major) of every window of
            # the row; a strictly larger value moves the route on (the
            # first maximum wins ties).  Branch-free: a branch on random
            # data is mispredicted half the time (3.5 times slower).
            for k in range(ph * pw):
                entries = conv[n, i * ph + k // pw]  # (OW, F)
                m, step = k % pw, numpy.uint8(k)
                for j in range(PW):
                    for f in range(F):
                        v = entries[j * pw + m, f]
                        if k == 0:
                            best[j, f], where[j, f] = v, 0
                        else:
                            larger = numpy.uint8(v > best[j, f])
                            best[j, f] = max(v, best[j, f])
                            where[j, f] += larger * (step - where[j, f])


def pool_bias_activation(conv, b, poolsize, activation_fn):
    """``kernels.pool_bias_activation`` of ``conv`` (N, OH, OW, F)
    channels-last, ``b`` (F,): the pooling in one compiled pass, which
    also keeps each window's route; the bias and the activation as
    whole-array passes over the (four times smaller) pooled maps.
    Returns ``(z, a, route)``, each (N, PH, PW, F) channels-last; route
    is uint8, the row-major window entry of each maximum."""
    N, OH, OW, F = conv.shape
    ph, pw = poolsize
    shape = (N, OH // ph, OW // pw, F)
    z, route = numpy.empty(shape, conv.dtype), numpy.empty(shape, numpy.uint8)
    _max_pool_route(numpy.ascontiguousarray(conv), ph, pw, z, route)
    z += b
    return z, activation_fn(z), route


@njit(cache=True, nogil=True)
def _unpool(delta, route, ph, pw, nabla_conv):
    N, PH, PW, F = delta.shape
    for n in range(N):
        for i in range(PH):
            for j in range(PW):
                d, where = delta[n, i, j], route[n, i, j]
                for k in range(ph * pw):
                    out = nabla_conv[n, i * ph + k // pw, j * pw + k % pw]
                    for f in range(F):  # branch-free, as above
                        out[f] = d[f] * (where[f] == k)


def pool_bias_activation_backward(nabla_a, z, a, route, conv_shape, poolsize,
                                  activation_fn, nabla_b):
    """Backward pass of ``pool_bias_activation``: ``nabla_a``, ``z``,
    ``a`` and ``route`` (N, PH, PW, F) channels-last.  delta = nabla_a *
    sigma'(z) (BP2) and its sum over the mini-batch and the map into
    ``nabla_b`` (BP3) as whole-array passes; then one compiled pass
    writes dC/d(conv) (``conv_shape``, (N, OH, OW, F)): delta at each
    window's maximum, zero elsewhere."""
    delta = nabla_a * activation_fn.prime(z, a)
    numpy.sum(delta, axis=(0, 1, 2), out=nabla_b)
    N, OH, OW, F = conv_shape
    ph, pw = poolsize
    border = OH % ph or OW % pw  # entries no window covers: zero
    nabla_conv = (numpy.zeros if border else numpy.empty)(conv_shape,
                                                          delta.dtype)
    _unpool(delta, route, ph, pw, nabla_conv)
    return nabla_conv
