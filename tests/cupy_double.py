"""cupy_double.py: a test double of CuPy, for running gpunn's "cupy"
backend on a machine without a GPU, and counting what would be CUDA work.

NumPy does the arithmetic.  Everything else is held to CuPy:

- Only names that the installed ``cupy`` package exposes are reachable
  (the module, ``ndarray``'s methods, ``random.Generator``,
  ``lib.stride_tricks``, the few ``cuda`` names gpunn and its benchmarks
  use); the names are read from real CuPy (``cupy-cuda12x`` imports
  without a GPU), and so are the keywords each function and method takes
  (their signatures, or the first line of their docstrings).
- Its arrays are not ``numpy.ndarray``: ``numpy.asarray(x)``,
  ``__array__`` and a NumPy array mixed into an operation raise
  TypeError, as CuPy does.  Reductions give 0-d arrays, not scalars.
- CuPy functions written in Python (``take_along_axis``,
  ``lib.stride_tricks``) run from CuPy's own source, on the double, so
  their hidden uploads and syncs are counted as they happen.
- ``RawModule`` compiles gpunn's CUDA C source for the CPU and runs its
  kernels thread by thread (``tests/cuda_on_cpu.py``); arguments are
  checked against the kernels' parameter types, and a call is one
  launch.
- Stream capture (``cuda.Stream``, ``begin_capture``, ``end_capture``,
  a graph's ``launch``): captured work is recorded, not run, and replayed
  by each launch of the graph, which counts one launch.  Syncs, copies,
  cuBLAS and cuRAND are refused during a capture, as CUDA and CuPy
  refuse them, and so is memory from the default pool (stricter than
  CuPy: see "Streams, stream capture and CUDA graphs" below).

What it counts, per call site (the first frame outside this module and
CuPy): ``launches`` (each operation that would run a CUDA kernel; a
cuBLAS product counts one, plus one copy for each operand that is
neither C- nor F-contiguous, which CuPy copies first), ``syncs`` (reading
the device: ``float``, ``int``, ``bool``, ``.item()``, ``.get()``,
``tolist``, boolean-mask indexing, ``nonzero``, stream synchronize),
``uploads`` and ``downloads`` (host<->device copies) and ``allocations``
(arrays that own new device memory; views own none).

What it cannot catch: dtype rules where CuPy's kernels differ from
NumPy's loops (type promotion of unusual mixes, integer overflow); CUDA
compilation (NVRTC) and cuBLAS/cuRAND errors; out-of-bounds indices,
which CuPy wraps where NumPy raises; the numbers CuPy's random
generators draw (the double draws NumPy's); launches hidden inside a
CuPy routine written in Cython (each counts as one); timing, streams
(all work is in order) and memory-pool behaviour; what else a real
driver refuses during a capture (CuPy's own lazy initializations, say),
and whether a graph's replay is as fast as hoped.

Use: ``install()`` makes ``import cupy`` give the double (the tests'
fixtures do it, and ``hook_folder()`` makes a folder whose
``sitecustomize`` does it in subprocesses).  ``COUNTS`` holds the counts.
"""

import collections
import contextlib
import functools
import inspect
import os
import re
import sys
import types

import numpy

_HERE = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(_HERE))
KINDS = ("launches", "syncs", "uploads", "downloads", "allocations")


_REAL = None


def real_cupy():
    """The installed CuPy package (imported, never run on a device), or
    None; ``sys.modules`` is left as it was."""
    global _REAL
    if _REAL is None:
        # A real CuPy already imported (e.g. by a real-CuPy test's
        # skip_without_cupy) is kept: popping it and importing again would
        # run cupy/__init__.py a second time, making a second "cupy"
        # package while cupy.lib.stride_tricks and cupy._indexing (cached
        # in sys.modules) still hold the first as their cupy, so
        # _from_cupy_source would not swap it for the double and the
        # double's as_strided/take_along_axis would run real CuPy
        # ("Cannot convert _MemoryPointer", cudaErrorInsufficientDriver).
        current = sys.modules.get("cupy")
        saved = False if getattr(current, "__path__", None) is not None \
            else sys.modules.pop("cupy", False)
        try:
            import cupy
            import cupy._indexing.indexing  # noqa: F401 (read below)
            import cupy.lib.stride_tricks  # noqa: F401
            cupy.random.Generator  # loaded lazily: load it while cupy is cupy
            _REAL = cupy
        except ImportError:
            return None
        finally:
            if saved is not False:
                sys.modules["cupy"] = saved
    return _REAL


