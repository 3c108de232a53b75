"""The GPU-specific pieces of gpunn/bench/machine.py that can run on any
machine: CUDA's version numbers, the NVIDIA driver query, the fallbacks
where no GPU library runs, and the fraction of peak without a peak.
Where CuPy or PyTorch on CUDA can run, the real measurements run too."""

import os
import stat

import numpy
import pytest

from gpunn.bench import machine


@pytest.mark.parametrize("version, text", [
    (12080, "12.8"), (12000, "12.0"), (11040, "11.4"), (13010, "13.1"),
    ("12080", "12.8"), (None, None)])
def test_cuda_api_version_string(version, text):
    assert machine.cuda_api_version_string(version) == text


def test_fraction_of_peak():
    assert machine.fraction_of_peak(50.0, 200.0) == 0.25
    assert machine.fraction_of_peak(50.0, None) is None  # no rate: no crash
    assert machine.fraction_of_peak(50.0, 0) is None
    assert machine.fraction_of_peak(None, 200.0) is None


def fake_nvidia_smi(folder, script):
    path = folder / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_nvidia_driver_version_reads_the_first_gpu(tmp_path):
    # A stand-in executable with nvidia-smi's output for two GPUs; it
    # also checks that it was asked the documented query.
    smi = fake_nvidia_smi(tmp_path, '''
[ "$1" = --query-gpu=driver_version ] && [ "$2" = --format=csv,noheader ] || exit 9
printf '570.172.08\\n570.172.08\\n' ''')
    assert machine.nvidia_driver_version(smi) == "570.172.08"


def test_nvidia_driver_version_none_when_it_fails_or_is_missing(tmp_path):
    assert machine.nvidia_driver_version(str(tmp_path / "absent")) is None
    smi = fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed'; exit 9")
    assert machine.nvidia_driver_version(smi) is None


def test_nvidia_driver_version_here():
    version = machine.nvidia_driver_version()
    if os.path.exists("/proc/driver/nvidia/version"):
        assert version and version[0].isdigit()
    elif machine.shutil.which("nvidia-smi") is None:
        assert version is None


def test_without_a_gpu_library_there_is_no_gpu_rate():
    assert machine.gpu_matmul_rate(None, None) == (None, None)
    assert machine.gpu_description(None, None) == {
        "gpu_name": None, "gpu_memory_gib": None, "cuda_driver_api": None}


def test_gpu_rate_and_description_with_the_libraries_here():
    torch, cupy = machine.torch_or_none(), machine.cupy_or_none()
    torch_cuda = machine.torch_cuda_or_none(torch)
    rate, library = machine.gpu_matmul_rate(cupy, torch, n=1024)
    info = machine.gpu_description(cupy, torch)
    if cupy is None and torch_cuda is None:  # e.g. a CPU-only machine
        assert (rate, library) == (None, None)
        assert info["gpu_name"] is None
    else:
        assert library == ("cupy" if cupy is not None else "torch")
        assert rate > 0
        assert info["gpu_name"] and info["gpu_memory_gib"] > 0
        if cupy is not None:
            assert info["cuda_driver_api"].split(".")[0].isdigit()


def test_cpu_case_has_no_peak_memory():
    assert machine.reset_peak_memory() is None
    assert machine.peak_memory_mib(None) == (None, None)


def test_peak_memory_on_the_gpu_libraries_here():
    # The allocated array must show in the peak, whatever the baseline.
    cupy = machine.cupy_or_none()
    torch = machine.torch_cuda_or_none(machine.torch_or_none())
    libraries = ([{"cupy": cupy}] if cupy is not None else []) + \
        ([{"torch": torch}] if torch is not None else [])
    if not libraries:
        pytest.skip("neither CuPy nor PyTorch can run on a CUDA device here")
    for memory in libraries:
        baseline = machine.reset_peak_memory(**memory)
        host = numpy.ones(64 * 2**20 // 4, dtype=numpy.float32)  # 64 MiB
        if "cupy" in memory:
            a = cupy.asarray(host)
        else:
            a = torch.as_tensor(host, device="cuda")
        del a  # gone, but the peak stays
        mib, kind = machine.peak_memory_mib(baseline, **memory)
        assert kind == machine.PEAK_MEMORY_KIND[next(iter(memory))]
        assert 64 <= mib < 64 + 32
        assert machine.peak_memory_mib(
            machine.reset_peak_memory(**memory), **memory)[0] < 64


def test_blas_names_the_kernel_it_runs():
    # threadpoolctl's architecture: the kernel OpenBLAS chose (or was
    # pinned to by OPENBLAS_CORETYPE), in brackets after the version.
    from threadpoolctl import threadpool_info
    blas = machine._blas()
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            assert "{} ({})".format(info["version"],
                                    info.get("architecture")) in blas


def test_blas_environment_keeps_only_openblas_variables():
    environ = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512",
               "OMP_NUM_THREADS": "1", "PATH": "/bin"}
    assert machine.blas_environment(environ) == {
        "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"}
    assert machine.blas_environment({"PATH": "/bin"}) == {}
