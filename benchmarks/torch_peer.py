"""torch_peer.py
~~~~~~~~~~~~~~~~

The benchmark suite's reference peer: gpunn's chapter-6 networks written
in PyTorch with network3's exact semantics, so that an epoch of gpunn and
an epoch of this peer do the same arithmetic, and their times compare
like with like.

``TorchNet.from_gpunn(net, device)`` copies a ``gpunn.network3.Network``
(its layers' kinds, shapes, activations, pool sizes, dropout and current
``w`` and ``b``); then ``train_step`` is one step of network3's SGD, and
``feedforward``, ``cost`` and ``backprop`` are network3's inference
output, training cost and gradient.  The tests (tests/test_torch_peer.py)
check them against gpunn, so the peer is also an independent reference
for gpunn's hand-written backward passes.

network3's semantics, which the usual PyTorch building blocks do not have:

- ConvPoolLayer: valid cross-correlation with no bias, max-pooling with
  kernel = stride = poolsize (a border that fills no window is ignored),
  THEN the bias, one per filter, THEN the activation.  That is why the
  conv is ``F.conv2d`` without its bias and not ``torch.nn.Conv2d``:
  that adds the bias to every conv output, before the pooling.  The
  values would be the same (a per-filter constant commutes with the
  max), but not the work: network3 adds
  the bias to the pooled maps only, a quarter of the entries for 2x2
  pools, and the peer must do what gpunn does, no more and no less.
  Outputs are flattened in (F, PH, PW) order.
- FullyConnectedLayer / SoftmaxLayer: ``w`` is (n_in, n_out) and z = x w
  + b.  Dropout multiplies the layer's INPUT by a 0/1 mask (kept with
  probability 1 - p, no 1/(1-p) rescaling, unlike ``F.dropout``); at
  inference z = (1 - p) x w + b.
- Cost: the mean over the mini-batch of -ln softmax(z)_y, plus
  0.5*lmbda*sum(w**2)/num_training_batches over every layer's w (not b)
  when training; the SGD step is p -> p - eta*grad for every w and b.

Timing on CUDA: the GPU works asynchronously, so call ``synchronize``
before reading a clock.  PyTorch lets cuDNN use TF32 for float32
convolutions by default (``torch.backends.cudnn.allow_tf32``); CuPy does
not, so set it to False when the comparison should be of equal precision.
"""

import numpy
import torch
import torch.nn.functional as F

from gpunn.compute.backend import to_numpy
from gpunn.layers import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer

# gpunn activation __name__ -> the same function in PyTorch.
ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "ReLU": torch.relu,  # relu'(0) = 0, as gpunn's ReLU.prime
    "linear": lambda z: z,
}


class _Layer:
    """One layer of a TorchNet: its kind ("conv", "fc" or "softmax"),
    parameters ``w``, ``b`` (leaf tensors with requires_grad), and what
    its forward pass needs (activation, pool size, shapes, p_dropout)."""

    def __init__(self, gpunn_layer, device, dtype):
        if isinstance(gpunn_layer, ConvPoolLayer):
            self.kind = "conv"
            self.image_shape = tuple(gpunn_layer.image_shape[1:])  # (C, H, W)
            self.poolsize = tuple(gpunn_layer.poolsize)
        elif isinstance(gpunn_layer, SoftmaxLayer):
            self.kind = "softmax"
        elif isinstance(gpunn_layer, FullyConnectedLayer):
            self.kind = "fc"
        else:
            raise TypeError("TorchNet cannot copy the layer {!r}".format(
                gpunn_layer))
        self.n_in = gpunn_layer.n_in
        self.p_dropout = float(gpunn_layer.p_dropout)
        if self.kind != "softmax":
            name = gpunn_layer.activation_fn.__name__
            if name not in ACTIVATIONS:
                raise ValueError("TorchNet has no activation {!r}".format(name))
            self.activation_fn = ACTIVATIONS[name]
        # torch.tensor copies: the peer never shares memory with gpunn.
        self.w = torch.tensor(to_numpy(gpunn_layer.w), dtype=dtype,
                              device=device, requires_grad=True)
        self.b = torch.tensor(to_numpy(gpunn_layer.b), dtype=dtype,
                              device=device, requires_grad=True)

    def forward(self, inpt, training, mask=None):
        """The layer's output for ``inpt``; for the softmax layer, its
        weighted input z (the cost and the output both start from z).
        ``training``: dropout on, with ``mask`` (m, n_in) when p_dropout > 0."""
        m = inpt.shape[0]
        if self.kind == "conv":
            x = inpt.reshape((-1,) + self.image_shape)
            conv_out = F.conv2d(x, self.w)  # valid, no bias
            pooled_out = F.max_pool2d(conv_out, self.poolsize)  # floor: border ignored
            # network3: the bias and the activation come after the pooling.
            return self.activation_fn(pooled_out + self.b.reshape(1, -1, 1, 1))
        x = inpt.reshape(m, self.n_in)  # (F, PH, PW) order after a conv layer
        if training and self.p_dropout:
            z = (x * mask.to(x.dtype)) @ self.w + self.b
        elif self.p_dropout:
            z = (1 - self.p_dropout) * (x @ self.w) + self.b
        else:
            z = x @ self.w + self.b
        return z if self.kind == "softmax" else self.activation_fn(z)


