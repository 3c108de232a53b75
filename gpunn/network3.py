"""network3.py
~~~~~~~~~~~~~~

Chapter 6's program, without Theano: networks of convolution + max-pool,
fully connected and softmax layers, trained by mini-batch stochastic
gradient descent with hand-written backpropagation, on NumPy or CuPy
(see ``gpunn.backend``).

The API is the book's, so that its ``conv.py`` runs with only its imports
changed::

    from gpunn import network3
    from gpunn.network3 import sigmoid, tanh, ReLU, Network
    from gpunn.network3 import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer
    training_data, validation_data, test_data = network3.load_data_shared()
    net = Network([FullyConnectedLayer(n_in=784, n_out=100),
                   SoftmaxLayer(n_in=100, n_out=10)], 10)
    net.SGD(training_data, 60, 10, 0.1, validation_data, test_data)

As in network3: the cost is the softmax layer's log-likelihood plus
0.5*lmbda*sum(w**2)/num_training_batches over every layer's weights; the
training data is used in order, in whole mini-batches (a last partial
one is left out); each epoch ends with the validation accuracy, and the
test accuracy whenever the validation accuracy is the best so far.
"""

import os
import time

import numpy

from gpunn import expand_mnist, mnist_loader
from gpunn.activations import ReLU, linear, sigmoid, tanh  # noqa: F401 (the book's names)
from gpunn.compute import backend, cuda_graph, kernels, shards
from gpunn.compute.backend import get_array_module
from gpunn.errors import ConfigError, DivergenceError, number, positive_int
from gpunn.layers import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer


