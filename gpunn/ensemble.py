"""ensemble.py
~~~~~~~~~~~~~

The book's ensemble of networks (``ensemble`` in chapter 6's conv.py):
several trained networks classify the test images, and each image gets
the digit most of them chose.  The book counts the votes one image at a
time with ``collections.Counter``; here one vote for all images is a few
array operations, on NumPy or CuPy.
"""

from gpunn.compute import backend
from gpunn.errors import ConfigError
from gpunn.compute.backend import get_array_module


def plurality_vote(predictions):
    """Return the label most networks chose for each example, an int
    array of shape (n,), on the backend of ``predictions``: an array of
    non-negative int labels of shape (n_nets, n), one row per network.

    Ties are broken as the book's ``Counter(p).most_common(1)`` breaks
    them: among the labels with the most votes, the one that net 0, net 1,
    ... voted for first."""
    xp = get_array_module(predictions)
    predictions = xp.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[0] == 0 or \
            predictions.dtype.kind not in "iu":
        raise ConfigError("predictions must be an int array of shape (n_nets, "
                         "n) with n_nets >= 1, got {} of shape {}".format(
                             predictions.dtype, predictions.shape))
    n_nets, n = predictions.shape
    if n == 0:
        return predictions[0]
    if int(predictions.min()) < 0:
        raise ConfigError("predictions must be labels >= 0")
    labels = xp.arange(int(predictions.max()) + 1)
    # counts[i, k]: how many nets voted k on example i (summed one-hots).
    counts = (predictions[:, :, None] == labels).sum(axis=0)      # (n, labels)
    # votes_for[j, i]: how many nets voted as net j did on example i.
    votes_for = xp.take_along_axis(counts, predictions.T, axis=1).T  # (n_nets, n)
    # The first net whose vote has the most votes (argmax: first True).
    first = (votes_for == counts.max(axis=1)).argmax(axis=0)       # (n,)
    return predictions[first, xp.arange(n)]


def ensemble(nets, data):
    """The book's ``ensemble``, vectorized: classify ``data`` = (x, y)
    (e.g. the test data of ``gpunn.load_data()``) by a plurality vote of
    the networks ``nets`` (see ``plurality_vote``).

    Returns ``(accuracy, error_locations, erroneous_predictions)``: the
    fraction of examples the vote gets right (a Python float), the indices
    of the others (a list of ints, in order) and the vote on each of those
    (a list of ints).  (The book printed the accuracy and returned the two
    lists.)"""
    nets = list(nets)
    if not nets:
        raise ConfigError("ensemble needs at least one network")
    x, y = data
    predictions = [net.predict(x) for net in nets]
    # Every net's predictions, and the labels, on the first net's backend.
    first = predictions[0]
    predictions = get_array_module(first).stack(
        [backend.asarray(p, dtype=first.dtype, like=first) for p in predictions])
    vote = plurality_vote(predictions)
    y = backend.asarray(y, dtype=vote.dtype, like=vote)
    xp = get_array_module(vote)
    error_locations = xp.flatnonzero(vote != y)
    erroneous_predictions = vote[error_locations]
    accuracy = 1 - len(error_locations) / len(y)
    return (float(accuracy), backend.to_numpy(error_locations).tolist(),
            backend.to_numpy(erroneous_predictions).tolist())