# -- Counting ---------------------------------------------------------------

class Counts:
    """What would be CUDA work, by kind and call site."""

    def __init__(self):
        self.sites = {kind: collections.Counter() for kind in KINDS}

    def add(self, kind, n=1, detail=None, nbytes=0):
        _POOL._bytes += nbytes
        if n:
            site = _call_site()
            self.sites[kind][site if detail is None else
                             "{} [{}]".format(site, detail)] += n

    def total(self, kind):
        return sum(self.sites[kind].values())

    def totals(self):
        return {kind: self.total(kind) for kind in KINDS}

    def reset(self):
        for counter in self.sites.values():
            counter.clear()

    def report(self, kind):
        """A line per call site, most first: where the ``kind`` go."""
        return "\n".join("{:5d}  {}".format(n, site)
                         for site, n in self.sites[kind].most_common())


COUNTS = Counts()


@contextlib.contextmanager
def counting():
    """Count from zero inside the ``with`` block; yields ``COUNTS``."""
    COUNTS.reset()
    yield COUNTS


# -- Streams, stream capture and CUDA graphs ----------------------------------
#
# CUDA does not run work queued on a capturing stream: it records it as
# a graph, and a graph launch replays it.  Here, while a stream
# captures, an operation that writes into existing arrays (in place,
# ``out=``, a kernel's arguments) is only recorded; one that makes new
# arrays runs (its arrays must exist) and records how to compute them
# again into the same arrays.  A graph's launch replays the records in
# order: one launch, whatever it holds.  As CUDA and CuPy do, capture
# refuses syncs and host<->device copies, cuBLAS and cuRAND (CuPy raises
# NotImplementedError for both); stricter than CuPy, it refuses memory
# from the default pool (a block freed after the capture goes back to the
# pool while the graph still writes to it: capture with
# ``cuda.using_allocator`` of a pool of the graph's own).

class _Capture:
    def __init__(self):
        self.records = []


class _Graph:
    """``cupy.cuda.Graph``, as a stream capture made it."""

    def __init__(self, records):
        self._records = records

    def launch(self, stream=None):
        _refuse_in_capture("a graph launch")
        COUNTS.add("launches", detail="graph of {}".format(len(self._records)))
        with _quiet():
            for record in self._records:
                record()

    def upload(self, stream=None):
        pass


class _Stream:
    """``cupy.cuda.Stream``: the current stream inside ``with``."""

    def __init__(self, null=False, non_blocking=False, ptds=False,
                 priority=None):
        self.ptr = 0 if null else id(self)
        self._capture = None
        self._previous = []

    def __enter__(self):
        global _CURRENT_STREAM
        self._previous.append(_CURRENT_STREAM)
        _CURRENT_STREAM = self
        return self

    def __exit__(self, *exc):
        global _CURRENT_STREAM
        _CURRENT_STREAM = self._previous.pop()
        return False

    def use(self):
        global _CURRENT_STREAM
        _CURRENT_STREAM = self
        return self

    def synchronize(self):
        _refuse_in_capture("a stream synchronize")
        COUNTS.add("syncs")

    def begin_capture(self, mode=None):
        if self.ptr == 0:
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if self._capture is not None:
            raise RuntimeError("the stream is capturing already")
        self._capture = _Capture()

    def end_capture(self):
        if self._capture is None:
            raise RuntimeError("the stream is not capturing")
        capture, self._capture = self._capture, None
        return _Graph(capture.records)

    def is_capturing(self):
        return self._capture is not None


def _capture():
    """The capture of the current stream, or None."""
    return _CURRENT_STREAM._capture


