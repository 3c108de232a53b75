"""backend.py
~~~~~~~~~~

The backend switch, and the only module of gpunn that imports CuPy.

Every layer, cost and backprop line in gpunn is written once against an
array module ``xp``: NumPy on the CPU, CuPy on a CUDA GPU.  Code that
creates arrays asks this module for the active one (``backend.xp``);
code that works on arrays it was given asks the arrays themselves
(``get_array_module``), as Chainer does, so a network keeps working on
the backend its parameters live on.

Choosing a backend::

    import gpunn
    gpunn.use("numpy")                   # or "cupy", or "auto" (the default)
    gpunn.use("cupy", dtype="float64")   # float32 is the default

or, before Python starts, ``GPUNN_BACKEND=cupy GPUNN_DTYPE=float64``.

Randomness: initial weights always come from one seeded NumPy generator
on the host (``host_rng``), so one seed gives the same initial network on
both backends.  Dropout masks are drawn where the arrays are, from a
counter-based generator (``kernels.dropout``): mask number ``draw`` under
the key ``dropout_key`` (``next_dropout_draw``), the same masks on both
backends.
"""

import contextlib
import os
import subprocess
import sys
import types

import numpy

from gpunn.errors import BackendError

BACKENDS = ("numpy", "cupy", "auto")
DTYPES = ("float32", "float64")

# The active backend: a namespace with the four attributes below, made by
# use().  It is chosen lazily, from the environment, the first time one of
# them is read, so that "import gpunn; gpunn.use('numpy')" never probes
# for CUDA nor prints the "auto" notice.
#
#   xp          the array module, numpy or cupy
#   floatX      the float dtype, a numpy.dtype (Theano's name for it)
#   host_rng    NumPy generator for initial weights and data shuffling
#   dropout_key two 32-bit ints: the key of the dropout masks
_ACTIVE_NAMES = ("xp", "floatX", "host_rng", "dropout_key")
_active = None
_cupy = None  # the cupy module, once it has been found usable
_noticed = set()  # the reasons "auto" fell back to NumPy, told already


def __getattr__(name):
    """``backend.xp``, ``backend.floatX``, ``backend.host_rng`` and
    ``backend.dropout_key``: the active backend's (PEP 562)."""
    if name in _ACTIVE_NAMES:
        return getattr(_state(), name)
    raise AttributeError("module {!r} has no attribute {!r}".format(
        __name__, name))


def _state():
    if _active is None:
        use_from_environment()
    return _active


def _usable_cupy():
    """Return ``(cupy_module, None)`` if CuPy can run here, else
    ``(None, reason)`` with a sentence saying why not."""
    try:
        import cupy
    except ImportError as e:
        return None, ("CuPy is not installed ({}). Install it with "
                      "pip install 'gpunn[cuda12]' or 'gpunn[cuda13]' to match "
                      "your CUDA driver.".format(e))
    except Exception as e:  # a broken install raises all sorts of errors
        return None, "CuPy is installed but failed to import: {}".format(e)
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return None, ("CuPy is installed but no CUDA driver could be used "
                      "({}: {}). Install the NVIDIA driver, or use the NumPy "
                      "backend.".format(type(e).__name__, e))
    if n == 0:
        return None, ("CuPy is installed but no CUDA device is visible "
                      "(CUDA_VISIBLE_DEVICES={!r}). Use the NumPy backend."
                      .format(os.environ.get("CUDA_VISIBLE_DEVICES")))
    try:
        # What training needs: NVRTC (elementwise and reduction kernels),
        # cuBLAS (a product) and cuRAND (dropout masks), so that a missing
        # CUDA library is an error here, not at the first step.
        a = cupy.ones((2, 2), dtype=cupy.float32)
        (a @ a).sum().item()
        cupy.random.default_rng(0).random(1).item()
    except Exception as e:
        return None, ("CuPy found {} CUDA device(s) but could not run on "
                      "device 0 ({}: {}). If a CUDA library is missing, "
                      "install gpunn[cuda12] or gpunn[cuda13], which bring "
                      "CuPy's CUDA libraries.".format(n, type(e).__name__, e))
    return cupy, None


