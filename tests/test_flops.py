"""The benchmark's FLOP counts against a count by hand."""

import gpunn
from gpunn.bench.flops import flops_per_epoch, training_flops_per_example
from gpunn.experiments import EXPERIMENTS


def test_basic_conv_flops_by_hand():
    gpunn.use("numpy")
    net = EXPERIMENTS["basic_conv"].network(10)
    # conv 20 filters 1x5x5 on 28x28: 24*24 outputs, 20*25*576 = 288,000
    # multiply-adds; forward and dC/dw only (first layer): 2 passes.
    conv = 2 * (20 * 1 * 5 * 5 * 24 * 24) * 2
    # fully connected 2880 -> 100 and softmax 100 -> 10: forward, dC/dw, dC/dx.
    fc = 2 * (2880 * 100) * 3
    softmax = 2 * (100 * 10) * 3
    assert conv == 1_152_000 and fc == 1_728_000 and softmax == 6_000
    assert training_flops_per_example(net) == conv + fc + softmax
    # An epoch: 50,000 images in whole mini-batches.
    assert flops_per_epoch(net, 10) == 2_886_000 * 50_000
    assert flops_per_epoch(net, 64) == 2_886_000 * (50_000 // 64) * 64


def test_dbl_conv_relu_second_conv_layer_counts_its_input_gradient():
    gpunn.use("numpy")
    net = EXPERIMENTS["dbl_conv_relu"].network(10)
    second = 2 * (40 * 20 * 5 * 5 * 8 * 8) * 3  # not the first layer: 3 passes
    first = 2 * (20 * 1 * 5 * 5 * 24 * 24) * 2
    fc = 2 * (640 * 100) * 3 + 2 * (100 * 10) * 3
    assert training_flops_per_example(net) == first + second + fc
