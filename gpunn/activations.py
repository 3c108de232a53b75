"""activations.py
~~~~~~~~~~~~~~~~~

The activation functions of network3 (``sigmoid``, ``tanh``, ``ReLU``,
``linear``), each with its derivative, written once for NumPy and CuPy.

An activation is called like the book's functions, ``sigmoid(z)``, and
also carries ``prime(z, a)``: the derivative sigma'(z), given the output
``a = sigma(z)`` as well, so that backprop can reuse it instead of
computing sigma again (for the sigmoid, sigma'(z) = a(1 - a)).
"""

from gpunn.compute.backend import get_array_module


class Activation:
    """An activation function sigma and its derivative sigma'.

    ``fn(z)`` and ``prime(z, a)`` take arrays of any shape and return
    arrays of the same shape and dtype.
    """

    def __init__(self, name, fn, prime):
        self.__name__ = name
        self.fn = fn
        self.prime = prime

    def __call__(self, z):
        return self.fn(z)

    def __repr__(self):
        return self.__name__


def _sigmoid(z):
    # 1/(1+exp(-z)), written with tanh: the same function, but it cannot
    # overflow for large negative z (exp(-z) would, with a warning).
    xp = get_array_module(z)
    return 0.5 * (1 + xp.tanh(0.5 * z))


def _relu(z):
    xp = get_array_module(z)
    return xp.maximum(z, 0)


sigmoid = Activation("sigmoid", _sigmoid, lambda z, a: a * (1 - a))
tanh = Activation("tanh", lambda z: get_array_module(z).tanh(z),
                  lambda z, a: 1 - a * a)
# ReLU'(z) is 1 for z > 0, else 0 (ReLU'(0) is taken as 0): the sign of
# a = max(z, 0), in one pass and in a's dtype.
ReLU = Activation("ReLU", _relu, lambda z, a: get_array_module(a).sign(a))
linear = Activation("linear", lambda z: z,
                    lambda z, a: get_array_module(z).ones_like(z))

ACTIVATIONS = {f.__name__: f for f in (sigmoid, tanh, ReLU, linear)}


def sigmoid_prime(z):
    """Derivative of the sigmoid function (the book's name)."""
    a = sigmoid(z)
    return a * (1 - a)


def softmax(z):
    """Softmax over the last axis of ``z`` (shape (n, n_out))."""
    xp = get_array_module(z)
    e = xp.exp(z - z.max(axis=-1, keepdims=True))  # shifted: no overflow
    return e / e.sum(axis=-1, keepdims=True)
