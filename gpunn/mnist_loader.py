"""mnist_loader.py
~~~~~~~~~~~~~~~~

Load the MNIST data the book uses, from its own file ``mnist.pkl.gz``.

The file is a gzip'd Python 2 pickle of a tuple ``(training_data,
validation_data, test_data)``; each part is a pair ``(x, y)``:

* ``x``: float32 array of shape (n, 784), one 28x28 image per row, pixel
  values k/256 for integers k in 0..255;
* ``y``: int64 array of shape (n,), the digits 0..9;

with n = 50,000, 10,000 and 10,000.  Two views of it are offered:

* ``load_data`` (and network3's ``load_data_shared``): the three pairs
  ``(x, y)`` as arrays of the active backend (see ``gpunn.backend``), x in
  the active float dtype and y as int32 labels.
* ``load_data_wrapper``: the format of the book's chapters 1 and 3, lists
  of ``(x, y)`` tuples of NumPy column vectors, used by ``network`` and
  ``network2``.

Safety: unpickling can run any code the file names, so this module never
calls ``pickle.load`` as is.  ``safe_load_pickle`` lets the file name only
the few NumPy functions that rebuild arrays, and accepts only tuples,
lists and numeric arrays as the result.  Any other file, or any damaged
one, raises ``DataError``.
"""

import gzip
import hashlib
import io
import math
import os
import pickle

import numpy

from gpunn.compute import backend
from gpunn.errors import DataError

#: SHA-256 of the book's mnist.pkl.gz (see data/SHA256SUMS).
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
FILE_NAME = "mnist.pkl.gz"
#: gpunn/data: where an installed wheel keeps the file (setup.cfg).
PACKAGE_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "data")
#: <repo root>/data: the repo root is the parent of the gpunn package.
REPO_DATA_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


# ---------------------------------------------------------------------------
# Finding the file

def default_path():
    """Return the path of the bundled mnist.pkl.gz.

    Looks, in order, at ``$GPUNN_DATA`` (a directory, or the file itself),
    the installed package's ``gpunn/data/mnist.pkl.gz`` (a wheel carries
    it), ``<repo root>/data/mnist.pkl.gz`` and ``./data/mnist.pkl.gz``.
    Raises ``DataError`` listing every place looked if none exists."""
    places = []
    env = os.environ.get("GPUNN_DATA")
    if env:
        if os.path.isdir(env):
            env = os.path.join(env, FILE_NAME)
        places.append(("$GPUNN_DATA", env))
    places.append(("the installed package",
                   os.path.join(PACKAGE_DATA_DIR, FILE_NAME)))
    places.append(("the repository", os.path.join(REPO_DATA_DIR, FILE_NAME)))
    places.append(("the current directory",
                   os.path.join(os.getcwd(), "data", FILE_NAME)))
    for _, path in places:
        if os.path.isfile(path):
            return path
    looked = "".join("\n  {} ({})".format(p, where) for where, p in places)
    raise DataError(
        "cannot find the MNIST data file {}; looked in:{}\nCopy the book's "
        "mnist.pkl.gz (the data/ folder of the repository "
        "mnielsen/neural-networks-and-deep-learning) into one of those "
        "places, or set GPUNN_DATA to the file or the directory holding it."
        .format(FILE_NAME, looked))


def sha256_of(path):
    """Return the SHA-256 of the file at ``path`` as a hex string."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise DataError("{}: cannot read: {}".format(path, e)) from None
    return h.hexdigest()


def check_sha256(path):
    """Raise ``DataError`` unless ``path`` is the book's mnist.pkl.gz."""
    found = sha256_of(path)
    if found != MNIST_SHA256:
        raise DataError(
            "{} is not the book's MNIST file: its SHA-256 is {}, expected {}. "
            "Copy the book's mnist.pkl.gz there again (in a checkout of "
            "gpunn: git checkout data/mnist.pkl.gz). To train on data of your "
            "own, give it to gpunn train --data PATH."
            .format(path, found, MNIST_SHA256))


# ---------------------------------------------------------------------------
# Unpickling safely

# A pickled ndarray is rebuilt by _reconstruct(ndarray, shape, code) and then
# ndarray.__setstate__((version, shape, dtype, fortran, bytes)); its dtype
# by dtype(code) and dtype.__setstate__(state).  NumPy's own __setstate__
# trusts its state (a forged dtype state crashed NumPy 2.4, or left an
# array that claims to hold Python objects), so none of it runs here:
# the file's calls build stand-ins that check their state, and only then
# become arrays, with numpy.frombuffer.  These are the only names a file
# may use; NumPy 2 renamed numpy.core to numpy._core, files carry either.

