"""Tests of gpunn.ensemble against the book's own vote, written with
collections.Counter as conv.py does, and on networks voting on real
MNIST test images."""

from collections import Counter

import numpy as np
import pytest

import gpunn
from gpunn.backend import to_numpy
from gpunn.ensemble import ensemble, plurality_vote
from gpunn.network3 import FullyConnectedLayer, Network, SoftmaxLayer
from helpers import put


def book_plurality(predictions):
    """conv.py's vote: zip the nets' predictions, Counter each example."""
    def plurality(p):
        return Counter(p).most_common(1)[0][0]
    return [plurality(p) for p in zip(*[list(p) for p in predictions])]


def test_vote_equals_the_books_on_random_votes_with_ties(backend_name):
    gpunn.use(backend_name)
    rng = np.random.default_rng(0)
    for n_nets, n_labels in ((5, 4), (4, 3), (2, 10), (1, 3), (6, 2)):
        votes = rng.integers(0, n_labels, size=(n_nets, 1000))
        expected = book_plurality(votes.tolist())
        got = plurality_vote(put(votes, dtype="int64"))
        assert type(got) is type(put(votes))  # stays on the backend
        assert to_numpy(got).tolist() == expected


def test_random_votes_do_tie():
    """The random test above has ties to break, often."""
    votes = np.random.default_rng(0).integers(0, 4, size=(5, 1000))
    top_two = [Counter(p).most_common(2) for p in zip(*votes.tolist())]
    ties = sum(len(c) == 2 and c[0][1] == c[1][1] for c in top_two)
    assert ties > 100


@pytest.mark.parametrize("votes, expected", [
    ([[1, 2], [2, 1]], [1, 2]),              # 1-1: net 0's vote
    ([[3], [1], [1], [3]], [3]),             # 2-2: 3 appears first
    ([[0], [1], [2]], [0]),                  # all different: net 0's
    ([[2], [1], [1], [2], [0], [0]], [2]),   # 2-2-2
    ([[5], [7], [7]], [7]),                  # a majority beats net 0
    ([[9], [4], [8], [8], [4]], [4]),        # 4 and 8 tie, 4 seen first
    ([[1, 0, 12]], [1, 0, 12]),              # one net
])
def test_hand_made_ties(backend_name, votes, expected):
    gpunn.use(backend_name)
    assert to_numpy(plurality_vote(put(votes, dtype="int32"))).tolist() == \
        expected
    assert book_plurality(votes) == expected


def test_vote_rejects_what_is_not_votes():
    for bad in (np.array([1, 2]), np.zeros((0, 3), dtype=int),
                np.zeros((2, 3)), np.array([[1, -1]])):
        with pytest.raises(ValueError):
            plurality_vote(bad)


@pytest.fixture(scope="module")
def mnist_host():
    """(training, test) slices of the real MNIST data, as host arrays."""
    training, _, test = gpunn.load_data()
    return tuple((to_numpy(x[:k]), to_numpy(y[:k]))
                 for (x, y), k in ((training, 1000), (test, 500)))


def test_ensemble_of_three_networks_on_mnist(backend_name, mnist_host):
    (train_x, train_y), (test_x, test_y) = mnist_host
    gpunn.use(backend_name, seed=0)
    nets = []
    for seed in (1, 2, 3):
        gpunn.seed(seed)
        net = Network([FullyConnectedLayer(n_in=784, n_out=20),
                       SoftmaxLayer(n_in=20, n_out=10)], 10)
        net.SGD((train_x, train_y), 1, 10, 0.5, (train_x[:100], train_y[:100]))
        nets.append(net)
    predictions = [to_numpy(net.predict(test_x)).tolist() for net in nets]
    assert predictions[0] != predictions[1] != predictions[2]  # a real vote

    accuracy, error_locations, erroneous_predictions = ensemble(
        nets, (test_x, test_y))

    vote = book_plurality(predictions)
    expected_errors = [j for j in range(len(test_y)) if vote[j] != test_y[j]]
    assert error_locations == expected_errors
    assert erroneous_predictions == [vote[j] for j in expected_errors]
    assert type(accuracy) is float
    assert accuracy == 1 - len(error_locations) / len(test_y)
    assert 0.3 < accuracy < 1
    assert all(type(j) is int for j in error_locations + erroneous_predictions)


def test_ensemble_needs_networks():
    with pytest.raises(ValueError):
        ensemble([], (np.zeros((1, 784)), np.zeros(1)))
