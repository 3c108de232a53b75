"""The backend switch, and NumPy and CuPy computing the same things.

The switch is tested in real subprocesses, since it runs at import time.
Where CuPy is installed, the subprocesses make it unimportable the way
Python itself does (``sys.modules['cupy'] = None``) to test the "no CuPy"
paths on any machine.
"""

import os
import subprocess
import sys

import numpy
import pytest

import gpunn
from gpunn import network2
from gpunn.compute import backend
from gpunn.compute.backend import to_numpy
from tests.helpers import skip_without_cupy
from gpunn.network3 import (ConvPoolLayer, FullyConnectedLayer, Network,
                            ReLU, SoftmaxLayer, sigmoid)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_CUPY = "import sys; sys.modules['cupy'] = None\n"


def run_python(code, **env):
    """Run ``code`` in a fresh interpreter with gpunn importable and the
    given environment variables; return the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("GPUNN_") or k == "GPUNN_CACHE"}
    full_env["PYTHONPATH"] = REPO
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.system
def test_auto_without_cupy_falls_back_to_numpy_with_a_notice():
    p = run_python(NO_CUPY + "import gpunn\nprint(gpunn.backend.name(), "
                   "gpunn.backend.floatX)", GPUNN_BACKEND="auto")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["numpy", "float32"]
    notice = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(notice) == 1  # one line
    assert "using NumPy" in notice[0] and "CuPy is not installed" in notice[0]


@pytest.mark.system
def test_cupy_without_cupy_is_a_clear_error():
    p = run_python(NO_CUPY + "import gpunn\n"
                   "try:\n    gpunn.use('cupy')\n"
                   "except gpunn.BackendError as e:\n    print('ERROR', e)\n",
                   GPUNN_BACKEND="numpy")
    assert p.returncode == 0, p.stderr
    assert "ERROR the cupy backend cannot run here" in p.stdout
    assert "not installed" in p.stdout and "pip install" in p.stdout


@pytest.mark.system
def test_cupy_from_the_environment_without_cupy_fails_at_first_use():
    p = run_python(NO_CUPY + "import gpunn\nprint('imported')\n"
                   "from gpunn.network3 import FullyConnectedLayer\n"
                   "FullyConnectedLayer(4, 2)", GPUNN_BACKEND="cupy")
    assert p.returncode != 0
    assert p.stdout == "imported\n"
    assert "BackendError" in p.stderr and "not installed" in p.stderr


@pytest.mark.system
def test_use_before_first_use_prints_no_notice():
    """Choosing NumPy explicitly never probes for CUDA nor prints the
    notice that "auto" prints."""
    p = run_python(NO_CUPY + "import gpunn\ngpunn.use('numpy')\n"
                   "print(gpunn.backend.name())", GPUNN_BACKEND="auto")
    assert p.returncode == 0 and p.stdout == "numpy\n"
    assert p.stderr == ""


@pytest.mark.system
def test_environment_chooses_backend_and_dtype():
    p = run_python("import gpunn\nprint(gpunn.backend.name(), "
                   "gpunn.backend.floatX)", GPUNN_BACKEND="numpy",
                   GPUNN_DTYPE="float64")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["numpy", "float64"]
    assert p.stderr == ""  # no notice when NumPy was asked for


@pytest.mark.parametrize("env, words", [
    ({"GPUNN_BACKEND": "torch"}, "unknown backend 'torch'"),
    ({"GPUNN_DTYPE": "float16"}, "unsupported dtype 'float16'"),
])
@pytest.mark.system
def test_bad_environment_values_are_rejected(env, words):
    p = run_python("import gpunn\ngpunn.backend.name()", **env)
    assert p.returncode != 0
    assert words in p.stderr


@pytest.mark.parametrize("args, words", [
    (("jax",), "unknown backend 'jax'"),
    (("numpy", "int32"), "unsupported dtype 'int32'"),
])
def test_use_rejects_bad_arguments(args, words):
    with pytest.raises(gpunn.BackendError, match=words):
        gpunn.use(*args)


def test_use_accepts_numpy_dtypes():
    gpunn.use("numpy", numpy.float64)
    assert backend.floatX == numpy.float64


def small_conv_net(mini_batch_size=4):
    return Network([
        ConvPoolLayer((3, 1, 5, 5), (mini_batch_size, 1, 12, 12),
                      activation_fn=ReLU),
        FullyConnectedLayer(3 * 4 * 4, 10, activation_fn=sigmoid),
        SoftmaxLayer(10, 10)], mini_batch_size)


def test_one_seed_gives_one_initial_network(backend_name):
    gpunn.use(backend_name, "float64", seed=7)
    first = [to_numpy(p) for p in small_conv_net().params]
    gpunn.use("numpy", "float64", seed=7)
    again = [to_numpy(p) for p in small_conv_net().params]
    for a, b in zip(first, again):
        numpy.testing.assert_array_equal(a, b)
    gpunn.seed(8)
    other = [to_numpy(p) for p in small_conv_net().params]
    assert not numpy.array_equal(first[0], other[0])


def test_to_backend_moves_a_trained_network(backend_name):
    gpunn.use(backend_name, "float32", seed=3)
    net = small_conv_net()
    rng = numpy.random.default_rng(0)
    x, y = rng.random((20, 144)), rng.integers(0, 10, 20)
    for _ in range(3):
        net.update_mini_batch(x[:4], y[:4], 0.5)
    before = to_numpy(net.feedforward(x))
    gpunn.use("numpy", "float64")
    net.to_backend()
    assert all(isinstance(p, numpy.ndarray) and p.dtype == numpy.float64
               for p in net.params)
    numpy.testing.assert_allclose(to_numpy(net.feedforward(x)), before,
                                  rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_numpy_and_cupy_agree():
    """Forward, backprop and a few SGD steps from one seed (dropout off)."""
    skip_without_cupy()
    rng = numpy.random.default_rng(1)
    x, y = rng.random((40, 144)), rng.integers(0, 10, 40)
    results = {}
    for name in ("numpy", "cupy"):
        gpunn.use(name, "float32", seed=11)
        net = small_conv_net()
        out = to_numpy(net.feedforward(x))
        nabla_b, nabla_w = net.backprop(x[:4], y[:4])
        grads = [to_numpy(g) for g in nabla_b + nabla_w]
        for k in range(0, 40, 4):
            net.update_mini_batch(x[k:k + 4], y[k:k + 4], 0.3, 0.1, 10)
        results[name] = (out, grads, [to_numpy(p) for p in net.params])
    (out_n, grads_n, params_n), (out_c, grads_c, params_c) = \
        results["numpy"], results["cupy"]
    numpy.testing.assert_allclose(out_c, out_n, rtol=1e-4, atol=1e-6)
    for g_c, g_n in zip(grads_c, grads_n):
        numpy.testing.assert_allclose(g_c, g_n, rtol=1e-3, atol=1e-5)
    for p_c, p_n in zip(params_c, params_n):
        numpy.testing.assert_allclose(p_c, p_n, rtol=1e-3, atol=1e-5)


@pytest.mark.gpu
def test_network2_runs_on_cupy_and_agrees_with_numpy():
    skip_without_cupy()
    rng = numpy.random.default_rng(2)
    x = rng.random((30, 8))
    y = numpy.eye(3)[rng.integers(0, 3, 30)]
    weights = {}
    for name in ("numpy", "cupy"):
        gpunn.use(name, "float64", seed=5)
        net = network2.Network([8, 6, 3])
        net.SGD((x, y), 2, 5, 0.5, lmbda=0.1)
        weights[name] = [to_numpy(w) for w in net.weights]
    for w_c, w_n in zip(weights["cupy"], weights["numpy"]):
        numpy.testing.assert_allclose(w_c, w_n, rtol=1e-8)


def test_use_sets_gpunn_threads_only_when_asked(monkeypatch):
    """gpunn.use(threads=N) or $GPUNN_THREADS; without either the number
    is left as it is; NumPy's BLAS then runs on one thread."""
    monkeypatch.delenv("GPUNN_THREADS", raising=False)
    gpunn.use("numpy", threads=1)
    assert backend.threads() == 1 and backend.blas_threads() == 1
    gpunn.use("numpy")
    assert backend.threads() == 1  # left alone
    monkeypatch.setenv("GPUNN_THREADS", "3")
    gpunn.use("numpy")
    assert backend.threads() == 3 and backend.blas_threads() == 1
    with pytest.raises(gpunn.BackendError, match="at least 1"):
        gpunn.use("numpy", threads=0)
