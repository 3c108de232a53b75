"""kernels.py
~~~~~~~~~~~~

The array work of network3's layers: valid convolution through im2col
and a matrix product, its backward pass through col2im, max-pooling with
its backward pass, the ConvPoolLayer's pooling-bias-activation and its
backward pass, the softmax layer's output, cost and error, dropout
masks (from Philox4x32-10, a counter-based generator), and the SGD
step of all of a network's parameters at once.

Everything here is written once against the array module of its inputs
(NumPy or CuPy).  These generic versions are the reference.  A faster,
backend-specific kernel replaces one of them, behind the same function,
for one kind of array, and is tested against the version kept here.
The fast kernels, in one place:

================================  ===============================
function here                     fast version
================================  ===============================
im2col                            NumPy, one channel: kernels_cpu
col2im_matmul                     NumPy: kernels_cpu.col2im (numba)
                                  CuPy: kernels_cuda.col2im (CUDA C)
pool_bias_activation              NumPy: kernels_cpu (numba)
                                  CuPy: kernels_cuda (CUDA C)
pool_bias_activation_backward     NumPy: kernels_cpu (numba)
                                  CuPy: kernels_cuda (CUDA C)
bias_activation                   CuPy: kernels_cuda (CUDA C)
delta_bias_gradient               CuPy: kernels_cuda (CUDA C)
softmax_cost_delta                CuPy: kernels_cuda (CUDA C)
sgd_step                          CuPy: kernels_cuda (CUDA C)
dropout                           NumPy: kernels_cpu.dropout (numba)
                                  CuPy: kernels_cuda.dropout (CUDA C)
matmul                            CuPy, in a captured step:
                                  kernels_cuda.gemm (CUDA C)
================================  ===============================

Shapes are network3's: images ``x`` are (N, C, H, W) (mini-batch, maps,
height, width); filters ``w`` are (F, C, KH, KW), its filter_shape.

Memory is channels-last.  The (N, C, H, W) arrays these functions return
are transposed views of (N, H, W, C) data, and they take such views
without copying: so the maps of one pixel lie side by side, and every
copy below (im2col, col2im, pooling) moves contiguous runs of C numbers
rather than single numbers C*H*W apart.  The result for the reader is
the same; on a CPU it is several times faster.
"""

import importlib.util

import numpy

from gpunn.compute import kernels_cuda
from gpunn.compute.backend import get_array_module


def _cpu():
    """gpunn.compute.kernels_cpu, the compiled CPU versions of some
    kernels, imported the first time a kernel needs it: numba takes about
    0.3 s to import, which ``gpunn --help`` need not wait for.  (An
    import statement, so Python's import lock makes a first use from
    several threads at once safe.)"""
    from gpunn.compute import kernels_cpu
    return kernels_cpu


def __getattr__(name):
    """``kernels.kernels_cpu``: that module (imported now), or None where
    numba is not installed."""
    if name == "kernels_cpu":
        return _cpu() if FAST_CPU_AVAILABLE else None
    raise AttributeError("module {!r} has no attribute {!r}".format(
        __name__, name))


#: Whether kernels_cpu can be used: numba is installed.
FAST_CPU_AVAILABLE = importlib.util.find_spec("numba") is not None

#: Use kernels_cpu for NumPy arrays when it is there, and kernels_cuda
#: for CuPy arrays (the tests also run with these off, to hold the fast
#: kernels to the generic ones).
FAST_CPU = FAST_CPU_AVAILABLE
FAST_CUDA = True


def _fast(x):
    return FAST_CPU and isinstance(x, numpy.ndarray)


def _fast_cuda(x, activation_fn=None):
    """Does the CUDA kernel run for the array ``x`` (and activation)?"""
    return FAST_CUDA and not isinstance(x, numpy.ndarray) and (
        activation_fn is None or
        activation_fn in kernels_cuda.ACTIVATION_CODES)


def matmul(a, b, out=None):
    """The matrix product a @ b of 2-d arrays, into ``out`` if given: the
    BLAS (cuBLAS on CuPy), except in a captured training step, where
    CuPy refuses cuBLAS: then kernels_cuda.gemm (``use_gemm``)."""
    if _fast_cuda(a) and kernels_cuda.use_gemm():
        return kernels_cuda.gemm(a, b, out)
    return get_array_module(a).matmul(a, b, out=out)


def channels_last(x):
    """``x`` (N, C, H, W) as a contiguous (N, H, W, C) array (no copy when
    ``x`` is already a view of one)."""
    return get_array_module(x).ascontiguousarray(x.transpose(0, 2, 3, 1))


