"""shards.py
~~~~~~~~~~~~

Training on every CPU core: the NumPy backend's backprop, with the
mini-batch cut into shards.

A mini-batch of m images is cut into ``shard_count(m)`` shards of at
most SHARD_SIZE images; each shard's forward and backward passes run on
one of gpunn's threads (``backend.threads()``), on copies of the
network's layers that share its w and b but keep their own forward
state and their own gradient arrays (one flat array per shard, laid out
as the network's ``flat_nablas``).  The shards' gradients are then
added, each weighted by its share of the mini-batch (every shard's cost
is a mean over its own images), into the network's own gradient
arrays: the gradient of the mini-batch's mean cost, as one pass over
the whole mini-batch would give it, to rounding.  Dropout masks are the
whole mini-batch's: a shard draws rows first..last of the mask its
layer would draw (``kernels.dropout``'s ``first``).

One owner of threading: while gpunn trains on NumPy, the BLAS runs on
one thread (``backend.take_threads``), and gpunn's threads block while
they wait (no spinning), so no two thread pools fight for the cores.

Why this way, measured on a 2-core AMD EPYC (float32, dbl_conv_relu):

- The BLAS's own threads parallelize only the products: at mini-batch
  256 they were 43 ms of a 97 ms step, and the pooling, im2col and
  col2im (53 ms) ran on one core.  Parallel numba loops for those fought
  the BLAS's busy-waiting threads (see kernels_cpu).  Shards run
  everything on every core: 53 ms instead of 93 (1.7 times the speed of
  one thread), and a shard's arrays stay in cache where a 256-image
  layer's do not (one thread: 89 ms in shards of 32, 116 ms whole).
- Next to a busy process, a BLAS thread descheduled in the middle of a
  product holds up its partner, which spins; gpunn's threads take the
  next shard whenever they are free and sleep when there is none.

Shards depend only on the mini-batch size, and their gradients are
added in shard order: the weights after training are the same for any
number of threads.
"""

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy

from gpunn import backend

#: The most images in a shard: large enough that a shard's products run
#: near the BLAS's single-thread rate, small enough that its arrays stay
#: in the cache (32 and 64 were equal at mini-batch 256; 16 was slower).
SHARD_SIZE = 32

_pool = None  # (threads, ThreadPoolExecutor)
_pool_lock = threading.Lock()


def shard_count(m):
    """The number of shards of a mini-batch of ``m`` images."""
    return -(-m // SHARD_SIZE)


def shard_bounds(m):
    """The shards of a mini-batch of ``m`` images, as (start, stop)
    pairs: equal sizes, give or take one image."""
    n = shard_count(m)
    edges = [m * k // n for k in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def run(function, items):
    """``[function(item) for item in items]``, the items spread over
    gpunn's threads (in the calling thread when there is one thread or
    one item); exceptions are raised here, the first item's first."""
    threads = backend.take_threads()
    if threads == 1 or len(items) <= 1:
        return [function(item) for item in items]
    futures = [_executor(threads).submit(function, item) for item in items]
    return [f.result() for f in futures]


def _executor(threads):
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != threads:
            if _pool is not None:
                _pool[1].shutdown(wait=False)
            _pool = threads, ThreadPoolExecutor(
                threads, thread_name_prefix="gpunn")
        return _pool[1]


class Shard:
    """Copies of a network's layers for one shard of its mini-batch: the
    network's w and b, gradient arrays of their own in ``flat_nablas``."""

    def __init__(self, net, flat_nablas, first, stop, draws):
        self.first, self.stop = first, stop
        self.flat_nablas = flat_nablas
        self.layers = []
        for layer, (w_range, b_range) in zip(net.layers, net.parameter_ranges):
            shard_layer = copy.copy(layer)
            w, b, nabla_w, nabla_b = layer.storage()
            shard_layer.use_storage(
                w, b, flat_nablas[w_range].reshape(nabla_w.shape),
                flat_nablas[b_range].reshape(nabla_b.shape), copy=False)
            # The dropout mask's rows first..stop, of the draw the layer
            # would make for the whole mini-batch.
            shard_layer.dropout_draw = draws.get(id(layer))
            shard_layer.first_row = first
            self.layers.append(shard_layer)

    def backprop(self, x, y):
        """Forward and backward passes on this shard's rows of ``x``,
        ``y``; returns the shard's mean cost (a 0-d array)."""
        a = x[self.first:self.stop]
        for layer in self.layers[:-1]:
            a = layer.forward(a)
        output_layer = self.layers[-1]
        cost, delta = output_layer.forward_cost_delta(a, y[self.first:self.stop])
        nabla_a, _, _ = output_layer.backward_delta(
            delta, need_input_grad=len(self.layers) > 1, have_nabla_b=True)
        for l in range(len(self.layers) - 2, -1, -1):
            nabla_a, _, _ = self.layers[l].backward(nabla_a,
                                                    need_input_grad=l > 0)
        return cost


def backprop(net, x, y, cost=None):
    """``Network._backprop`` of the mini-batch ``x`` (m, ...), ``y``
    (m,), NumPy arrays, in shards on gpunn's threads: the gradients go
    into the network's own arrays; returns ``(nabla_b, nabla_w, cost)``
    as ``_backprop`` does."""
    m = len(x)
    bounds = shard_bounds(m)
    buffers = _buffers(net, len(bounds))
    # The masks' draw numbers, in the order the layers would draw them.
    draws = {id(layer): backend.next_dropout_draw() for layer in net.layers
             if layer.p_dropout}
    shards = [Shard(net, buffer, first, stop, draws)
              for buffer, (first, stop) in zip(buffers, bounds)]
    costs = run(lambda shard: shard.backprop(x, y), shards)
    # Each shard's gradient is of its own mean cost: weight by its share.
    total = net.flat_nablas
    weights = [(stop - first) / m for first, stop in bounds]
    numpy.multiply(buffers[0], weights[0], out=total)
    for buffer, weight in zip(buffers[1:], weights[1:]):
        buffer *= weight
        total += buffer
    mean_cost = sum(float(c) * weight for c, weight in zip(costs, weights))
    if cost is None:
        cost = numpy.empty((), dtype=total.dtype)
    cost[...] = mean_cost
    return ([layer.nabla_b for layer in net.layers],
            [layer.nabla_w for layer in net.layers], cost)


def _buffers(net, n):
    """``n`` flat gradient arrays shaped like the network's, kept on the
    network between steps (remade when its flat arrays are)."""
    kept = getattr(net, "_shard_buffers", None)
    if kept is None or kept[0] is not net.flat_nablas or len(kept[1]) < n:
        kept = net.flat_nablas, [numpy.empty_like(net.flat_nablas)
                                 for _ in range(n)]
        net._shard_buffers = kept
    return kept[1][:n]