class _Dtype:
    """Stands in for numpy.dtype(code) with a standard numeric state."""

    def __init__(self, code, align=False, copy=False):
        try:
            self.dtype = numpy.dtype(str(code))
        except TypeError:
            raise ValueError("unknown dtype {!r}".format(code)) from None
        if self.dtype.kind not in "biuf" or isinstance(code, _Dtype):
            raise ValueError("dtype {} is not numeric: only numeric arrays "
                             "are accepted".format(self.dtype))

    def __setstate__(self, state):
        # What NumPy writes for a plain numeric dtype: (3, byte order,
        # None, None, None, -1, -1, 0); only the byte order may vary.
        if not (isinstance(state, tuple) and len(state) == 8
                and state[0] == 3 and state[1] in ("<", ">", "|", "=")
                and state[2:] == (None, None, None, -1, -1, 0)):
            raise ValueError("unexpected dtype state {!r}".format(state))
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class _Array:
    """Stands in for _reconstruct(ndarray, shape, code); its __setstate__
    makes the array from the bytes, once they check out."""

    def __init__(self, subtype, shape, code):
        if subtype is not _NDARRAY:
            raise ValueError("only numpy.ndarray can be rebuilt")
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise ValueError("unexpected array state")
        _, shape, dtype, fortran, data = state
        if not (isinstance(shape, tuple) and all(
                type(n) is int and n >= 0 for n in shape)):
            raise ValueError("bad array shape {!r}".format(shape))
        if not isinstance(dtype, _Dtype) or type(fortran) is not bool:
            raise ValueError("bad array dtype or order")
        if isinstance(data, str):  # a Python 2 str, read as latin1
            data = data.encode("latin1")
        if not isinstance(data, bytes) or \
                len(data) != math.prod(shape) * dtype.dtype.itemsize:
            raise ValueError("the array's bytes do not match its shape")
        self.array = numpy.frombuffer(data, dtype=dtype.dtype).reshape(
            shape, order="F" if fortran else "C").copy()


_NDARRAY = object()  # numpy.ndarray, as a marker: never called
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """An Unpickler that can build NumPy arrays and nothing else."""

    def __init__(self, file, path):
        # latin1: the file's array bytes are Python 2 str objects.
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                "{}: refusing to load {}.{}: only arrays, tuples and lists "
                "are accepted".format(self.path, module, name)) from None


