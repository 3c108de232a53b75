"""shards.py
~~~~~~~~~~~~

Training on every CPU core: the NumPy backend's backprop through a
network's convolutional layers, with the mini-batch cut into shards.

A mini-batch of m images is cut into ``shard_count(m)`` shards of at
most SHARD_SIZE images.  The network's leading ConvPoolLayers run each
shard's forward pass, and later its backward pass, on one of gpunn's
threads (``backend.threads()``), on copies of the layers that share
their w and b but keep their own forward state and their own gradient
arrays.  In between, the layers above (fully connected and softmax) run
on the whole mini-batch in the calling thread, as without shards: the
cost, its error delta and the dropout masks are the whole mini-batch's.
The conv layers' gradients are then the sums of the shards' (one pass
over a few thousand numbers), added in shard order.

One owner of threading: while gpunn trains on NumPy, NumPy's BLAS runs
on one thread (``backend.take_threads``), and gpunn's threads block
while they wait (no spinning), so no two thread pools fight for the
cores.

Why this way, measured on a 2-core AMD EPYC (float32, dbl_conv_relu, a
step at mini-batch 256):

- With the BLAS's own two threads, only the products ran on both cores
  (43 of 97 ms); the im2col copies, pooling and col2im (53 ms) ran on
  one.  Parallel numba loops for those fought the BLAS's busy-waiting
  threads (see kernels_cpu).  In shards everything runs on every core,
  and a shard's arrays stay in the cache where a 256-image layer's do
  not: 50 ms a step, where one thread takes 83.
- The fully connected layers stay whole: in shards, each shard's
  nabla_w is as large as w itself and its product sums over 32 rows
  only; the shallow network (784-100-10) took 4.3 ms a step in shards
  against 1.5 whole.  Splitting their products over the threads was
  slower still (a thread's wake-up costs about what a product of
  theirs does).
- Next to a busy process, a BLAS thread descheduled in the middle of a
  product holds up its partner, which spins; gpunn's threads take the
  next shard whenever they are free and sleep when there is none.

The shards depend only on the mini-batch size, and their gradients are
added in shard order: the weights after training are the same for any
number of threads.

The shards' gradient buffers are kept between steps; the layers' other
arrays are made anew each step, as NumPy makes them.  Keeping those too
would not pay: with glibc told never to give memory back (its mmap and
trim thresholds raised to 1-2 GB), a step at mini-batch 256 took the
same time (49.6-50.2 ms against 50.9-51.2).
"""

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy

from gpunn.compute import backend
from gpunn.layers import ConvPoolLayer

#: The most images in a shard: large enough that a shard's products run
#: near the BLAS's one-thread rate, small enough that its arrays stay in
#: the cache (32 and 64 were equal at mini-batch 256; 16 was slower).
SHARD_SIZE = 32

_pool = None  # (threads, ThreadPoolExecutor)
_PREFIX = "gpunn-shards"  # its threads' names
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


def conv_layers(net):
    """How many of the network's first layers are ConvPoolLayers."""
    k = 0
    while k < len(net.layers) and isinstance(net.layers[k], ConvPoolLayer):
        k += 1
    return k


