"""layers.py
~~~~~~~~~~~

network3's layer types, with network3's semantics, parameters and
initialization, and a hand-written backward pass beside each forward
pass:

- ``ConvPoolLayer``: valid convolution, max-pooling (border ignored),
  then the bias, then the activation function.
- ``FullyConnectedLayer``: a = sigma((1-p) inpt.w + b) at inference; in
  training the input is multiplied by a dropout mask instead.
- ``SoftmaxLayer``: the output layer, zero-initialized, trained with the
  log-likelihood cost.

Arrays hold one example per row (network3's layout): a fully connected
layer takes (m, n_in), has ``w`` of shape (n_in, n_out) and ``b`` of
shape (n_out,); a conv layer takes (m, C, H, W) (or anything that
reshapes to it) and has ``w`` of shape (F, C, KH, KW), ``b`` of shape (F,).

Each layer has:

- ``feedforward(inpt)``: inference output; keeps nothing.
- ``forward(inpt)``: training output (dropout on); keeps what the
  backward pass needs.
- ``backward(nabla_a, need_input_grad=True)``: given nabla_a = dC/da for
  this layer's output ``a``, returns ``(nabla_inpt, nabla_b, nabla_w)``;
  nabla_b and nabla_w are the layer's own gradient arrays (see
  ``Layer``), overwritten by the next backward pass.
  The four equations of chapter 2: delta = nabla_a * sigma'(z) (BP1/BP2),
  nabla_b = delta (BP3, summed over the mini-batch), nabla_w = a_in delta
  (BP4), and nabla_inpt = delta w^T, the first half of BP2 for the layer
  below.
"""

import math
import numbers

from gpunn.compute import backend, kernels
from gpunn.activations import sigmoid, softmax, Activation
from gpunn.compute.backend import get_array_module
from gpunn.costs import LogLikelihoodCost
from gpunn.errors import ConfigError


class Layer:
    """What every layer has: weights ``w`` and biases ``b``, and the
    arrays its backward pass writes their gradients into, ``nabla_w``
    and ``nabla_b`` (shaped like w and b).

    The four are views of storage arrays that a Network replaces by views
    into two flat arrays, one for all of its weights and biases and one
    for their gradients, so that a step of gradient descent is one pass
    over each (one kernel on CuPy; ``Network.gather_parameters``).  So
    ``layer.w = x`` copies x into the storage, rather than rebinding w.
    """

    # The storage's axes, as axes of w (None: w itself).  A conv layer
    # keeps its filters channels-last, (F, KH, KW, C), as its patches are.
    storage_axes = None
    network = None  # the Network whose flat arrays hold the storage

    def set_parameters(self, w, b):
        """Give the layer storage of its own, holding ``w`` and ``b``
        (arrays of any backend, in w's and b's shapes) on the active
        backend, and zero gradients beside them."""
        self.network = None
        w, b = backend.asarray(w), backend.asarray(b)
        if self.storage_axes is not None:
            w = w.transpose(self.storage_axes)
        xp = get_array_module(w)
        self.use_storage(*_allocate(w.shape, lambda: (
            xp.ascontiguousarray(w), xp.ascontiguousarray(b),
            xp.zeros(w.shape, w.dtype), xp.zeros(b.shape, b.dtype))),
            copy=False)

    def use_storage(self, w, b, nabla_w, nabla_b, copy=True):
        """Keep w, b and their gradients in the given arrays (w's in the
        storage layout), after copying the current values into them
        (unless not ``copy``)."""
        if copy:
            w[...], b[...] = self._w, self._b
            nabla_w[...], nabla_b[...] = self._nabla_w, self._nabla_b
        self._w, self._b, self._nabla_w, self._nabla_b = w, b, nabla_w, nabla_b
        # One view each, so that "layer.w -= x" finds w itself.
        self._w_view, self._nabla_w_view = self._view(w), self._view(nabla_w)

    def storage(self):
        """The storage arrays of w, b, nabla_w and nabla_b."""
        return self._w, self._b, self._nabla_w, self._nabla_b

    def to_backend(self):
        """Move the parameters to the active backend and dtype."""
        self.set_parameters(self.w, self.b)

    def _view(self, storage):
        if self.storage_axes is None:
            return storage
        inverse = sorted(range(storage.ndim), key=self.storage_axes.__getitem__)
        return storage.transpose(inverse)

    @property
    def w(self):
        return self._w_view

    @w.setter
    def w(self, value):
        self._assign(self.w, value, "w")

    @property
    def b(self):
        return self._b

    @b.setter
    def b(self, value):
        self._assign(self._b, value, "b")

    @property
    def nabla_w(self):
        return self._nabla_w_view

    @property
    def nabla_b(self):
        return self._nabla_b

    def _assign(self, target, value, name):
        if value is target:  # "layer.w -= x": done in place already
            return
        value = backend.asarray(value, dtype=target.dtype, like=target)
        if value.shape != target.shape:
            raise ConfigError("{!r}: {} must have shape {}, got {}".format(
                self, name, target.shape, value.shape))
        target[...] = value


