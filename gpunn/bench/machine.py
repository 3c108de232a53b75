"""gpunn.bench.machine
~~~~~~~~~~~~~~~~~~~

What a benchmark result depends on, recorded with it: CPU model and
cores, GPU name and memory, Python, NumPy, CuPy, PyTorch and driver
versions, the BLAS and the kernel it runs (and any ``OPENBLAS_*``
variable that chose it), the thread count, and the measured float32
matrix-multiply rate of the CPU (and GPU): the yardstick of each
result's ``fraction_of_matmul_peak``.

Two driver numbers are recorded, as they are different things:
``nvidia_driver`` is the NVIDIA driver's version ("570.172.08", from
``nvidia-smi``), ``cuda_driver_api`` the highest CUDA version that driver
supports ("12.8", from ``cudaDriverGetVersion``'s 12080).  Result files
from before this split hold the latter, as a bare number, under
``cuda_driver``.

Also here: the GPU memory probes of the epoch-time suite
(``benchmarks/test_epoch_time.py``), ``reset_peak_memory`` and
``peak_memory_mib``.
"""

import gc
import os
import platform
import shutil
import subprocess
import time

import numpy

from gpunn.compute import backend


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


def torch_cuda_or_none(torch):
    """``torch`` where it can run on a CUDA device, else None."""
    if torch is not None and torch.cuda.is_available():
        return torch
    return None


