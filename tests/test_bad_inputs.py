"""Bad input is refused before any training, with an error that says
which layer or argument is wrong and what it should be; a diverging run
stops with a message.  One table, each row: what is given, the error
type, and words its message must contain."""

import numpy
import pytest

import gpunn
from gpunn import backend, network2
from gpunn.activations import ReLU
from gpunn.errors import (BackendError, ConfigError, DataError,
                          DivergenceError, GpunnError)
from gpunn.experiments import experiment
from gpunn.mnist_loader import load_data
from gpunn.network3 import (ConvPoolLayer, FullyConnectedLayer, Network,
                            SoftmaxLayer)

RNG = numpy.random.default_rng(0)
X = RNG.random((40, 784))
Y = RNG.integers(0, 10, 40)


def small_net(mini_batch_size=10):
    return Network([FullyConnectedLayer(784, 20), SoftmaxLayer(20, 10)],
                   mini_batch_size)


def sgd(training=(X, Y), epochs=1, mini_batch_size=10, eta=0.1,
        validation=(X, Y), test=None, lmbda=0.0):
    return lambda: small_net().SGD(training, epochs, mini_batch_size, eta,
                                   validation, test, lmbda=lmbda)


def with_value(array, index, value):
    array = array.astype(float)
    array[index] = value
    return array


CASES = [
    # Layers
    ("conv filter_shape of 3", lambda: ConvPoolLayer((20, 1, 5), (10, 1, 28, 28)),
     ConfigError, "filter_shape must be 4 positive integers"),
    ("conv image_shape with 0", lambda: ConvPoolLayer((20, 1, 5, 5), (10, 0, 28, 28)),
     ConfigError, "image_shape must be 4 positive integers"),
    ("conv input maps differ", lambda: ConvPoolLayer((20, 2, 5, 5), (10, 1, 28, 28)),
     ConfigError, "has 2 input maps but image_shape"),
    ("conv filter larger than image", lambda: ConvPoolLayer((20, 1, 30, 5), (10, 1, 28, 28)),
     ConfigError, "a 30x5 filter on a 28x28 image"),
    ("pool larger than conv output", lambda: ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28), (30, 2)),
     ConfigError, "smaller than poolsize (30, 2)"),
    ("poolsize with 0", lambda: ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28), (0, 2)),
     ConfigError, "poolsize must be 2 positive integers"),
    ("activation not gpunn's", lambda: ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28),
                                                      activation_fn=numpy.tanh),
     ConfigError, "activation_fn must be one of gpunn's activations"),
    ("n_in 0", lambda: FullyConnectedLayer(0, 10),
     ConfigError, "n_in must be 1 positive integer"),
    ("n_out negative", lambda: FullyConnectedLayer(10, -3),
     ConfigError, "n_out must be 1 positive integer"),
    ("n_in not whole", lambda: FullyConnectedLayer(2.5, 10),
     ConfigError, "n_in must be 1 positive integer"),
    ("p_dropout 1", lambda: FullyConnectedLayer(10, 10, ReLU, p_dropout=1.0),
     ConfigError, "p_dropout must be a number in [0, 1), got 1.0"),
    ("p_dropout negative", lambda: SoftmaxLayer(10, 10, p_dropout=-0.1),
     ConfigError, "p_dropout must be a number in [0, 1), got -0.1"),
    ("p_dropout NaN", lambda: SoftmaxLayer(10, 10, p_dropout=float("nan")),
     ConfigError, "p_dropout must be a number in [0, 1), got nan"),
    ("p_dropout a string", lambda: FullyConnectedLayer(10, 10, p_dropout="0.5"),
     ConfigError, "p_dropout must be a number in [0, 1), got '0.5'"),
    # Networks
    ("no softmax at the end", lambda: Network([FullyConnectedLayer(784, 10)], 10),
     ConfigError, "the last layer must be a SoftmaxLayer"),
    ("softmax in the middle", lambda: Network([SoftmaxLayer(784, 10),
                                               SoftmaxLayer(10, 10)], 10),
     ConfigError, "layer 0: a SoftmaxLayer can only be the last layer"),
    ("sizes do not chain", lambda: Network([FullyConnectedLayer(784, 30),
                                            SoftmaxLayer(100, 10)], 10),
     ConfigError, "layer 1 (SoftmaxLayer(n_in=100, n_out=10, p_dropout=0.0)) "
                  "takes 100 inputs per example but layer 0"),
    ("conv output does not chain", lambda: Network([
        ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28)), FullyConnectedLayer(2000, 10),
        SoftmaxLayer(10, 10)], 10),
     ConfigError, "takes 2000 inputs per example but layer 0"),
    ("image_shape not the mini-batch", lambda: Network([
        ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28)), SoftmaxLayer(2880, 10)], 64),
     ConfigError, "image_shape[0] = 10 must equal mini_batch_size = 64"),
    ("mini_batch_size 0", lambda: small_net(0),
     ConfigError, "mini_batch_size must be a positive integer, got 0"),
    ("no layers", lambda: Network([], 10),
     ConfigError, "the last layer must be a SoftmaxLayer"),
    ("not a layer", lambda: Network(["relu", SoftmaxLayer(784, 10)], 10),
     ConfigError, "layer 0 is 'relu', not a gpunn layer"),
    # SGD arguments
    ("eta 0", sgd(eta=0), ConfigError, "eta must be a finite number > 0.0, got 0"),
    ("eta negative", sgd(eta=-1), ConfigError, "eta must be a finite number > 0.0"),
    ("eta NaN", sgd(eta=float("nan")), ConfigError, "eta must be a finite number"),
    ("lmbda negative", sgd(lmbda=-1), ConfigError, "lmbda must be a finite number >= 0.0"),
    ("epochs 0", sgd(epochs=0), ConfigError, "epochs must be a positive integer, got 0"),
    ("epochs 1.5", sgd(epochs=1.5), ConfigError, "epochs must be a positive integer, got 1.5"),
    ("mini-batch other than the network's", sgd(mini_batch_size=20),
     ConfigError, "SGD's mini_batch_size (20) must equal the network's (10)"),
    ("mini-batch larger than the data", sgd(training=(X[:5], Y[:5])),
     ConfigError, "mini_batch_size 10 is larger than the 5 training examples"),
    # Data
    ("x of the wrong width", sgd(training=(X[:, :783], Y)),
     ConfigError, "training_data: x has shape (40, 783), but layer 0"),
    ("label 10 for 10 outputs", sgd(training=(X, with_value(Y, 3, 10))),
     ConfigError, "labels must be whole numbers from 0 to 9 (the softmax "
                  "layer's outputs), found 0.0 to 10.0"),
    ("negative label", sgd(validation=(X, with_value(Y, 0, -1))),
     ConfigError, "validation_data: labels must be whole numbers from 0 to 9"),
    ("label not whole", sgd(test=(X, with_value(Y, 1, 2.5))),
     ConfigError, "test_data: labels must be whole numbers"),
    ("NaN pixel", sgd(training=(with_value(X, (2, 5), numpy.nan), Y)),
     ConfigError, "training_data: x holds NaN or infinite values"),
    ("infinite pixel", sgd(validation=(with_value(X, (0, 0), numpy.inf), Y)),
     ConfigError, "validation_data: x holds NaN or infinite values"),
    ("x and y lengths differ", sgd(training=(X, Y[:30])),
     ConfigError, "training_data: y has shape (30,); expected (40,)"),
    ("no validation data", sgd(validation=None),
     ConfigError, "SGD needs validation_data"),
    ("data not a pair", sgd(training=X),
     ConfigError, "training_data must be a pair (x, y), got ndarray"),
    # network2
    ("network2 with one layer", lambda: network2.Network([784]),
     ConfigError, "sizes must list at least two positive integers"),
    ("network2 eta 0", lambda: network2.Network([784, 10]).SGD((X, numpy.eye(10)[Y]), 1, 10, 0),
     ConfigError, "eta must be a finite number > 0.0"),
    ("network2 x of the wrong width", lambda: network2.Network([700, 10]).SGD(
        (X, numpy.eye(10)[Y]), 1, 10, 0.5),
     ConfigError, "x has 784 inputs and y 10 outputs per example; the network "
                  "takes 700 and gives 10"),
    ("network2 NaN in x", lambda: network2.Network([784, 10]).SGD(
        (with_value(X, (1, 1), numpy.nan), numpy.eye(10)[Y]), 1, 10, 0.5),
     ConfigError, "training_data holds NaN or infinite values"),
    # Backend, experiments, files
    ("unknown backend", lambda: gpunn.use("torch"),
     BackendError, "unknown backend 'torch'"),
    ("unsupported dtype", lambda: gpunn.use("numpy", "int8"),
     BackendError, "unsupported dtype 'int8'"),
    ("unknown experiment", lambda: experiment("triple_conv"),
     ConfigError, "unknown experiment 'triple_conv'"),
    ("missing data file", lambda: load_data("/nonexistent/mnist.pkl.gz"),
     DataError, "/nonexistent/mnist.pkl.gz: no such file"),
]


