"""The benchmark's PyTorch peer (benchmarks/torch_peer.py) against gpunn:
the same chapter-6 networks, with the same parameters, must give the same
outputs, gradients (with and without dropout, given the same masks) and
SGD steps.  PyTorch's autograd is independent of gpunn's hand-written
backward passes, so these tests check both sides."""

import math

import numpy
import pytest

torch = pytest.importorskip("torch")

import gpunn  # noqa: E402
from gpunn import backend, kernels  # noqa: E402
from gpunn.experiments import EXPERIMENTS  # noqa: E402
from gpunn.network3 import (ConvPoolLayer, FullyConnectedLayer,  # noqa: E402
                            Network, SoftmaxLayer, linear, tanh)

from benchmarks.torch_peer import TorchNet, synchronize  # noqa: E402
from helpers import put  # noqa: E402

M = 6  # mini-batch size


def bordered_tanh(m, p_dropout=(0.0, 0.0, 0.0)):
    """A small net with what the book's models lack: two input maps, a
    non-square filter, a non-square pool whose windows leave a border
    (9x7 conv output, 3x2 pools -> 3x3: the last column is ignored), tanh
    and linear layers, and optional dropout on the last three layers."""
    return Network([
        ConvPoolLayer(image_shape=(m, 2, 11, 10), filter_shape=(3, 2, 3, 4),
                      poolsize=(3, 2), activation_fn=tanh),
        FullyConnectedLayer(n_in=3 * 3 * 3, n_out=12, activation_fn=tanh,
                            p_dropout=p_dropout[0]),
        FullyConnectedLayer(n_in=12, n_out=8, activation_fn=linear,
                            p_dropout=p_dropout[1]),
        SoftmaxLayer(n_in=8, n_out=10, p_dropout=p_dropout[2])], m)