def _refuse_in_capture(what):
    if _capture() is not None:
        raise RuntimeError("the current stream is capturing, so {} is not "
                           "allowed (cudaErrorStreamCaptureUnsupported)"
                           .format(what))


def _launch(n, compute, writes=False, detail=None):
    """Run ``compute()``, NumPy's work for ``n`` CUDA launches, and
    return its result; ``writes``: it writes into existing arrays.
    While the current stream captures: recorded, and run now only if
    it makes new arrays (recomputed into them at each replay)."""
    capture = _capture()
    if capture is None:
        COUNTS.add("launches", n, detail)
        with _quiet():
            return compute()
    if writes:
        capture.records.append(compute)
        return None
    with _quiet():
        result = compute()
    if n:
        capture.records.append(lambda: _copy_into(result, compute()))
    return result


def _copy_into(result, new):
    if isinstance(result, tuple):
        for r, n in zip(result, new):
            _copy_into(r, n)
    elif isinstance(result, numpy.ndarray):
        numpy.copyto(result, new)


def _call_site():
    cupy_dir = _CUPY_DIR or "\0"
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename == _HERE or
                                 frame.f_code.co_filename.startswith(cupy_dir)):
        frame = frame.f_back
    if frame is None:
        return "?"
    path = os.path.relpath(frame.f_code.co_filename, REPO)
    return "{}:{} ({})".format(path, frame.f_lineno, frame.f_code.co_name)


# -- Arrays -----------------------------------------------------------------