class Network:

    def __init__(self, layers, mini_batch_size):
        """Takes a list of ``layers``, the network's architecture, ending
        in a SoftmaxLayer, and the ``mini_batch_size`` used in training.
        Each layer's input size must match the previous layer's output."""
        self.layers = list(layers)
        self.mini_batch_size = positive_int("mini_batch_size", mini_batch_size)
        for j, layer in enumerate(self.layers):
            if not isinstance(layer, (ConvPoolLayer, FullyConnectedLayer)):
                raise ConfigError("layer {} is {!r}, not a gpunn layer "
                                  "(ConvPoolLayer, FullyConnectedLayer, "
                                  "SoftmaxLayer)".format(j, layer))
        if not self.layers or not isinstance(self.layers[-1], SoftmaxLayer):
            raise ConfigError("the last layer must be a SoftmaxLayer (its "
                             "log-likelihood is the cost), got {!r}".format(
                                 self.layers[-1] if self.layers else None))
        for j, layer in enumerate(self.layers):
            if isinstance(layer, ConvPoolLayer) and \
                    layer.image_shape[0] != self.mini_batch_size:
                raise ConfigError(
                    "layer {} ({!r}): image_shape[0] = {} must equal "
                    "mini_batch_size = {}".format(j, layer, layer.image_shape[0],
                                                  self.mini_batch_size))
            if isinstance(layer, SoftmaxLayer) and j != len(self.layers) - 1:
                raise ConfigError("layer {}: a SoftmaxLayer can only be the "
                                 "last layer".format(j))
            if j > 0:
                prev = self.layers[j - 1]
                n_prev = 1
                for d in prev.output_shape:
                    n_prev *= d
                if n_prev != layer.n_in:
                    raise ConfigError(
                        "layer {} ({!r}) takes {} inputs per example but layer "
                        "{} ({!r}) gives {} (shape {})".format(
                            j, layer, layer.n_in, j - 1, prev, n_prev,
                            prev.output_shape))
        self.gather_parameters()

    def gather_parameters(self):
        """Keep every layer's w and b in one flat array, ``flat_params``
        (all the weights, then all the biases: the first ``n_weights``
        entries are weights), and their gradients in the same places of
        another, ``flat_nablas``; each layer's w, b, nabla_w and nabla_b
        become views of them.  A step of gradient descent is then one
        pass over the two arrays (one kernel on CuPy)."""
        xp = get_array_module(self.layers[0].w)
        storages = [layer.storage() for layer in self.layers]
        self.n_weights = sum(w.size for w, _, _, _ in storages)
        size = self.n_weights + sum(b.size for _, b, _, _ in storages)
        dtype = self.layers[0].w.dtype
        self.flat_params = xp.empty(size, dtype=dtype)
        self.flat_nablas = xp.zeros(size, dtype=dtype)
        w_start, b_start = 0, self.n_weights
        self.parameter_ranges = []  # each layer's (w's, b's) slice of them
        for layer, (w, b, _, _) in zip(self.layers, storages):
            w_range = slice(w_start, w_start + w.size)
            b_range = slice(b_start, b_start + b.size)
            self.parameter_ranges.append((w_range, b_range))
            layer.use_storage(*(flat[r].reshape(shape) for flat in (
                self.flat_params, self.flat_nablas) for r, shape in (
                    (w_range, w.shape), (b_range, b.shape))))
            layer.network = self
            w_start, b_start = w_range.stop, b_range.stop

    @property
    def params(self):
        """[w, b] of every layer, in order (network3's ``params``)."""
        return [p for layer in self.layers for p in (layer.w, layer.b)]

    def feedforward(self, x, batch_size=500):
        """Return the network's output (inference: no dropout) for inputs
        ``x`` of shape (n, n_in), computed ``batch_size`` rows at a time;
        shape (n, n_out)."""
        xp = get_array_module(self.layers[0].w)
        x = self._inputs(x)

        def output(k):
            a = x[k:k + batch_size]
            for layer in self.layers:
                a = layer.feedforward(a)
            return a
        starts = range(0, len(x), batch_size)
        if xp is numpy:  # the batches on gpunn's threads (shards.py)
            return xp.concatenate(shards.run(output, list(starts)))
        return xp.concatenate([output(k) for k in starts])

    def predict(self, x):
        """Return the digit the network picks for each row of ``x`` (n,)."""
        return self.feedforward(x).argmax(axis=1)

    def accuracy(self, data):
        """Return the fraction of ``data`` = (x, y) classified correctly,
        as a Python float.  (Every example counts; network3 counted whole
        mini-batches only, the same when mini_batch_size divides n.)"""
        x, y = data
        return float((self.predict(x) == self._labels(y)).mean())

    def backprop(self, x, y):
        """Return ``(nabla_b, nabla_w)``, one array per layer shaped like
        its ``b`` and ``w``: the gradient of the mean log-likelihood cost
        of the mini-batch ``x`` (m, n_in), ``y`` (m,) (L2 term not
        included; dropout, if any, on)."""
        nabla_b, nabla_w, _ = self._backprop(self._inputs(x), self._labels(y))
        # Copies: the layers' gradient arrays change with the next pass.
        return [nb.copy() for nb in nabla_b], [nw.copy() for nw in nabla_w]

    def _backprop(self, x, y, cost=None):
        """``backprop`` on arrays already on the network's backend, into
        the layers' own gradient arrays; also returns the mini-batch's
        cost (a 0-d device array, ``cost`` if given).  On NumPy, the
        conv layers of a mini-batch of more than shards.SHARD_SIZE
        images run in shards on every core (shards.py)."""
        k = 0
        if isinstance(x, numpy.ndarray):
            backend.take_threads()  # the BLAS on one thread
            if shards.shard_count(len(x)) > 1:
                k = shards.conv_layers(self)
        if k:
            cost = shards.backprop(self, k, x, y, cost)
        else:
            _, cost = self._backprop_from(0, x, y, cost)
        return ([layer.nabla_b for layer in self.layers],
                [layer.nabla_w for layer in self.layers], cost)

    def _backprop_from(self, j, a, y, cost=None):
        """The forward and backward passes of layers j, j+1, ... given
        layer j's input ``a``: returns ``(nabla_a, cost)``, nabla_a =
        dC/da for that input (None when j is 0)."""
        for layer in self.layers[j:-1]:
            a = layer.forward(a)
        output_layer = self.layers[-1]
        # The softmax layer's forward pass, the cost, BP1 and BP3 in one go.
        cost, delta = output_layer.forward_cost_delta(a, y, cost)
        # BP1's delta at the softmax layer, then BP2 backwards through the rest.
        nabla_a, _, _ = output_layer.backward_delta(
            delta, need_input_grad=len(self.layers) > 1, have_nabla_b=True)
        for l in range(len(self.layers) - 2, j - 1, -1):
            nabla_a, _, _ = self.layers[l].backward(nabla_a,
                                                    need_input_grad=l > 0)
        return nabla_a, cost

    def update_mini_batch(self, x, y, eta, lmbda=0.0, num_training_batches=1):
        """One step of gradient descent on the mini-batch ``x``, ``y``:
        w -> w - eta*(nabla_w + lmbda*w/num_training_batches), b -> b -
        eta*nabla_b, the gradient of network3's regularized cost.  Returns
        the mini-batch's log-likelihood cost as a 0-d device array."""
        return self._update(self._inputs(x), self._labels(y), eta, lmbda,
                            num_training_batches)

    def _update(self, x, y, eta, lmbda, num_training_batches,
                gradient_norms=None, cost=None):
        """``update_mini_batch`` on arrays already on the network's backend;
        the cost is written into the 0-d array ``cost`` if given.
        If ``gradient_norms`` is a list, the norm of each layer's nabla_w
        is added to its entries (device scalars: no synchronization)."""
        for j, layer in enumerate(self.layers):
            if layer.network is not self:  # its w and b are not in flat_params
                raise ConfigError("layer {} ({!r}) is now a layer of another "
                                  "Network; give each Network layers of its "
                                  "own".format(j, layer))
        _, nabla_w, cost = self._backprop(x, y, cost)
        if gradient_norms is not None:
            xp = get_array_module(x)
            for l, nw in enumerate(nabla_w):
                gradient_norms[l] = gradient_norms[l] + xp.sqrt((nw * nw).sum())
        decay = eta * lmbda / num_training_batches  # the L2 term's gradient
        # w -> (1 - decay) w - eta nabla_w, b -> b - eta nabla_b, for every
        # layer at once: the layers' parameters and gradients are views
        # of these two arrays.
        kernels.sgd_step(self.flat_params, self.flat_nablas, self.n_weights,
                         eta, decay)
        return cost

    def l2_norm_squared(self):
        """sum(w**2) over every layer's weights, a Python float."""
        return float(sum((layer.w ** 2).sum() for layer in self.layers))

    def total_cost(self, data, lmbda=0.0, num_training_batches=1):
        """network3's regularized cost on ``data`` = (x, y): the mean
        log-likelihood (inference outputs) plus
        0.5*lmbda*sum(w**2)/num_training_batches."""
        xp = get_array_module(self.layers[0].w)
        x, y = data
        a = self.feedforward(x)
        y = self._labels(y)
        log_likelihood = -xp.log(xp.take_along_axis(a, y.reshape(-1, 1), 1)).mean()
        return float(log_likelihood) + \
            0.5 * lmbda * self.l2_norm_squared() / num_training_batches

    def SGD(self, training_data, epochs, mini_batch_size, eta,
            validation_data, test_data=None, lmbda=0.0, *, history=None,
            seed=None, on_epoch=None, progress=None, log=print,
            monitor_gradients=False, graph="auto"):
        """Train the network using mini-batch stochastic gradient descent,
        printing the book's lines each epoch.  The data sets are (x, y)
        pairs as ``load_data_shared`` returns them (moved to the network's
        backend if they are elsewhere).  Returns the history: one dict per
        epoch with ``epoch``, ``training_cost`` (mean log-likelihood of
        the epoch's mini-batches, as trained: dropout on, no L2 term),
        ``validation_accuracy``, ``test_accuracy`` (None unless this epoch
        is the best so far, as in network3) and ``seconds``.

        gpunn's options, all off by default (keyword only):

        - ``history``: the records of epochs already done (a resumed run):
          training goes on from epoch len(history) to ``epochs``, and the
          best validation accuracy so far counts.
        - ``seed``: draw epoch e's dropout masks from a generator seeded
          by (seed, e), so that any epoch can be replayed: a resumed run
          ends with the weights of an uninterrupted one.
        - ``on_epoch(record)``: called after each epoch (logs, checkpoints).
        - ``progress(epoch, n)``: returns a progress bar (``update(k)``,
          ``close()``, as tqdm's) for an epoch of n images.
        - ``log``: prints the book's lines (default ``print``).
        - ``monitor_gradients``: each record gets ``gradient_norms``, the
          mean norm of each layer's nabla_w over the epoch (chapter 5's
          speed of learning).
        - ``graph``: on CuPy, capture the training step once as a CUDA
          graph and replay it for each mini-batch (``cuda_graph``): "auto"
          (the default) does for mini-batches of at most
          cuda_graph.LARGEST_MINI_BATCH, True whenever it can, False
          never.  Each record's ``cuda_graph`` says whether its epoch
          was replayed.  The results are the eager step's.
        """
        epochs = positive_int("epochs", epochs)
        eta = number("eta", eta, 0.0, allow_minimum=False)
        lmbda = number("lmbda", lmbda)
        if positive_int("mini_batch_size", mini_batch_size) != self.mini_batch_size:
            raise ConfigError("SGD's mini_batch_size ({}) must equal the "
                              "network's ({})".format(mini_batch_size,
                                                      self.mini_batch_size))
        if validation_data is None:
            raise ConfigError("SGD needs validation_data: network3 keeps the "
                              "epoch with the best validation accuracy")
        training_x, training_y = self._checked_data(training_data, "training_data")
        validation_data = self._checked_data(validation_data, "validation_data")
        if test_data is not None:
            test_data = self._checked_data(test_data, "test_data")
        num_training_batches = len(training_x) // mini_batch_size
        if num_training_batches == 0:
            raise ConfigError("mini_batch_size {} is larger than the {} training "
                             "examples".format(mini_batch_size, len(training_x)))

        xp = get_array_module(training_x)
        if graph not in ("auto", True, False):
            raise ConfigError("graph must be 'auto', True or False, got {!r}"
                              .format(graph))
        if graph == "auto":
            graph = mini_batch_size <= cuda_graph.LARGEST_MINI_BATCH
        captured = None
        if graph and cuda_graph.can_capture(training_x, monitor_gradients):
            captured = cuda_graph.CapturedStep(self, training_x, training_y, eta,
                                               lmbda, num_training_batches)
        history = list(history or [])
        best_validation_accuracy, best_iteration, test_accuracy = 0.0, None, None
        for record in history:  # a resumed run: the best epoch so far
            if record["validation_accuracy"] >= best_validation_accuracy:
                best_validation_accuracy = record["validation_accuracy"]
                best_iteration = num_training_batches * (record["epoch"] + 1) - 1
                test_accuracy = record["test_accuracy"]
        for epoch in range(len(history), epochs):
            start = time.perf_counter()
            if seed is not None:
                backend.seed_dropout(epoch_seed(seed, epoch))
            bar = progress(epoch, num_training_batches * mini_batch_size) \
                if progress else None
            norms = [0.0] * len(self.layers) if monitor_gradients else None
            # Each mini-batch's cost stays on the device until the epoch
            # ends: no synchronization per step, and a divergence can still
            # be traced to its mini-batch.
            if captured is not None:
                captured.start_epoch()
                costs = captured.costs
            else:
                costs = xp.empty(num_training_batches, dtype=training_x.dtype)
            for minibatch_index in range(num_training_batches):
                iteration = num_training_batches * epoch + minibatch_index
                if iteration % 1000 == 0:
                    log("Training mini-batch number {0}".format(iteration))
                if captured is not None:
                    captured.step(minibatch_index)
                else:
                    batch = slice(minibatch_index * mini_batch_size,
                                  (minibatch_index + 1) * mini_batch_size)
                    cost = costs[minibatch_index:minibatch_index + 1].reshape(())
                    self._update(training_x[batch], training_y[batch], eta,
                                 lmbda, num_training_batches, norms, cost)
                if bar is not None:
                    bar.update(mini_batch_size)
            if bar is not None:
                bar.close()
            self._check_finite(costs, epoch, eta)
            record = {"epoch": epoch,
                      "training_cost": float(costs.mean()),
                      "validation_accuracy": self.accuracy(validation_data),
                      "test_accuracy": None,
                      "cuda_graph": bool(captured is not None and captured.graph)}
            if norms is not None:
                record["gradient_norms"] = [float(n) / num_training_batches
                                            for n in norms]
            log("Epoch {0}: validation accuracy {1:.2%}".format(
                epoch, record["validation_accuracy"]))
            if record["validation_accuracy"] >= best_validation_accuracy:
                log("This is the best validation accuracy to date.")
                best_validation_accuracy = record["validation_accuracy"]
                best_iteration = iteration
                if test_data:
                    test_accuracy = record["test_accuracy"] = \
                        self.accuracy(test_data)
                    log("The corresponding test accuracy is {0:.2%}".format(
                        test_accuracy))
            record["seconds"] = time.perf_counter() - start
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
        log("Finished training network.")
        log("Best validation accuracy of {0:.2%} obtained at iteration {1}"
            .format(best_validation_accuracy, best_iteration))
        if test_accuracy is not None:
            log("Corresponding test accuracy of {0:.2%}".format(test_accuracy))
        return history

    def _check_finite(self, costs, epoch, eta):
        """Raise DivergenceError if the epoch's costs or the weights are NaN
        or infinite: one read from the device per epoch."""
        xp = get_array_module(costs)
        finite = xp.isfinite(costs).all()
        for layer in self.layers:
            finite = finite & xp.isfinite(layer.w).all() & xp.isfinite(layer.b).all()
        if bool(finite):
            return
        bad = xp.flatnonzero(~xp.isfinite(costs))
        where = "mini-batch {}: the cost became {}".format(
            int(bad[0]), float(costs[int(bad[0])])) if len(bad) else \
            "the weights became NaN or infinite"
        raise DivergenceError(
            "training diverged in epoch {}, {}. Try a smaller eta (it is {}; "
            "say {:g}).".format(epoch, where, eta, eta / 10))

    def _checked_data(self, data, name):
        """``data`` = (x, y) on the network's backend, after checking that
        it fits the network: x of shape (n, n_in) (or (n, C, H, W)), finite;
        y of shape (n,), whole numbers from 0 to n_out - 1."""
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ConfigError("{} must be a pair (x, y), got {}".format(
                name, type(data).__name__))
        x, y = self._inputs(data[0]), backend.asarray(data[1], dtype=None,
                                                      like=self.layers[0].w)
        first, last = self.layers[0], self.layers[-1]
        if x.ndim < 2 or numpy.prod(x.shape[1:]) != first.n_in:
            raise ConfigError("{}: x has shape {}, but layer 0 ({!r}) takes {} "
                              "inputs per example".format(name, x.shape, first,
                                                          first.n_in))
        if y.ndim != 1 or len(y) != len(x):
            raise ConfigError("{}: y has shape {}; expected ({},), one label per "
                              "row of x".format(name, y.shape, len(x)))
        if len(x) == 0:
            raise ConfigError("{} is empty".format(name))
        xp = get_array_module(x)
        if not bool((y == xp.floor(y)).all() & (y >= 0).all()
                    & (y < last.n_out).all()):
            raise ConfigError("{}: labels must be whole numbers from 0 to {} "
                              "(the softmax layer's outputs), found {} to {}"
                              .format(name, last.n_out - 1, float(y.min()),
                                      float(y.max())))
        if not bool(xp.isfinite(x).all()):
            raise ConfigError("{}: x holds NaN or infinite values".format(name))
        return x, y.astype("int32")

    def to_backend(self):
        """Move every layer's parameters to the active backend and dtype
        (after ``gpunn.use(...)``); returns the network."""
        for layer in self.layers:
            layer.to_backend()
        self.gather_parameters()
        return self

    # Inputs may come from anywhere (a list, the host, another backend):
    # they are put where the network's parameters are, in their dtype.
    def _inputs(self, x):
        w = self.layers[0].w
        return backend.asarray(x, dtype=w.dtype, like=w)

    def _labels(self, y):
        return backend.asarray(y, dtype="int32", like=self.layers[0].w)


