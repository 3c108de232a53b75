"""A network's parameters live in one flat array, and their gradients in
another (layers.Layer, Network.gather_parameters): the update is one
pass.  These tests hold the views to what a reader of the book expects
of ``layer.w`` and ``layer.b``."""

import numpy
import pytest

import gpunn
from gpunn import backend, network2
from gpunn.backend import to_numpy
from gpunn.errors import ConfigError
from gpunn.network3 import (ConvPoolLayer, FullyConnectedLayer, Network,
                            ReLU, SoftmaxLayer)


def host(a):
    """A host copy of ``a`` (to_numpy gives NumPy arrays themselves)."""
    return numpy.array(to_numpy(a))


def small_network():
    return Network([
        ConvPoolLayer(image_shape=(4, 1, 8, 8), filter_shape=(3, 1, 3, 3),
                      poolsize=(2, 2), activation_fn=ReLU),
        FullyConnectedLayer(n_in=3 * 3 * 3, n_out=5),
        SoftmaxLayer(n_in=5, n_out=10)], 4)


def data(n=4, seed=0):
    rng = numpy.random.default_rng(seed)
    return rng.random((n, 64)), rng.integers(0, 10, n)


def test_every_parameter_and_gradient_is_a_view_of_the_flat_arrays(
        backend_name):
    gpunn.use(backend_name, "float64", seed=0)
    net = small_network()
    flat = to_numpy(net.flat_params)
    weights = numpy.concatenate([to_numpy(layer.w).transpose(
        (0, 2, 3, 1) if layer.w.ndim == 4 else (0, 1)).ravel()
        for layer in net.layers])
    biases = numpy.concatenate([to_numpy(layer.b) for layer in net.layers])
    numpy.testing.assert_array_equal(flat, numpy.concatenate([weights, biases]))
    assert net.n_weights == len(weights)
    # The layers' gradients are where the update reads them.
    x, y = data()
    nabla_b, nabla_w = net.backprop(x, y)
    nablas = to_numpy(net.flat_nablas)
    numpy.testing.assert_array_equal(nablas[:net.n_weights], numpy.concatenate(
        [to_numpy(nw).transpose((0, 2, 3, 1) if nw.ndim == 4 else (0, 1)).ravel()
         for nw in nabla_w]))
    numpy.testing.assert_array_equal(nablas[net.n_weights:], numpy.concatenate(
        [to_numpy(nb) for nb in nabla_b]))


def test_a_step_is_the_books_update_of_every_layer(backend_name):
    """w -> (1 - eta*lmbda/n) w - eta nabla_w, b -> b - eta nabla_b."""
    gpunn.use(backend_name, "float64", seed=1)
    net = small_network()
    x, y = data()
    before = [(host(layer.w), host(layer.b)) for layer in net.layers]
    nabla_b, nabla_w = net.backprop(x, y)
    net.update_mini_batch(x, y, eta=0.5, lmbda=2.0, num_training_batches=8)
    for layer, (w, b), nb, nw in zip(net.layers, before, nabla_b, nabla_w):
        numpy.testing.assert_allclose(
            to_numpy(layer.w), (1 - 0.5 * 2.0 / 8) * w - 0.5 * to_numpy(nw),
            rtol=1e-12, atol=1e-15)
        numpy.testing.assert_allclose(to_numpy(layer.b), b - 0.5 * to_numpy(nb),
                                      rtol=1e-12, atol=1e-15)


def test_assigning_w_sets_the_values_the_network_trains(backend_name):
    gpunn.use(backend_name, "float64", seed=2)
    net = small_network()
    conv = net.layers[0]
    new_w = numpy.random.default_rng(3).normal(size=conv.w.shape)
    conv.w = new_w  # a host array, copied into the network's flat array
    conv.b = [0.1, 0.2, 0.3]
    numpy.testing.assert_array_equal(to_numpy(conv.w), new_w)
    assert to_numpy(net.flat_params)[:new_w.size].tolist() == \
        new_w.transpose(0, 2, 3, 1).ravel().tolist()
    conv.w -= 1.0  # in place, as before
    numpy.testing.assert_array_equal(to_numpy(conv.w), new_w - 1.0)
    net.update_mini_batch(*data(), eta=0.0001)
    assert numpy.abs(to_numpy(conv.w) - (new_w - 1.0)).max() < 0.01
    with pytest.raises(ConfigError, match="must have shape"):
        conv.w = numpy.zeros((3, 1, 3))
    with pytest.raises(ConfigError, match="must have shape"):
        conv.b = numpy.zeros(4)


def test_backprop_returns_arrays_that_the_next_pass_leaves_alone(
        backend_name):
    gpunn.use(backend_name, "float64", seed=4)
    net = small_network()
    first_b, first_w = net.backprop(*data(seed=5))
    kept = [host(nw) for nw in first_w] + [host(nb) for nb in first_b]
    net.backprop(*data(seed=6))
    for got, want in zip([to_numpy(nw) for nw in first_w] +
                         [to_numpy(nb) for nb in first_b], kept):
        numpy.testing.assert_array_equal(got, want)


def test_network2_keeps_working_on_layers_of_their_own(backend_name):
    """network2's layers are not gathered: each owns its storage, and the
    book's weights/biases views and setters still work."""
    gpunn.use(backend_name, "float64", seed=7)
    net = network2.Network([4, 3, 2])
    w = [numpy.arange(12.0).reshape(3, 4), numpy.ones((2, 3))]
    net.weights = w
    for got, want in zip(net.weights, w):
        numpy.testing.assert_array_equal(to_numpy(got), want)
    x = numpy.random.default_rng(8).random((4, 1))
    (nb1, _), (nw1, _) = [g for g in net.backprop(x, numpy.eye(2)[:, :1])]
    kept = host(nw1)
    net.backprop(x * 2, numpy.eye(2)[:, 1:])
    numpy.testing.assert_array_equal(to_numpy(nw1), kept)


def test_to_backend_moves_the_flat_arrays_too(backend_name):
    gpunn.use(backend_name, "float64", seed=9)
    net = small_network()
    x, y = data()
    want = to_numpy(net.feedforward(x))
    gpunn.use("numpy", "float32")
    net.to_backend()
    assert isinstance(net.flat_params, numpy.ndarray)
    assert net.flat_params.dtype == numpy.float32
    numpy.testing.assert_allclose(net.feedforward(x), want, rtol=1e-5, atol=1e-6)
    before = host(net.flat_params)
    net.update_mini_batch(x, y, 0.1)
    assert (net.flat_params != before).any()
    assert backend.xp is numpy


def test_a_layer_taken_into_another_network_is_refused_by_the_first(
        backend_name):
    """The second network holds the layer's w and b now: the first would
    train nothing of it, silently."""
    gpunn.use(backend_name, "float64", seed=10)
    first = small_network()
    second = Network(first.layers, 4)
    x, y = data()
    second.update_mini_batch(x, y, 0.1)
    with pytest.raises(ConfigError, match="layer 0 .* another Network"):
        first.update_mini_batch(x, y, 0.1)
