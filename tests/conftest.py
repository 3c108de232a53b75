"""Shared fixtures: every backend test is written once and run on each
backend; the CuPy variants carry the ``gpu`` mark and are skipped where
CuPy cannot run (the reason is shown with ``-ra``)."""

import types

import pytest

from gpunn import backend
from tests.helpers import skip_without_cupy


@pytest.fixture(autouse=True)
def restore_backend():
    """Leave the backend, dtype and generators as the test found them."""
    saved = backend._active
    if saved is not None:
        saved = types.SimpleNamespace(**vars(saved))
    yield
    backend._active = saved


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend_name(request):
    """The name of a usable backend: "numpy", then "cupy" (gpu-marked)."""
    if request.param == "cupy":
        skip_without_cupy()
    return request.param
