"""Shared fixtures: every backend test is written once and run on each
backend: NumPy, the CuPy test double (``tests/cupy_double.py``: CuPy's
names and rules, NumPy's arithmetic, no GPU needed), and real CuPy.  The
real-CuPy variants carry the ``gpu`` mark and are skipped where CuPy
cannot run (the reason is shown with ``-ra``).  Every other test marked
``gpu`` runs twice too: on the double, and on real CuPy."""

import os
import shutil
import sys
import types

import pytest

from gpunn.compute import backend
from tests import cupy_double
from tests.helpers import skip_without_cupy


@pytest.fixture(scope="session", autouse=True)
def expanded_data_cache(tmp_path_factory):
    """The expanded MNIST set is cached here, for this session and its
    subprocesses: the tests never write into the repository's data/ or
    the user's cache folder (gpunn.expand_mnist.cache_places)."""
    saved = os.environ.get("GPUNN_CACHE")
    os.environ["GPUNN_CACHE"] = str(tmp_path_factory.mktemp("gpunn-cache"))
    yield os.environ["GPUNN_CACHE"]
    if saved is None:
        del os.environ["GPUNN_CACHE"]
    else:
        os.environ["GPUNN_CACHE"] = saved


@pytest.fixture(autouse=True)
def restore_backend():
    """Leave the backend, dtype and generators as the test found them."""
    saved, saved_cupy = backend._active, backend._cupy
    saved_threads = backend._threads
    if saved is not None:
        saved = types.SimpleNamespace(**vars(saved))
    yield
    backend._active, backend._cupy = saved, saved_cupy
    backend._threads = saved_threads


@pytest.fixture(scope="session")
def cupy_double_hook(tmp_path_factory):
    """A folder whose sitecustomize installs the double in subprocesses."""
    return cupy_double.hook_folder(str(tmp_path_factory.mktemp("cupy-double")))


def install_cupy_double(monkeypatch, hook):
    """Make gpunn's "cupy" backend the double, here and in subprocesses
    started from this test; undone when the test ends."""
    if cupy_double.real_cupy() is None:
        pytest.skip("the CuPy double reads CuPy's names from the installed "
                    "cupy package: pip install cupy-cuda12x (no GPU needed)")
    if shutil.which("g++") is None:
        pytest.skip("the CuPy double runs gpunn's CUDA kernels on the CPU "
                    "with g++, which is not installed")
    monkeypatch.setitem(sys.modules, "cupy", cupy_double.module())
    monkeypatch.setattr(backend, "_cupy", None)
    path = [hook, cupy_double.REPO] + \
        [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))


@pytest.fixture
def on_cupy_double(monkeypatch, cupy_double_hook):
    """The CuPy test double, installed as ``cupy`` for this test."""
    install_cupy_double(monkeypatch, cupy_double_hook)
    return cupy_double.module()


@pytest.fixture(params=["float64", "float32"])
def on_cupy(request, cupy_kind):
    """For gpu-marked tests: CuPy in each float type, the double in the
    default run, real CuPy on a GPU; the dtype's name."""
    if cupy_kind == "gpu":
        skip_without_cupy()
    import gpunn
    gpunn.use("cupy", request.param, seed=0)
    return request.param


@pytest.fixture(params=["numpy", "cupy-double",
                        pytest.param("cupy", marks=pytest.mark.gpu)])
def backend_name(request, monkeypatch, cupy_double_hook):
    """The name of a usable backend for ``gpunn.use``: "numpy", then
    "cupy" on the double, then "cupy" on a GPU (gpu-marked)."""
    if request.param == "cupy-double":
        install_cupy_double(monkeypatch, cupy_double_hook)
        return "cupy"
    if request.param == "cupy":
        skip_without_cupy()
    return request.param


@pytest.fixture(autouse=True)
def cupy_kind(request, monkeypatch, cupy_double_hook):
    """For gpu-marked tests (parametrized below): "double" runs the test
    with the double as CuPy, "gpu" with real CuPy."""
    kind = getattr(request, "param", None)
    if kind == "double":
        install_cupy_double(monkeypatch, cupy_double_hook)
    return kind


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    """After the test's fixtures are undone (trylast: after pytest's own
    teardown): the double is not left as ``cupy``, and any real CuPy
    there is the one package the double was built from, so that neither
    the double nor real CuPy sees the other in the tests that follow."""
    left = sys.modules.get("cupy")
    assert left is None or left is not cupy_double._MODULE, \
        "the CuPy double was left in sys.modules['cupy']"
    assert left is None or cupy_double._REAL is None or \
        left is cupy_double._REAL, "a second real cupy package was imported"


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("gpu") is not None and \
            "backend_name" not in metafunc.fixturenames:
        metafunc.parametrize("cupy_kind", ["double", "gpu"], indirect=True,
                             ids=["cupy-double", "cupy"])