def _unwrap(x):
    """The NumPy array inside a double array; NumPy arrays are refused, as
    CuPy refuses them; lists and tuples are unwrapped item by item."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, numpy.ndarray):
        raise TypeError("Unsupported type {}".format(numpy.ndarray))
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    return x


def _wrap(result, inputs=(), out=None):
    """Wrap NumPy's ``result`` as double arrays (scalars become 0-d
    arrays); count an allocation for each array that owns new memory.
    ``out``: the result is that array (also while capturing, when the
    work is only recorded)."""
    if out is not None:
        return out
    if isinstance(result, tuple):
        return tuple(_wrap(r, inputs) for r in result)
    if not isinstance(result, numpy.ndarray):
        if not isinstance(result, (numpy.generic, bool, int, float, complex)):
            return result
        result = numpy.asarray(result)
    if not any(numpy.may_share_memory(result, i) for i in inputs
               if isinstance(i, numpy.ndarray)):
        _allocated(result.nbytes)
    return _new(result)


def _allocated(nbytes):
    """Count an allocation; refused from the default pool in a capture."""
    if _capture() is not None and _ALLOCATOR is None:
        raise RuntimeError(
            "an array allocated from the default memory pool during stream "
            "capture: freed after it, its memory could be reused while the "
            "graph still uses it (capture with cupy.cuda.using_allocator of "
            "a pool that the graph keeps)")
    COUNTS.add("allocations", nbytes=nbytes)


def _quiet():
    """CuPy never warns about floating-point errors (ln 0, 0/0)."""
    return numpy.errstate(all="ignore")


def _new(a):
    x = object.__new__(ndarray)
    x._a = a
    return x


def _host_data(x):
    return isinstance(x, (numpy.ndarray, list, tuple, numpy.generic, bool,
                          int, float, complex))


def _sync_download(n=1):
    _refuse_in_capture("a device-to-host copy")
    COUNTS.add("syncs", n)
    COUNTS.add("downloads", n)


def _upload(n=1):
    if n:
        _refuse_in_capture("a host-to-device copy")
    COUNTS.add("uploads", n)


class _MemoryPointer:
    """What ``ndarray.data`` gives: where the array starts (for
    ``ndarray(..., memptr=x.data)``, as CuPy's ``as_strided`` does)."""

    def __init__(self, a):
        self._a = a


def _index(key):
    """Unwrap an index; count what CuPy would do for it: nothing for
    basic indexing, a launch for an integer array, a sync too for a
    boolean mask, an upload for host arrays or lists."""
    items = key if isinstance(key, tuple) else (key,)
    launches = syncs = uploads = 0
    unwrapped = []
    for k in items:
        if isinstance(k, ndarray):
            launches += 1
            if k.dtype == bool:
                syncs += 1
            unwrapped.append(k._a)
        elif isinstance(k, (numpy.ndarray, list)):
            uploads += 1
            launches += 1
            unwrapped.append(numpy.asarray(k))
        else:
            unwrapped.append(k)
    _upload(uploads)
    if syncs:
        _sync_download(syncs)
    return (tuple(unwrapped) if isinstance(key, tuple) else unwrapped[0]), \
        min(launches, 1) + (1 if syncs else 0)


class ndarray:
    """A CuPy array held in NumPy; ``cupy.ndarray(shape, dtype=float,
    memptr=None, strides=None, order='C')`` as in CuPy."""

    __array_ufunc__ = None  # NumPy's operators defer to ours, which refuse it
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None,
                 order="C"):
        if memptr is None:
            self._a = numpy.empty(shape, dtype, order=order)
            _allocated(self._a.nbytes)
        else:
            self._a = numpy.lib.stride_tricks.as_strided(
                memptr._a, shape, strides)

    # Metadata: no device work.
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    data = property(lambda self: _MemoryPointer(self._a))
    T = property(lambda self: _new(self._a.T))
    mT = property(lambda self: _new(self._a.mT))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array "
                        "explicitly.")

    def __repr__(self):
        _sync_download()
        return "array({})".format(numpy.array2string(self._a, separator=", "))

    __str__ = __repr__

    # Reading the device.
    def get(self, stream=None, order="C", out=None, blocking=True):
        _sync_download()
        return numpy.array(self._a, order=order)

    def nonzero(self):
        _sync_download()
        return _wrap(_launch(2, self._a.nonzero))

    def set(self, arr, stream=None):
        _upload()
        self._a[...] = numpy.asarray(arr)

    # Indexing.
    def __getitem__(self, key):
        index, launches = _index(key)
        a = self._a
        return _wrap(_launch(launches, lambda: a[index]), (a,))

    def __setitem__(self, key, value):
        index, launches = _index(key)
        if isinstance(value, ndarray):
            value = value._a
        elif isinstance(value, (numpy.ndarray, list, tuple)):
            _upload()
        a = self._a

        def assign():
            a[index] = value
        _launch(max(launches, 1), assign, writes=True)

    # Views: no launch, unless the view needs a copy (then one, as CuPy).
    def _view_or_copy(self, compute):
        result = compute()
        if numpy.may_share_memory(result, self._a):
            return _wrap(result, (self._a,))
        return _wrap(_launch(1, compute), (self._a,))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and numpy.dtype(dtype) == self.dtype:
            return self
        a = self._a
        return _wrap(_launch(1, lambda: a.astype(dtype, order=order)))

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def dot(self, b, out=None):
        return matmul(self, b, out=out)


def _reader(convert):
    """A method that reads the array to the host: a sync and a copy."""
    def read(self):
        _sync_download()
        return convert(self._a)
    return read


for _name, _convert in {"item": numpy.ndarray.item, "tolist": numpy.ndarray.tolist,
                        "__float__": float, "__int__": int, "__bool__": bool,
                        "__complex__": complex}.items():
    setattr(ndarray, _name, _reader(_convert))


def _method(name, kind):
    """An ``ndarray`` method that runs NumPy's method of the same name:
    ``kind`` "view" (no launch unless NumPy had to copy) or "kernel"."""
    np_method = getattr(numpy.ndarray, name)
    check = _keywords_of(getattr(_real_ndarray(), name, None), name)

    def method(self, *args, **kwargs):
        check(*args, **kwargs)
        out = kwargs.get("out")
        a, np_args = self._a, _unwrap(args)
        np_kwargs = {k: _unwrap(v) for k, v in kwargs.items()}

        def compute():
            return np_method(a, *np_args, **np_kwargs)
        if kind == "view":
            return self._view_or_copy(compute)
        return _wrap(_launch(1, compute, writes=out is not None), (), out)
    method.__name__ = name
    return method


