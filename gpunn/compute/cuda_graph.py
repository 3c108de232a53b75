"""cuda_graph.py
~~~~~~~~~~~~~~~~

network3's training step on CuPy, captured once as a CUDA graph and
replayed for each mini-batch: one launch a step, where the step itself
takes about 25 (``tests/test_launch_budgets.py``).  At the book's
mini-batch of 10 a step is a few MFLOP, and its time on a GPU is the
number of launches: a graph's nodes cost far less than launches.

A captured step is the step ``Network._update`` takes, recorded rather
than run, so it must keep to what a graph can replay:

- Its buffers are fixed.  The mini-batch is copied into ``x`` and ``y``
  by a kernel that reads the step's number from the device (``state``),
  and the cost goes from ``cost`` to its place in ``costs`` by another,
  which advances that number: one graph serves every step.  Every
  parameter and gradient is updated in place (``Network.flat_params``).
- Arrays made during the capture come from a memory pool of the graph's
  own (``pool``), never used outside it: a temporary of the step, freed
  after the capture, must not be handed to anything else while replays
  still write to it.
- CuPy refuses cuBLAS and cuRAND while a stream captures: the products
  go to ``kernels_cuda.gemm`` (``kernels.matmul`` does this), and the
  dropout masks come from the Philox kernel with its key and step read
  from ``state``.  Nothing synchronizes or copies to or from the host.

The first step of each run is taken eagerly (it also compiles CuPy's
kernels, which a capture must not do), the others replayed; the eager
step computes its products with the replays' kernel, so that a resumed
run ends with the weights of an uninterrupted one, to the last bit.  If the
capture fails, the run goes on eagerly, with a warning.  Nothing of
this has run on a GPU yet: it is checked on the CuPy test double, which
records a capture and replays it (``tests/cupy_double.py``), and a
training run on it equals the eager one (``tests/test_cuda_graph.py``).
"""

import warnings

import numpy

from gpunn.compute import backend, kernels, kernels_cuda
from gpunn.compute.backend import get_array_module

#: The largest mini-batch captured by default: the products' kernel
#: (one thread per output) suits small products.  Not yet measured.
LARGEST_MINI_BATCH = 64


def can_capture(training_x, monitor_gradients=False):
    """Can training on ``training_x`` be captured (CuPy arrays, the fused
    kernels on, no per-step gradient norms)?"""
    return (not isinstance(training_x, numpy.ndarray) and kernels.FAST_CUDA
            and not monitor_gradients)


class CapturedStep:
    """The training step of ``net`` on ``training_x`` (n, ...), ``training_y``
    (n,) int32, device arrays, with network3's update for ``eta``,
    ``lmbda`` and ``num_training_batches``, as a CUDA graph.

    Use: ``start_epoch()``, then ``step(j)`` for j = 0, 1, ...; the
    epoch's costs are in ``costs`` (the array is reused each epoch)."""

    def __init__(self, net, training_x, training_y, eta, lmbda,
                 num_training_batches):
        xp = get_array_module(training_x)
        m = net.mini_batch_size
        self.net, self.update = net, (eta, lmbda, num_training_batches)
        self.training_x = xp.ascontiguousarray(training_x)
        self.training_y = xp.ascontiguousarray(training_y)
        self.x = xp.empty((m,) + training_x.shape[1:], dtype=training_x.dtype)
        self.y = xp.empty(m, dtype=numpy.int32)
        self.cost = xp.empty((), dtype=training_x.dtype)
        self.costs = xp.empty(num_training_batches, dtype=training_x.dtype)
        # key0, key1, first draw, draws per step, step (kernels.cu's enum)
        self.state = xp.zeros(kernels_cuda.STATE_SIZE, dtype=numpy.uint64)
        self.draws_per_step = sum(1 for layer in net.layers if layer.p_dropout)
        self.graph = None
        self.pool = xp.cuda.MemoryPool()
        self.stream = xp.cuda.Stream(non_blocking=True)

    def start_epoch(self):
        """Before an epoch's first step: its dropout key and first mask
        number to the device (one copy), and the step number 0."""
        key = backend.dropout_key
        self.first_draw = backend.dropout_draws()
        state = numpy.array([key[0], key[1], self.first_draw,
                             self.draws_per_step, 0], dtype=numpy.uint64)
        self.state.set(state)

    def step(self, j):
        """Mini-batch ``j`` of the epoch: eager for the run's first step
        (then the capture), a replay of the graph after it."""
        if self.graph:
            self.graph.launch()
            backend.skip_dropout_draws(self.draws_per_step)
            return
        m = self.net.mini_batch_size
        batch = slice(j * m, (j + 1) * m)
        with kernels_cuda.gemm_only():  # the replays' products, bit for bit
            self.net._update(self.training_x[batch], self.training_y[batch],
                             *self.update, cost=self.costs[j:j + 1].reshape(()))
        if self.graph is None:
            self.state[kernels_cuda.STATE_SIZE - 1:] += 1  # the step number
            try:
                self.graph = self._capture()
            except Exception as e:  # CuPy or the driver refused something
                self.graph = False  # the run goes on eagerly
                warnings.warn("gpunn: training without a CUDA graph: capturing "
                              "the training step failed ({}: {}); --no-graph "
                              "skips the attempt".format(type(e).__name__, e),
                              RuntimeWarning, stacklevel=2)

    def _capture(self):
        """Record one step (the mini-batch, the update, the cost) as a
        graph, without running it."""
        xp = get_array_module(self.x)
        kernels_cuda.load(xp, self.x.dtype)
        with self.stream, xp.cuda.using_allocator(self.pool.malloc), \
                backend.dropout_key_on_device(self.state), \
                kernels_cuda.gemm_only():
            self.stream.begin_capture()
            try:
                kernels_cuda.load_batch(self.training_x, self.training_y,
                                        self.x, self.y, self.state)
                self.net._update(self.x, self.y, *self.update, cost=self.cost)
                kernels_cuda.next_step(self.cost, self.costs, self.state)
            finally:
                graph = self.stream.end_capture()
        return graph
