"""The three networks' APIs: the book's methods, arguments, printout and
file format, and network2's batched step against the book's
example-by-example algorithm."""

import json

import numpy
import pytest

import gpunn
from gpunn import network, network2, network3
from gpunn.compute.backend import to_numpy
from gpunn.costs import CrossEntropyCost, QuadraticCost
from gpunn.network3 import (ConvPoolLayer, FullyConnectedLayer, Network,
                            ReLU, SoftmaxLayer, tanh)


def book_columns(rng, m, n_in, n_out):
    """m examples in the book's list format: x (n_in, 1), y one-hot (n_out, 1)."""
    xs = rng.random((m, n_in, 1))
    ys = numpy.eye(n_out)[rng.integers(0, n_out, m)].reshape(m, n_out, 1)
    return list(zip(xs, ys))


def book_update_mini_batch(weights, biases, mini_batch, eta, lmbda, n, cost):
    """The book's network2 update, one example at a time, in float64:
    the independent reference for gpunn's one-matrix-per-mini-batch step."""
    def sigmoid(z):
        return 1.0 / (1.0 + numpy.exp(-z))
    nabla_b = [numpy.zeros(b.shape) for b in biases]
    nabla_w = [numpy.zeros(w.shape) for w in weights]
    for x, y in mini_batch:
        activations, zs = [x], []
        for b, w in zip(biases, weights):
            zs.append(w @ activations[-1] + b)
            activations.append(sigmoid(zs[-1]))
        a = activations[-1]
        delta = a - y
        if cost is QuadraticCost:
            delta = delta * a * (1 - a)
        db, dw = [delta], [delta @ activations[-2].T]
        for l in range(2, len(weights) + 1):
            s = sigmoid(zs[-l])
            delta = (weights[-l + 1].T @ delta) * s * (1 - s)
            db.insert(0, delta)
            dw.insert(0, delta @ activations[-l - 1].T)
        nabla_b = [nb + d for nb, d in zip(nabla_b, db)]
        nabla_w = [nw + d for nw, d in zip(nabla_w, dw)]
    m = len(mini_batch)
    weights = [(1 - eta * (lmbda / n)) * w - (eta / m) * nw
               for w, nw in zip(weights, nabla_w)]
    biases = [b - (eta / m) * nb for b, nb in zip(biases, nabla_b)]
    return weights, biases


@pytest.mark.parametrize("cost", [QuadraticCost, CrossEntropyCost])
def test_network2_batched_step_equals_the_books_loop(backend_name, cost):
    gpunn.use(backend_name, "float64", seed=0)
    rng = numpy.random.default_rng(1)
    net = network2.Network([6, 5, 4, 3], cost=cost)
    weights = [to_numpy(w).copy() for w in net.weights]
    biases = [to_numpy(b).copy() for b in net.biases]
    for step in range(3):
        mini_batch = book_columns(rng, 7, 6, 3)
        net.update_mini_batch(mini_batch, 0.8, 2.0, 100)
        weights, biases = book_update_mini_batch(
            weights, biases, mini_batch, 0.8, 2.0, 100, cost)
    for got, want in zip(net.weights + net.biases, weights + biases):
        numpy.testing.assert_allclose(to_numpy(got), want, rtol=1e-12)


def test_network2_shapes_monitoring_and_printout(capsys):
    gpunn.use("numpy", "float32", seed=0)
    rng = numpy.random.default_rng(2)
    training = book_columns(rng, 50, 8, 3)
    evaluation = [(x, int(y.argmax())) for x, y in book_columns(rng, 20, 8, 3)]
    net = network2.Network([8, 5, 3])
    assert [w.shape for w in net.weights] == [(5, 8), (3, 5)]
    assert [b.shape for b in net.biases] == [(5, 1), (3, 1)]
    assert net.feedforward(training[0][0]).shape == (3, 1)
    nabla_b, nabla_w = net.backprop(*training[0])
    assert [w.shape for w in nabla_w] == [(5, 8), (3, 5)]
    result = net.SGD(training, 3, 10, 0.5, lmbda=0.1, evaluation_data=evaluation,
                     monitor_evaluation_cost=True,
                     monitor_evaluation_accuracy=True,
                     monitor_training_cost=True,
                     monitor_training_accuracy=True)
    assert [len(r) for r in result] == [3, 3, 3, 3]
    evaluation_cost, evaluation_accuracy, training_cost, training_accuracy = result
    assert all(isinstance(a, int) and 0 <= a <= 20 for a in evaluation_accuracy)
    assert all(isinstance(a, int) and 0 <= a <= 50 for a in training_accuracy)
    assert training_cost[-1] < training_cost[0]
    out = capsys.readouterr().out
    assert "Epoch 2 training complete" in out
    assert "Accuracy on evaluation data: {} / 20".format(evaluation_accuracy[-1]) in out
    assert "Accuracy on training data: {} / 50".format(training_accuracy[-1]) in out
    assert "Cost on training data: " in out and "Cost on evaluation data: " in out
    # Monitoring flags off: empty lists, as in the book.
    assert net.SGD(training, 1, 10, 0.5) == ([], [], [], [])


