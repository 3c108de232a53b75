"""kernels.py
~~~~~~~~~~~~

The array work of network3's ConvPoolLayer: valid convolution through
im2col and a matrix product, its backward pass through col2im, and
max-pooling with the argmax its backward pass needs.

Everything here is written once against the array module of its inputs
(NumPy or CuPy).  These generic versions are the reference: a faster,
backend-specific kernel may replace one of these functions later, behind
the same name and signature, and is then tested against the version
kept here.

Shapes: images ``x`` are (N, C, H, W) (mini-batch, input maps, height,
width); filters ``w`` are (F, C, KH, KW), network3's filter_shape.
"""

from gpunn.backend import get_array_module


def im2col(x, kh, kw):
    """Unfold ``x`` (N, C, H, W) into the patches a (kh, kw) filter sees:
    returns ``col`` of shape (N, OH, OW, C, kh, kw), OH = H-kh+1 and
    OW = W-kw+1, with col[n, i, j] = x[n, :, i:i+kh, j:j+kw].

    The patch axes come last so that ``col`` reshapes for free into the
    (N*OH*OW, C*kh*kw) matrix of the convolution's matrix product.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = H - kh + 1, W - kw + 1
    col = xp.empty((N, OH, OW, C, kh, kw), dtype=x.dtype)
    # One strided copy per filter position, not per output pixel.
    x_nhwc = x.transpose(0, 2, 3, 1)
    for i in range(kh):
        for j in range(kw):
            col[:, :, :, :, i, j] = x_nhwc[:, i:i + OH, j:j + OW, :]
    return col


def col2im(dcol, x_shape):
    """The adjoint of ``im2col``: add each patch gradient of ``dcol``
    (N, OH, OW, C, kh, kw) back where the patch came from; returns the
    gradient with respect to the image, shape ``x_shape`` (N, C, H, W)."""
    xp = get_array_module(dcol)
    N, OH, OW, C, kh, kw = dcol.shape
    dx = xp.zeros((N, x_shape[2], x_shape[3], C), dtype=dcol.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, i:i + OH, j:j + OW, :] += dcol[:, :, :, :, i, j]
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
    out = col.reshape(N * OH * OW, -1) @ w.reshape(F, -1).T  # (N*OH*OW, F)
    return out.reshape(N, OH, OW, F).transpose(0, 3, 1, 2), col


def conv2d_backward(dout, col, w, x_shape, need_dx=True):
    """Backward pass of ``conv2d``.  ``dout`` (N, F, OH, OW) is dC/d(out),
    ``col`` the im2col of the forward pass.  Returns ``(dw, dx)``: dC/dw
    of shape (F, C, KH, KW) and dC/dx of shape ``x_shape``, or None for
    dx when ``need_dx`` is false (the first layer needs none)."""
    F = w.shape[0]
    dout2 = dout.transpose(0, 2, 3, 1).reshape(-1, F)  # (N*OH*OW, F)
    col2 = col.reshape(dout2.shape[0], -1)  # (N*OH*OW, C*KH*KW)
    dw = (dout2.T @ col2).reshape(w.shape)
    if not need_dx:
        return dw, None
    dcol = (dout2 @ w.reshape(F, -1)).reshape(col.shape)
    return dw, col2im(dcol, x_shape)


def max_pool(x, poolsize):
    """Max-pool ``x`` (N, F, H, W) over non-overlapping (ph, pw) windows,
    ignoring a border that does not fill a window (Theano's
    ignore_border=True).

    Returns ``(out, argmax)``, both (N, F, H//ph, W//pw): the maxima, and
    the index k = i*pw + j of the first maximum in each window (row i,
    column j of the window), for ``max_pool_backward``.
    """
    xp = get_array_module(x)
    out = argmax = None
    for k, entries in enumerate(_window_entries(x.shape, poolsize)):
        v = x[entries]  # entry k of every window, a strided view
        if out is None:
            out, argmax = v.copy(), xp.zeros(v.shape, dtype=xp.int8)
        else:
            better = v > out  # strictly: a tie keeps the first maximum
            xp.copyto(out, v, where=better)
            xp.copyto(argmax, k, where=better)
    return out, argmax


def max_pool_backward(dout, argmax, x_shape, poolsize):
    """Backward pass of ``max_pool``: each window's gradient ``dout``
    (N, F, PH, PW) goes to the position of its maximum (the first one,
    if there are ties, as in cuDNN); returns dC/dx of shape ``x_shape``
    (zero off the maxima and on the ignored border)."""
    xp = get_array_module(dout)
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    for k, entries in enumerate(_window_entries(x_shape, poolsize)):
        dx[entries] = dout * (argmax == k)
    return dx


def _window_entries(x_shape, poolsize):
    """For k = 0 .. ph*pw-1, the index (slices) that picks entry k of
    every pooling window out of an array of shape ``x_shape``."""
    ph, pw = poolsize
    PH, PW = x_shape[2] // ph, x_shape[3] // pw
    for i in range(ph):
        for j in range(pw):
            yield (slice(None), slice(None),
                   slice(i, PH * ph, ph), slice(j, PW * pw, pw))
