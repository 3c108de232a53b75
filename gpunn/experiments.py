"""experiments.py
~~~~~~~~~~~~~~~~~

The book's models as data: the chapter-6 experiments of its ``conv.py``
and the networks of chapters 1 and 3, each with the hyperparameters and
the accuracy the book gives for it.

``EXPERIMENTS[name]`` is an ``Experiment``; ``experiment.network(
mini_batch_size)`` builds a fresh network (initial weights from gpunn's
seeded generator).  ``NETWORKS["network"]`` and ``NETWORKS["network2"]``
are the settings of chapters 1 and 3.  The benchmark suite, the command
line and ``gpunn reproduce`` use these definitions, so there is one
description of each of the book's models.
"""

from dataclasses import dataclass, field
from typing import Callable

from gpunn.errors import ConfigError
from gpunn.network3 import (ConvPoolLayer, FullyConnectedLayer, Network,
                            ReLU, SoftmaxLayer, sigmoid)


@dataclass(frozen=True)
class Experiment:
    """One of the book's chapter-6 runs."""
    name: str
    description: str
    layers: Callable  # layers(mini_batch_size) -> list of layers
    eta: float
    epochs: int = 60
    lmbda: float = 0.0
    expanded_data: bool = False
    book_accuracy: float = None  # test accuracy the book reports, in %
    options: dict = field(default_factory=dict)

    def network(self, mini_batch_size=10):
        """A fresh network of this experiment for ``mini_batch_size``."""
        return Network(self.layers(mini_batch_size), mini_batch_size)


def conv_layers(mini_batch_size, activation_fn, double=True):
    """One or two of conv.py's conv-pool layers: 20 filters 5x5 on the
    28x28 image, then 40 filters 5x5 on the 20 12x12 maps."""
    layers = [ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28),
                            filter_shape=(20, 1, 5, 5), poolsize=(2, 2),
                            activation_fn=activation_fn)]
    if double:
        layers.append(ConvPoolLayer(image_shape=(mini_batch_size, 20, 12, 12),
                                    filter_shape=(40, 20, 5, 5),
                                    poolsize=(2, 2), activation_fn=activation_fn))
    return layers


def relu_net(n, fc_layers=1, p_dropout=(0.0, 0.0, 0.0)):
    """conv.py's ReLU networks: two conv-pool layers, ``fc_layers`` fully
    connected layers of ``n`` ReLU neurons, softmax; dropout ``p_dropout``
    for the fully connected and softmax layers' inputs."""
    def layers(mini_batch_size):
        fc, n_in = [], 40 * 4 * 4
        for j in range(fc_layers):
            fc.append(FullyConnectedLayer(n_in=n_in, n_out=n, activation_fn=ReLU,
                                          p_dropout=p_dropout[j]))
            n_in = n
        return conv_layers(mini_batch_size, ReLU) + fc + [
            SoftmaxLayer(n_in=n, n_out=10, p_dropout=p_dropout[-1])]
    return layers


def _list(*experiments):
    return {e.name: e for e in experiments}


EXPERIMENTS = _list(
    Experiment(
        "shallow", "100 sigmoid neurons, softmax",
        lambda m: [FullyConnectedLayer(n_in=784, n_out=100),
                   SoftmaxLayer(n_in=100, n_out=10)],
        eta=0.1, book_accuracy=97.80),
    Experiment(
        "basic_conv", "conv-pool 20x5x5, 100 sigmoid neurons, softmax",
        lambda m: conv_layers(m, sigmoid, double=False) + [
            FullyConnectedLayer(n_in=20*12*12, n_out=100),
            SoftmaxLayer(n_in=100, n_out=10)],
        eta=0.1, book_accuracy=98.78),
    Experiment(
        "omit_FC", "conv-pool 20x5x5, softmax",
        lambda m: conv_layers(m, sigmoid, double=False) + [
            SoftmaxLayer(n_in=20*12*12, n_out=10)],
        eta=0.1),
    Experiment(
        "dbl_conv", "two conv-pool layers, 100 sigmoid neurons, softmax",
        lambda m: conv_layers(m, sigmoid) + [
            FullyConnectedLayer(n_in=40*4*4, n_out=100),
            SoftmaxLayer(n_in=100, n_out=10)],
        eta=0.1, book_accuracy=99.06),
    Experiment(
        "dbl_conv_relu", "two ReLU conv-pool layers, 100 ReLU neurons, softmax",
        relu_net(100), eta=0.03, lmbda=0.1, book_accuracy=99.23),
    *[Experiment(
        "expanded_data_{}".format(n),
        "dbl_conv_relu with {} ReLU neurons, expanded data".format(n),
        relu_net(n), eta=0.03, lmbda=0.1, expanded_data=True,
        book_accuracy=accuracy, options={"n": n})
      for n, accuracy in ((100, 99.37), (300, 99.46), (1000, 99.43))],
    *[Experiment(
        "expanded_data_double_fc_{}".format(n),
        "two fully connected layers of {} ReLU neurons, expanded data".format(n),
        relu_net(n, fc_layers=2), eta=0.03, lmbda=0.1, expanded_data=True,
        book_accuracy=accuracy, options={"n": n})
      for n, accuracy in ((100, 99.43), (300, 99.48), (1000, 99.47))],
    Experiment(
        "double_fc_dropout",
        "two fully connected layers of 1000 ReLU neurons, dropout 0.5, "
        "expanded data",
        relu_net(1000, fc_layers=2, p_dropout=(0.5, 0.5, 0.5)),
        eta=0.03, epochs=40, expanded_data=True, book_accuracy=99.60,
        options={"p_dropout": (0.5, 0.5, 0.5)}),
)