def _operator(ufunc, reflected=False, inplace=False):
    def op(self, other):
        if isinstance(other, numpy.ndarray) or isinstance(other, (list, tuple)):
            raise TypeError("Unsupported type {}".format(type(other)))
        if isinstance(other, ndarray):
            other = other._a
        elif not isinstance(other, (numpy.generic, bool, int, float, complex)):
            return NotImplemented
        a = self._a
        if inplace:
            _launch(1, lambda: ufunc(a, other, out=a), writes=True)
            return self
        args = (other, a) if reflected else (a, other)
        return _wrap(_launch(1, lambda: ufunc(*args)))
    return op


def _unary(ufunc):
    def op(self):
        a = self._a
        return _wrap(_launch(1, lambda: ufunc(a)))
    return op


_OPERATORS = {"add": numpy.add, "sub": numpy.subtract, "mul": numpy.multiply,
              "truediv": numpy.true_divide, "floordiv": numpy.floor_divide,
              "mod": numpy.remainder, "pow": numpy.power, "and": numpy.bitwise_and,
              "or": numpy.bitwise_or, "xor": numpy.bitwise_xor,
              "lshift": numpy.left_shift, "rshift": numpy.right_shift}
for _name, _ufunc in _OPERATORS.items():
    setattr(ndarray, "__{}__".format(_name), _operator(_ufunc))
    setattr(ndarray, "__r{}__".format(_name), _operator(_ufunc, reflected=True))
    setattr(ndarray, "__i{}__".format(_name), _operator(_ufunc, inplace=True))
for _name, _ufunc in {"lt": numpy.less, "le": numpy.less_equal,
                      "gt": numpy.greater, "ge": numpy.greater_equal,
                      "eq": numpy.equal, "ne": numpy.not_equal}.items():
    setattr(ndarray, "__{}__".format(_name), _operator(_ufunc))
for _name, _ufunc in {"neg": numpy.negative, "pos": numpy.positive,
                      "abs": numpy.absolute, "invert": numpy.invert}.items():
    setattr(ndarray, "__{}__".format(_name), _unary(_ufunc))

_VIEW_METHODS = {"reshape", "transpose", "swapaxes", "view", "squeeze",
                 "ravel", "diagonal"}
_OWN_METHODS = {"get", "item", "tolist", "nonzero", "set", "astype", "dot"}


# -- Keywords, as CuPy takes them ----------------------------------------------

def _signature(fn):
    """CuPy's signature of ``fn``: from ``inspect`` where Python knows it,
    else from the first line of its docstring (Cython's embedded
    signature, e.g. "isfinite(x, /, out=None, *, casting=..., dtype=None)").
    None if neither says."""
    if fn is None:
        return None
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        pass
    first = (fn.__doc__ or "").strip().split("\n")[0].replace("\\*", "*")
    match = re.match(r"[\w.]*\((.*)\)", first)
    if not match:
        return None
    params = []
    for p in _split_top_level(match.group(1)):
        name, _, default = p.partition("=")
        words = name.split()
        if not words:
            continue
        params.append(words[-1] + ("=None" if default else ""))
    try:
        return inspect.signature(eval("lambda {}: None".format(", ".join(params))))
    except SyntaxError:
        return None


def _split_top_level(text):
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _keywords_of(cupy_fn, name, method=True):
    """A check that raises TypeError, as CuPy would, when a call's
    arguments do not fit CuPy's signature of ``cupy_fn``."""
    sig = _signature(cupy_fn)
    if sig is None:
        return lambda *args, **kwargs: None

    def check(*args, **kwargs):
        try:
            if method:
                sig.bind(None, *args, **kwargs)
            else:
                sig.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError("cupy {}: {}".format(name, e)) from None
    return check


# -- The module -----------------------------------------------------------------

# Functions that make arrays: launches each (a fill or memset; none for empty).
_CREATION = {"empty": 0, "empty_like": 0, "zeros": 1, "zeros_like": 1,
             "ones": 1, "ones_like": 1, "full": 1, "full_like": 1,
             "arange": 1, "eye": 1, "identity": 1, "linspace": 1}
