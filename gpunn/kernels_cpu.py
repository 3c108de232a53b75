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
Compiled versions of im2col and max-pooling were tried and were no
faster than NumPy's, so they are not kept.

The loop runs on one thread, on purpose.  Parallel loops (numba's
prange) were tried for col2im, im2col and pooling: with numba's OpenMP
layer, whose idle threads busy-wait, they fought the BLAS's threads for
the cores (a col2im right after a product ran 9 times slower than
alone); with its "workqueue" layer, each launch cost more than it saved
(dbl_conv_relu's step took 1.8 ms instead of 1.2 at mini-batch 10, and
9.8 instead of 7.8 at 64).  Two Python threads, each on half of the
mini-batch, gained at 256 but nothing steady at 64 and lost at 10.
"""

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