def matmul_gflops(xp, n, synchronize=lambda: None, repeats=5, asarray=None):
    """Measured float32 matrix-multiply rate, in GFLOP/s: the median of
    ``repeats`` products of two n x n matrices, after a warm-up.  The
    matrix is made with ``asarray`` (default ``xp.asarray``)."""
    asarray = asarray or xp.asarray
    a = asarray(numpy.random.default_rng(0).random((n, n), dtype=numpy.float32))
    a @ a
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        synchronize()
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / sorted(times)[len(times) // 2] / 1e9


def cpu_matmul_rate(threads, n=1024):
    """NumPy's float32 matmul rate in GFLOP/s with its BLAS on ``threads``
    threads (gpunn sets it to one while it trains: shards.py)."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=threads, user_api="blas"):
        return matmul_gflops(numpy, n)


def gpu_matmul_rate(cupy, torch, n=8192):
    """``(GFLOP/s, library)``: the GPU's float32 matrix-multiply rate,
    measured with CuPy where ``cupy`` is given, else with PyTorch where
    ``torch`` can run on CUDA (TF32 off, as in the suite); ``(None,
    None)`` where neither can.  The probe's memory is given back to the
    library's allocator and its cached blocks freed."""
    if cupy is not None:
        sync = cupy.cuda.get_current_stream().synchronize
        rate = matmul_gflops(cupy, n, sync)
        gc.collect()
        cupy.get_default_memory_pool().free_all_blocks()
        return rate, "cupy"
    torch = torch_cuda_or_none(torch)
    if torch is not None:
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            rate = matmul_gflops(
                torch, n, torch.cuda.synchronize,
                asarray=lambda a: torch.as_tensor(a, device="cuda"))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        gc.collect()
        torch.cuda.empty_cache()
        return rate, "torch"
    return None, None


def fraction_of_peak(achieved_gflops, peak_gflops):
    """``achieved / peak``, or None where the peak was not measured."""
    if achieved_gflops is None or not peak_gflops:
        return None
    return achieved_gflops / peak_gflops


def cuda_api_version_string(version):
    """CUDA's integer version (1000 * major + 10 * minor, as
    ``cudaDriverGetVersion`` gives it) as "major.minor": 12080 -> "12.8".
    None stays None."""
    if version is None:
        return None
    version = int(version)
    return "{}.{}".format(version // 1000, version % 1000 // 10)


def nvidia_driver_version(nvidia_smi="nvidia-smi"):
    """The NVIDIA driver's version string, e.g. "570.172.08", from
    ``nvidia-smi`` (the first GPU's); None where there is no nvidia-smi
    or it fails."""
    path = shutil.which(nvidia_smi)
    if path is None:
        return None
    try:
        out = subprocess.run(
            [path, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or not lines:
        return None
    return lines[0]


def gpu_description(cupy, torch):
    """``{"gpu_name", "gpu_memory_gib", "cuda_driver_api"}`` of device 0,
    from CuPy where it runs, else from PyTorch on CUDA (which does not
    say the driver's CUDA version); all None without either."""
    info = {"gpu_name": None, "gpu_memory_gib": None, "cuda_driver_api": None}
    if cupy is not None:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        info["gpu_name"] = props["name"].decode()
        info["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
        info["cuda_driver_api"] = cuda_api_version_string(
            cupy.cuda.runtime.driverGetVersion())
    elif torch_cuda_or_none(torch) is not None:
        props = torch.cuda.get_device_properties(0)
        info["gpu_name"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


# --- peak GPU memory of one benchmark case ------------------------------------
#
# What is measured, for both GPU backends alike: the device memory that
# the library's caching allocator held (reserved from CUDA) at its highest
# during the case, less what it still held before the case for arrays
# alive from earlier, after giving back every cached block it could
# (``MemoryPool.free_all_blocks()`` for CuPy; ``torch.cuda.empty_cache()``
# and ``reset_peak_memory_stats()`` for PyTorch).
#
# - CuPy: the default pool's ``total_bytes()`` (bytes held, used or
#   cached).  The pool keeps what it reserves until freed, so after the
#   case it is the case's high-water mark.  Not if the pool ran out of
#   memory mid-case (it then frees its cached blocks and retries); and a
#   split block that ``free_all_blocks`` cannot release stays in the
#   baseline.
# - PyTorch: ``torch.cuda.max_memory_reserved()``, the same quantity, which
#   PyTorch tracks itself.  (``max_memory_allocated``, the bytes in live
#   tensors, has no CuPy counterpart: the pool keeps no peak of
#   ``used_bytes()``.)
#
# Neither counts memory outside the allocator: the CUDA context, and the
# cuBLAS/cuDNN handles' own workspaces.

PEAK_MEMORY_KIND = {"cupy": "cupy pool reserved",
                    "torch": "torch reserved"}


def reset_peak_memory(cupy=None, torch=None):
    """Before a case: frees the allocator's cached blocks and resets its
    peak; returns the bytes it still holds (the baseline for
    ``peak_memory_mib``), or None when neither library is given."""
    gc.collect()  # arrays of the previous case, if held in a cycle
    if cupy is not None:
        pool = cupy.get_default_memory_pool()
        cupy.cuda.get_current_stream().synchronize()
        pool.free_all_blocks()
        return pool.total_bytes()
    if torch is not None:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_reserved()
    return None


def peak_memory_mib(baseline, cupy=None, torch=None):
    """After a case: ``(MiB, kind)``, the case's peak reserved memory
    above ``baseline`` and which allocator's it is (``PEAK_MEMORY_KIND``);
    ``(None, None)`` for a baseline of None (a CPU case)."""
    if baseline is None:
        return None, None
    if cupy is not None:
        peak, kind = cupy.get_default_memory_pool().total_bytes(), "cupy"
    else:
        peak, kind = torch.cuda.max_memory_reserved(), "torch"
    return (peak - baseline) / 2**20, PEAK_MEMORY_KIND[kind]


def cpu_model():
    """The CPU's model name, e.g. "AMD EPYC 7B13"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas():
    """The BLAS libraries NumPy calls, each with the kernel it runs
    ("openblas 0.3.31 (SkylakeX)"): threadpoolctl asks the library, so an
    ``OPENBLAS_CORETYPE`` in the environment shows as the kernel it pins."""
    from threadpoolctl import threadpool_info
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join("{} {} ({})".format(i.get("internal_api"), i.get("version"),
                                         i.get("architecture"))
                     for i in infos) or "unknown"


def blas_environment(environ=os.environ):
    """The ``OPENBLAS_*`` variables set (``{}`` on a user's machine, which
    sets none): ``OPENBLAS_CORETYPE`` pins an older kernel, and
    ``OPENBLAS_L2_SIZE`` the cache size its blocking assumes."""
    return {k: v for k, v in sorted(environ.items())
            if k.startswith("OPENBLAS_")}


_MACHINE = {}


def machine(threads):
    """The machine's description, measured once per session; ``threads``
    is the suite's ``--threads``, the CPU threads the benchmarks run on."""
    if not _MACHINE:
        torch, cupy = torch_or_none(), cupy_or_none()
        gpu_rate, gpu_library = gpu_matmul_rate(cupy, torch)
        info = {
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "threads": threads,
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "blas": _blas(),
            "blas_environment": blas_environment(),
            "cupy": getattr(cupy, "__version__", None),
            "torch": getattr(torch, "__version__", None),
            "nvidia_driver": nvidia_driver_version(),
            **gpu_description(cupy, torch),
            "matmul_gflops": {"cpu": cpu_matmul_rate(threads),
                              "gpu": gpu_rate},
            "matmul_gpu_library": gpu_library,
        }
        _MACHINE.update(info)
    return dict(_MACHINE)
