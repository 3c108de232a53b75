"""The captured training step (gpunn/compute/cuda_graph.py), on the CuPy test
double, which records a stream capture and replays it as CUDA would
(tests/cupy_double.py): a step is one launch, and training on the graph
equals training eagerly, step for step, for every chapter-6 model."""

import numpy
import pytest

import gpunn
from gpunn.compute import backend, cuda_graph, kernels
from gpunn.experiments import EXPERIMENTS
from tests import cupy_double


def data(n, seed):
    rng = numpy.random.default_rng(seed)
    return rng.random((n, 784)), rng.integers(0, 10, n)


def train(name, graph, dtype, epochs=2, seed=5, history=None, net=None):
    """``name`` trained on 40 images in mini-batches of 10; the history
    and the weights."""
    experiment = EXPERIMENTS[name]
    if net is None:
        gpunn.use("cupy", dtype, seed=3)
        net = experiment.network(10)
    history = net.SGD(data(40, 1), epochs, 10, experiment.eta, data(20, 2),
                      data(20, 3), lmbda=0.5, seed=seed, graph=graph,
                      log=lambda line: None, history=history)
    return history, [backend.to_numpy(p).copy() for p in net.params], net


# Each kind of layer, activation and dropout in the default run; the
# other models (the same layers in other sizes) with -m slow.
DEFAULT_MODELS = ("shallow", "omit_FC", "dbl_conv", "dbl_conv_relu",
                  "double_fc_dropout")


@pytest.mark.parametrize("name", [
    name if name in DEFAULT_MODELS else pytest.param(name, marks=pytest.mark.slow)
    for name in EXPERIMENTS])
@pytest.mark.gpu
def test_training_on_the_graph_equals_training_eagerly(on_cupy, name):
    """Two epochs; dropout masks included (double_fc_dropout)."""
    eager, eager_weights, _ = train(name, False, on_cupy)
    graphed, graphed_weights, _ = train(name, True, on_cupy)
    assert [r["cuda_graph"] for r in graphed] == [True, True]
    assert [r["cuda_graph"] for r in eager] == [False, False]
    tolerance = 1e-10 if on_cupy == "float64" else 1e-4
    for e, g in zip(eager, graphed):
        assert g["training_cost"] == pytest.approx(e["training_cost"],
                                                   rel=tolerance)
        assert g["validation_accuracy"] == e["validation_accuracy"]
    for got, want in zip(graphed_weights, eager_weights):
        numpy.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


@pytest.mark.gpu
def test_a_resumed_run_on_the_graph_ends_as_an_uninterrupted_one(on_cupy):
    _, whole, _ = train("double_fc_dropout", True, on_cupy, epochs=3)
    history, _, net = train("double_fc_dropout", True, on_cupy, epochs=1)
    _, resumed, _ = train("double_fc_dropout", True, on_cupy, epochs=3,
                          history=history, net=net)
    for got, want in zip(resumed, whole):
        numpy.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["dbl_conv_relu", "double_fc_dropout"])
@pytest.mark.gpu
def test_a_captured_step_is_one_launch_and_nothing_else(on_cupy, name,
                                                       cupy_kind):
    if cupy_kind == "gpu":
        pytest.skip("launches are counted on the CuPy double")
    experiment = EXPERIMENTS[name]
    gpunn.use("cupy", on_cupy, seed=3)
    net = experiment.network(10)
    x, y = net._checked_data(data(40, 1), "training_data")
    step = cuda_graph.CapturedStep(net, x, y, experiment.eta, 0.5, 4)
    step.start_epoch()
    step.step(0)  # eager, then the capture
    for j in (1, 2, 3):
        with cupy_double.counting() as counts:
            step.step(j)
        assert counts.totals() == {"launches": 1, "syncs": 0, "uploads": 0,
                                   "downloads": 0, "allocations": 0}, \
            counts.report("launches")
    assert numpy.isfinite(backend.to_numpy(step.costs)).all()
    with cupy_double.counting() as counts:
        step.start_epoch()
    assert counts.totals()["uploads"] == 1 and counts.total("launches") == 0


@pytest.mark.gpu
def test_an_epoch_on_the_graph_reads_the_device_at_most_ten_times(on_cupy,
                                                                  cupy_kind):
    if cupy_kind == "gpu":
        pytest.skip("syncs are counted on the CuPy double")
    net = EXPERIMENTS["dbl_conv_relu"].network(10)
    syncs = []
    with cupy_double.counting() as counts:
        net.SGD(data(60, 1), 3, 10, 0.03, data(20, 2), data(20, 3), seed=1,
                log=lambda line: None,
                on_epoch=lambda record: syncs.append(counts.total("syncs")))
    assert max(numpy.diff(syncs)) <= 10, counts.report("syncs")


@pytest.mark.gpu
def test_a_failed_capture_leaves_the_run_eager_with_a_warning(
        on_cupy, monkeypatch):
    """cuBLAS in the capture, which CuPy refuses: the run goes on eagerly
    and ends as an eager run does."""
    eager, eager_weights, _ = train("basic_conv", False, on_cupy, epochs=1)
    monkeypatch.setattr(kernels, "matmul", lambda a, b, out=None:
                        backend.xp.matmul(a, b, out=out))
    with pytest.warns(RuntimeWarning, match="capturing the training step "
                      "failed .*cuBLAS"):
        failed, failed_weights, _ = train("basic_conv", True, on_cupy,
                                          epochs=1)
    assert failed[0]["cuda_graph"] is False
    for got, want in zip(failed_weights, eager_weights):
        numpy.testing.assert_array_equal(got, want)


@pytest.mark.gpu
def test_the_graph_is_used_as_the_sgd_option_says(on_cupy, monkeypatch):
    """"auto": up to cuda_graph.LARGEST_MINI_BATCH, not when gradients are
    monitored; False: never; and never on NumPy."""
    def graph_used(graph, mini_batch_size=10, monitor_gradients=False):
        net = EXPERIMENTS["shallow"].network(mini_batch_size)
        history = net.SGD(data(40, 1), 1, mini_batch_size, 0.1, data(20, 2),
                          graph=graph, log=lambda line: None,
                          monitor_gradients=monitor_gradients)
        return history[0]["cuda_graph"]
    assert graph_used("auto") and graph_used(True)
    assert not graph_used(False)
    assert not graph_used("auto", monitor_gradients=True)
    monkeypatch.setattr(cuda_graph, "LARGEST_MINI_BATCH", 5)
    assert not graph_used("auto") and graph_used(True)
    with pytest.raises(gpunn.ConfigError, match="graph must be"):
        graph_used("yes")
    gpunn.use("numpy", on_cupy, seed=0)
    assert not graph_used(True)
