"""network2.py
~~~~~~~~~~~~~~

Chapter 3's program: a sigmoid network trained by mini-batch stochastic
gradient descent with the cross-entropy (or quadratic) cost, L2
regularization, better weight initialization, monitoring, and save/load
to JSON.  The book's API and shapes: ``weights[l]`` is (n_out, n_in),
``biases[l]`` is (n_out, 1), an input ``x`` is a column (784, 1).

Unlike the book, a mini-batch is processed as one matrix, not example
by example: the layers are network3's ``FullyConnectedLayer`` (one
example per row, ``w`` = the book's weights transposed), shared with
chapter 6.  ``weights`` and ``biases`` are views of those layers'
parameters in the book's shapes.

Data: the lists of ``(x, y)`` tuples of ``mnist_loader.load_data_wrapper``,
or, faster, a pair of matrices ``(X, Y)`` with one example per row.
"""

import json

import numpy

from gpunn.compute import backend
from gpunn.activations import sigmoid
from gpunn.compute.backend import get_array_module, to_numpy
from gpunn.costs import COSTS, CrossEntropyCost, QuadraticCost  # noqa: F401
from gpunn.errors import ConfigError, DivergenceError, number, positive_int
from gpunn.layers import FullyConnectedLayer


class Network:

    def __init__(self, sizes, cost=CrossEntropyCost):
        """``sizes`` lists the number of neurons in each layer, input layer
        first: [784, 30, 10] is 784 inputs, 30 hidden neurons and 10
        outputs.  Weights start as ``default_weight_initializer`` makes
        them."""
        if len(sizes) < 2 or any(int(s) != s or s < 1 for s in sizes):
            raise ConfigError("sizes must list at least two positive integers, "
                             "got {!r}".format(sizes))
        self.num_layers = len(sizes)
        self.sizes = [int(s) for s in sizes]
        self.cost = cost
        self.layers = [FullyConnectedLayer(x, y, sigmoid)
                       for x, y in zip(self.sizes[:-1], self.sizes[1:])]
        self.default_weight_initializer()

    def default_weight_initializer(self):
        """Weights N(0, 1/n_in) (n_in: the weights into the same neuron),
        biases N(0, 1); from the seeded host generator."""
        self._initialize(lambda n_in: 1.0 / numpy.sqrt(n_in))

    def large_weight_initializer(self):
        """Weights and biases N(0, 1), as in chapter 1."""
        self._initialize(lambda n_in: 1.0)

    def _initialize(self, weight_scale):
        rng = backend.host_rng  # the book draws all biases, then all weights
        self.biases = [rng.standard_normal((y, 1)) for y in self.sizes[1:]]
        self.weights = [rng.standard_normal((y, x)) * weight_scale(x)
                        for x, y in zip(self.sizes[:-1], self.sizes[1:])]

    # The book's weights[l] (n_out, n_in) and biases[l] (n_out, 1) are views
    # of the layers' w (n_in, n_out) and b (n_out,): updates show in both.
    @property
    def weights(self):
        return [layer.w.T for layer in self.layers]

    @weights.setter
    def weights(self, weights):
        for layer, w in zip(self.layers, weights, strict=True):
            layer.w = _parameter(w, (layer.n_out, layer.n_in), "weights").T

    @property
    def biases(self):
        return [layer.b.reshape(-1, 1) for layer in self.layers]

    @biases.setter
    def biases(self, biases):
        for layer, b in zip(self.layers, biases, strict=True):
            layer.b = _parameter(b, (layer.n_out, 1), "biases").reshape(-1)

    def feedforward(self, a):
        """Return the output (n_out, m) for the input columns ``a`` (n_in, m)."""
        return self._feedforward(self._inputs(a).T).T

    def _feedforward(self, x):
        for layer in self.layers:
            x = layer.feedforward(x)
        return x

    def SGD(self, training_data, epochs, mini_batch_size, eta,
            lmbda=0.0,
            evaluation_data=None,
            monitor_evaluation_cost=False,
            monitor_evaluation_accuracy=False,
            monitor_training_cost=False,
            monitor_training_accuracy=False):
        """Train with mini-batch stochastic gradient descent, shuffling the
        training data each epoch, and L2 regularization ``lmbda``.  Returns
        the book's four per-epoch lists: evaluation costs, evaluation
        accuracies, training costs, training accuracies (each empty unless
        its monitor flag is set)."""
        n = len(training_data)
        evaluation_cost, evaluation_accuracy = [], []
        training_cost, training_accuracy = [], []
        for j in self._train(training_data, epochs, mini_batch_size, eta, lmbda):
            print("Epoch %s training complete" % j)
            if monitor_training_cost:
                cost = self.total_cost(training_data, lmbda)
                training_cost.append(cost)
                print("Cost on training data: {}".format(cost))
            if monitor_training_accuracy:
                accuracy = self.accuracy(training_data, convert=True)
                training_accuracy.append(accuracy)
                print("Accuracy on training data: {} / {}".format(accuracy, n))
            if monitor_evaluation_cost:
                cost = self.total_cost(evaluation_data, lmbda, convert=True)
                evaluation_cost.append(cost)
                print("Cost on evaluation data: {}".format(cost))
            if monitor_evaluation_accuracy:
                accuracy = self.accuracy(evaluation_data)
                evaluation_accuracy.append(accuracy)
                print("Accuracy on evaluation data: {} / {}".format(
                    accuracy, len(evaluation_data)))
            print()
        return evaluation_cost, evaluation_accuracy, \
            training_cost, training_accuracy

    def _train(self, training_data, epochs, mini_batch_size, eta, lmbda):
        """Run the epochs of SGD, yielding each epoch's number when it is done."""
        epochs = positive_int("epochs", epochs)
        eta = number("eta", eta, 0.0, allow_minimum=False)
        lmbda = number("lmbda", lmbda)
        x, y = self._matrices(training_data)
        xp = get_array_module(x)
        n = len(x)
        if not 1 <= positive_int("mini_batch_size", mini_batch_size) <= n:
            raise ConfigError("mini_batch_size must be between 1 and the {} "
                              "training examples, got {}".format(n, mini_batch_size))
        if x.shape[1] != self.sizes[0] or y.shape[1:] not in ((), (self.sizes[-1],)):
            raise ConfigError(
                "training_data: x has {} inputs and y {} outputs per example; "
                "the network takes {} and gives {}".format(
                    x.shape[1], y.shape[1] if y.ndim > 1 else 1,
                    self.sizes[0], self.sizes[-1]))
        if not bool(xp.isfinite(x).all() & xp.isfinite(y).all()):
            raise ConfigError("training_data holds NaN or infinite values")
        for j in range(epochs):
            # Shuffle once per epoch, on the device; mini-batches are slices.
            order = backend.asarray(backend.host_rng.permutation(n),
                                    dtype="int64", like=x)
            x_shuffled, y_shuffled = x[order], y[order]
            for k in range(0, n, mini_batch_size):
                self._update(x_shuffled[k:k + mini_batch_size],
                             y_shuffled[k:k + mini_batch_size], eta, lmbda, n)
            if not all(bool(xp.isfinite(layer.w).all()) for layer in self.layers):
                raise DivergenceError(
                    "training diverged in epoch {}: the weights became NaN or "
                    "infinite. Try a smaller eta (it is {}; say {:g}).".format(
                        j, eta, eta / 10))
            yield j

    def update_mini_batch(self, mini_batch, eta, lmbda, n):
        """Apply one step of gradient descent for the ``mini_batch``, a list
        of ``(x, y)`` tuples; ``n`` is the size of the training set."""
        self._update(*self._matrices(mini_batch), eta, lmbda, n)

    def _update(self, x, y, eta, lmbda, n):
        """The update of the book's ``update_mini_batch`` for the examples
        in the rows of ``x`` (m, n_in) and ``y`` (m, n_out)."""
        nabla_b, nabla_w = self._backprop(x, y)
        m = len(x)
        for layer, nb, nw in zip(self.layers, nabla_b, nabla_w):
            layer.w *= 1 - eta * (lmbda / n)  # weight decay from the L2 term
            layer.w -= (eta / m) * nw
            layer.b -= (eta / m) * nb

    def backprop(self, x, y):
        """Return ``(nabla_b, nabla_w)``, layer by layer in the shapes of
        ``biases`` and ``weights``: the gradient of the cost summed over the
        examples in the columns of ``x`` (n_in, m) and ``y`` (n_out, m) (for
        one example, the book's gradient of C_x)."""
        nabla_b, nabla_w = self._backprop(self._inputs(x).T, self._inputs(y).T)
        # Copies: the layers' gradient arrays change with the next pass.
        return ([nb.reshape(-1, 1).copy() for nb in nabla_b],
                [nw.T.copy() for nw in nabla_w])

    def _backprop(self, x, y):
        """``backprop`` for examples in rows, in the layers' shapes."""
        a = x
        for layer in self.layers:
            a = layer.forward(a)
        output_layer = self.layers[-1]
        delta = self.cost.delta(output_layer.z, output_layer.a, y)  # BP1
        nabla_b, nabla_w = [None] * len(self.layers), [None] * len(self.layers)
        nabla_a, nabla_b[-1], nabla_w[-1] = output_layer.backward_delta(
            delta, need_input_grad=len(self.layers) > 1)
        for l in range(len(self.layers) - 2, -1, -1):            # BP2
            nabla_a, nabla_b[l], nabla_w[l] = self.layers[l].backward(
                nabla_a, need_input_grad=l > 0)
        return nabla_b, nabla_w

    def accuracy(self, data, convert=False):
        """Return the number of examples in ``data`` that the network
        classifies correctly (the output neuron with the highest
        activation).  ``convert`` as in the book: False when the labels
        ``y`` are digits (validation, test data), True when they are
        one-hot vectors (training data)."""
        x, y = self._matrices(data)
        if convert:
            y = y.argmax(axis=1)
        return int((self._feedforward(x).argmax(axis=1) == y).sum())

    def total_cost(self, data, lmbda, convert=False):
        """Return the mean cost over ``data`` plus the L2 term
        0.5*(lmbda/n)*sum ||w||^2.  ``convert`` as in the book: True when
        the labels are digits (validation, test data), to make them one-hot."""
        x, y = self._matrices(data)
        if convert:
            xp = get_array_module(x)
            y = (xp.arange(self.sizes[-1]) == y.reshape(-1, 1)).astype(x.dtype)
        cost = float(self.cost.fn(self._feedforward(x), y)) / len(x)
        return cost + 0.5 * (lmbda / len(x)) * sum(
            float((layer.w ** 2).sum()) for layer in self.layers)

    def save(self, filename):
        """Save the network to the JSON file ``filename``, in the book's format."""
        data = {"sizes": self.sizes,
                "weights": [to_numpy(w).tolist() for w in self.weights],
                "biases": [to_numpy(b).tolist() for b in self.biases],
                "cost": self.cost.__name__}
        with open(filename, "w") as f:
            json.dump(data, f)

    def to_backend(self):
        """Move the parameters to the active backend and dtype; returns self."""
        for layer in self.layers:
            layer.to_backend()
        return self

    # Data in the book's list-of-columns form is stacked into matrices with
    # one example per row, on the network's backend and in its dtype.
    def _inputs(self, a):
        return backend.asarray(a, dtype=self.layers[0].w.dtype,
                               like=self.layers[0].w)

    def _matrices(self, data):
        """Return ``(x, y)``, x (n, n_in); y (n, n_out) for one-hot labels
        or (n,) integer digits, from ``data``: a list of ``(x, y)`` tuples
        (the book's format) or a pair of matrices ``(X, Y)``."""
        if isinstance(data, tuple) and len(data) == 2 and \
                getattr(data[0], "ndim", None) == 2:
            x, y = data
        else:
            if not data:
                raise ConfigError("no data: expected a non-empty list of (x, y)")
            xs, ys = zip(*data)
            x = numpy.stack([to_numpy(a).reshape(-1) for a in xs])
            y = numpy.stack([to_numpy(b).reshape(-1) for b in ys])
            if y.shape[1] == 1:  # digits, not one-hot columns
                y = y.reshape(-1)
        x = self._inputs(x)
        if y.ndim == 1:
            return x, backend.asarray(y, dtype="int32", like=x)
        return x, self._inputs(y)


def load(filename):
    """Load a network saved by ``Network.save`` from the JSON file
    ``filename``, onto the active backend."""
    with open(filename) as f:
        data = json.load(f)
    if data.get("cost") not in COSTS:
        raise ConfigError("{}: unknown cost {!r}; expected one of {}".format(
            filename, data.get("cost"), ", ".join(COSTS)))
    net = Network(data["sizes"], cost=COSTS[data["cost"]])
    net.weights = [numpy.array(w) for w in data["weights"]]
    net.biases = [numpy.array(b) for b in data["biases"]]
    return net


def _parameter(value, shape, name):
    a = backend.asarray(value)
    if a.shape != shape:
        raise ConfigError("{} entry has shape {}, expected {}".format(
            name, a.shape, shape))
    return a
