"""gpunn: the networks of Michael Nielsen's *Neural Networks and Deep
Learning* in Python 3, on NumPy (CPU) or CuPy (CUDA GPU).

    gpunn.network    chapter 1: sigmoid network, quadratic cost, SGD
    gpunn.network2   chapter 3: cross-entropy, L2, better init, save/load
    gpunn.network3   chapter 6: conv + max-pool, fully connected, softmax
    gpunn.compute    the array machinery: the backend switch (the only
                     module that imports CuPy), the kernels
    gpunn.commands   the ``gpunn`` command

``gpunn.use("numpy" | "cupy" | "auto", dtype="float32")`` picks the
backend; ``GPUNN_BACKEND`` and ``GPUNN_DTYPE`` do the same from outside
(read when gpunn first needs a backend, if ``use`` was not called).
"""

from gpunn.compute import backend  # also gpunn.backend, the old path
from gpunn.compute.backend import use
from gpunn.compute.backend import reseed as seed
from gpunn.errors import (BackendError, ConfigError, DataError,
                          DivergenceError, GpunnError, ModelFileError)

__version__ = "0.1.0"

from gpunn.mnist_loader import load_data  # noqa: E402

__all__ = ["backend", "use", "seed", "load_data", "GpunnError", "ConfigError",
           "DataError", "ModelFileError", "BackendError", "DivergenceError"]
