"""The old path of gpunn.compute.backend: the very same module."""
import sys
from gpunn.compute import backend
sys.modules[__name__] = backend
