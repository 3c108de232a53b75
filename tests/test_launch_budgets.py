"""What one training step of each chapter-6 model costs on CuPy, counted
on the CuPy test double (``tests/cupy_double.py``): kernel launches,
host<->device synchronizations and copies, and allocations.

A step at the book's mini-batch of 10 is a few MFLOP: on a GPU its time
is the number of launches (8-15 us each through CuPy), and any sync
stalls the queue.  So: no sync and no copy in a step, at most 10 syncs an
epoch, and a launch budget per model that a change adding launches
fails.  Run with ``-s`` to see where each model's launches go.
"""

import numpy
import pytest

import gpunn
from gpunn.compute import kernels
from gpunn.experiments import EXPERIMENTS
from tests import cupy_double

# Launches per step, (generic, fused), the cost written into its slot
# of the epoch's costs as SGD does.  Every model keeps its parameters in
# one flat array and its gradients in another (layers.Layer), and
# its filters channels-last (the filter matrix is free); the update is
# one pass.  On the generic path (kernels.FAST_CUDA off) dbl_conv_relu
# takes 68 (run with -s to see where: the softmax layer's output, cost
# and error 15, the pooling backward by windows 12, the update 3, ...).
# Before the flat arrays: 85; before the issue "no host syncs, few
# launches": 227.  double_fc_dropout takes 476: the generic Philox
# generator draws each of its 3 masks in about 130 whole-array passes
# (10 rounds; kernels.philox), where the fused kernel is one launch.
#
# With the fused CUDA kernels (kernels_cuda): a conv layer's pooling,
# bias and activation in one kernel (its output (N, F, PH, PW), which a
# fully connected layer reads without a copy) and its backward in
# another; a fully connected layer's bias and activation in one, and its
# delta and bias gradient in another; softmax, cost and delta in one,
# the mean cost and the bias gradient in another; col2im as one gather;
# a dropout mask drawn and applied in one; the update in one.
# dbl_conv_relu: 25 = conv forward 6 (im2col copies
# 2, products 2, the pooling kernels 2), conv backward 9 (the pooling
# backward kernels 2, bias sums 2, filter gradients 2, input gradient:
# product and gather 2, ...), the FC layer 5 (products 3, the two
# kernels), the softmax layer 5 (products 3, the two kernels), and the
# update 1.  Before: 32 (an update per layer, a flattening copy, the
# filter matrix twice, the cost's mean and bias gradient apart).
BUDGETS = {
    "shallow": (32, 10), "basic_conv": (54, 17), "omit_FC": (42, 12),
    "dbl_conv": (78, 25), "dbl_conv_relu": (68, 25),
    "expanded_data_100": (68, 25), "expanded_data_300": (68, 25),
    "expanded_data_1000": (68, 25), "expanded_data_double_fc_100": (76, 30),
    "expanded_data_double_fc_300": (76, 30),
    "expanded_data_double_fc_1000": (76, 30), "double_fc_dropout": (476, 36),
}
MINI_BATCH_SIZES = (10, 64)


@pytest.fixture
def double(on_cupy_double):
    gpunn.use("cupy", "float32", seed=0)
    return on_cupy_double


def step_counts(name, mini_batch_size):
    """The counts of one ``Network._update`` of experiment ``name``
    (after a first step, which may set things up), and the network."""
    experiment = EXPERIMENTS[name]
    net = experiment.network(mini_batch_size)
    rng = numpy.random.default_rng(0)
    x = net._inputs(rng.random((2 * mini_batch_size, 784), dtype=numpy.float32))
    y = net._labels(rng.integers(0, 10, 2 * mini_batch_size))
    m = mini_batch_size
    costs = net.flat_params[:2]  # as SGD does: the cost into its slot
    net._update(x[:m], y[:m], experiment.eta, experiment.lmbda, 5000, None,
                costs[:1].reshape(()))
    with cupy_double.counting() as counts:
        net._update(x[m:], y[m:], experiment.eta, experiment.lmbda, 5000, None,
                    costs[1:].reshape(()))
    return counts


def test_every_experiment_has_a_budget():
    assert set(BUDGETS) == set(EXPERIMENTS)


@pytest.mark.parametrize("fused", [False, True], ids=["generic", "fused"])
@pytest.mark.parametrize("mini_batch_size", MINI_BATCH_SIZES)
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_a_step_stays_on_the_device_within_its_launch_budget(
        double, monkeypatch, name, mini_batch_size, fused):
    monkeypatch.setattr(kernels, "FAST_CUDA", fused)
    counts = step_counts(name, mini_batch_size)
    totals = counts.totals()
    budget = BUDGETS[name][fused]
    print("\n{} at mini-batch {} ({}): {}\n{}".format(
        name, mini_batch_size, "fused" if fused else "generic", totals,
        counts.report("launches")))
    assert totals["syncs"] == 0, counts.report("syncs")
    assert totals["uploads"] == 0 and totals["downloads"] == 0, \
        counts.report("uploads") + counts.report("downloads")
    assert totals["launches"] <= budget, (
        "{} launches a step, over the budget of {}; where they go:\n{}".format(
            totals["launches"], budget, counts.report("launches")))


def test_an_epoch_reads_the_device_at_most_ten_times(double):
    """The end-of-epoch checks and accuracies only, however many steps."""
    net = EXPERIMENTS["dbl_conv_relu"].network(10)
    rng = numpy.random.default_rng(1)

    def data(n):
        return rng.random((n, 784), dtype=numpy.float32), rng.integers(0, 10, n)
    syncs = []
    with cupy_double.counting() as counts:
        net.SGD(data(200), 3, 10, 0.03, data(50), data(50), lmbda=0.1, seed=1,
                log=lambda line: None,
                on_epoch=lambda record: syncs.append(counts.total("syncs")))
    per_epoch = numpy.diff(syncs)
    assert len(per_epoch) == 2 and max(per_epoch) <= 10, counts.report("syncs")
