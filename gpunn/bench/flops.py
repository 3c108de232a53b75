"""gpunn.bench.flops
~~~~~~~~~~~~~~~~~

The arithmetic of training a network3 model, counted from its shapes.

Counted: the multiply-adds of the matrix work, 2 FLOPs each (the
convolutions and the fully connected products), forward and backward;
not counted: pooling, activations, bias adds and the update, which are
memory-bound and small beside them.  Per example and training step:

- conv layer, F filters of C x KH x KW on an OH x OW output:
  forward 2*F*C*KH*KW*OH*OW; dC/dw the same; dC/dx the same again
  (left out for the first layer, which needs no input gradient);
- fully connected layer n_in -> n_out: forward 2*n_in*n_out; dC/dw the
  same; dC/dx the same again (not for the first layer).
"""

from gpunn.layers import ConvPoolLayer

EPOCH_IMAGES = 50_000


def layer_flops(layer, first):
    """FLOPs per example per training step for ``layer``; ``first`` says
    it is the network's first layer (no input gradient)."""
    if isinstance(layer, ConvPoolLayer):
        F, C, KH, KW = layer.filter_shape
        _, _, H, W = layer.image_shape
        multiply_adds = F * C * KH * KW * (H - KH + 1) * (W - KW + 1)
    else:
        multiply_adds = layer.n_in * layer.n_out
    passes = 2 if first else 3  # forward, dC/dw, and dC/dx unless first
    return 2 * multiply_adds * passes


def training_flops_per_example(net):
    """FLOPs of one training step, per example, for the network ``net``."""
    return sum(layer_flops(layer, j == 0) for j, layer in enumerate(net.layers))


def flops_per_epoch(net, mini_batch_size, images=EPOCH_IMAGES):
    """FLOPs of one training epoch: (images // mini_batch_size) whole
    mini-batches, as network3 trains."""
    return training_flops_per_example(net) * (images // mini_batch_size) \
        * mini_batch_size
