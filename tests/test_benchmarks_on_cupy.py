"""The benchmark suite's CuPy path (benchmarks/test_epoch_time.py and
gpunn/bench/machine.py), run where no GPU is: on the CuPy test double, so
that the first GPU run measures instead of debugging."""

import os
import subprocess
import sys

import numpy
import pytest

from gpunn.bench import machine
from tests.helpers import skip_without_cupy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.gpu
@pytest.mark.system
def test_every_model_has_a_gpunn_cupy_case_that_runs(cupy_kind):
    """Each chapter-6 model at mini-batch 10, one untimed step (eager, and
    on the graph: the first step and the capture), in a
    pytest subprocess (the double reaches it through the tests' hook)."""
    if cupy_kind == "gpu":
        skip_without_cupy()
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_epoch_time.py", "-q",
         "-p", "no:cacheprovider", "-k=-10-gpunn-cupy", "-rs"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    # gpunn-cupy and gpunn-cupy-graph
    assert "24 passed" in p.stdout and "skipped" not in p.stdout, p.stdout[-2000:]


def test_peak_memory_of_a_cupy_case(on_cupy_double):
    """reset_peak_memory gives back the pool's blocks; peak_memory_mib is
    what the case reserved above that, named as the pool's."""
    cp = on_cupy_double
    cp.zeros(2**20, dtype=numpy.float32)  # an earlier case's memory
    baseline = machine.reset_peak_memory(cupy=cp)
    assert baseline == 0
    cp.zeros(2**18, dtype=numpy.float32)  # 1 MiB
    assert machine.peak_memory_mib(baseline, cupy=cp) == (1.0, "cupy pool reserved")
