"""kernels_cuda.py
~~~~~~~~~~~~~~~~~~

Fused CUDA versions of functions in ``kernels.py``, for CuPy arrays.  At
the book's mini-batch of 10 a training step is a few MFLOP, and its time
on a GPU is the number of kernel launches: each kernel here does in one
launch what the generic code does in several.  ``kernels.py`` calls them
for CuPy arrays; its generic versions stay the reference the tests hold
these to.

- ``pool_bias_activation``: a ConvPoolLayer's max-pooling, bias and
  activation in one pass over the pooled outputs, recording each
  window's route (the entry of its first maximum, one byte).
- ``pool_bias_activation_backward``: sigma'(z) times the gradient, sent
  back through the routes, in one pass over the convolution's outputs.
- ``bias_activation`` and ``delta_bias_gradient``: a fully connected
  layer's bias and activation after its product, in one pass; and its
  BP2 and BP3, delta and the bias gradient, in one.
- ``softmax_cost_delta``: the softmax layer's output, each row's
  log-likelihood and the error delta = (a - y)/m, one thread per row;
  then ``softmax_sums``: the mean cost and the bias gradient.
- ``col2im``: the convolution's input gradient from the patch
  gradients, as a gather: each image entry sums what it contributed to.
- ``dropout``: a dropout mask drawn from Philox4x32-10 and applied, one
  thread per entry.
- ``sgd_step``: the update of every parameter of a network, L2 decay
  included, in one launch: a network keeps all of them in one flat
  array, and their gradients in another (``layers.Layer``).

The kernels are CUDA C, in ``kernels.cu`` beside this file, compiled
whole by CuPy (NVRTC) at first use, once per float type (``REAL`` is
float or double).  No kernel uses shared memory or ``__syncthreads``:
each thread computes its own outputs, which keeps them simple to read
and lets the tests run the same source on the CPU, thread by thread
(``tests/cuda_on_cpu.py``).  None of this has run on a GPU yet.
"""

import contextlib
import importlib.resources

import numpy

from gpunn.activations import ReLU, linear, sigmoid, tanh
from gpunn.compute.backend import get_array_module

#: The CUDA C source of every kernel, compiled as one module (kernels.cu,
#: shipped beside this file as package data).
SOURCE = importlib.resources.files(__package__).joinpath(
    "kernels.cu").read_text(encoding="utf-8")

KERNELS = ("pool_bias_activation", "pool_bias_activation_backward",
           "bias_activation", "delta_bias_gradient", "softmax_cost_delta",
           "softmax_sums", "sgd_step", "col2im", "dropout", "gemm",
           "load_batch", "next_step")
STATE_SIZE = 5  # the entries of a captured step's state (kernels.cu's enum)
# gpunn's activations (the objects, not their names) and their codes.
ACTIVATION_CODES = {linear: 0, sigmoid: 1, tanh: 2, ReLU: 3}
THREADS = 256  # per block

_modules = {}


def options(dtype):
    """The compiler options of the source for ``dtype``."""
    return ("-DREAL=" + ("double" if numpy.dtype(dtype) == numpy.float64
                         else "float"),)


def _kernel(xp, name, dtype):
    key = (id(xp), numpy.dtype(dtype).name)
    if key not in _modules:
        _modules[key] = xp.RawModule(code=SOURCE, options=options(dtype))
    return _modules[key].get_function(name)


def _launch(xp, name, dtype, threads, args):
    for a in args:  # a kernel reads an array as one contiguous block
        if getattr(a, "ndim", 0) and not a.flags.c_contiguous:
            raise ValueError("{}: arrays must be C-contiguous".format(name))
    blocks = (threads + THREADS - 1) // THREADS
    _kernel(xp, name, dtype)((max(blocks, 1),), (THREADS,), args)


def pool_bias_activation(conv, b, poolsize, kind):
    """``conv`` (N, OH, OW, F) channels-last, contiguous; ``b`` (F,).
    Returns ``(z, a, route)``, each (N, F, PH, PW): max-pool, then the
    bias, then activation number ``kind`` (ACTIVATION_CODES); route is
    uint8, the row-major window entry of each maximum."""
    xp = get_array_module(conv)
    N, OH, OW, F = conv.shape
    ph, pw = poolsize
    PH, PW = OH // ph, OW // pw
    z = xp.empty((N, F, PH, PW), dtype=conv.dtype)
    a = xp.empty_like(z)
    route = xp.empty(z.shape, dtype=numpy.uint8)
    i32 = numpy.int32
    _launch(xp, "pool_bias_activation", conv.dtype, z.size,
            (conv, b, z, a, route, i32(N), i32(OH), i32(OW), i32(F), i32(ph),
             i32(pw), i32(PH), i32(PW), i32(kind)))
    return z, a, route