def run(function, items):
    """``[function(item) for item in items]``, the items spread over
    gpunn's threads: the calling thread and threads() - 1 others, each
    taking the next item whenever it is free (so that a thread slowed by
    another process does fewer).  Returns when every item is done; an
    exception is raised here then (the first item's, if several).  Called
    from one of gpunn's threads, it runs the items there, one by one (a
    thread waiting on its own pool could wait for ever)."""
    threads = min(backend.take_threads(), len(items))
    if threads <= 1 or threading.current_thread().name.startswith(_PREFIX):
        return [function(item) for item in items]
    results, errors = [None] * len(items), [None] * len(items)
    order = iter(range(len(items)))
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                k = next(order, None)
            if k is None:
                return
            try:
                results[k] = function(items[k])
            except BaseException as e:  # raised below, once all are done
                errors[k] = e
    helpers = [_executor(threads - 1).submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for helper in helpers:
            helper.result()
    for error in errors:
        if error is not None:
            raise error
    return results


def _executor(helpers):
    """A pool of at least ``helpers`` threads, kept between calls."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] < helpers:
            if _pool is not None:
                _pool[1].shutdown(wait=False)
            _pool = helpers, ThreadPoolExecutor(
                helpers, thread_name_prefix=_PREFIX)
        return _pool[1]


class Shard:
    """Copies of a network's first ``len(ranges)`` layers (its conv
    layers) for images first..stop of its mini-batch: the network's w
    and b, and gradient arrays of their own, views of ``buffer``."""

    def __init__(self, layers, ranges, buffer, first, stop):
        self.first, self.stop = first, stop
        self.layers = []
        for layer, (w_range, b_range) in zip(layers, ranges):
            shard_layer = copy.copy(layer)
            w, b, nabla_w, nabla_b = layer.storage()
            shard_layer.use_storage(
                w, b, buffer[w_range].reshape(nabla_w.shape),
                buffer[b_range].reshape(nabla_b.shape), copy=False)
            self.layers.append(shard_layer)

    def forward(self, x):
        """The layers' training pass on this shard's rows of ``x``."""
        a = x[self.first:self.stop]
        for layer in self.layers:
            a = layer.forward(a)
        return a

    def backward(self, nabla_a):
        """The backward pass from this shard's rows of ``nabla_a``, dC/da
        for the last of the layers' outputs; writes the shard's
        gradients into its buffer."""
        nabla_a = nabla_a[self.first:self.stop]
        for l in range(len(self.layers) - 1, -1, -1):
            nabla_a, _, _ = self.layers[l].backward(nabla_a,
                                                    need_input_grad=l > 0)


def backprop(net, k, x, y, cost=None):
    """``Network._backprop`` of the mini-batch ``x`` (m, ...), ``y``
    (m,), NumPy arrays, for a network whose first ``k`` layers are conv
    layers: those in shards on gpunn's threads, the rest whole in this
    thread.  The gradients go into the network's own arrays; returns the
    cost (``cost`` if given)."""
    bounds = shard_bounds(len(x))
    ranges, buffers = _buffers(net, k, len(bounds))
    shards = [Shard(net.layers[:k], ranges, buffer, first, stop)
              for buffer, (first, stop) in zip(buffers, bounds)]
    a = numpy.concatenate(run(lambda shard: shard.forward(x), shards))
    nabla_a, cost = net._backprop_from(k, a, y, cost)
    run(lambda shard: shard.backward(nabla_a), shards)
    # The conv layers' weights are the first n_w of flat_nablas, their
    # biases the n_b from n_weights on; each buffer holds the two, side
    # by side.
    n_w = ranges[-1][0].stop
    n_b = ranges[-1][1].stop - n_w
    weights = net.flat_nablas[:n_w]
    biases = net.flat_nablas[net.n_weights:net.n_weights + n_b]
    weights[...], biases[...] = buffers[0][:n_w], buffers[0][n_w:]
    for buffer in buffers[1:]:
        weights += buffer[:n_w]
        biases += buffer[n_w:]
    return cost


def _buffers(net, k, n):
    """Each conv layer's (w range, b range) in a shard's gradient buffer,
    and ``n`` such buffers, kept on the network between steps (remade
    when its flat arrays are)."""
    kept = getattr(net, "_shard_buffers", None)
    if kept is None or kept[0] is not net.flat_nablas or len(kept[2]) < n:
        ranges = net.parameter_ranges[:k]
        n_w = ranges[-1][0].stop  # the weights of layers 0..k-1 come first
        assert all(r.start == s.stop for (r, _), (s, _) in zip(
            ranges[1:], ranges)) and ranges[0][0].start == 0
        # In a buffer the biases follow the weights directly.
        ranges = [(w_range, slice(b_range.start - net.n_weights + n_w,
                                  b_range.stop - net.n_weights + n_w))
                  for w_range, b_range in ranges]
        size = ranges[-1][1].stop
        kept = net.flat_nablas, ranges, [
            numpy.empty(size, dtype=net.flat_nablas.dtype) for _ in range(n)]
        net._shard_buffers = kept
    return kept[1], kept[2][:n]