def im2col(x, kh, kw):
    """Unfold ``x`` (N, C, H, W) into the patches a (kh, kw) filter sees:
    returns ``col`` of shape (N, OH, OW, kh, kw, C), OH = H-kh+1 and
    OW = W-kw+1, with col[n, i, j, l, m, c] = x[n, c, i+l, j+m].

    ``col`` reshapes for free into the (N*OH*OW, kh*kw*C) matrix of the
    convolution's matrix product.  ``x`` is read in whatever layout it
    has (a copy of one kind or another costs a pass over memory).
    One-channel images on NumPy: kernels_cpu's compiled copy, where
    NumPy's moves runs of only kw numbers.
    """
    x = x.transpose(0, 2, 3, 1)
    if _fast(x) and x.shape[3] == 1 and x.dtype in _cpu().IM2COL_DTYPES:
        return _cpu().im2col(x, kh, kw)
    return _patches(x, kh, kw)


def _patches(x, kh, kw):
    """``im2col`` of ``x`` (N, H, W, C), an array or a view."""
    xp = get_array_module(x)
    N, H, W, C = x.shape
    sN, sH, sW, sC = x.strides
    # A view that steps (l, m) through the image as (i, j) does: metadata
    # only, no work on the device (CuPy's sliding_window_view reads the
    # device to check its arguments: two syncs a call).
    patches = xp.lib.stride_tricks.as_strided(
        x, shape=(N, H - kh + 1, W - kw + 1, kh, kw, C),
        strides=(sN, sH, sW, sH, sW, sC))
    return xp.ascontiguousarray(patches)


def col2im(dcol, x_shape):
    """The adjoint of ``im2col``: add each patch gradient of ``dcol``
    (N, OH, OW, kh, kw, C) back where the patch came from; returns the
    gradient with respect to the image, of shape ``x_shape`` (N, C, H, W).

    The convolution's backward pass uses ``col2im_matmul``, which gives
    col2im(dout @ W) without forming dout @ W; this is its reference."""
    xp = get_array_module(dcol)
    N, OH, OW, kh, kw, C = dcol.shape
    dx = xp.zeros((N, x_shape[2], x_shape[3], C), dtype=dcol.dtype)
    for i in range(kh):  # one add per filter position, not per pixel
        for j in range(kw):
            dx[:, i:i + OH, j:j + OW, :] += dcol[:, :, :, i, j, :]
    return dx.transpose(0, 3, 1, 2)


def conv2d(x, w):
    """Valid convolution of images ``x`` (N, C, H, W) with filters ``w``
    (F, C, KH, KW): out[n, f, i, j] = sum_{c,l,m} w[f, c, l, m] x[n, c, i+l, j+m],
    the book's formula for a local receptive field (chapter 6).

    Returns ``(out, col)``: ``out`` of shape (N, F, H-KH+1, W-KW+1), and
    ``col`` = im2col(x), kept for ``conv2d_backward``.

    (Theano's conv2d, which network3 called, flips the filters first: a
    relabelling of the weights, w_theano = w[:, :, ::-1, ::-1], that
    changes nothing the network can learn.)
    """
    F, C, KH, KW = w.shape
    col = im2col(x, KH, KW)
    N, OH, OW = col.shape[:3]
    out = matmul(col.reshape(N * OH * OW, -1), _filter_matrix(w).T)  # (N*OH*OW, F)
    return out.reshape(N, OH, OW, F).transpose(0, 3, 1, 2), col


def conv2d_backward(dout, col, w, x_shape, dw, need_dx=True):
    """Backward pass of ``conv2d``.  ``dout`` (N, F, OH, OW) is dC/d(out),
    ``col`` the im2col of the forward pass.  Writes dC/dw into ``dw``, of
    shape (F, C, KH, KW), a view of channels-last (F, KH, KW, C) data (a
    ConvPoolLayer's nabla_w); returns dC/dx, of shape ``x_shape``, or
    None when ``need_dx`` is false (the first layer needs none)."""
    F, C, KH, KW = w.shape
    dout2 = channels_last(dout).reshape(-1, F)  # (N*OH*OW, F)
    col2 = col.reshape(dout2.shape[0], -1)  # (N*OH*OW, KH*KW*C)
    matmul(dout2.T, col2, out=_filter_matrix(dw, view=True))
    if not need_dx:
        return None
    return col2im_matmul(dout2, w, x_shape)


