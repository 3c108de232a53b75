"""machine.py
~~~~~~~~~~~~~

What a benchmark result depends on, recorded with it: CPU model and
cores, GPU name and memory, Python, NumPy, CuPy, PyTorch and driver
versions, the BLAS, the thread count, and the measured float32
matrix-multiply rate of the CPU (and GPU): the yardstick of each
result's ``fraction_of_matmul_peak``.
"""

import os
import platform
import time

import numpy

from gpunn import backend


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def cupy_or_none():
    """The cupy module where it can run, else None (gpunn's own test)."""
    cupy, _ = backend._usable_cupy()
    return cupy


def matmul_gflops(xp, n, synchronize=lambda: None, repeats=5):
    """Measured float32 matrix-multiply rate, in GFLOP/s: the median of
    ``repeats`` products of two n x n matrices, after a warm-up."""
    a = xp.asarray(numpy.random.default_rng(0).random((n, n), dtype=numpy.float32))
    a @ a
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        synchronize()
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / sorted(times)[len(times) // 2] / 1e9


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas():
    from threadpoolctl import threadpool_info
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join("{} {} ({})".format(i.get("internal_api"), i.get("version"),
                                         i.get("architecture"))
                     for i in infos) or "unknown"


_MACHINE = {}


def machine(config):
    """The machine's description, measured once per session."""
    if not _MACHINE:
        torch, cupy = torch_or_none(), cupy_or_none()
        info = {
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "threads": config.getoption("--threads"),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "blas": _blas(),
            "cupy": getattr(cupy, "__version__", None),
            "torch": getattr(torch, "__version__", None),
            "cuda_driver": None, "gpu_name": None, "gpu_memory_gib": None,
            "matmul_gflops": {"cpu": matmul_gflops(numpy, 1024), "gpu": None},
        }
        if cupy is not None:
            props = cupy.cuda.runtime.getDeviceProperties(0)
            info["gpu_name"] = props["name"].decode()
            info["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
            info["cuda_driver"] = str(cupy.cuda.runtime.driverGetVersion())
            sync = cupy.cuda.get_current_stream().synchronize
            info["matmul_gflops"]["gpu"] = matmul_gflops(cupy, 8192, sync)
        _MACHINE.update(info)
    return dict(_MACHINE)