# Functions that read the device.
_SYNCING = {"flatnonzero", "nonzero", "argwhere", "count_nonzero",
            "array_equal", "allclose"}
# Metadata only: passed through as NumPy's.
_METADATA = {"dtype", "result_type", "can_cast", "promote_types", "finfo",
             "iinfo", "issubdtype", "isscalar", "ndim", "shape", "size",
             "newaxis", "errstate", "seterr", "geterr"}
# CuPy functions written in Python, run from CuPy's source on the double.
_FROM_SOURCE = {"take_along_axis"}


def _function(name, np_fn, cupy_fn):
    check = _keywords_of(cupy_fn, name, method=False)
    launches = _CREATION.get(name, 1)
    syncs = name in _SYNCING

    def fn(*args, **kwargs):
        check(*args, **kwargs)
        out = kwargs.get("out")
        np_args = _unwrap(args)
        np_kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        if syncs:
            _sync_download()
        result = _launch(launches, lambda: np_fn(*np_args, **np_kwargs),
                         writes=out is not None)
        return _wrap(result, (), out)
    fn.__name__ = name
    return fn


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    """As CuPy: no work for a double array already of ``dtype``; an
    upload for host data."""
    if isinstance(a, ndarray):
        if dtype is None or numpy.dtype(dtype) == a.dtype:
            return a
        return a.astype(dtype)
    if not _host_data(a):
        raise TypeError("cupy.asarray: unsupported type {}".format(type(a)))
    _upload()
    host = numpy.array(a, dtype=dtype, order=order or "K")
    _allocated(host.nbytes)
    return _new(host)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0,
          *, blocking=False):
    if isinstance(obj, ndarray) and not copy and (
            dtype is None or numpy.dtype(dtype) == obj.dtype):
        return obj
    if isinstance(obj, ndarray):
        a = obj._a
        return _wrap(_launch(1, lambda: numpy.array(a, dtype=dtype, order=order,
                                                     ndmin=ndmin)))
    return asarray(numpy.array(obj, dtype=dtype, ndmin=ndmin))


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError("Unsupported type {}".format(type(a)))
    if a.flags.c_contiguous and (dtype is None or numpy.dtype(dtype) == a.dtype):
        return a
    a_ = a._a
    return _wrap(_launch(1, lambda: numpy.ascontiguousarray(a_, dtype=dtype)))


def matmul(a, b, out=None, **kwargs):
    """A cuBLAS product: one launch, plus a copy of each operand that
    is neither C- nor F-contiguous (CuPy makes it contiguous first)."""
    if _capture() is not None:
        raise NotImplementedError("calling cuBLAS API during stream capture is "
                                  "currently unsupported")
    a_, b_ = _unwrap(a), _unwrap(b)
    copies = sum(1 for m in (a_, b_) if isinstance(m, numpy.ndarray) and
                 not (m.flags.c_contiguous or m.flags.f_contiguous))
    COUNTS.add("launches", 1 + copies)
    COUNTS.add("allocations", copies)
    with _quiet():
        return _wrap(numpy.matmul(a_, b_, out=_unwrap(out)), (), out)


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get()
    return numpy.asarray(a, order=order)


def get_array_module(*args):
    return _MODULE if any(isinstance(a, ndarray) for a in args) else numpy


class _Generator:
    """``cupy.random.Generator``, drawing from NumPy's generator."""

    def __init__(self, seed):
        self._rng = numpy.random.default_rng(seed)
        COUNTS.add("launches")  # the generator's state, initialized on the device
        COUNTS.add("allocations")

    def __getattr__(self, name):
        cupy_method = getattr(real_cupy().random.Generator, name, None)
        if name.startswith("_") or cupy_method is None:
            raise AttributeError("cupy.random.Generator has no {!r}".format(name))
        check = _generator_check(name)
        np_method = getattr(self._rng, name)

        def draw(*args, **kwargs):
            check(*args, **kwargs)
            if _capture() is not None:
                raise NotImplementedError("calling cuRAND API during stream "
                                          "capture is currently unsupported")
            COUNTS.add("launches")
            out = kwargs.get("out")
            return _wrap(np_method(*_unwrap(args), **{
                k: _unwrap(v) for k, v in kwargs.items()}), (), out)
        return draw