def col2im_matmul(dout2, w, x_shape):
    """dC/dx = col2im(dout2 @ W), W the filter matrix.  ``dout2`` is
    dC/d(out) as an (N*OH*OW, F) matrix, channels-last.  Three ways,
    each tested against ``col2im``:

    - NumPy with numba, or CuPy: the product, then a compiled col2im
      (kernels_cpu, or kernels_cuda's gather: two launches).
    - NumPy alone, without forming that (N*OH*OW, KH*KW*C) product:
      one (N*OH*OW, F) @ (F, C) product and one add per
      filter position (l, m), straight into the image at offset (l, m):
      each add reads a contiguous block.
    - CuPy without kernels_cuda: the full convolution of the zero-padded output
      gradient with the flipped filters, one product
      (``_full_convolution``): five kernel launches, where the adds above
      take a hundred for a 5x5 filter.
    """
    xp = get_array_module(dout2)
    F, C, KH, KW = w.shape
    N, _, H, W = x_shape
    OH, OW = H - KH + 1, W - KW + 1
    fast = _cpu() if _fast(dout2) else kernels_cuda if _fast_cuda(dout2) \
        else None
    if fast is not None:  # compiled: col2im's strided adds cost little
        dcol = matmul(dout2, _filter_matrix(w)).reshape(N, OH, OW, KH, KW, C)
        return fast.col2im(dcol, H, W).transpose(0, 3, 1, 2)
    if xp is not numpy:
        return _full_convolution(dout2.reshape(N, OH, OW, F), w)
    dx = xp.zeros((N, H, W, C), dtype=dout2.dtype)
    for l in range(KH):
        for m in range(KW):
            dx[:, l:l + OH, m:m + OW, :] += (dout2 @ w[:, :, l, m]).reshape(
                N, OH, OW, C)
    return dx.transpose(0, 3, 1, 2)


def _full_convolution(dout, w):
    """dC/dx for the convolution with filters ``w`` (F, C, KH, KW), given
    dC/d(out) ``dout`` (N, OH, OW, F), channels-last: the "full"
    convolution dx[n, y, x, c] = sum dout[n, y-l, x-m, f] w[f, c, l, m]
    over l, m, f, as one valid convolution of dout, zero-padded by
    (KH-1, KW-1) on each side, with the flipped filters
    w[:, :, ::-1, ::-1].  Returns dx as (N, C, H, W)."""
    xp = get_array_module(dout)
    F, C, KH, KW = w.shape
    N, OH, OW, _ = dout.shape
    padded = xp.zeros((N, OH + 2 * (KH - 1), OW + 2 * (KW - 1), F),
                      dtype=dout.dtype)
    padded[:, KH - 1:KH - 1 + OH, KW - 1:KW - 1 + OW, :] = dout
    col = _patches(padded, KH, KW)  # (N, H, W, KH, KW, F)
    flipped = xp.ascontiguousarray(
        w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)).reshape(KH * KW * F, C)
    N, H, W = col.shape[:3]
    dx = col.reshape(N * H * W, -1) @ flipped  # (N*H*W, C)
    return dx.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def _filter_matrix(w, view=False):
    """The filters ``w`` (F, C, KH, KW) as the (F, KH*KW*C) matrix that
    multiplies im2col's patches: free when w is a view of channels-last
    data, as a ConvPoolLayer's is (a copy otherwise, or a ValueError
    if ``view``)."""
    channels_last_w = w.transpose(0, 2, 3, 1)
    if view and not channels_last_w.flags.c_contiguous:
        raise ValueError("the filters are not a view of channels-last data")
    return channels_last_w.reshape(w.shape[0], -1)


def max_pool(x, poolsize):
    """Max-pool ``x`` (N, F, H, W) over non-overlapping (ph, pw) windows,
    ignoring a border that does not fill a window (Theano's
    ignore_border=True).  Returns the maxima, (N, F, H//ph, W//pw).

    Two ways, each tested against a loop: on NumPy one pass per window
    entry (ph*pw fast passes over contiguous runs); on CuPy, where each
    pass is a kernel launch, one reduction over the windows."""
    xp = get_array_module(x)
    x = channels_last(x)
    if xp is not numpy:
        return _windows(x, poolsize).max(axis=(2, 4)).transpose(0, 3, 1, 2)
    entries = _window_entries(x.shape, poolsize)
    out = x[entries[0]].copy()
    for e in entries[1:]:
        xp.maximum(out, x[e], out=out)
    return out.transpose(0, 3, 1, 2)


