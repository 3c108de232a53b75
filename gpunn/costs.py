"""costs.py
~~~~~~~~~~~

Cost functions with network2's interface: a class per cost with two
static methods, ``fn(a, y)`` (the cost) and ``delta(z, a, y)`` (the error
delta^L = dC/dz^L of the output layer, equation BP1).

gpunn works on whole mini-batches, one example per row: ``a``, ``z`` and
``y`` have shape (m, n_out) for the quadratic and cross-entropy costs,
whose ``fn`` returns the sum over the m examples (for one example it is
the book's C_x) and whose ``delta`` is per example, as in the book.
The log-likelihood cost of network3's softmax layer takes integer labels
``y`` of shape (m,) and, as in network3, is the mean over the mini-batch.
"""

import contextlib

import numpy

from gpunn.activations import sigmoid_prime
from gpunn.compute.backend import get_array_module


class QuadraticCost:

    @staticmethod
    def fn(a, y):
        """Return 0.5*||a - y||^2, summed over the mini-batch."""
        return 0.5 * ((a - y) ** 2).sum()

    @staticmethod
    def delta(z, a, y):
        """Return the output error (a - y) * sigma'(z), shape (m, n_out)."""
        return (a - y) * sigmoid_prime(z)


class CrossEntropyCost:

    @staticmethod
    def fn(a, y):
        """Return sum(-y ln a - (1-y) ln(1-a)) over the mini-batch.
        ``nan_to_num`` makes 0*ln(0) count as 0, as in the book."""
        xp = get_array_module(a)
        with _quiet(xp):
            return xp.nan_to_num(-y * xp.log(a) - (1 - y) * xp.log(1 - a)).sum()

    @staticmethod
    def delta(z, a, y):
        """Return the output error a - y (``z`` is unused: the sigma'(z)
        of BP1 cancels for the cross-entropy), shape (m, n_out)."""
        return a - y


class LogLikelihoodCost:
    """network3's cost for a softmax output layer: -mean ln a_y."""

    @staticmethod
    def fn(a, y):
        """Return -mean_x ln a[x, y[x]] over the mini-batch; ``a`` (m, n_out)
        softmax outputs, ``y`` (m,) integer labels."""
        xp = get_array_module(a)
        a_y = xp.take_along_axis(a, y.reshape(-1, 1), axis=1)
        return -xp.log(a_y).mean()

    @staticmethod
    def delta(z, a, y):
        """Return dC/dz = (a - onehot(y)) / m for the softmax layer, the
        error of the *mean* cost (so the gradients are those of the mean)."""
        xp = get_array_module(a)
        onehot = xp.arange(a.shape[1]) == y.reshape(-1, 1)
        return (a - onehot) / len(a)


def _quiet(xp):
    """Silence NumPy's warnings for ln(0): the book's nan_to_num takes
    care of the values.  (CuPy never warns.)"""
    if xp is numpy:
        return numpy.errstate(divide="ignore", invalid="ignore")
    return contextlib.nullcontext()


COSTS = {c.__name__: c for c in (QuadraticCost, CrossEntropyCost)}