def gpu_count():
    """The number of CUDA devices CuPy can run on here (0 without CuPy).

    Asked in a child process, so that this one never opens a CUDA
    context: a context holds about half a GB of device memory for as long
    as the process lives (``gpunn reproduce`` only hands out GPUs)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))  # the folder above gpunn/compute/
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(
            os.pathsep) if p]))
    code = ("from gpunn.compute import backend\n"
            "cupy, _ = backend._usable_cupy()\n"
            "print(cupy.cuda.runtime.getDeviceCount() if cupy else 0)")
    try:
        child = subprocess.run([sys.executable, "-c", code], env=env,
                               capture_output=True, text=True, timeout=300)
        return int(child.stdout.split()[-1]) if child.returncode == 0 else 0
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 0


def use(backend="auto", dtype="float32", seed=None, quiet=False,
        threads=None):
    """Choose the array backend and the floating-point dtype.

    ``backend`` is ``"numpy"``, ``"cupy"`` or ``"auto"`` (CuPy when it
    imports and a CUDA device is usable, else NumPy with a one-line
    notice on stderr, once per process, unless ``quiet``).  ``threads``
    (or ``$GPUNN_THREADS``) sets gpunn's CPU threads (``set_threads``;
    by default, the cores this process may use).  ``dtype`` is
    ``"float32"`` (default, Theano's floatX on the GPU) or
    ``"float64"``.  ``seed`` reseeds the host and
    device generators (see ``reseed``).  Returns the backend's name.

    Arrays made before the switch stay where they are: move a network
    with its ``to_backend()`` method.
    """
    global _active, _cupy
    if backend not in BACKENDS:
        raise BackendError("unknown backend {!r}: choose one of {}".format(
            backend, ", ".join(BACKENDS)))
    try:
        dtype_name = numpy.dtype(dtype).name
    except TypeError:
        dtype_name = None
    if dtype_name not in DTYPES:
        raise BackendError("unsupported dtype {!r}: choose one of {}".format(
            dtype, ", ".join(DTYPES)))
    if backend == "numpy":
        module = numpy
    else:
        cupy, reason = _usable_cupy()
        if cupy is not None:
            module = _cupy = cupy
        elif backend == "cupy":
            raise BackendError("the cupy backend cannot run here: " + reason)
        else:
            if not quiet and reason not in _noticed:
                print("gpunn: using NumPy on the CPU; " + reason,
                      file=sys.stderr)
            _noticed.add(reason)
            module = numpy
    if threads is not None or os.environ.get("GPUNN_THREADS"):
        set_threads(threads)
    _active = types.SimpleNamespace(xp=module, floatX=numpy.dtype(dtype_name))
    reseed(seed)
    return name()


# gpunn's CPU threads (shards.py): None until set, then a number; and
# whether gpunn has set NumPy's BLAS to one thread (take_threads).
_threads = None
_owns_threading = False


def set_threads(n=None):
    """Give gpunn ``n`` CPU threads: a NumPy training step runs its shards
    on them (shards.py), and NumPy's BLAS runs on one thread each
    (through threadpoolctl), so that one owner of threading never
    fights another for the cores.  None: ``$GPUNN_THREADS``, else the
    cores this process may use (``os.sched_getaffinity``).  Returns the
    number."""
    global _threads
    if n is None:
        n = os.environ.get("GPUNN_THREADS") or cores()
    try:
        n = int(n)
        ok = n >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise BackendError("threads must be a whole number of at least 1, got "
                           "{!r} (from --threads or GPUNN_THREADS)".format(n))
    _threads = n
    # Every time: a BLAS loaded since the last call (SciPy's, which
    # scikit-learn brings) goes to one thread too.
    _blas_to_one_thread()
    return n


def cores():
    """The CPU cores this process may use (its affinity), not every core
    of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads():
    """gpunn's CPU threads: as set (``set_threads``, ``use(threads=)``),
    else ``$GPUNN_THREADS``, else the cores this process may use."""
    if _threads is not None:
        return _threads
    try:
        return max(1, int(os.environ.get("GPUNN_THREADS") or cores()))
    except ValueError:
        return cores()


def take_threads():
    """Make gpunn the owner of the CPU's threads, once per process: NumPy's
    BLAS goes to one thread (gpunn's threads make the products' calls).
    network3's training and evaluation on NumPy call this.  Returns
    ``threads()``."""
    if not _owns_threading:
        _blas_to_one_thread()
    return threads()


def _blas_to_one_thread():
    """Every BLAS library loaded in this process (NumPy's, and SciPy's
    where it is loaded too) to one thread: gpunn owns the threading."""
    global _owns_threading
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1, user_api="blas")
    _owns_threading = True