@functools.lru_cache(maxsize=None)
def _generator_check(name):
    """The keyword check of ``cupy.random.Generator.<name>`` (made once)."""
    return _keywords_of(getattr(real_cupy().random.Generator, name),
                        "Generator." + name)


class _RawModule:
    """``cupy.RawModule``: the CUDA source compiled for the CPU
    (``tests/cuda_on_cpu.py``), each kernel call one launch."""

    def __init__(self, code=None, path=None, options=(), backend="nvrtc",
                 translate_cucomplex=False, *, enable_cooperative_groups=False,
                 name_expressions=None, jitify=False):
        from tests import cuda_on_cpu
        self._module = cuda_on_cpu.Module(code, options)

    def get_function(self, name):
        if name not in self._module.signatures:
            raise KeyError("no kernel {!r} in the module".format(name))
        return _RawKernelFunction(self._module, name)


class _RawKernelFunction:
    def __init__(self, module, name):
        self._module, self.name = module, name

    def __call__(self, grid, block, args, shared_mem=0, stream=None,
                 enable_cooperative_groups=False):
        args = [numpy.int64(a) if isinstance(a, int) and not isinstance(a, bool)
                else numpy.float64(a) if isinstance(a, float) else a
                for a in args]  # CuPy passes Python ints and floats so
        if any(isinstance(a, numpy.ndarray) for a in args):
            raise TypeError("Unsupported type {}".format(numpy.ndarray))
        module, name, np_args = self._module, self.name, _unwrap(list(args))
        _launch(1, lambda: module.launch(name, grid, block, np_args),
                writes=True, detail=name)


class _MemoryPool:
    """``cupy.get_default_memory_pool()``, as a pool that never reuses a
    block: ``total_bytes`` counts what was allocated since the last
    ``free_all_blocks`` (an upper bound of CuPy's)."""

    def __init__(self):
        self._bytes = 0

    def used_bytes(self):
        return self._bytes

    def total_bytes(self):
        return self._bytes

    def free_all_blocks(self, stream=None):
        self._bytes = 0


_POOL = _MemoryPool()


class _Device:
    def __init__(self, device=None):
        self.id = device or 0

    def synchronize(self):
        COUNTS.add("syncs")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_CURRENT_STREAM = _Stream(null=True)  # the legacy default stream
_ALLOCATOR = None  # None: the default memory pool


class _PrivatePool:
    """``cupy.cuda.MemoryPool()``: its ``malloc``, for ``using_allocator``."""

    def malloc(self, size):
        return size

    def free_all_blocks(self, stream=None):
        pass


@contextlib.contextmanager
def using_allocator(allocator=None):
    """``cupy.cuda.using_allocator``: arrays made inside come from
    ``allocator`` (here, only whether it is the default pool matters)."""
    global _ALLOCATOR
    saved, _ALLOCATOR = _ALLOCATOR, allocator
    try:
        yield
    finally:
        _ALLOCATOR = saved


def _cuda_namespace(real):
    """The few ``cupy.cuda`` names gpunn and its benchmarks use: one
    device named "CuPy test double"."""
    properties = {"name": b"CuPy test double", "totalGlobalMem": 2**34,
                  "major": 9, "minor": 0, "multiProcessorCount": 1}
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda device: dict(properties),
        driverGetVersion=lambda: 12080, runtimeGetVersion=lambda: 12080,
        getDevice=lambda: 0, CUDARuntimeError=real.cuda.runtime.CUDARuntimeError)
    memory = types.SimpleNamespace(
        OutOfMemoryError=real.cuda.memory.OutOfMemoryError)
    return types.SimpleNamespace(runtime=runtime, memory=memory,
                                 get_current_stream=lambda: _CURRENT_STREAM,
                                 Stream=_Stream, MemoryPool=_PrivatePool,
                                 using_allocator=using_allocator,
                                 Device=_Device, is_available=lambda: True)


