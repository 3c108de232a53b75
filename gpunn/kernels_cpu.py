"""kernels_cpu.py
~~~~~~~~~~~~~~~~~

Compiled CPU versions (numba) of kernels in ``kernels.py``, for NumPy
arrays, where the generic version pays for many small NumPy calls.  They
take and return the same arrays; ``kernels.py`` calls them when numba is
installed, and the generic versions there stay the reference the tests
hold them to (tests/test_kernels.py checks col2im_matmul compiled and
generic against col2im).

Only col2im is here: its generic form is one strided add per filter
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
