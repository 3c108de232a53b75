"""The old path of gpunn.compute.kernels_cpu: the very same module."""
import sys
from gpunn.compute import kernels_cpu
sys.modules[__name__] = kernels_cpu