def pool_bias_activation_backward(nabla_a, a, route, conv_shape, poolsize,
                                  kind):
    """Given ``a`` and ``route`` (N, F, PH, PW), contiguous, and
    ``nabla_a`` (N, F, PH, PW), a contiguous array or a view of
    channels-last data, returns dC/d(conv) (``conv_shape``, (N, OH, OW,
    F)): nabla_a * sigma'(z) at each window's route, zero elsewhere."""
    xp = get_array_module(nabla_a)
    nchw = bool(nabla_a.flags.c_contiguous)
    if not nchw:  # channels-last: free if it is a view of such data
        nabla_a = xp.ascontiguousarray(nabla_a.transpose(0, 2, 3, 1))
    N, OH, OW, F = conv_shape
    ph, pw = poolsize
    PH, PW = a.shape[2:]
    nabla_conv = xp.empty(conv_shape, dtype=nabla_a.dtype)
    i32 = numpy.int32
    _launch(xp, "pool_bias_activation_backward", nabla_a.dtype, nabla_conv.size,
            (nabla_a, a, route, nabla_conv, i32(N), i32(OH), i32(OW), i32(F),
             i32(ph), i32(pw), i32(PH), i32(PW), i32(kind), i32(nchw)))
    return nabla_conv


def softmax_cost_delta(z, y, b=None, nabla_b=None, cost=None):
    """``z`` (m, n) contiguous, ``y`` (m,) int32 labels; with ``b`` (n,),
    z is the product inpt w and gets b added in place.  Returns ``(z, a,
    cost, delta)``: the weighted input, softmax(z), the mean
    log-likelihood (0-d; written into ``cost`` if given), and dC/dz = (a
    - onehot(y))/m; with ``nabla_b`` (n,), writes delta's column sums
    into it.  Two launches."""
    xp = get_array_module(z)
    m, n = z.shape
    a, delta = xp.empty_like(z), xp.empty_like(z)
    costs = xp.empty(m, dtype=z.dtype)
    if cost is None:
        cost = xp.empty((), dtype=z.dtype)
    i32 = numpy.int32
    _launch(xp, "softmax_cost_delta", z.dtype, m,
            (z, z if b is None else b, y, a, costs, delta, i32(m), i32(n),
             i32(b is not None)))
    _launch(xp, "softmax_sums", z.dtype, n + 1,
            (delta, costs, delta if nabla_b is None else nabla_b, cost, i32(m),
             i32(n), i32(nabla_b is not None)))
    return z, a, cost, delta


def sgd_step(params, nablas, n_weights, eta, decay):
    """``kernels.sgd_step`` for contiguous ``params`` and ``nablas``, in
    one launch: every parameter of a network is updated in place."""
    xp = get_array_module(params)
    real = params.dtype.type
    _launch(xp, "sgd_step", params.dtype, params.size,
            (params, nablas, numpy.int64(params.size), numpy.int64(n_weights),
             real(eta), real(decay)))


def col2im(dcol, H, W):
    """``kernels.col2im`` of ``dcol`` (N, OH, OW, KH, KW, C), contiguous,
    returned channels-last: an (N, H, W, C) array."""
    xp = get_array_module(dcol)
    N, _, _, KH, KW, C = dcol.shape
    dx = xp.empty((N, H, W, C), dtype=dcol.dtype)
    i32 = numpy.int32
    _launch(xp, "col2im", dcol.dtype, dx.size,
            (dcol, dx, i32(N), i32(H), i32(W), i32(C), i32(KH), i32(KW)))
    return dx


def bias_activation(z, b, kind):
    """``z`` (m, n) contiguous, the product inpt w, gets the biases ``b``
    (n,) added in place; returns ``(z, a)``, a = activation ``kind``."""
    xp = get_array_module(z)
    a = xp.empty_like(z)
    _launch(xp, "bias_activation", z.dtype, z.size,
            (z, b, a, numpy.int32(z.shape[0]), numpy.int32(z.shape[1]),
             numpy.int32(kind)))
    return z, a