def test_network2_total_cost_is_the_books_formula():
    gpunn.use("numpy", "float64", seed=0)
    rng = numpy.random.default_rng(3)
    data = book_columns(rng, 9, 4, 2)
    net = network2.Network([4, 3, 2])
    lmbda = 0.7
    want = sum(CrossEntropyCost.fn(net.feedforward(x), y) for x, y in data) / 9
    want += 0.5 * (lmbda / 9) * sum(numpy.linalg.norm(w) ** 2
                                    for w in net.weights)
    assert net.total_cost(data, lmbda) == pytest.approx(want, rel=1e-12)
    digits = [(x, int(y.argmax())) for x, y in data]
    assert net.total_cost(digits, lmbda, convert=True) == pytest.approx(want)
    assert net.accuracy(data, convert=True) == net.accuracy(digits)


def test_network2_save_and_load_in_the_books_json(tmp_path):
    gpunn.use("numpy", "float32", seed=0)
    net = network2.Network([6, 4, 2], cost=QuadraticCost)
    path = tmp_path / "net.json"
    net.save(path)
    data = json.loads(path.read_text())
    assert data["sizes"] == [6, 4, 2] and data["cost"] == "QuadraticCost"
    assert numpy.array(data["weights"][0]).shape == (4, 6)
    assert numpy.array(data["biases"][1]).shape == (2, 1)
    gpunn.use("numpy", "float64")
    loaded = network2.load(path)
    assert loaded.cost is QuadraticCost
    x = numpy.random.default_rng(0).random((6, 5))
    numpy.testing.assert_allclose(loaded.feedforward(x), net.feedforward(x),
                                  rtol=1e-6)
    data["cost"] = "os.system"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown cost 'os.system'"):
        network2.load(path)


def test_network_chapter1_api(capsys):
    gpunn.use("numpy", "float64", seed=0)
    rng = numpy.random.default_rng(4)
    net = network.Network([5, 4, 3])
    assert net.cost is QuadraticCost
    # Chapter 1's initialization: N(0, 1) weights, not N(0, 1/n_in).
    assert numpy.std(numpy.concatenate([w.ravel() for w in
                                        network.Network([400, 50, 10]).weights])) \
        == pytest.approx(1.0, abs=0.05)
    training = book_columns(rng, 30, 5, 3)
    test = [(x, int(y.argmax())) for x, y in book_columns(rng, 10, 5, 3)]
    counts = net.SGD(training, 2, 5, 3.0, test_data=test)
    out = capsys.readouterr().out
    assert "Epoch 1: {} / 10".format(counts[1]) in out
    net.SGD(training, 1, 5, 3.0)
    assert "Epoch 0 complete" in capsys.readouterr().out
    assert net.evaluate(test) == net.accuracy(test)
    a = numpy.full((3, 1), 0.25)
    y = numpy.eye(3)[:, [1]]
    numpy.testing.assert_array_equal(net.cost_derivative(a, y), a - y)
    weights = [w.copy() for w in net.weights]
    net.update_mini_batch(training[:4], 3.0)
    assert not numpy.array_equal(weights[0], net.weights[0])