def _arrays(obj, path, depth=0):
    """``obj`` with every stand-in replaced by its array; DataError if it
    holds anything but tuples, lists and complete arrays."""
    if isinstance(obj, _Array) and obj.array is not None:
        return obj.array
    if isinstance(obj, (tuple, list)) and depth < 100:
        items = [_arrays(item, path, depth + 1) for item in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    raise DataError("{}: holds {}; only arrays, tuples and lists are "
                    "accepted".format(path, "an incomplete array" if isinstance(
                        obj, _Array) else "nesting too deep" if depth >= 100
                        else "a " + type(obj).__name__))


def safe_load_pickle(path):
    """Return the object pickled in the file at ``path`` (gzip'd or not),
    which may only be tuples, lists and numeric NumPy arrays.  Any other
    content, or a damaged file, raises ``DataError``."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            # Read to the end first: gzip checks its CRC only there, and
            # the unpickler would stop at the pickle's last byte.
            data = gzip.GzipFile(fileobj=raw, mode="rb").read() if gzipped \
                else raw.read()
            obj = _ArrayUnpickler(io.BytesIO(data), path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError("{}: no such file".format(path)) from None
    except Exception as e:
        # Damaged data makes pickle, gzip and zlib raise all sorts of
        # errors (EOFError, UnpicklingError, BadGzipFile, zlib.error, ...).
        raise DataError("{}: cannot unpickle ({}: {}); the file is damaged "
                        "or is not a pickle".format(path, type(e).__name__, e)
                        ) from None
    return _arrays(obj, path)


# ---------------------------------------------------------------------------
# The book's formats

def _check_structure(data, path):
    """Raise ``DataError`` unless ``data`` is MNIST-shaped: three (x, y)
    pairs, x of shape (n, 784), y of shape (n,) with labels 0..9."""
    def fail(problem):
        raise DataError("{}: not MNIST data: {}".format(path, problem))
    if not isinstance(data, (tuple, list)) or len(data) != 3:
        fail("expected a tuple (training, validation, test)")
    for part, pair in zip(("training", "validation", "test"), data):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            fail("{} data is not a pair (x, y)".format(part))
        x, y = pair
        if (not isinstance(x, numpy.ndarray) or x.ndim != 2
                or x.shape[1] != 784):
            fail("{} x must be an array of shape (n, 784), not {}".format(
                part, getattr(x, "shape", type(x).__name__)))
        if not isinstance(y, numpy.ndarray) or y.shape != x.shape[:1]:
            fail("{} y must be an array of shape ({},), not {}".format(
                part, x.shape[0], getattr(y, "shape", type(y).__name__)))
        if y.dtype.kind not in "iu":
            fail("{} labels have dtype {}, not integer".format(part, y.dtype))
        if y.size and (y.min() < 0 or y.max() > 9):
            fail("{} labels run from {} to {}, not within 0..9".format(
                part, y.min(), y.max()))


#: The arrays of a data set in an .npz file (load_host).
NPZ_ARRAYS = ("training_x", "training_y", "validation_x", "validation_y",
              "test_x", "test_y")


def load_host(path=None):
    """Return MNIST as NumPy arrays as stored in the file: a tuple
    ``(training_data, validation_data, test_data)`` of pairs ``(x, y)``,
    x of shape (n, 784), y of shape (n,).  ``path=None`` loads the bundled
    file, after checking its SHA-256.  Another file is the book's format
    (a pickle, gzip'd or not), or an ``.npz`` with the arrays NPZ_ARRAYS
    (read with allow_pickle=False)."""
    if path is None:
        path = default_path()
        check_sha256(path)
    path = os.fspath(path)
    if path.endswith(".npz"):
        data = _load_npz(path)
    else:
        data = safe_load_pickle(path)
    _check_structure(data, path)
    return tuple((x, y) for x, y in data)


def _load_npz(path):
    try:
        with numpy.load(path, allow_pickle=False) as f:
            missing = [name for name in NPZ_ARRAYS if name not in f.files]
            if missing:
                raise DataError("{}: not MNIST data: no array {} (an .npz "
                                "needs {})".format(path, ", ".join(missing),
                                                   ", ".join(NPZ_ARRAYS)))
            arrays = [f[name] for name in NPZ_ARRAYS]
    except DataError:
        raise
    except Exception as e:  # missing, not a zip, object arrays...
        raise DataError("{}: cannot read as an .npz file: {}".format(
            path, e)) from None
    return tuple(zip(arrays[0::2], arrays[1::2]))


def load_data(path=None):
    """Return ``(training_data, validation_data, test_data)``, each a pair
    ``(x, y)``: x of shape (n, 784) in the active backend and float dtype,
    y of shape (n,), int32 labels 0..9.  n = 50,000, 10,000, 10,000.

    ``path=None`` loads the bundled file after checking its SHA-256.
    (network3's ``load_data_shared`` also knows the name of the book's
    expanded set, mnist_expanded.pkl.gz, and makes it on the fly.)"""
    return tuple((backend.asarray(x), backend.asarray(y, dtype="int32"))
                 for x, y in load_host(path))


def load_data_wrapper(path=None):
    """Return MNIST in the format of the book's chapters 1 and 3, on the host:
    ``(training_data, validation_data, test_data)``, lists of tuples.

    training_data: 50,000 tuples ``(x, y)``, x a (784, 1) array of pixels,
    y a (10, 1) one-hot array (``vectorized_result``) of the digit.
    validation_data, test_data: 10,000 tuples ``(x, y)``, x a (784, 1)
    array, y the digit as an int.  Arrays are NumPy, in ``backend.floatX``.
    """
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = load_host(path)

    def columns(x):
        # One conversion and reshape; iterating the (n, 784, 1) result
        # yields views, so no image is copied one at a time.
        return numpy.asarray(x, dtype=backend.floatX).reshape(-1, 784, 1)

    one_hot = numpy.eye(10, dtype=backend.floatX)[tr_y].reshape(-1, 10, 1)
    training_data = list(zip(columns(tr_x), one_hot))
    validation_data = list(zip(columns(va_x), va_y.tolist()))
    test_data = list(zip(columns(te_x), te_y.tolist()))
    return training_data, validation_data, test_data


def vectorized_result(j):
    """Return a (10, 1) array with 1.0 in position ``j`` and zeros
    elsewhere: digit ``j`` as the output the network should give."""
    e = numpy.zeros((10, 1), dtype=backend.floatX)
    e[j] = 1.0
    return e
