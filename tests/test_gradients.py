"""Numerical gradient checks of gpunn's hand-written backward passes.

Every analytic gradient (a layer's ``backward``, network2's and network3's
``backprop``, network3's L2 step) is compared with central differences of
the cost it claims to differentiate, in float64, on each backend.  The
costs are written here, from the book's formulas, wherever the code under
test would otherwise be checked against itself.

ReLU kinks and max-pool ties make a numerical gradient meaningless when a
perturbation of eps = 1e-6 crosses them; ``well_separated`` draws each
case from seeds until every ReLU input and every pooling window's runner-up
is at least ``MARGIN`` away, instead of loosening the tolerance.
"""

import numpy as np
import pytest

from gpunn import network2, network3
from gpunn.activations import ReLU, linear, sigmoid, tanh
from gpunn.compute import backend
from gpunn.costs import CrossEntropyCost, QuadraticCost
from gpunn.layers import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer

from helpers import host, numerical_gradient, put, relative_error, use_float64

TOLERANCE = 1e-6
MARGIN = 1e-3  # distance from any ReLU kink / max-pool tie, >> eps = 1e-6
ACTIVATIONS = [sigmoid, tanh, ReLU, linear]


# ---------------------------------------------------------------- helpers

def randomize(layers, rng, scale=1.0):
    """Overwrite every w and b in place with N(0, scale^2) entries (the
    softmax layer starts at zero, where little of its gradient flows)."""
    for layer in layers:
        layer.w[...] = put(rng.normal(0.0, scale, layer.w.shape))
        layer.b[...] = put(rng.normal(0.0, scale, layer.b.shape))


def labels(rng, m, n_out):
    return put(rng.integers(0, n_out, size=m), dtype="int64")


def assert_gradient(analytic, numeric, name):
    """The analytic gradient has the parameter's shape and matches the
    (nonzero: a zero gradient would prove nothing) numerical one."""
    analytic = backend.to_numpy(analytic)
    assert analytic.shape == numeric.shape, name
    assert np.linalg.norm(numeric) > 0, name + ": numerical gradient is 0"
    error = relative_error(analytic, numeric)
    assert error < TOLERANCE, "{}: relative error {:.3g}".format(name, error)


def assert_network_gradients(net, C, nabla_b, nabla_w):
    """Check backprop's nabla_b, nabla_w of every layer of ``net`` against
    the numerical gradient of the cost ``C()``."""
    for l, layer in enumerate(net.layers):
        assert_gradient(nabla_w[l], numerical_gradient(C, layer.w),
                        "nabla_w[{}]".format(l))
        assert_gradient(nabla_b[l], numerical_gradient(C, layer.b),
                        "nabla_b[{}]".format(l))


def pool_gap(conv_out, poolsize):
    """Smallest difference between the largest and second-largest entry
    of any pooling window of ``conv_out`` (host, (N, F, H, W))."""
    ph, pw = poolsize
    if ph * pw == 1:
        return np.inf
    N, F, H, W = conv_out.shape
    PH, PW = H // ph, W // pw
    win = conv_out[:, :, :PH * ph, :PW * pw].reshape(N, F, PH, ph, PW, pw)
    win = np.sort(win.transpose(0, 1, 2, 4, 3, 5).reshape(-1, ph * pw), axis=1)
    return (win[:, -1] - win[:, -2]).min()


def conv_host(x, w):
    """Valid cross-correlation on the host (sliding windows + einsum)."""
    KH, KW = w.shape[2:]
    patches = np.lib.stride_tricks.sliding_window_view(x, (KH, KW),
                                                      axis=(2, 3))
    return np.einsum("ncijlm,fclm->nfij", patches, w)


def kink_margin(layers, x):
    """Run ``x`` forward (training) through ``layers``; return the smallest
    distance of a ReLU input z from 0 and of a pooling window's maximum
    from its runner-up."""
    margin = np.inf
    a = x
    for layer in layers:
        if isinstance(layer, ConvPoolLayer):
            image = host(a).reshape((-1,) + layer.image_shape[1:])
            margin = min(margin, pool_gap(conv_host(image, host(layer.w)),
                                          layer.poolsize))
        a = layer.forward(a)
        if layer.activation_fn is ReLU:
            margin = min(margin, np.abs(host(layer.z)).min())
    return margin


def well_separated(make, tries=50):
    """Call ``make(rng)`` with rng seeded 0, 1, ... until the case it
    returns, ``(layers, x, ...)``, is ``MARGIN`` away from every kink."""
    for seed in range(tries):
        case = make(np.random.default_rng(seed))
        if kink_margin(case[0], case[1]) > MARGIN:
            return case
    pytest.fail("no seed in range({}) gave a case away from kinks"
                .format(tries))