def max_pool_backward(dout, x, out, poolsize):
    """Backward pass of ``max_pool``, given its input ``x`` and output
    ``out``: each window's gradient ``dout`` (N, F, PH, PW) goes to the
    position of its maximum (the first, in row-major order, if there are
    ties, as in cuDNN); returns dC/dx, shaped like ``x`` (zero off the
    maxima and on the ignored border).

    The route is found again here, by comparing ``x`` with ``out``,
    rather than kept from the forward pass: finding it is cheaper than
    keeping an argmax up to date while the maxima are found.  On CuPy,
    the argmax of each window instead (``_max_pool_backward_by_window``):
    six launches where the entry-by-entry comparisons take twenty."""
    xp = get_array_module(dout)
    x, dout = channels_last(x), channels_last(dout)
    if xp is not numpy:
        return _max_pool_backward_by_window(dout, x, poolsize)
    out = channels_last(out)
    dx = xp.zeros(x.shape, dtype=dout.dtype)
    free = xp.ones(out.shape, dtype=bool)  # windows whose maximum is not yet found
    for e in _window_entries(x.shape, poolsize):
        hit = (x[e] == out) & free
        free &= ~hit
        xp.multiply(dout, hit, out=dx[e])
    return dx.transpose(0, 3, 1, 2)


def _max_pool_backward_by_window(dout, x, poolsize):
    """``max_pool_backward`` of channels-last ``dout`` (N, PH, PW, C) and
    ``x`` (N, H, W, C): each window's entries side by side, their argmax
    (the first maximum), and ``dout`` sent to it."""
    xp = get_array_module(dout)
    ph, pw = poolsize
    N, PH, PW, C = dout.shape
    windows = xp.ascontiguousarray(_windows(x, poolsize).transpose(
        0, 1, 3, 5, 2, 4)).reshape(N, PH, PW, C, ph * pw)
    route = windows.argmax(axis=-1)  # (N, PH, PW, C): which entry is the max
    hit = route[..., None] == xp.arange(ph * pw)
    dwindows = (hit * dout[..., None]).reshape(N, PH, PW, C, ph, pw)
    dx = xp.ascontiguousarray(dwindows.transpose(0, 1, 4, 2, 5, 3)).reshape(
        N, PH * ph, PW * pw, C)
    if dx.shape != x.shape:  # the ignored border gets no gradient
        full = xp.zeros(x.shape, dtype=dx.dtype)
        full[:, :PH * ph, :PW * pw, :] = dx
        dx = full
    return dx.transpose(0, 3, 1, 2)


def _windows(x, poolsize):
    """The pooling windows of a channels-last ``x`` (N, H, W, C), as a
    view of shape (N, PH, ph, PW, pw, C) (the border left out)."""
    ph, pw = poolsize
    N, H, W, C = x.shape
    PH, PW = H // ph, W // pw
    return x[:, :PH * ph, :PW * pw, :].reshape(N, PH, ph, PW, pw, C)


def _window_entries(shape, poolsize):
    """For k = 0 .. ph*pw-1 (row-major in the window), the index that picks
    entry k of every pooling window of a channels-last array of ``shape``
    (N, H, W, C)."""
    ph, pw = poolsize
    PH, PW = shape[1] // ph, shape[2] // pw
    return [(slice(None), slice(i, PH * ph, ph), slice(j, PW * pw, pw))
            for i in range(ph) for j in range(pw)]


def pool_bias_activation(conv_out, b, poolsize, activation_fn):
    """network3's order after the convolution: max-pool ``conv_out``
    (N, F, OH, OW), then add the bias ``b`` (F,), then apply
    ``activation_fn``.  Returns ``(z, a, route)``: z and a of shape
    (N, F, PH, PW), and route, what ``pool_bias_activation_backward``
    needs to send gradients back through the pooling (the generic
    version keeps the input and the maxima; the compiled kernels, each
    window's argmax, one byte per pooled value).  The CUDA kernel's z
    and a are (N, F, PH, PW) arrays, so that a fully connected layer
    above reads them without a copy; the others, views of
    channels-last data."""
    if _fast_cuda(conv_out, activation_fn):
        return kernels_cuda.pool_bias_activation(
            channels_last(conv_out), b, poolsize,
            kernels_cuda.ACTIVATION_CODES[activation_fn])
    if _fast(conv_out):
        z, a, route = _cpu().pool_bias_activation(
            channels_last(conv_out), b, poolsize, activation_fn)
        return z.transpose(0, 3, 1, 2), a.transpose(0, 3, 1, 2), route
    pooled_out = max_pool(conv_out, poolsize)
    z = pooled_out + b.reshape(1, -1, 1, 1)
    return z, activation_fn(z), (conv_out, pooled_out)