def delta_bias_gradient(nabla_a, a, kind, nabla_b):
    """``nabla_a``, ``a`` (m, n) contiguous: returns delta = nabla_a *
    sigma'(z), and writes its column sums into ``nabla_b`` (n,)."""
    xp = get_array_module(nabla_a)
    m, n = nabla_a.shape
    delta = xp.empty_like(nabla_a)
    _launch(xp, "delta_bias_gradient", nabla_a.dtype, n,
            (nabla_a, a, delta, nabla_b, numpy.int32(m), numpy.int32(n),
             numpy.int32(kind)))
    return delta


def dropout(inpt, threshold, key, draw):
    """``kernels.dropout`` of ``inpt`` (m, n) with the threshold of its
    p_dropout: returns ``(inpt * mask, mask)``, in one launch.  ``key``
    is two ints, or a captured step's state on the device (then ``draw``
    counts within the step)."""
    xp = get_array_module(inpt)
    inpt = xp.ascontiguousarray(inpt)
    masked, mask = xp.empty_like(inpt), xp.empty_like(inpt)
    u32 = numpy.uint32
    on_device = not isinstance(key, tuple)
    state = key if on_device else _no_state(xp)
    k0, k1 = (0, 0) if on_device else key
    _launch(xp, "dropout", inpt.dtype, inpt.size,
            (inpt, masked, mask, numpy.int64(inpt.size), u32(k0), u32(k1),
             numpy.uint64(draw), u32(threshold), state,
             numpy.int32(on_device)))
    return masked, mask


_no_states = {}


def _no_state(xp):
    """A state array that the kernels are told not to read."""
    if id(xp) not in _no_states:
        _no_states[id(xp)] = xp.empty(STATE_SIZE, dtype=numpy.uint64)
    return _no_states[id(xp)]


_gemm_only = []


@contextlib.contextmanager
def gemm_only():
    """Inside, ``use_gemm`` says yes: a captured step's capture (CuPy
    refuses cuBLAS then), and its eager first step, which so computes its
    products as its replays do, to the last bit."""
    _gemm_only.append(True)
    try:
        yield
    finally:
        _gemm_only.pop()


def use_gemm():
    """Do products go to ``gemm`` rather than cuBLAS (inside
    ``gemm_only``)?  A flag: the eager step asks nothing of the device."""
    return bool(_gemm_only)


def gemm(a, b, out=None):
    """a @ b for 2-d ``a`` (M, K) and ``b`` (K, N), any strides, into
    ``out`` (M, N), contiguous, if given: one launch, no cuBLAS."""
    xp = get_array_module(a)
    (M, K), N = a.shape, b.shape[1]
    if out is None:
        out = xp.empty((M, N), dtype=a.dtype)
    elif not out.flags.c_contiguous:
        raise ValueError("gemm: out must be C-contiguous")
    i64, i32, size = numpy.int64, numpy.int32, a.itemsize
    # the kernel reads a and b through their strides: contiguity not needed
    _kernel(xp, "gemm", a.dtype)(
        (max((M * N + THREADS - 1) // THREADS, 1),), (THREADS,),
        (a, b, out, i32(M), i32(N), i32(K), i64(a.strides[0] // size),
         i64(a.strides[1] // size), i64(b.strides[0] // size),
         i64(b.strides[1] // size)))
    return out


def load_batch(training_x, training_y, x, y, state):
    """Mini-batch number state[STEP] of ``training_x`` (n, ...) and
    ``training_y`` (n,) int32, contiguous, into ``x`` and ``y``."""
    xp = get_array_module(x)
    m = len(y)
    _launch(xp, "load_batch", x.dtype, x.size,
            (training_x, training_y, x, y, state, numpy.int32(m),
             numpy.int32(x.size // m)))


def next_step(cost, costs, state):
    """``costs[state[STEP]] = cost``, then the step number advanced."""
    _launch(get_array_module(cost), "next_step", cost.dtype, 1,
            (cost, costs, state))


def load(xp, dtype):
    """Compile every kernel for ``dtype`` now (a capture must not)."""
    for name in KERNELS:
        _kernel(xp, name, dtype)
