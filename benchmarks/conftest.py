"""Options and fixtures of the benchmark suite.

    --steps N      mini-batch steps per timed round (default: about 2,000
                   images' worth, at least 5); with --benchmark-disable
                   (the default test run) one step, untimed.
    --threads N    BLAS and PyTorch CPU threads (default: every core).

Each result file (``--benchmark-json``) carries the machine's description
(``benchmarks/machine.py``) under ``machine_info["gpunn"]``.
"""

import os

import pytest

from benchmarks.machine import machine, torch_or_none


def pytest_addoption(parser):
    group = parser.getgroup("gpunn benchmarks")
    group.addoption("--steps", type=int, default=None,
                    help="mini-batch steps per timed round")
    group.addoption("--threads", type=int, default=os.cpu_count(),
                    help="BLAS and PyTorch CPU threads (default: all cores)")


@pytest.fixture(scope="session", autouse=True)
def threads(request):
    """Run with the same number of CPU threads in NumPy's BLAS and in
    PyTorch, so that the two are compared on equal terms."""
    n = request.config.getoption("--threads")
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=n, user_api="blas"):
        torch = torch_or_none()
        if torch is not None:
            torch.set_num_threads(n)
        yield n


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["gpunn"] = machine(config)
    if os.environ.get("GPUNN_BENCH_NAME"):  # gpunn bench's name of it
        machine_info["gpunn"]["name"] = os.environ["GPUNN_BENCH_NAME"]