def pool_bias_activation_backward(nabla_a, z, a, route, conv_shape, poolsize,
                                  activation_fn, nabla_b):
    """Backward pass of ``pool_bias_activation``: given nabla_a = dC/da
    (N, F, PH, PW), returns nabla_conv, the error delta = nabla_a *
    sigma'(z) (BP2) sent back through the pooling to the convolution's
    outputs, (N, F, OH, OW) = ``conv_shape``; writes the sum of delta
    over the mini-batch and the map (BP3) into ``nabla_b`` (F,)."""
    xp = get_array_module(nabla_a)
    if _fast_cuda(nabla_a, activation_fn):
        N, F, OH, OW = conv_shape
        nabla_conv = kernels_cuda.pool_bias_activation_backward(
            nabla_a, a, route, (N, OH, OW, F),
            poolsize, kernels_cuda.ACTIVATION_CODES[activation_fn])
        # Each delta lands in exactly one place: the sums are the same.
        xp.sum(nabla_conv, axis=(0, 1, 2), out=nabla_b)
        return nabla_conv.transpose(0, 3, 1, 2)
    if not isinstance(route, tuple):  # kernels_cpu's route
        N, F, OH, OW = conv_shape
        return _cpu().pool_bias_activation_backward(
            channels_last(nabla_a), channels_last(z), channels_last(a), route,
            (N, OH, OW, F), poolsize, activation_fn, nabla_b
        ).transpose(0, 3, 1, 2)
    conv_out, pooled_out = route
    delta = nabla_a * activation_fn.prime(z, a)
    xp.sum(delta, axis=(0, 2, 3), out=nabla_b)
    return max_pool_backward(delta, conv_out, pooled_out, poolsize)


def bias_activation(z, b, activation_fn):
    """A fully connected layer's weighted input and output from its
    product ``z`` = inpt w (m, n) and biases ``b`` (n,): returns ``(z + b,
    sigma(z + b))`` (the CUDA kernel adds b to z in place)."""
    if _fast_cuda(z, activation_fn) and z.flags.c_contiguous:
        return kernels_cuda.bias_activation(
            z, b, kernels_cuda.ACTIVATION_CODES[activation_fn])
    z = z + b
    return z, activation_fn(z)


def delta_bias_gradient(nabla_a, z, a, activation_fn, nabla_b):
    """BP2 and BP3 of a fully connected layer: returns delta = nabla_a *
    sigma'(z) (m, n), and writes its sum over the mini-batch into
    ``nabla_b`` (n,)."""
    xp = get_array_module(nabla_a)
    if _fast_cuda(nabla_a, activation_fn):
        return kernels_cuda.delta_bias_gradient(
            xp.ascontiguousarray(nabla_a), xp.ascontiguousarray(a),
            kernels_cuda.ACTIVATION_CODES[activation_fn], nabla_b)
    delta = nabla_a * activation_fn.prime(z, a)
    xp.sum(delta, axis=0, out=nabla_b)
    return delta


def softmax_cost_delta(z, y, b=None, nabla_b=None, cost=None):
    """The softmax layer's output, cost and error for its weighted input
    ``z`` (m, n) (or, with biases ``b`` (n,), its product inpt w, to
    which b is added: in place on CuPy) and integer labels ``y`` (m,):
    returns ``(z, a, cost, delta)``, a = softmax(z) (each row shifted by
    its maximum: no overflow), cost = -mean ln a_y (0-d, left on the
    device; written into ``cost`` if given), computed as ln(sum) -
    shifted z_y (no underflow), and delta = dC/dz = (a - onehot(y))/m,
    BP1 for the log-likelihood of a softmax layer.  With ``nabla_b``
    (n,), also BP3: nabla_b gets delta's sum over the mini-batch."""
    xp = get_array_module(z)
    if _fast_cuda(z) and (b is None or z.flags.c_contiguous):
        return kernels_cuda.softmax_cost_delta(
            xp.ascontiguousarray(z) if b is None else z,
            y.astype(numpy.int32, copy=False), b, nabla_b, cost)
    if b is not None:
        z = z + b
    m, n = z.shape
    shifted_z = z - z.max(axis=1, keepdims=True)
    e = xp.exp(shifted_z)
    normalizer = e.sum(axis=1, keepdims=True)
    a = e / normalizer
    shifted_z_y = xp.take_along_axis(shifted_z, y.reshape(-1, 1), axis=1)
    cost = xp.mean(xp.log(normalizer) - shifted_z_y, out=cost)
    delta = (a - (xp.arange(n) == y.reshape(-1, 1))) / m
    if nabla_b is not None:
        xp.sum(delta, axis=0, out=nabla_b)
    return z, a, cost, delta


