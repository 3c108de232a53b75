"""The NumPy training step with its conv layers in shards on gpunn's
threads (gpunn/compute/shards.py): against the same step in one pass
over the mini-batch, across thread counts, with dropout above, and the
thread settings themselves."""

import numpy as np
import pytest

import gpunn
from gpunn.compute import backend, shards
from gpunn.network3 import (ConvPoolLayer, FullyConnectedLayer, Network,
                            ReLU, SoftmaxLayer)

MINI_BATCH = 70  # three shards of 23 or 24 images


def small_conv_net(p_dropout=0.0):
    """A conv layer, a fully connected layer with dropout and a softmax
    layer, on 12x12 crops of MNIST images, mini-batch MINI_BATCH."""
    return Network([
        ConvPoolLayer((4, 1, 5, 5), (MINI_BATCH, 1, 12, 12), (2, 2), ReLU),
        FullyConnectedLayer(4 * 4 * 4, 20, ReLU, p_dropout=p_dropout),
        SoftmaxLayer(20, 10, p_dropout=p_dropout)], MINI_BATCH)


@pytest.fixture(scope="module")
def mnist_crops():
    """Real MNIST training images, cropped to 12x12 around the centre."""
    gpunn.use("numpy")
    (x, y), _, _ = gpunn.load_data()
    crops = x[:4 * MINI_BATCH].reshape(-1, 28, 28)[:, 8:20, 8:20]
    return crops.reshape(len(crops), -1), y[:4 * MINI_BATCH]


def train(dtype, p_dropout, threads, shard_size, data, monkeypatch, steps=4):
    """The weights and costs after ``steps`` SGD steps, as NumPy arrays."""
    monkeypatch.setattr(shards, "SHARD_SIZE", shard_size)
    gpunn.use("numpy", dtype, seed=3, threads=threads)
    net = small_conv_net(p_dropout)
    x, y = net._inputs(data[0]), net._labels(data[1])
    costs = []
    for k in range(steps):
        batch = slice(k * MINI_BATCH, (k + 1) * MINI_BATCH)
        costs.append(float(net._update(x[batch], y[batch], 0.1, 0.5, 10)))
    return net.flat_params.copy(), costs


@pytest.mark.parametrize("p_dropout", [0.0, 0.5])
def test_shards_give_the_gradient_of_the_whole_mini_batch(
        monkeypatch, mnist_crops, p_dropout):
    """float64: three shards on two threads train as one pass over the
    mini-batch does, to rounding (the layers above the conv layer, with
    their dropout masks, run on the whole mini-batch)."""
    assert shards.shard_count(MINI_BATCH) == 1 + (MINI_BATCH - 1) // 32
    whole, whole_costs = train("float64", p_dropout, 2, 1000, mnist_crops,
                               monkeypatch)
    sharded, sharded_costs = train("float64", p_dropout, 2, 32, mnist_crops,
                                   monkeypatch)
    np.testing.assert_allclose(sharded, whole, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(sharded_costs, whole_costs, rtol=1e-12)


@pytest.mark.parametrize("p_dropout", [0.0, 0.5])
def test_the_weights_do_not_depend_on_the_number_of_threads(
        monkeypatch, mnist_crops, p_dropout):
    """float32, bit for bit: shards are set by the mini-batch size alone
    and added in order, whichever thread ran which."""
    one, costs_one = train("float32", p_dropout, 1, 16, mnist_crops,
                           monkeypatch)
    for threads in (2, 3):
        many, costs_many = train("float32", p_dropout, threads, 16,
                                 mnist_crops, monkeypatch)
        np.testing.assert_array_equal(many, one)
        assert costs_many == costs_one


def test_the_shards_run_on_gpunn_threads_at_once(monkeypatch):
    """run() spreads the items over gpunn's threads and keeps their order;
    an error in one is raised in the caller."""
    import threading
    gpunn.use("numpy", threads=2)
    barrier = threading.Barrier(2, timeout=10)  # needs two threads at once

    def meet(k):
        barrier.wait()
        return k, threading.current_thread().name
    results = shards.run(meet, [0, 1])
    assert [k for k, _ in results] == [0, 1]
    assert len({name for _, name in results}) == 2
    with pytest.raises(ZeroDivisionError):
        shards.run(lambda k: 1 / k, [1, 0, 2])
    # Called again from within, on every thread at once: no deadlock
    # (watched from a thread of the test's, so that one fails, not hangs).
    nested = []
    watched = threading.Thread(daemon=True, target=lambda: nested.append(
        shards.run(lambda k: shards.run(lambda j: (k, j), [0, 1]), [0, 1, 2])))
    watched.start()
    watched.join(timeout=60)
    assert nested == [[[(k, 0), (k, 1)] for k in range(3)]]


def test_by_default_the_threads_are_the_cores_this_process_may_use(
        monkeypatch):
    """(use's threads= and $GPUNN_THREADS: tests/test_backends.py.)  A
    training step makes gpunn the owner of threading: one BLAS thread."""
    import os
    monkeypatch.delenv("GPUNN_THREADS", raising=False)
    monkeypatch.setattr(backend, "_threads", None)
    assert backend.threads() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(backend, "_owns_threading", False)
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=2, user_api="blas")
    if backend.blas_threads() < 2:
        pytest.skip("NumPy's BLAS runs on one thread here")
    gpunn.use("numpy")
    net = small_conv_net()
    net.update_mini_batch(np.zeros((MINI_BATCH, 144)),
                          np.zeros(MINI_BATCH, int), 0.1)
    assert backend.blas_threads() == 1