#: The book's vote of five double_fc_dropout networks (chapter 6), in %.
BOOK_VOTE_ACCURACY = 99.67


@dataclass(frozen=True)
class BookNetwork:
    """network.py (chapter 1) or network2.py (chapter 3): a [784, n, 10]
    sigmoid network, with the settings of the book's run and its test
    accuracy (in %)."""
    name: str
    description: str
    eta: float
    lmbda: float = 0.0
    n: int = 30
    epochs: int = 30
    init: str = "large"  # N(0, 1) weights; "default": N(0, 1/n_in)
    book_accuracy: float = None


NETWORKS = {
    "network": BookNetwork(
        "network", "chapter 1, [784, 30, 10] sigmoid, quadratic cost",
        eta=3.0, book_accuracy=95.42),
    "network2": BookNetwork(
        "network2", "chapter 3, [784, 30, 10] sigmoid, cross-entropy",
        eta=0.5, lmbda=5.0, book_accuracy=96.49),
}


#: conv.py's functions, by name, with the option each takes (the CLI's
#: ``gpunn train NAME``): dbl_conv's activation, the expanded-data nets'
#: n, double_fc_dropout's three dropout probabilities.
CONV_PY = ("shallow", "basic_conv", "omit_FC", "dbl_conv",
           "regularized_dbl_conv", "dbl_conv_relu", "expanded_data",
           "expanded_data_double_fc", "double_fc_dropout")


def experiment(name, n=100, activation_fn=sigmoid, p_dropout=(0.5, 0.5, 0.5)):
    """The experiment that conv.py's function ``name`` runs, with its
    option: ``activation_fn`` for dbl_conv, ``n`` (neurons per fully
    connected layer) for expanded_data and expanded_data_double_fc,
    ``p_dropout`` for double_fc_dropout."""
    if name == "dbl_conv":
        return Experiment(
            "dbl_conv", "two conv-pool layers, 100 {} neurons, softmax".format(
                activation_fn),
            lambda m: conv_layers(m, activation_fn) + [
                FullyConnectedLayer(n_in=40*4*4, n_out=100,
                                    activation_fn=activation_fn),
                SoftmaxLayer(n_in=100, n_out=10)],
            eta=0.1, book_accuracy=99.06 if activation_fn is sigmoid else None,
            options={"activation": str(activation_fn)})
    if name == "regularized_dbl_conv":
        # The book tried lmbda from 0.00001 to 100 and left it out of the
        # chapter ("basic l2 regularization didn't help much").
        return Experiment(
            "regularized_dbl_conv", "dbl_conv (sigmoid) with L2, lmbda 0.1",
            EXPERIMENTS["dbl_conv"].layers, eta=0.1, lmbda=0.1)
    if name in ("expanded_data", "expanded_data_double_fc"):
        known = EXPERIMENTS.get("{}_{}".format(name, n))
        if known is not None:
            return known
        return Experiment(
            "{}_{}".format(name, n),
            "{} fully connected layer(s) of {} ReLU neurons, expanded data"
            .format(1 if name == "expanded_data" else 2, n),
            relu_net(n, fc_layers=1 if name == "expanded_data" else 2),
            eta=0.03, lmbda=0.1, expanded_data=True, options={"n": n})
    if name == "double_fc_dropout":
        p_dropout = tuple(float(p) for p in p_dropout)
        if p_dropout == (0.5, 0.5, 0.5):
            return EXPERIMENTS["double_fc_dropout"]
        return Experiment(
            "double_fc_dropout",
            "two fully connected layers of 1000 ReLU neurons, dropout {}, "
            "expanded data".format(p_dropout),
            relu_net(1000, fc_layers=2, p_dropout=p_dropout), eta=0.03,
            epochs=40, expanded_data=True, options={"p_dropout": p_dropout})
    if name in EXPERIMENTS:
        return EXPERIMENTS[name]
    raise ConfigError("unknown experiment {!r}: choose one of {}".format(
        name, ", ".join(CONV_PY)))
