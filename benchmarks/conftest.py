"""Options and fixtures of the benchmark suite.

    --steps N      mini-batch steps per timed round (default: about 2,000
                   images' worth, at least 5); with --benchmark-disable
                   (the default test run) one step, untimed.
    --threads N    gpunn's and PyTorch's CPU threads (default: every core).

Each result file (``--benchmark-json``) carries the machine's description
(``gpunn/bench/machine.py``) under ``machine_info["gpunn"]``.
"""

import os

import pytest

from gpunn.compute import backend
from gpunn.bench.machine import machine, torch_or_none


def pytest_addoption(parser):
    group = parser.getgroup("gpunn benchmarks")
    group.addoption("--steps", type=int, default=None,
                    help="mini-batch steps per timed round")
    group.addoption("--threads", type=int, default=os.cpu_count(),
                    help="gpunn's and PyTorch's CPU threads (default: all "
                    "cores)")


@pytest.fixture(scope="session", autouse=True)
def threads(request):
    """Run gpunn and PyTorch on the same number of CPU threads, so that the
    two are compared on equal terms (gpunn's: its shards' threads, each
    with a one-thread BLAS; backend.set_threads)."""
    n = request.config.getoption("--threads")
    backend.set_threads(n)
    torch = torch_or_none()
    if torch is not None:
        torch.set_num_threads(n)
    yield n


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["gpunn"] = machine(config.getoption("--threads"))
    if os.environ.get("GPUNN_BENCH_NAME"):  # gpunn bench's name of it
        machine_info["gpunn"]["name"] = os.environ["GPUNN_BENCH_NAME"]
