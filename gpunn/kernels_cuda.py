"""The old path of gpunn.compute.kernels_cuda: the very same module."""
import sys
from gpunn.compute import kernels_cuda
sys.modules[__name__] = kernels_cuda
