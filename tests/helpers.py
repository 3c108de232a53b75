"""Test helpers: numerical gradients by central differences; skipping
where CuPy cannot run; Ctrl-C in a child process as at a terminal."""

import signal

import numpy
import pytest

from gpunn import backend


def skip_without_cupy():
    """Skip the calling test, saying why, where CuPy cannot run here."""
    _, reason = backend._usable_cupy()
    if reason:
        pytest.skip(reason)


def ctrl_c_as_at_a_terminal():
    """A ``preexec_fn`` for a child that a test stops with SIGINT: SIGINT
    at its default, so Python raises KeyboardInterrupt in the child as at
    a terminal.  A shell starts a background command (``cmd &``) with
    SIGINT ignored, and the child would inherit that: tests run that way
    would see Ctrl-C do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def numerical_gradient(f, p, eps=1e-6):
    """Central-difference gradient of the scalar function ``f()`` with
    respect to every entry of the array ``p`` (NumPy or CuPy), which ``f``
    reads; ``p`` is perturbed in place and restored.  Returns a NumPy array."""
    grad = numpy.zeros(p.shape)
    for i in numpy.ndindex(*p.shape):
        old = float(p[i])
        p[i] = old + eps
        c_plus = float(f())
        p[i] = old - eps
        c_minus = float(f())
        p[i] = old
        grad[i] = (c_plus - c_minus) / (2 * eps)
    return grad


def relative_error(a, b):
    """||a - b|| / max(||a||, ||b||), on the host; 0 when both are 0."""
    from gpunn.backend import to_numpy
    a, b = to_numpy(a).astype(float), to_numpy(b).astype(float)
    scale = max(numpy.linalg.norm(a), numpy.linalg.norm(b))
    return 0.0 if scale == 0 else numpy.linalg.norm(a - b) / scale


def use_float64(backend_name):
    """Switch to ``backend_name`` in float64 (for gradient checks), seed 0."""
    import gpunn
    gpunn.use(backend_name, dtype="float64", seed=0)


def put(a, dtype=None):
    """A host array on the active backend (its float dtype unless ``dtype``)."""
    from gpunn import backend
    return backend.asarray(numpy.asarray(a), dtype=dtype)


def host(a):
    """A NumPy copy of the array ``a`` (NumPy or CuPy)."""
    from gpunn.backend import to_numpy
    return to_numpy(a).copy()