def test_network3_sgd_prints_the_books_lines_and_returns_history(capsys):
    gpunn.use("numpy", "float32", seed=0)
    rng = numpy.random.default_rng(5)
    # A learnable toy problem: the label is the brightest of 4 blocks.
    x = rng.random((400, 64)).astype("float32")
    y = x.reshape(400, 4, 16).sum(axis=2).argmax(axis=1)
    training, validation, test = (x[:300], y[:300]), (x[300:350], y[300:350]), \
        (x[350:], y[350:])
    net = Network([FullyConnectedLayer(64, 20, tanh),
                   SoftmaxLayer(20, 4)], 10)
    history = net.SGD(training, 6, 10, 0.3, validation, test, lmbda=0.01)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Training mini-batch number 0"
    assert "Epoch 0: validation accuracy {:.2%}".format(
        history[0]["validation_accuracy"]) in out
    assert out[-3] == "Finished training network."
    best = max(h["validation_accuracy"] for h in history)
    assert out[-2].startswith("Best validation accuracy of {:.2%} obtained at "
                              "iteration ".format(best))
    assert [h["epoch"] for h in history] == list(range(6))
    # The test accuracy is measured exactly when validation is best so far.
    running_best = 0.0
    for h in history:
        improved = h["validation_accuracy"] >= running_best
        running_best = max(running_best, h["validation_accuracy"])
        assert (h["test_accuracy"] is not None) == improved
        assert h["seconds"] > 0 and h["training_cost"] > 0
    assert history[-1]["training_cost"] < history[0]["training_cost"]
    assert best > 0.5  # far above chance (0.25)
    assert net.accuracy(validation) == history[-1]["validation_accuracy"]


def test_network3_checks_the_layer_stack():
    with pytest.raises(ValueError, match=r"layer 1 .* takes 100 inputs per "
                                         r"example but layer 0 .* gives 2880"):
        Network([ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28)),
                 SoftmaxLayer(100, 10)], 10)
    with pytest.raises(ValueError, match="image_shape.0. = 10 must equal "
                                         "mini_batch_size = 20"):
        Network([ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28)),
                 SoftmaxLayer(2880, 10)], 20)
    with pytest.raises(ValueError, match="last layer must be a SoftmaxLayer"):
        Network([FullyConnectedLayer(784, 10)], 10)
    with pytest.raises(ValueError, match="filter_shape .* has 2 input maps but "
                                         "image_shape .* has 1"):
        ConvPoolLayer((20, 2, 5, 5), (10, 1, 28, 28))
    with pytest.raises(ValueError, match="p_dropout must be a number in"):
        FullyConnectedLayer(10, 10, p_dropout=1.0)
    net = Network([FullyConnectedLayer(4, 3), SoftmaxLayer(3, 2)], 5)
    data = (numpy.zeros((4, 4)), numpy.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="mini_batch_size 5 is larger"):
        net.SGD(data, 1, 5, 0.1, data)
    with pytest.raises(ValueError, match="must equal the network's"):
        net.SGD(data, 1, 2, 0.1, data)
    with pytest.raises(ValueError, match="SGD needs validation_data"):
        net.SGD(data, 1, 5, 0.1, None)


def test_the_book_conv_py_calls_run_unchanged(capsys):
    """Every call form of the book's conv.py (network3 API), on a slice of
    the real data: load_data_shared(), layers by keyword, SGD positional
    with lmbda, size(), layers[i].w (its plot_filters reads w[j][0])."""
    gpunn.use("numpy", "float32", seed=0)
    training_data, validation_data, test_data = network3.load_data_shared()
    training_data = [a[:200] for a in training_data]
    validation_data = [a[:100] for a in validation_data]
    test_data = [a[:100] for a in test_data]
    mini_batch_size = 10
    net = Network([
        ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28),
                      filter_shape=(20, 1, 5, 5),
                      poolsize=(2, 2),
                      activation_fn=ReLU),
        ConvPoolLayer(image_shape=(mini_batch_size, 20, 12, 12),
                      filter_shape=(40, 20, 5, 5),
                      poolsize=(2, 2),
                      activation_fn=ReLU),
        FullyConnectedLayer(n_in=40*4*4, n_out=100, activation_fn=ReLU,
                            p_dropout=0.5),
        FullyConnectedLayer(n_in=100, n_out=100, activation_fn=ReLU,
                            p_dropout=0.5),
        SoftmaxLayer(n_in=100, n_out=10, p_dropout=0.5)], mini_batch_size)
    net.SGD(training_data, 1, mini_batch_size, 0.03,
            validation_data, test_data, lmbda=0.1)
    assert network3.size(training_data) == 200
    filters = to_numpy(net.layers[0].w)
    assert filters.shape == (20, 1, 5, 5) and filters[3][0].shape == (5, 5)
    out = capsys.readouterr().out
    assert "Epoch 0: validation accuracy" in out
    assert "Corresponding test accuracy of" in out