def check_layer_gradients(layer, x, R):
    """C = sum(R * layer.forward(x)): check nabla_w, nabla_b and nabla_inpt
    of ``layer.backward(R)`` against central differences."""
    layer.forward(x)
    nabla_inpt, nabla_b, nabla_w = layer.backward(R)

    def C():
        return (R * layer.forward(x)).sum()

    assert_gradient(nabla_w, numerical_gradient(C, layer.w), "nabla_w")
    assert_gradient(nabla_b, numerical_gradient(C, layer.b), "nabla_b")
    assert_gradient(nabla_inpt, numerical_gradient(C, x), "nabla_inpt")
    return nabla_inpt


def mean_log_likelihood(a, y):
    """-mean_x ln a[x, y_x], on the host, from the softmax outputs ``a``."""
    a, y = host(a), host(y)
    return -np.mean(np.log(a[np.arange(len(y)), y]))


# ------------------------------------------- 1. every layer, every activation

@pytest.mark.parametrize("activation_fn", ACTIVATIONS, ids=str)
def test_fully_connected_layer_gradients(backend_name, activation_fn):
    use_float64(backend_name)

    def make(rng):
        layer = FullyConnectedLayer(4, 3, activation_fn)
        randomize([layer], rng)
        return ([layer], put(rng.normal(size=(5, 4))),
                put(rng.normal(size=(5, 3))))

    (layer,), x, R = well_separated(make)
    check_layer_gradients(layer, x, R)


@pytest.mark.parametrize("activation_fn", ACTIVATIONS, ids=str)
def test_conv_pool_layer_gradients(backend_name, activation_fn):
    use_float64(backend_name)

    def make(rng):
        layer = ConvPoolLayer(filter_shape=(2, 1, 3, 3),
                              image_shape=(2, 1, 6, 6), poolsize=(2, 2),
                              activation_fn=activation_fn)
        randomize([layer], rng, scale=0.5)
        return ([layer], put(rng.normal(size=(2, 1, 6, 6))),
                put(rng.normal(size=(2, 2, 2, 2))))

    (layer,), x, R = well_separated(make)
    check_layer_gradients(layer, x, R)


# ------------------------------------------- 2. softmax + log-likelihood

def test_softmax_layer_log_likelihood_gradients(backend_name):
    use_float64(backend_name)
    rng = np.random.default_rng(2)
    layer = SoftmaxLayer(4, 3)
    randomize([layer], rng)
    x = put(rng.normal(size=(6, 4)))
    y = put([0, 1, 2, 2, 1, 0], dtype="int64")

    a = layer.forward(x)
    # The cost is the book's -mean ln a_y (checked here from the outputs).
    assert abs(float(layer.cost(y)) - mean_log_likelihood(a, y)) < 1e-12
    nabla_inpt, nabla_b, nabla_w = layer.backward_delta(layer.delta(y))

    def C():
        layer.forward(x)
        return layer.cost(y)

    assert_gradient(nabla_w, numerical_gradient(C, layer.w), "nabla_w")
    assert_gradient(nabla_b, numerical_gradient(C, layer.b), "nabla_b")
    assert_gradient(nabla_inpt, numerical_gradient(C, x), "nabla_inpt")


# ------------------------------------------- 3. network2's two costs

def book_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def book_quadratic(a, y):
    """The book's C_x for one example: 0.5*||a - y||^2."""
    return 0.5 * np.linalg.norm(a - y) ** 2