def sgd_step(params, nablas, n_weights, eta, decay):
    """A step of gradient descent for every parameter of a network at
    once, in place: ``params`` holds all the weights, then all the
    biases (the first ``n_weights`` entries are weights), ``nablas``
    their gradients in the same places.  w -> (1 - decay) w - eta
    nabla_w, b -> b - eta nabla_b (network3's update; decay =
    eta*lmbda/num_training_batches is the L2 term's).  The gradients are
    scaled in place: the step makes no temporary arrays."""
    if _fast_cuda(params):
        return kernels_cuda.sgd_step(params, nablas, n_weights, eta, decay)
    if decay:
        params[:n_weights] *= 1 - decay
    nablas *= eta
    params -= nablas


# Dropout masks come from Philox4x32-10 (Salmon, Moraes, Dror and Shaw,
# "Parallel random numbers: as easy as 1, 2, 3", SC 2011), a
# counter-based generator: the number for mask entry i of draw d is a
# function of (key, i, d) alone.  So every backend and kernel draws the
# same masks from one seed, and any step's masks can be drawn again (a
# resumed run, a captured CUDA graph) without a generator's state.
PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # the round multipliers
PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # the key schedule's increments
PHILOX_ROUNDS = 10


def philox(counter, key):
    """Philox4x32-10: the four 32-bit words of ``counter`` (uint32 arrays
    or scalars) encrypted under the two-word ``key`` (Python ints).
    Returns the four output words, uint32 arrays."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    u32, u64, bits = numpy.uint32, numpy.uint64, numpy.uint64(32)

    def wide(c):  # to 64 bits (a scalar stays a host scalar)
        return u64(c) if numpy.isscalar(c) else c.astype(u64)
    for _ in range(PHILOX_ROUNDS):
        # Each round: two 32x32 -> 64-bit products, their halves mixed
        # with the other words and the key.
        p0 = wide(c0) * u64(PHILOX_M[0])
        p1 = wide(c2) * u64(PHILOX_M[1])
        c0, c1, c2, c3 = ((p1 >> bits).astype(u32) ^ c1 ^ u32(k0),
                          p1.astype(u32),
                          (p0 >> bits).astype(u32) ^ c3 ^ u32(k1),
                          p0.astype(u32))
        k0, k1 = (k0 + PHILOX_W[0]) & 0xFFFFFFFF, (k1 + PHILOX_W[1]) & 0xFFFFFFFF
    return c0, c1, c2, c3


def dropout_threshold(p_dropout):
    """An entry is dropped when the top 24 bits of its random word are
    below this: probability p_dropout, to within 2**-25."""
    return round(p_dropout * 2**24)


def dropout(inpt, p_dropout, key, draw):
    """Dropout of ``inpt`` (m, n) in training: returns ``(inpt * mask,
    mask)``, mask of 0s and 1s in inpt's dtype, entry i (row-major) kept
    with probability 1 - p_dropout: dropped when the top 24 bits of the
    first word of Philox4x32-10 of the counter (i, draw mod 2**32, draw
    div 2**32, 0) under ``key`` (two 32-bit ints) are below
    ``dropout_threshold(p_dropout)``.  ``draw`` numbers the masks drawn
    with one key (backend.next_dropout_draw)."""
    fast = _cpu() if _fast(inpt) else kernels_cuda if _fast_cuda(inpt) \
        else None
    if fast is not None:
        return fast.dropout(inpt, dropout_threshold(p_dropout), key, draw)
    xp = get_array_module(inpt)
    index = xp.arange(inpt.size, dtype=numpy.uint32).reshape(inpt.shape)
    word, _, _, _ = philox((index, numpy.uint32(draw & 0xFFFFFFFF),
                            numpy.uint32(draw >> 32), numpy.uint32(0)), key)
    mask = ((word >> numpy.uint32(8)) >=
            numpy.uint32(dropout_threshold(p_dropout))).astype(inpt.dtype)
    return inpt * mask, mask
