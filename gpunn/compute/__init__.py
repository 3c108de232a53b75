"""gpunn.compute: the array machinery under the book's networks.

    backend       the backend switch (NumPy or CuPy), dtype, seeds, threads
    kernels       the generic reference kernels, and the one place that
                  chooses which version runs for which arrays
    kernels_cpu   numba versions, for NumPy arrays (imported at first use)
    kernels_cuda  the CUDA launchers, for CuPy arrays; their CUDA C
                  source is kernels.cu, beside it
    cuda_graph    network3's training step captured as a CUDA graph
    shards        a NumPy training step's conv layers on every CPU core

Nothing is imported here, so that ``import gpunn`` stays quick (numba,
for one, is imported only when a compiled kernel first runs).
"""