def book_cross_entropy(a, y):
    """The book's C_x for one example:
    sum(nan_to_num(-y ln a - (1-y) ln(1-a)))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(np.nan_to_num(-y * np.log(a) - (1 - y) * np.log(1 - a)))


COSTS = [QuadraticCost, CrossEntropyCost]
BOOK_FN = {QuadraticCost: book_quadratic, CrossEntropyCost: book_cross_entropy}


@pytest.mark.parametrize("cost", COSTS, ids=lambda c: c.__name__)
def test_network2_backprop_gradients(backend_name, cost):
    use_float64(backend_name)
    rng = np.random.default_rng(3)
    net = network2.Network([5, 4, 3], cost=cost)
    x = rng.normal(size=(5, 3))           # three examples, in columns
    y = rng.uniform(size=(3, 3))
    nabla_b, nabla_w = net.backprop(x, y)
    x_dev, y_dev = put(x), put(y)

    def C():
        # The cost summed over the examples (the columns), one at a time.
        a = net.feedforward(x_dev)
        return sum(float(cost.fn(a[:, j], y_dev[:, j])) for j in range(3))

    for l, (n_in, n_out) in enumerate([(5, 4), (4, 3)]):
        assert net.weights[l].shape == (n_out, n_in)
        assert net.biases[l].shape == (n_out, 1)
        # weights/biases are views of the layers' parameters: perturbing
        # them changes the network (else the numerical gradient is 0).
        assert_gradient(nabla_w[l], numerical_gradient(C, net.weights[l]),
                        "nabla_w[{}]".format(l))
        assert_gradient(nabla_b[l], numerical_gradient(C, net.biases[l]),
                        "nabla_b[{}]".format(l))


@pytest.mark.parametrize("cost", COSTS, ids=lambda c: c.__name__)
def test_network2_cost_fn_and_delta_match_the_book(backend_name, cost):
    use_float64(backend_name)
    rng = np.random.default_rng(4)
    m = 4
    z = rng.normal(0.0, 2.0, size=(m, 3))
    a = book_sigmoid(z)
    y = rng.uniform(size=(m, 3))
    # The edges where the book needs nan_to_num: a == y == 1 and a == y == 0.
    a_edge, y_edge = a.copy(), y.copy()
    a_edge[0, 0] = y_edge[0, 0] = 1.0
    a_edge[1, 1] = y_edge[1, 1] = 0.0

    for a_, y_ in [(a, y), (a_edge, y_edge)]:
        expected = sum(BOOK_FN[cost](a_[k], y_[k]) for k in range(m))
        got = float(cost.fn(put(a_), put(y_)))
        assert np.isfinite(got)
        assert abs(got - expected) <= 1e-12 * abs(expected)

    if cost is QuadraticCost:
        expected_delta = (a - y) * book_sigmoid(z) * (1 - book_sigmoid(z))
    else:
        expected_delta = a - y
    got_delta = backend.to_numpy(cost.delta(put(z), put(a), put(y)))
    assert got_delta.shape == (m, 3)
    np.testing.assert_allclose(got_delta, expected_delta, rtol=1e-12, atol=0)


# ------------------------------------------- 4. network3's L2 term

def test_network3_update_mini_batch_steps_down_the_regularized_cost(
        backend_name):
    use_float64(backend_name)
    rng = np.random.default_rng(5)
    lmbda, num_training_batches, eta = 0.7, 3, 0.5
    net = network3.Network([FullyConnectedLayer(4, 5, tanh),
                            SoftmaxLayer(5, 3)], 6)
    randomize(net.layers, rng)
    x = put(rng.normal(size=(6, 4)))
    y = put([0, 1, 2, 0, 1, 2], dtype="int64")

    def C():
        a = x
        for layer in net.layers:
            a = layer.forward(a)
        l2 = sum(np.sum(host(layer.w) ** 2) for layer in net.layers)
        return mean_log_likelihood(a, y) + \
            0.5 * lmbda * l2 / num_training_batches

    # network3's own account of the same cost agrees with the formula.
    l2 = sum(np.sum(host(layer.w) ** 2) for layer in net.layers)
    assert abs(net.l2_norm_squared() - l2) <= 1e-12 * l2
    total_cost = net.total_cost((x, y), lmbda, num_training_batches)
    assert abs(total_cost - C()) < 1e-12

    numeric = [numerical_gradient(C, p) for p in net.params]
    before = [host(p) for p in net.params]
    log_likelihood = C() - 0.5 * lmbda * l2 / num_training_batches
    cost = net.update_mini_batch(x, y, eta, lmbda, num_training_batches)
    assert abs(float(cost) - log_likelihood) < 1e-12

    names = ["w0", "b0", "w1", "b1"]
    for name, old, new, grad in zip(names, before, net.params, numeric):
        step = (host(new) - old) / -eta
        assert_gradient(step, grad, name)


# ------------------------------------------- 5. dropout with a fixed mask

DROPOUT_SEED = 11


def fixed_mask_rng():
    backend.reseed(DROPOUT_SEED)


def test_dropout_network_gradients_with_a_fixed_mask(backend_name):
    use_float64(backend_name)
    rng = np.random.default_rng(6)
    hidden = FullyConnectedLayer(6, 8, sigmoid, p_dropout=0.5)
    output = SoftmaxLayer(8, 3, p_dropout=0.3)
    net = network3.Network([hidden, output], 4)
    randomize(net.layers, rng)
    x = put(rng.normal(size=(4, 6)))
    y = put([0, 1, 2, 1], dtype="int64")

    fixed_mask_rng()
    nabla_b, nabla_w = net.backprop(x, y)
    masks = [host(layer.mask) for layer in net.layers]

    # The masks are 0/1, dropped something, kept something, and the
    # dropped inputs were zeroed.
    for mask in masks:
        assert set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(host(hidden.inpt), host(x) * masks[0])
    np.testing.assert_array_equal(host(output.inpt), host(hidden.a) * masks[1])
    assert (host(hidden.inpt)[masks[0] == 0] == 0).all()
    assert (host(x)[masks[0] == 0] != 0).all()

    def C():
        fixed_mask_rng()
        a = x
        for layer in net.layers:
            a = layer.forward(a)
        return mean_log_likelihood(a, y)

    assert_network_gradients(net, C, nabla_b, nabla_w)
    # Every cost evaluation saw the same masks.
    C()
    for mask, layer in zip(masks, net.layers):
        np.testing.assert_array_equal(host(layer.mask), mask)


def test_dropout_layer_input_gradient_with_a_fixed_mask(backend_name):
    use_float64(backend_name)
    rng = np.random.default_rng(7)
    layer = FullyConnectedLayer(6, 4, tanh, p_dropout=0.5)
    randomize([layer], rng)
    x = put(rng.normal(size=(5, 6)))
    R = put(rng.normal(size=(5, 4)))

    fixed_mask_rng()
    layer.forward(x)
    mask = host(layer.mask)
    assert (mask == 0).any() and (mask == 1).any()
    nabla_inpt, nabla_b, nabla_w = layer.backward(R)
    # A dropped input has no effect on the cost.
    assert (host(nabla_inpt)[mask == 0] == 0).all()

    def C():
        fixed_mask_rng()
        return (R * layer.forward(x)).sum()

    assert_gradient(nabla_w, numerical_gradient(C, layer.w), "nabla_w")
    assert_gradient(nabla_b, numerical_gradient(C, layer.b), "nabla_b")
    assert_gradient(nabla_inpt, numerical_gradient(C, x), "nabla_inpt")


def test_dropout_inference_scales_the_weighted_input_by_1_minus_p(
        backend_name):
    use_float64(backend_name)
    rng = np.random.default_rng(8)

    def book_softmax(z):
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    cases = [(FullyConnectedLayer(6, 5, sigmoid, p_dropout=0.5), 0.5,
              book_sigmoid),
             (SoftmaxLayer(5, 3, p_dropout=0.3), 0.3, book_softmax)]
    for layer, p, fn in cases:
        randomize([layer], rng)
        x = rng.normal(size=(4, layer.n_in))
        expected = fn((1 - p) * x @ host(layer.w) + host(layer.b))
        # Inference draws no mask: the same output whatever the generator.
        fixed_mask_rng()
        out = backend.to_numpy(layer.feedforward(put(x)))
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
        backend.reseed(DROPOUT_SEED + 1)
        np.testing.assert_array_equal(
            backend.to_numpy(layer.feedforward(put(x))), out)


# ------------------------------------------- 6. non-square conv, several maps

@pytest.mark.parametrize("activation_fn", ACTIVATIONS, ids=str)
def test_conv_pool_layer_non_square_gradients(backend_name, activation_fn):
    use_float64(backend_name)
    # Conv output 7x7; (2, 3) pooling uses 6x6 of it and ignores row 6 and
    # column 6, so x's row 8 and column 7 reach only ignored outputs.
    image_shape, filter_shape, poolsize = (2, 3, 9, 8), (4, 3, 3, 2), (2, 3)

    def make(rng):
        layer = ConvPoolLayer(filter_shape, image_shape, poolsize,
                              activation_fn)
        randomize([layer], rng, scale=0.3)
        return ([layer], put(rng.normal(size=image_shape)),
                put(rng.normal(size=(2, 4, 3, 2))))

    (layer,), x, R = well_separated(make)
    assert layer.output_shape == (4, 3, 2)
    nabla_inpt = host(check_layer_gradients(layer, x, R))
    assert (nabla_inpt[:, :, 8, :] == 0).all()
    assert (nabla_inpt[:, :, :, 7] == 0).all()
    assert (nabla_inpt[:, :, :8, :7] != 0).any()


# ------------------------------------------- 7. a whole chapter-6 network

def test_chapter6_network_backprop_gradients(backend_name):
    use_float64(backend_name)
    m = 3

    def make(rng):
        layers = [
            ConvPoolLayer(filter_shape=(3, 1, 3, 3),
                          image_shape=(m, 1, 10, 10),
                          poolsize=(2, 2), activation_fn=ReLU),      # -> 3x4x4
            ConvPoolLayer(filter_shape=(4, 3, 2, 3), image_shape=(m, 3, 4, 4),
                          poolsize=(2, 1), activation_fn=sigmoid),   # -> 4x1x2
            FullyConnectedLayer(n_in=4 * 1 * 2, n_out=5, activation_fn=ReLU),
            SoftmaxLayer(n_in=5, n_out=3)]
        randomize(layers, rng, scale=0.7)
        return layers, put(rng.normal(size=(m, 100))), labels(rng, m, 3)

    layers, x, y = well_separated(make)
    net = network3.Network(layers, m)
    nabla_b, nabla_w = net.backprop(x, y)

    def C():
        a = x
        for layer in net.layers:
            a = layer.forward(a)
        return mean_log_likelihood(a, y)

    assert_network_gradients(net, C, nabla_b, nabla_w)