NETWORKS = {
    "dbl_conv_relu": EXPERIMENTS["dbl_conv_relu"].network,
    "dbl_conv": EXPERIMENTS["dbl_conv"].network,  # sigmoid
    "shallow": EXPERIMENTS["shallow"].network,  # fully connected only
    "bordered_tanh": bordered_tanh,
}
DROPOUT_NETWORKS = {
    "double_fc_dropout": EXPERIMENTS["double_fc_dropout"].network,
    "bordered_tanh_dropout": lambda m: bordered_tanh(m, (0.3, 0.2, 0.25)),
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One thread: deterministic sums, and quicker for these small nets."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """The peer's device: "cpu", then "cuda" (gpu-marked), with cuDNN's
    TF32 off so that float32 convolutions are float32, as in CuPy."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("PyTorch has no usable CUDA device here")
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield request.param
    torch.backends.cudnn.allow_tf32 = saved


def make(build, dtype="float64", seed=0):
    """gpunn (NumPy) network ``build(M)`` with every w and b random (the
    softmax layer starts at zero, through which no gradient would flow
    to the layers below), a mini-batch x, y, and a NumPy generator."""
    gpunn.use("numpy", dtype, seed=seed)
    net = build(M)
    rng = numpy.random.default_rng(seed + 1)
    for layer in net.layers:
        fan_in = math.prod(layer.w.shape[1:]) if layer.w.ndim == 4 \
            else layer.w.shape[0]
        layer.w = put(rng.normal(0, 1 / math.sqrt(fan_in), layer.w.shape))
        layer.b = put(rng.normal(0, 0.5, layer.b.shape))
    x, y = batch(net, rng)
    return net, x, y, rng


def batch(net, rng):
    """A random mini-batch: pixels in [0, 1), labels 0..9."""
    return (rng.random((M, net.layers[0].n_in)),
            rng.integers(0, 10, M).astype(numpy.int32))


def host(a):
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return backend.to_numpy(a)


def assert_close(actual, expected, rtol):
    """Equal up to ``rtol``, entries near 0 judged against the largest."""
    actual, expected = host(actual), host(expected)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    numpy.testing.assert_allclose(actual, expected, rtol=rtol,
                                  atol=rtol * numpy.abs(expected).max())


def dropout_masks(net, s):
    """The masks gpunn's next training pass draws after ``reseed(s)``:
    one per layer with p_dropout > 0, in layer order, mask number 0, 1,
    ... under the key of ``s`` (gpunn.kernels.dropout), drawn here again
    from Philox4x32-10 (kernels.philox, checked against Random123's
    known answers in test_kernels)."""
    key = [int(k) for k in numpy.random.SeedSequence(s).generate_state(2)]
    layers = [layer for layer in net.layers if layer.p_dropout]
    masks = []
    for draw, layer in enumerate(layers):
        index = numpy.arange(M * layer.n_in, dtype=numpy.uint32)
        word = kernels.philox((index, numpy.uint32(draw), numpy.uint32(0),
                               numpy.uint32(0)), key)[0]
        masks.append((word >> 8 >= kernels.dropout_threshold(layer.p_dropout))
                     .reshape(M, layer.n_in))
    return masks


@pytest.mark.parametrize("name", list(NETWORKS) + list(DROPOUT_NETWORKS))
def test_outputs_equal(name, device):
    build = NETWORKS.get(name) or DROPOUT_NETWORKS[name]
    net, x, _, _ = make(build)
    peer = TorchNet.from_gpunn(net, device)
    assert peer.dtype == torch.float64
    a = peer.feedforward(x)
    assert a.shape == (M, 10) and a.device.type == device
    assert_close(a, net.feedforward(x), rtol=1e-10)
    # Tensors in, rows in several batches: the same.
    a2 = peer.feedforward(torch.as_tensor(x, device=device), batch_size=4)
    assert_close(a2, a, rtol=1e-12)


@pytest.mark.parametrize("name", NETWORKS)
def test_gradients_equal(name, device):
    net, x, y, _ = make(NETWORKS[name])
    peer = TorchNet.from_gpunn(net, device)
    nabla_b, nabla_w = net.backprop(x, y)
    peer_b, peer_w = peer.backprop(x, y)
    assert len(peer_b) == len(peer_w) == len(net.layers)
    for l in range(len(net.layers)):
        assert_close(peer_w[l], nabla_w[l], rtol=1e-9)
        assert_close(peer_b[l], nabla_b[l], rtol=1e-9)


@pytest.mark.parametrize("name", DROPOUT_NETWORKS)
def test_gradients_with_the_same_dropout_masks_equal(name, device):
    net, x, y, _ = make(DROPOUT_NETWORKS[name])
    peer = TorchNet.from_gpunn(net, device)
    backend.reseed(7)
    nabla_b, nabla_w = net.backprop(x, y)
    masks = dropout_masks(net, 7)
    assert len(masks) == 3 and all(0 < mask.mean() < 1 for mask in masks)
    peer_b, peer_w = peer.backprop(x, y, masks=masks)
    for l in range(len(net.layers)):
        assert_close(peer_w[l], nabla_w[l], rtol=1e-9)
        assert_close(peer_b[l], nabla_b[l], rtol=1e-9)
    # Other masks, another gradient: the masks are not a no-op.
    other_b, _ = peer.backprop(x, y, masks=dropout_masks(net, 8))
    assert not numpy.allclose(host(other_b[-1]), host(nabla_b[-1]))


def test_the_peers_own_masks(device):
    """Masks from the peer's generator keep 1 - p of the inputs, and are
    the masks that the ``masks`` argument takes."""
    net, x, y, _ = make(DROPOUT_NETWORKS["double_fc_dropout"])
    peer = TorchNet.from_gpunn(net, device)
    peer.generator = torch.Generator(device).manual_seed(3)
    for p in (0.2, 0.5):
        kept = host(peer._mask((200, 500), p)).mean()
        assert abs(kept - (1 - p)) < 0.01  # 1e5 draws: one sd is 0.0016 at most
    peer.generator.manual_seed(3)
    masks = [peer._mask((M, layer.n_in), layer.p_dropout)
             for layer in peer.layers if layer.p_dropout]
    peer.generator.manual_seed(3)
    drawn = peer.cost(x, y)
    assert_close(drawn, peer.cost(x, y, masks=masks), rtol=1e-14)


def sgd_steps_equal(build, dtype, rtol, device, steps=5):
    """``steps`` SGD steps of gpunn and of the peer from the same weights,
    on the same mini-batches, with L2 regularization: the same costs and
    the same parameters after each step."""
    net, x, y, rng = make(build, dtype)
    peer = TorchNet.from_gpunn(net, device)
    assert peer.dtype == getattr(torch, dtype)
    start = [host(p).copy() for p in net.params]
    eta, lmbda, num_training_batches = 0.1, 5.0, 50
    for step in range(steps):
        cost = net.update_mini_batch(x, y, eta, lmbda, num_training_batches)
        peer_cost = peer.train_step(x, y, eta, lmbda, num_training_batches)
        synchronize(device)
        assert isinstance(peer_cost, torch.Tensor) and not peer_cost.requires_grad
        assert_close(peer_cost, cost, rtol)
        x, y = batch(net, rng)
    params = peer.parameters()
    assert len(params) == len(net.params)
    for p, q, p0 in zip(params, net.params, start):
        assert_close(p, q, rtol)
        assert not numpy.allclose(host(q), p0)  # the steps did move them


@pytest.mark.parametrize("name", NETWORKS)
def test_sgd_steps_equal(name, device):
    sgd_steps_equal(NETWORKS[name], "float64", 1e-9, device)


def test_sgd_steps_equal_in_float32(device):
    """The benchmark's float32 settings compute the same, to float32's
    precision (gradients, then five steps)."""
    net, x, y, _ = make(NETWORKS["dbl_conv_relu"], "float32")
    peer = TorchNet.from_gpunn(net, device)
    assert_close(peer.feedforward(x), net.feedforward(x), rtol=1e-4)
    nabla_b, nabla_w = net.backprop(x, y)
    peer_b, peer_w = peer.backprop(x, y)
    for l in range(len(net.layers)):
        assert_close(peer_w[l], nabla_w[l], rtol=1e-4)
        assert_close(peer_b[l], nabla_b[l], rtol=1e-4)
    sgd_steps_equal(NETWORKS["dbl_conv_relu"], "float32", 1e-4, device)


def test_the_peer_copies_the_parameters():
    net, x, y, _ = make(NETWORKS["bordered_tanh"])
    before = [host(p).copy() for p in net.params]
    peer = TorchNet.from_gpunn(net)
    peer.train_step(x, y, eta=0.5)
    for p, p0 in zip(net.params, before):
        numpy.testing.assert_array_equal(host(p), p0)
    kinds = [layer.kind for layer in peer.layers]
    assert kinds == ["conv", "fc", "fc", "softmax"]
    assert [tuple(p.shape) for p in peer.parameters()] == \
        [p.shape for p in net.params]
    assert TorchNet.from_gpunn(net, dtype="float32").dtype == torch.float32