def test_the_table_has_at_least_30_distinct_cases():
    assert len(CASES) >= 30
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize("name, call, error, words", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_gpunn_error(name, call, error, words):
    gpunn.use("numpy", "float32", seed=0)
    with pytest.raises(error) as caught:
        call()
    assert isinstance(caught.value, GpunnError)
    assert words in str(caught.value)


def test_a_diverging_run_stops_with_the_divergence_message(capsys):
    """A ReLU net with eta 100: the cost becomes NaN in the first epoch."""
    gpunn.use("numpy", "float32", seed=0)
    (x, y), (vx, vy), _ = gpunn.load_data()
    net = experiment("dbl_conv_relu").network(10)
    with pytest.raises(DivergenceError) as caught:
        net.SGD((x[:500], y[:500]), 3, 10, 100.0, (vx[:100], vy[:100]))
    message = str(caught.value)
    assert message.startswith("training diverged in epoch 0, mini-batch ")
    assert "the cost became nan" in message
    assert "Try a smaller eta (it is 100.0; say 10)." in message
    assert "Epoch 0: validation accuracy" not in capsys.readouterr().out


def test_network2_divergence():
    """A weight that has become infinite (as an overflow leaves it) stops
    network2's training at the end of the epoch."""
    gpunn.use("numpy", "float32", seed=0)
    net = network2.Network([784, 30, 10], cost=network2.CrossEntropyCost)
    net.layers[0].w[3, 4] = numpy.inf
    with pytest.raises(DivergenceError, match="epoch 0: the weights became NaN "
                                              "or infinite"):
        with numpy.errstate(all="ignore"):
            net.SGD((X, numpy.eye(10)[Y]), 2, 10, 0.5)


def test_good_input_still_trains():
    """The checks refuse the bad, not the good: the table's own data
    trains when nothing is wrong with it."""
    gpunn.use("numpy", "float32", seed=0)
    (history,) = small_net().SGD((X, Y), 1, 10, 0.1, (X, Y))
    assert 0 <= history["validation_accuracy"] <= 1
    assert backend.name() == "numpy"