def blas_threads():
    """The threads NumPy's BLAS uses now (the most of its libraries')."""
    from threadpoolctl import threadpool_info
    return max((info["num_threads"] for info in threadpool_info()
                if info.get("user_api") == "blas"), default=None)


def reseed(s=None):
    """Reseed the host generator (initial weights, shuffling) and the
    dropout masks.  ``None`` draws fresh entropy."""
    state = _state()
    state.host_rng = numpy.random.default_rng(s)
    seed_dropout(s)


def seed_dropout(s):
    """Reseed only the dropout masks with ``s`` (None: fresh entropy):
    a new key, and the masks numbered from 0 again."""
    state = _state()
    key = numpy.random.SeedSequence(s).generate_state(2)
    state.dropout_key = (int(key[0]), int(key[1]))
    state.dropout_draws = 0


@contextlib.contextmanager
def dropout_key_on_device(state):
    """Inside: the dropout masks' key is the device array ``state`` (a
    captured step's, see kernels_cuda.dropout) and the masks are
    numbered from 0 within the step; the key and count are restored
    after."""
    active = _state()
    saved = active.dropout_key, active.dropout_draws
    active.dropout_key, active.dropout_draws = state, 0
    try:
        yield
    finally:
        active.dropout_key, active.dropout_draws = saved


def dropout_draws():
    """How many masks were drawn with the current key."""
    return _state().dropout_draws


def skip_dropout_draws(n):
    """Count ``n`` masks as drawn (a captured step draws them itself)."""
    _state().dropout_draws += n


def next_dropout_draw():
    """``(key, draw)`` of the next dropout mask (``kernels.dropout``)."""
    state = _state()
    state.dropout_draws += 1
    return state.dropout_key, state.dropout_draws - 1


def is_out_of_memory(error):
    """Is ``error`` the device (or host) running out of memory?"""
    if isinstance(error, MemoryError):
        return True
    return _cupy is not None and isinstance(
        error, _cupy.cuda.memory.OutOfMemoryError)


def name():
    """Return the active backend's name: ``"numpy"`` or ``"cupy"``."""
    return "numpy" if _state().xp is numpy else "cupy"


def use_from_environment():
    """Apply ``GPUNN_BACKEND`` and ``GPUNN_DTYPE`` (defaults ``auto`` and
    ``float32``), unless a backend was chosen already."""
    if _active is None:
        use(os.environ.get("GPUNN_BACKEND", "auto") or "auto",
            os.environ.get("GPUNN_DTYPE", "float32") or "float32")


def get_array_module(*arrays):
    """Return the array module (numpy or cupy) of ``arrays``."""
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    return numpy


def asarray(a, dtype=None, like=None):
    """Return ``a`` as an array in ``dtype`` (default: the active float
    dtype) on the active backend, or on the backend of the array
    ``like`` when given.  Moves between host and device as needed; no
    copy when nothing changes."""
    state = _state()
    dtype = state.floatX if dtype is None else dtype
    module = state.xp if like is None else get_array_module(like)
    if module is numpy:
        return numpy.asarray(to_numpy(a), dtype=dtype)
    return module.asarray(a, dtype=dtype)


def to_numpy(a):
    """Return ``a`` (a NumPy or CuPy array, or a scalar) on the host."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return a.get()
    return numpy.asarray(a)


def synchronize():
    """Wait until the device has finished its queued work (no-op on NumPy)."""
    if _state().xp is not numpy:
        _cupy.cuda.get_current_stream().synchronize()