def _from_cupy_source(module, names, double):
    """CuPy's own Python functions ``names`` of ``module``, rebound to run
    on the double: their globals are the module's, with CuPy itself (as
    ``cupy`` or ``_cupy``) replaced by the double."""
    namespace = dict(module.__dict__)
    for key, value in module.__dict__.items():
        if value is real_cupy():
            namespace[key] = double
    functions = {}
    for key, value in module.__dict__.items():
        if isinstance(value, types.FunctionType):
            namespace[key] = functions[key] = types.FunctionType(
                value.__code__, namespace, key, value.__defaults__,
                value.__closure__)
            functions[key].__kwdefaults__ = value.__kwdefaults__
    return {n: functions[n] for n in names}


_MODULE = None
_CUPY_DIR = None


def _real_ndarray():
    return real_cupy().ndarray


def module():
    """The double, built once from the installed CuPy's names."""
    global _MODULE, _CUPY_DIR
    if _MODULE is not None:
        return _MODULE
    real = real_cupy()
    if real is None:
        raise ImportError("the CuPy double reads CuPy's names from the cupy "
                          "package: pip install cupy-cuda12x (no GPU needed)")
    _CUPY_DIR = os.path.dirname(real.__file__) + os.sep
    double = types.ModuleType("cupy", "A CuPy test double (tests/cupy_double.py)")
    double.__version__ = real.__version__
    double._core = real._core  # its pure-Python helpers, for CuPy's own source
    for name in dir(real):
        if name.startswith("_") or not hasattr(numpy, name):
            continue
        np_value = getattr(numpy, name)
        if name in _METADATA or isinstance(np_value, type) or not callable(np_value):
            setattr(double, name, np_value)
        else:
            setattr(double, name, _function(name, np_value, getattr(real, name)))
    for fn in (asarray, array, ascontiguousarray, matmul, asnumpy,
               get_array_module):
        setattr(double, fn.__name__, fn)
    double.ndarray = ndarray
    double.RawModule = _RawModule
    double.get_default_memory_pool = lambda: _POOL
    double.cuda = _cuda_namespace(real)
    indexing = sys.modules["cupy._indexing.indexing"]
    for name, fn in _from_cupy_source(indexing, _FROM_SOURCE, double).items():
        setattr(double, name, fn)
    stride_tricks = sys.modules["cupy.lib.stride_tricks"]
    double.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
        **_from_cupy_source(stride_tricks, ["as_strided", "sliding_window_view"],
                            double)))
    double.random = types.SimpleNamespace(default_rng=_Generator,
                                          Generator=_Generator)
    for name in dir(real.ndarray):
        if name.startswith("_") or name in _OWN_METHODS or \
                not callable(getattr(numpy.ndarray, name, None)) or \
                name in vars(ndarray):
            continue
        setattr(ndarray, name, _method(
            name, "view" if name in _VIEW_METHODS else "kernel"))
    _MODULE = double
    return double


def install():
    """Make ``import cupy`` give the double; returns it."""
    double = module()
    sys.modules["cupy"] = double
    return double


def names_missing_from_cupy():
    """Public names of the double that real CuPy lacks (should be none)."""
    real, double = real_cupy(), module()
    missing = [n for n in dir(double) if not n.startswith("_")
               and not hasattr(real, n)]
    missing += ["ndarray." + n for n in vars(ndarray) if not n.startswith("_")
                and not hasattr(real.ndarray, n)]
    for sub in ("random", "cuda", "cuda.runtime", "cuda.memory",
                "lib.stride_tricks"):
        d, r = double, real
        for part in sub.split("."):
            d, r = getattr(d, part), getattr(r, part)
        missing += [sub + "." + n for n in vars(d) if not hasattr(r, n)]
    return missing


def hook_folder(folder):
    """Write ``folder/sitecustomize.py``, which installs the double in any
    Python started with ``folder`` (and the repository) on PYTHONPATH:
    the tests' way to run gpunn's command line on the double."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
        f.write("import sys\nsys.path.insert(0, {!r})\n"
                "import tests.cupy_double\ntests.cupy_double.install()\n"
                .format(REPO))
    return folder