class TorchNet:
    """A gpunn chapter-6 network in PyTorch (see the module docstring).

    Make one with ``TorchNet.from_gpunn(net, device, dtype)``.  Inputs
    ``x`` are (m, n_in) (or (m, C, H, W) for a first conv layer), NumPy
    arrays or tensors; labels ``y`` are integers (m,).

    Dropout masks are drawn with ``torch.rand`` from ``self.generator``
    (None: PyTorch's default generator); ``cost``, ``backprop`` and
    ``train_step`` also take fixed ``masks``: one per layer with
    p_dropout > 0, in layer order, each shaped like that layer's input
    (m, n_in), 1 = keep.
    """

    def __init__(self, layers, device="cpu", dtype=torch.float32):
        self.layers = list(layers)
        self.device = torch.device(device)
        self.dtype = dtype
        self.generator = None

    @classmethod
    def from_gpunn(cls, net, device="cpu", dtype=None):
        """Copy the ``gpunn.network3.Network`` ``net``: its layers and
        their current parameters, onto ``device`` ("cpu", "cuda",
        "cuda:1", a torch.device) in ``dtype`` (a torch dtype or a
        NumPy dtype name; default: the dtype of net's parameters)."""
        if dtype is None:
            dtype = to_numpy(net.layers[0].w).dtype
        if not isinstance(dtype, torch.dtype):
            dtype = getattr(torch, numpy.dtype(dtype).name)
        return cls([_Layer(layer, device, dtype) for layer in net.layers],
                   device, dtype)

    def parameters(self):
        """[w0, b0, w1, b1, ...]: gpunn's order (``Network.params``)."""
        return [p for layer in self.layers for p in (layer.w, layer.b)]

    def feedforward(self, x, batch_size=500):
        """The network's output at inference (no dropout; no gradient)
        for ``x`` (n, n_in), ``batch_size`` rows at a time as gpunn's
        ``Network.feedforward``: a tensor (n, n_out) of probabilities."""
        x = self._inputs(x)
        outputs = []
        with torch.no_grad():
            for k in range(0, len(x), batch_size):
                z = self._forward(x[k:k + batch_size], training=False)
                outputs.append(torch.softmax(z, dim=1))
        return torch.cat(outputs)

    def cost(self, x, y, masks=None):
        """The mini-batch's mean log-likelihood cost in training mode
        (dropout on), a 0-d tensor that autograd can differentiate."""
        z = self._forward(self._inputs(x), training=True, masks=masks)
        return F.cross_entropy(z, self._labels(y))  # mean of -log_softmax(z)[y]

    def backprop(self, x, y, masks=None):
        """``(nabla_b, nabla_w)``, one tensor per layer shaped like its b
        and w: the gradient of the mean log-likelihood cost (no L2 term;
        dropout on), the contract of gpunn's ``Network.backprop``."""
        grads = torch.autograd.grad(self.cost(x, y, masks), self.parameters())
        return list(grads[1::2]), list(grads[0::2])

    def train_step(self, x, y, eta, lmbda=0.0, num_training_batches=1,
                   masks=None):
        """One SGD step on network3's regularized cost: the mean
        log-likelihood plus 0.5*lmbda*sum(w**2)/num_training_batches.
        Returns the mini-batch's log-likelihood (without the L2 term, as
        gpunn's ``update_mini_batch``), a detached 0-d tensor left on the
        device: no host synchronization per step."""
        cost = self.cost(x, y, masks)
        total = cost
        if lmbda:
            l2 = sum((layer.w ** 2).sum() for layer in self.layers)
            total = cost + 0.5 * lmbda * l2 / num_training_batches
        params = self.parameters()
        grads = torch.autograd.grad(total, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(eta * g)
        return cost.detach()

    def _forward(self, x, training, masks=None):
        """Every layer's forward pass; returns the softmax layer's z."""
        masks = None if masks is None else list(masks)
        if masks is not None and len(masks) != sum(
                1 for layer in self.layers if layer.p_dropout):
            raise ValueError("masks: one per layer with p_dropout > 0, in "
                             "order; got {}".format(len(masks)))
        a = x
        for layer in self.layers:
            mask = None
            if training and layer.p_dropout:
                shape = (a.shape[0], layer.n_in)
                mask = self._mask(shape, layer.p_dropout) if masks is None \
                    else self._tensor(masks.pop(0)).reshape(shape)
            a = layer.forward(a, training, mask)
        return a

    def _mask(self, shape, p_dropout):
        """A 0/1 mask keeping each entry with probability 1 - p_dropout."""
        u = torch.rand(shape, device=self.device, dtype=self.dtype,
                       generator=self.generator)
        return u >= p_dropout

    def _tensor(self, a, dtype=None):
        if isinstance(a, torch.Tensor):
            return a.to(device=self.device, dtype=dtype or a.dtype)
        return torch.as_tensor(numpy.asarray(to_numpy(a)), dtype=dtype,
                               device=self.device)

    def _inputs(self, x):
        return self._tensor(x, self.dtype)

    def _labels(self, y):
        return self._tensor(y, torch.int64)  # cross_entropy's index dtype

    def __repr__(self):
        return "TorchNet([{}], device={}, dtype={})".format(
            ", ".join(layer.kind for layer in self.layers), self.device,
            self.dtype)


def synchronize(device):
    """Wait until ``device`` has finished its queued work: before reading
    a clock when timing CUDA (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