class ConvPoolLayer(Layer):
    """A convolutional layer followed by max-pooling, as in network3.

    ``filter_shape`` = (filters, input maps, filter height, filter width);
    ``image_shape`` = (mini-batch size, input maps, image height, image
    width); ``poolsize`` = (y, x) pooling sizes.  The output has shape
    (m, filters, (height-fh+1)//py, (width-fw+1)//px).
    """

    storage_axes = (0, 2, 3, 1)  # w's storage: (F, KH, KW, C)

    def __init__(self, filter_shape, image_shape, poolsize=(2, 2),
                 activation_fn=sigmoid):
        self.filter_shape = _positive_ints("filter_shape", filter_shape, 4)
        self.image_shape = _positive_ints("image_shape", image_shape, 4)
        self.poolsize = _positive_ints("poolsize", poolsize, 2)
        self.activation_fn = _activation(activation_fn)
        F, C, KH, KW = self.filter_shape
        _, C_in, H, W = self.image_shape
        if C != C_in:
            raise ConfigError(
                "ConvPoolLayer: filter_shape {} has {} input maps but image_shape "
                "{} has {}".format(self.filter_shape, C, self.image_shape, C_in))
        OH, OW = H - KH + 1, W - KW + 1
        if OH < self.poolsize[0] or OW < self.poolsize[1]:
            raise ConfigError(
                "ConvPoolLayer: a {}x{} filter on a {}x{} image leaves {}x{}, "
                "smaller than poolsize {}".format(KH, KW, H, W, OH, OW,
                                                  self.poolsize))
        self.n_in = C * H * W
        self.output_shape = (F, OH // self.poolsize[0], OW // self.poolsize[1])
        # network3's initialization: w ~ N(0, 1/n_out), b ~ N(0, 1), where
        # n_out is the number of outputs each input feeds after pooling.
        n_out = F * KH * KW / math.prod(self.poolsize)
        self.set_parameters(_normal(math.sqrt(1.0 / n_out), self.filter_shape),
                            _normal(1.0, (F,)))
        self.p_dropout = 0.0  # network3 applies no dropout to conv layers

    def feedforward(self, inpt):
        """Inference: ``inpt`` (m, C*H*W) or (m, C, H, W) -> output
        (m, F, PH, PW)."""
        x = inpt.reshape((-1,) + self.image_shape[1:])
        conv_out, _ = kernels.conv2d(x, self.w)
        _, a, _ = kernels.pool_bias_activation(conv_out, self.b, self.poolsize,
                                               self.activation_fn)
        return a

    def forward(self, inpt):
        """Training: as ``feedforward``, keeping what ``backward`` needs."""
        self.x_shape = (len(inpt),) + self.image_shape[1:]
        self.conv_out, self.col = kernels.conv2d(inpt.reshape(self.x_shape),
                                                 self.w)
        # network3: max-pooling, then the bias, then the activation.
        self.z, self.a, self.route = kernels.pool_bias_activation(
            self.conv_out, self.b, self.poolsize, self.activation_fn)
        return self.a

    def backward(self, nabla_a, need_input_grad=True):
        """``nabla_a``: dC/da, any shape that reshapes to (m, F, PH, PW).
        Returns ``(nabla_inpt, nabla_b, nabla_w)``; nabla_inpt has shape
        (m, C, H, W), or is None when ``need_input_grad`` is false."""
        # delta = nabla_a * sigma'(z) (BP2) and nabla_b = its sum (BP3);
        # through the pooling, each window's delta goes to its maximum.
        nabla_conv = kernels.pool_bias_activation_backward(
            nabla_a.reshape(self.a.shape), self.z, self.a, self.route,
            self.conv_out.shape, self.poolsize, self.activation_fn,
            nabla_b=self.nabla_b)
        nabla_inpt = kernels.conv2d_backward(                 # BP4
            nabla_conv, self.col, self.w, self.x_shape, self.nabla_w,
            need_input_grad)
        return nabla_inpt, self.nabla_b, self.nabla_w

    def __repr__(self):
        return "ConvPoolLayer(filter_shape={}, image_shape={}, poolsize={}, " \
            "activation_fn={})".format(self.filter_shape, self.image_shape,
                                       self.poolsize, self.activation_fn)


class FullyConnectedLayer(Layer):
    """A fully connected layer of ``n_out`` neurons with ``n_in`` inputs.

    Dropout as in network3: in training, each input is kept with
    probability 1 - ``p_dropout`` (and not rescaled); at inference all
    inputs are kept and the weighted input is scaled by (1 - p_dropout).
    """

    def __init__(self, n_in, n_out, activation_fn=sigmoid, p_dropout=0.0):
        self.n_in = _positive_ints("n_in", (n_in,), 1)[0]
        self.n_out = _positive_ints("n_out", (n_out,), 1)[0]
        self.activation_fn = _activation(activation_fn)
        self.p_dropout = _probability(p_dropout)
        self.output_shape = (self.n_out,)
        self.set_parameters(*self.initial_parameters())

    def initial_parameters(self):
        """network3's initialization: w ~ N(0, 1/n_out), b ~ N(0, 1)."""
        return (_normal(math.sqrt(1.0 / self.n_out), (self.n_in, self.n_out)),
                _normal(1.0, (self.n_out,)))

    def feedforward(self, inpt):
        """Inference: ``inpt`` (m, n_in) or anything that reshapes to it
        -> output (m, n_out)."""
        inpt = inpt.reshape(len(inpt), self.n_in)
        z = inpt @ self.w
        if self.p_dropout:
            z *= 1 - self.p_dropout
        return self.activation_fn(z + self.b)

    def forward(self, inpt):
        """Training: the input goes through a dropout mask (when
        p_dropout > 0); keeps the input, z and a for ``backward``."""
        # z = inpt w + b, a = sigma(z)
        self.z, self.a = kernels.bias_activation(self.weighted_product(inpt),
                                                 self.b, self.activation_fn)
        return self.a

    def weighted_product(self, inpt):
        """(inpt * mask) w in training (m, n_out), keeping the masked
        input for BP4."""
        self.inpt = inpt.reshape(len(inpt), self.n_in)
        self.mask = None
        if self.p_dropout:  # each input kept with probability 1 - p_dropout
            self.inpt, self.mask = kernels.dropout(
                self.inpt, self.p_dropout, *backend.next_dropout_draw())
        return kernels.matmul(self.inpt, self.w)

    def backward(self, nabla_a, need_input_grad=True):
        """``nabla_a``: dC/da, shape (m, n_out).  Returns ``(nabla_inpt,
        nabla_b, nabla_w)`` with shapes (m, n_in), (n_out,), (n_in, n_out)."""
        # delta = nabla_a * sigma'(z) (BP1/BP2), nabla_b = its sum (BP3)
        delta = kernels.delta_bias_gradient(
            nabla_a, self.z, self.a, self.activation_fn, nabla_b=self.nabla_b)
        return self.backward_delta(delta, need_input_grad, have_nabla_b=True)

    def backward_delta(self, delta, need_input_grad=True, have_nabla_b=False):
        """The rest of ``backward``, from the error delta = dC/dz (m, n_out)
        (``have_nabla_b``: nabla_b holds its sum already)."""
        nabla_b, nabla_w = self.nabla_b, self.nabla_w
        if not have_nabla_b:
            delta.sum(axis=0, out=nabla_b)                     # BP3
        kernels.matmul(self.inpt.T, delta, out=nabla_w)        # BP4
        if not need_input_grad:
            return None, nabla_b, nabla_w
        nabla_inpt = kernels.matmul(delta, self.w.T)           # (w^T delta) of BP2
        if self.mask is not None:
            nabla_inpt *= self.mask  # dropped inputs had no effect on C
        return nabla_inpt, nabla_b, nabla_w

    def __repr__(self):
        return "{}(n_in={}, n_out={}, activation_fn={}, p_dropout={})".format(
            type(self).__name__, self.n_in, self.n_out, self.activation_fn,
            self.p_dropout)


class SoftmaxLayer(FullyConnectedLayer):
    """The softmax output layer of network3, with zero initial weights
    and biases and the log-likelihood cost.  Dropout as in
    ``FullyConnectedLayer``."""

    def __init__(self, n_in, n_out, p_dropout=0.0):
        super().__init__(n_in, n_out, _softmax, p_dropout)

    def initial_parameters(self):
        """network3 starts the softmax layer at zero."""
        return _zeros((self.n_in, self.n_out)), _zeros((self.n_out,))

    def forward_cost_delta(self, inpt, y, cost=None):
        """Training's forward pass with the cost, BP1 and BP3 for the
        integer labels ``y`` (m,), in one go (two kernels on CuPy): keeps
        z and a as ``forward`` does; returns ``(cost, delta)``, the mean
        log-likelihood -mean ln a_y (a 0-d array, left on the device:
        reading it would synchronize; written into ``cost`` if given) and
        delta = dC/dz = (a - y)/m; nabla_b gets delta's sum over the
        mini-batch (so ``backward_delta(delta, have_nabla_b=True)``)."""
        self.z, self.a, cost, delta = kernels.softmax_cost_delta(
            self.weighted_product(inpt), y, self.b,  # z = inpt w + b
            nabla_b=self.nabla_b, cost=cost)
        return cost, delta

    def cost(self, y):
        """The log-likelihood cost -mean ln a_y of the last ``forward``."""
        return kernels.softmax_cost_delta(self.z, y)[2]

    def delta(self, y):
        """BP1 for softmax with the log-likelihood cost: dC/dz = (a - y)/m."""
        return LogLikelihoodCost.delta(self.z, self.a, y)

    def __repr__(self):
        return "SoftmaxLayer(n_in={}, n_out={}, p_dropout={})".format(
            self.n_in, self.n_out, self.p_dropout)


# The softmax "activation" has no elementwise derivative: its layer's
# delta comes from the cost (SoftmaxLayer.delta), never from prime.
def _no_prime(z, a):
    raise TypeError("softmax has no elementwise derivative; use "
                    "SoftmaxLayer.delta(y)")


_softmax = Activation("softmax", softmax, _no_prime)


def _normal(scale, shape):
    """N(0, scale^2) on the host from the seeded generator, then moved to
    the active backend: one seed gives the same network on NumPy and CuPy."""
    return _allocate(shape, lambda: backend.asarray(
        backend.host_rng.normal(0.0, scale, size=shape)))


def _zeros(shape):
    return _allocate(shape, lambda: backend.xp.zeros(shape, dtype=backend.floatX))


def _allocate(shape, make):
    """``make()``, or a ConfigError if no memory can hold ``shape``."""
    try:
        return make()
    except (ValueError, MemoryError, OverflowError) as e:
        raise ConfigError("a layer's parameters of shape {} do not fit in "
                          "memory ({}: {})".format(shape, type(e).__name__, e)
                          ) from None


def _positive_ints(name, value, length):
    try:
        t = tuple(int(v) for v in value)
        ok = isinstance(value, (tuple, list)) and len(t) == length and all(
            v >= 1 and v == u and not isinstance(u, bool)
            for v, u in zip(t, value))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ConfigError("{} must be {} positive integer{}, got {!r}".format(
            name, length, "s" if length > 1 else "", value))
    return t


def _probability(p):
    if isinstance(p, bool) or not (isinstance(p, numbers.Real) and 0 <= p < 1):
        raise ConfigError("p_dropout must be a number in [0, 1), got {!r}"
                         .format(p))
    return float(p)


def _activation(fn):
    if not isinstance(fn, Activation):
        raise ConfigError(
            "activation_fn must be one of gpunn's activations (sigmoid, tanh, "
            "ReLU, linear), which carry their derivative; got {!r}".format(fn))
    return fn
