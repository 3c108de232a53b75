"""The old path of gpunn.compute.cuda_graph: the very same module."""
import sys
from gpunn.compute import cuda_graph
sys.modules[__name__] = cuda_graph
