"""The old path of gpunn.compute.kernels: the very same module."""
import sys
from gpunn.compute import kernels
sys.modules[__name__] = kernels