#: The file the book's conv.py asks for: gpunn makes it on the fly.
EXPANDED_NAME = "mnist_expanded.pkl.gz"


def load_data_shared(filename=None):
    """Return the list ``[training_data, validation_data, test_data]``,
    each a pair ``(x, y)`` as ``mnist_loader.load_data`` gives it.

    (Theano kept them in "shared" GPU variables; here the arrays already
    live on the active backend.)  A ``filename`` named
    mnist_expanded.pkl.gz that does not exist, as the book's conv.py asks
    for, gives the 250,000 expanded training images of
    ``gpunn.expand_mnist`` with the bundled validation and test data."""
    if (filename is not None and os.path.basename(filename) == EXPANDED_NAME
            and not os.path.exists(filename)):
        _, validation, test = mnist_loader.load_data()
        x, y = expand_mnist.expanded_training_data()
        return [(backend.asarray(x), backend.asarray(y, dtype="int32")),
                validation, test]
    return list(mnist_loader.load_data(filename))


def epoch_seed(seed, epoch):
    """The seed of epoch ``epoch``'s dropout masks in a run seeded ``seed``."""
    return int(numpy.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def size(data):
    """Return the number of examples in the data set ``data`` = (x, y)."""
    return len(data[0])


__all__ = ["Network", "ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer",
           "sigmoid", "tanh", "ReLU", "linear", "load_data_shared", "size"]
