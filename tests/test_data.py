"""Tests of gpunn.mnist_loader and gpunn.expand_mnist, on the real bundled
MNIST file and on real files written to a temporary directory."""

import collections
import gzip
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

import gpunn
from gpunn import backend, expand_mnist, mnist_loader, network3
from gpunn.mnist_loader import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = os.path.join(REPO, "data", "mnist.pkl.gz")


@pytest.fixture(scope="module", autouse=True)
def numpy_backend():
    """Run every test on NumPy in float32; restore the backend after."""
    before = (backend.name(), backend.floatX.name)
    gpunn.use("numpy")
    yield
    gpunn.use(*before)


@pytest.fixture(scope="module")
def mnist(numpy_backend):
    """The bundled file through load_data, loaded once (it takes ~1.5 s)."""
    return gpunn.load_data()


def run_python(code, *args, cwd=REPO, pythonpath=REPO, **env):
    """Run ``code`` in a fresh Python process; return the CompletedProcess."""
    environ = dict(os.environ, PYTHONPATH=pythonpath, GPUNN_BACKEND="numpy",
                   **env)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd,
                          env=environ, capture_output=True, text=True,
                          timeout=120)


def write_pickle(path, obj, protocol=4, compress=True):
    """Pickle ``obj`` to ``path``, gzip'd like the book's file.  (Protocol
    4: Python 3 writes arrays at protocol 2 with a call to _codecs.encode,
    and at 5 with numpy's _frombuffer, globals the loader refuses.)"""
    data = pickle.dumps(obj, protocol=protocol)
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if compress else data)
    return str(path)


def small_mnist(mnist, n=(60, 20, 20)):
    """A small MNIST-shaped tuple of host arrays, as the book's file stores
    them (x float32, y int64), cut from the real data."""
    return tuple((np.asarray(x[:k]), np.asarray(y[:k], dtype=np.int64))
                 for (x, y), k in zip(mnist, n))


# ---------------------------------------------------------------------------
# load_data on the real file

def test_load_data_shapes_dtypes_and_values(mnist):
    assert isinstance(mnist, tuple) and len(mnist) == 3
    for (x, y), n in zip(mnist, (50000, 10000, 10000)):
        assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int32
        assert y.min() == 0 and y.max() == 9
        assert set(np.unique(y).tolist()) == set(range(10))
        # Pixels are k/256 with k in 0..255, as the module docstring says.
        k = x * 256
        assert np.array_equal(k, np.rint(k))
        assert k.min() == 0 and k.max() <= 255
    # The well-known first labels of the book's training and test sets.
    assert mnist[0][1][:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist[2][1][:5].tolist() == [7, 2, 1, 0, 4]


def test_load_data_shared_follows_float_dtype(mnist):
    gpunn.use("numpy", dtype="float64")
    try:
        data = network3.load_data_shared()
    finally:
        gpunn.use("numpy")
    assert isinstance(data, list) and len(data) == 3
    for (x, y), (x32, y32) in zip(data, mnist):
        assert x.dtype == np.float64 and y.dtype == np.int32
        assert np.array_equal(x, x32) and np.array_equal(y, y32)


# ---------------------------------------------------------------------------
# Finding the file and checking its hash

def test_default_path_search_order(tmp_path, monkeypatch):
    copy = tmp_path / "mnist.pkl.gz"
    shutil.copyfile(MNIST, copy)
    monkeypatch.setenv("GPUNN_DATA", str(tmp_path))            # a directory
    assert mnist_loader.default_path() == str(copy)
    other = tmp_path / "elsewhere.pkl.gz"
    shutil.copyfile(MNIST, other)
    monkeypatch.setenv("GPUNN_DATA", str(other))               # the file
    assert mnist_loader.default_path() == str(other)
    monkeypatch.setenv("GPUNN_DATA", str(tmp_path / "nothing"))  # absent
    assert os.path.samefile(mnist_loader.default_path(), MNIST)


def test_one_changed_byte_fails_the_hash_check(tmp_path, monkeypatch):
    data = bytearray(open(MNIST, "rb").read())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "mnist.pkl.gz").write_bytes(bytes(data))
    monkeypatch.setenv("GPUNN_DATA", str(tmp_path))
    with pytest.raises(DataError) as e:
        gpunn.load_data()
    message = str(e.value)
    assert str(tmp_path / "mnist.pkl.gz") in message
    assert "not the book's MNIST file" in message and "SHA-256" in message
    assert mnist_loader.MNIST_SHA256 in message
    assert mnist_loader.sha256_of(tmp_path / "mnist.pkl.gz") in message
    assert "git checkout data/mnist.pkl.gz" in message


@pytest.mark.system
def test_missing_file_lists_every_place_looked(tmp_path):
    # A copy of the package whose repo root has no data/, run from a
    # directory without data/ either, with GPUNN_DATA naming nothing.
    shutil.copytree(os.path.join(REPO, "gpunn"), tmp_path / "repo" / "gpunn",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "cwd").mkdir()
    code = ("import sys\n"
            "from gpunn.mnist_loader import DataError, load_data\n"
            "try:\n    load_data()\n"
            "except DataError as e:\n    print(e)\n    sys.exit(3)\n")
    result = run_python(code, cwd=tmp_path / "cwd",
                        pythonpath=str(tmp_path / "repo"),
                        GPUNN_DATA=str(tmp_path / "nowhere"))
    assert result.returncode == 3, result.stderr
    out = result.stdout
    for place in (tmp_path / "nowhere",
                  tmp_path / "repo" / "data" / "mnist.pkl.gz",
                  tmp_path / "cwd" / "data" / "mnist.pkl.gz"):
        assert str(place) in out
    assert "mnielsen/neural-networks-and-deep-learning" in out
    assert "GPUNN_DATA" in out


# ---------------------------------------------------------------------------
# Unsafe and damaged pickles

class Payload:
    """Unpickling this calls ``function(*args)``: how a pickle runs code."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def touch_payloads(target):
    """Payloads that create the file ``target`` when unpickled."""
    return {"os.system": Payload(os.system, "touch " + str(target)),
            "builtins.open": Payload(open, str(target), "w")}


@pytest.mark.system
def test_payloads_are_live_under_plain_pickle(tmp_path):
    # Control: the same files, read by plain pickle.load in a subprocess,
    # do create the target; so the refusals below are not vacuous.
    for name, payload in touch_payloads(tmp_path / "pwned").items():
        path = write_pickle(tmp_path / "evil.pkl.gz", payload)
        result = run_python("import gzip, pickle, sys\n"
                            "pickle.load(gzip.open(sys.argv[1]))", path)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "pwned").exists(), name
        os.remove(tmp_path / "pwned")


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("name", ["os.system", "builtins.open"])
def test_code_in_a_pickle_is_refused(tmp_path, name, protocol):
    target = tmp_path / "pwned"
    payload = touch_payloads(target)[name]
    # Hidden inside data that looks like MNIST, as an attacker would.
    path = write_pickle(tmp_path / "evil.pkl.gz",
                        ((payload, np.zeros((2, 784))), [], []), protocol)
    for load in (mnist_loader.safe_load_pickle, gpunn.load_data,
                 mnist_loader.load_data_wrapper):
        with pytest.raises(DataError, match="refusing to load") as e:
            load(path)
        assert path in str(e.value)
        assert name.split(".")[1] in str(e.value)  # the refused global
        assert not target.exists()


@pytest.mark.system
def test_code_in_a_pickle_is_refused_in_a_subprocess(tmp_path):
    target = tmp_path / "pwned"
    path = write_pickle(tmp_path / "evil.pkl.gz",
                        touch_payloads(target)["os.system"])
    code = ("import sys\n"
            "from gpunn.mnist_loader import DataError, load_data\n"
            "try:\n    load_data(sys.argv[1])\n"
            "except DataError as e:\n    print(e)\n    sys.exit(3)\n")
    result = run_python(code, path)
    assert result.returncode == 3, result.stderr
    assert "refusing to load" in result.stdout and path in result.stdout
    assert not target.exists()


def damaged_files(tmp_path):
    """name -> path of a file that is not a readable pickle."""
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    contents = {
        "truncated.pkl.gz": open(MNIST, "rb").read(100_000),
        "random.pkl.gz": gzip.compress(noise),
        "random.pkl": b"\x80\x02" + noise,   # a protocol 2 header, then junk
        "plain-random.pkl": noise,
        "bad-gzip.pkl.gz": b"\x1f\x8b" + noise,
        "empty.pkl.gz": b"",
    }
    paths = {}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
        paths[name] = str(tmp_path / name)
    return paths


def test_damaged_files_raise_data_error(tmp_path):
    for name, path in damaged_files(tmp_path).items():
        with pytest.raises(DataError) as e:
            gpunn.load_data(path)
        assert path in str(e.value), name
    with pytest.raises(DataError, match="no such file"):
        gpunn.load_data(tmp_path / "absent.pkl.gz")


def test_small_mnist_file_loads(tmp_path, mnist):
    # Control for the next test: the unbroken small file loads as it was.
    data = small_mnist(mnist)
    path = write_pickle(tmp_path / "small.pkl.gz", data)
    loaded = gpunn.load_data(path)
    for (x, y), (x0, y0) in zip(loaded, data):
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert np.array_equal(x, x0) and np.array_equal(y, y0)
    # Uncompressed pickles are read too.
    path = write_pickle(tmp_path / "small.pkl", data, compress=False)
    assert np.array_equal(gpunn.load_data(path)[2][0], data[2][0])


def test_safe_load_pickle_accepts_only_arrays_tuples_and_lists(tmp_path):
    good = ([np.arange(3), (np.zeros((2, 2), np.float32), [])], np.eye(2))
    loaded = mnist_loader.safe_load_pickle(
        write_pickle(tmp_path / "good.pkl.gz", good))
    assert isinstance(loaded, tuple) and isinstance(loaded[0], list)
    assert np.array_equal(loaded[0][1][0], good[0][1][0])
    assert loaded[0][1][0].dtype == np.float32
    for bad in ({"x": np.zeros(3)}, "text", 7, None, [np.zeros(2), {1, 2}],
                (np.array([1, "a"], dtype=object),), np.array(["a", "b"])):
        path = write_pickle(tmp_path / "bad.pkl.gz", bad)
        with pytest.raises(DataError, match="accepted") as e:
            mnist_loader.safe_load_pickle(path)
        assert path in str(e.value)


def broken(data, what):
    """A copy of the small MNIST tuple ``data`` broken in one way."""
    (x, y), va, te = data
    return {
        "a dict": {"training": (x, y)},
        "a string": "mnist",
        "two parts": ((x, y), va),
        "x with 783 columns": ((x[:, :783], y), va, te),
        "x 1-D": ((x.ravel(), y), va, te),
        "y too short": ((x, y[:-1]), va, te),
        "label 10": ((x, np.where(y == 9, 10, y)), va, te),
        "label -1": ((x, np.where(y == 0, -1, y)), va, te),
        "float labels": ((x, y.astype(np.float64)), va, te),
        "an object array": ((x, y.astype(object)), va, te),
        "a numpy scalar": ((x, y), va, (te[0], np.int64(3))),
        "a triple for a pair": ((x, y, y), va, te),
    }[what]


@pytest.mark.parametrize("what", [
    "a dict", "a string", "two parts", "x with 783 columns", "x 1-D",
    "y too short", "label 10", "label -1", "float labels", "an object array",
    "a numpy scalar", "a triple for a pair"])
def test_wrong_structure_raises_data_error(tmp_path, mnist, what):
    path = write_pickle(tmp_path / "wrong.pkl.gz", broken(small_mnist(mnist),
                                                          what))
    with pytest.raises(DataError) as e:
        gpunn.load_data(path)
    assert path in str(e.value)


# ---------------------------------------------------------------------------
# The chapter 1 / 3 format

def test_load_data_wrapper(mnist):
    training, validation, test = mnist_loader.load_data_wrapper()
    assert (len(training), len(validation), len(test)) == (50000, 10000, 10000)
    x, y = training[0]
    assert x.shape == (784, 1) and y.shape == (10, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    xs = np.stack([x for x, _ in training])
    ys = np.stack([y for _, y in training])[:, :, 0]
    assert np.array_equal(xs[:, :, 0], mnist[0][0])
    # Each one-hot vector has a single 1, at the digit's position.
    assert np.array_equal(ys.sum(axis=1), np.ones(50000))
    assert np.array_equal(np.argmax(ys, axis=1), mnist[0][1])
    assert np.array_equal(ys[0], mnist_loader.vectorized_result(5)[:, 0])
    for data, (x_all, y_all) in ((validation, mnist[1]), (test, mnist[2])):
        assert data[7][0].shape == (784, 1)
        assert np.array_equal(data[7][0][:, 0], x_all[7])
        assert [y for _, y in data] == y_all.tolist()
        assert all(type(y) is int for _, y in data[:10])


def test_vectorized_result():
    e = mnist_loader.vectorized_result(3)
    assert e.shape == (10, 1)
    assert e[3, 0] == 1.0 and e.sum() == 1.0


# ---------------------------------------------------------------------------
# expand_mnist

def book_shifts(x):
    """The book's expand_mnist.py loop, one image at a time: the reference."""
    out = []
    for image_row in x:
        out.append(image_row)
        image = np.reshape(image_row, (-1, 28))
        for d, axis, index_position, index in [(1, 0, "first", 0),
                                               (-1, 0, "first", 27),
                                               (1, 1, "last", 0),
                                               (-1, 1, "last", 27)]:
            new_img = np.roll(image, d, axis)
            if index_position == "first":
                new_img[index, :] = np.zeros(28)
            else:
                new_img[:, index] = np.zeros(28)
            out.append(np.reshape(new_img, 784))
    return np.array(out).reshape(-1, 5, 784)


def test_shifted_images_match_the_books_loop(mnist):
    rng = np.random.default_rng(2)
    x = mnist[0][0][rng.choice(50000, 20, replace=False)]
    # Pixels on every edge, so that the zeroing is tested too.
    x[0] = rng.random(784, dtype=np.float32)
    shifted = expand_mnist.shifted_images(x)
    assert shifted.shape == (20, 5, 784) and shifted.dtype == np.float32
    assert np.array_equal(shifted, book_shifts(x))


def test_expand_is_a_shuffle_of_the_shifted_images(mnist):
    x, y = mnist[0][0][:200], mnist[0][1][:200]
    xe, ye = expand_mnist.expand(x, y)
    assert xe.shape == (1000, 784) and ye.shape == (1000,)
    counts = collections.Counter(y.tolist())
    assert collections.Counter(ye.tolist()) == {
        k: 5 * n for k, n in counts.items()}
    # Same (image, label) rows as the book's loop gives, in another order.
    reference = book_shifts(x).reshape(1000, 784)
    pairs = sorted(zip(map(bytes, reference), np.repeat(y, 5).tolist()))
    assert sorted(zip(map(bytes, xe), ye.tolist())) == pairs
    assert not np.array_equal(xe, reference)
    # Reproducible for one seed, different for another.
    assert np.array_equal(expand_mnist.expand(x, y)[0], xe)
    assert not np.array_equal(expand_mnist.expand(x, y, seed=1)[0], xe)


def test_expanded_training_data_cache(tmp_path, mnist, monkeypatch):
    """Next to the file (without $GPUNN_CACHE, which the tests set)."""
    monkeypatch.delenv("GPUNN_CACHE")
    data = small_mnist(mnist)
    path = write_pickle(tmp_path / "mnist.pkl.gz", data)
    cache = tmp_path / "mnist_expanded.npz"
    want_x, want_y = expand_mnist.expand(*data[0])

    x, y = expand_mnist.expanded_training_data(path)          # computes
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(x, want_x) and np.array_equal(y, want_y)
    with np.load(cache, allow_pickle=False) as f:
        assert f["x"].dtype == np.uint8
        assert np.array_equal(f["x"], want_x * 256)
    stamp = os.stat(cache).st_mtime_ns, os.stat(cache).st_ino

    x, y = expand_mnist.expanded_training_data(path)          # reads
    assert (os.stat(cache).st_mtime_ns, os.stat(cache).st_ino) == stamp
    assert np.array_equal(x, want_x) and np.array_equal(y, want_y)

    cache.write_bytes(b"PK\x03\x04 not really a zip file")      # damaged
    x, y = expand_mnist.expanded_training_data(path)
    assert np.array_equal(x, want_x) and np.array_equal(y, want_y)
    with np.load(cache, allow_pickle=False) as f:
        assert np.array_equal(f["y"], want_y)

    data = small_mnist(mnist, n=(30, 5, 5))                   # stale
    write_pickle(tmp_path / "mnist.pkl.gz", data)
    x, y = expand_mnist.expanded_training_data(path)
    assert np.array_equal(x, expand_mnist.expand(*data[0])[0])
    assert sorted(os.listdir(tmp_path)) == ["mnist.pkl.gz",
                                            "mnist_expanded.npz"]


def test_expanded_training_data_without_a_writable_folder(tmp_path, mnist,
                                                        monkeypatch):
    """The folder of the file cannot take the cache (an installed
    package's, often): it goes to the user's cache folder.  A directory
    where the cache should go can be neither read nor replaced (a chmod
    would not stop root, who may run the tests)."""
    monkeypatch.delenv("GPUNN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = small_mnist(mnist)
    path = write_pickle(tmp_path / "mnist.pkl.gz", data)
    (tmp_path / "mnist_expanded.npz").mkdir()
    want_x, want_y = expand_mnist.expand(*data[0])
    for _ in range(2):  # computed and written, then read
        x, y, cache, what = expand_mnist._expanded(path)
        assert np.array_equal(x, want_x) and np.array_equal(y, want_y)
        assert os.path.dirname(cache) == str(tmp_path / "xdg" / "gpunn")
    assert what == "read from the cache"
    assert sorted(os.listdir(tmp_path)) == ["mnist.pkl.gz",
                                            "mnist_expanded.npz", "xdg"]
    # Nowhere to write: computed each time, nothing left behind.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a_file"))
    (tmp_path / "a_file").write_text("")
    x, y, _, what = expand_mnist._expanded(
        write_pickle(tmp_path / "mnist.pkl.gz", small_mnist(mnist, n=(30, 5, 5))))
    assert what == "computed (the cache could not be written)"


def test_gpunn_cache_is_the_only_place_when_set(tmp_path, mnist, monkeypatch):
    monkeypatch.setenv("GPUNN_CACHE", str(tmp_path / "cache"))
    path = write_pickle(tmp_path / "mnist.pkl.gz", small_mnist(mnist))
    _, _, cache, what = expand_mnist._expanded(path)
    assert what == "computed and written to the cache"
    assert os.listdir(tmp_path / "cache") == [os.path.basename(cache)]
    assert sorted(os.listdir(tmp_path)) == ["cache", "mnist.pkl.gz"]


def test_expanded_training_data_of_other_pixels(tmp_path, mnist):
    # Pixels that are not k/256 cannot be cached as uint8: none is written.
    (x, y), va, te = small_mnist(mnist)
    x = np.random.default_rng(3).random(x.shape, dtype=np.float32)
    path = write_pickle(tmp_path / "mnist.pkl.gz", ((x, y), va, te))
    got_x, got_y = expand_mnist.expanded_training_data(path)
    want_x, want_y = expand_mnist.expand(x, y)
    assert np.array_equal(got_x, want_x) and np.array_equal(got_y, want_y)
    assert os.listdir(tmp_path) == ["mnist.pkl.gz"]


@pytest.mark.system
def test_expand_mnist_command_line(tmp_path, mnist, monkeypatch):
    monkeypatch.delenv("GPUNN_CACHE")
    path = write_pickle(tmp_path / "mnist.pkl.gz", small_mnist(mnist))
    code = "from gpunn.expand_mnist import main; main()"
    first = run_python(code, path)
    second = run_python(code, path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert "300 images" in first.stdout and "written" in first.stdout
    assert "read from the cache" in second.stdout
    assert str(tmp_path / "mnist_expanded.npz") in second.stdout


def test_full_expansion_and_conv_py_file_name(tmp_path, monkeypatch, mnist):
    # The whole set, from a copy of the data directory: ~4 s and ~2 GB.
    shutil.copyfile(MNIST, tmp_path / "mnist.pkl.gz")
    monkeypatch.setenv("GPUNN_DATA", str(tmp_path))
    monkeypatch.delenv("GPUNN_CACHE")
    x, y = expand_mnist.expanded_training_data()
    assert x.shape == (250000, 784) and x.dtype == np.float32
    assert (tmp_path / "mnist_expanded.npz").exists()
    want_x, want_y = expand_mnist.expand(np.asarray(mnist[0][0]),
                                         np.asarray(mnist[0][1]))
    assert np.array_equal(x, want_x) and np.array_equal(y, want_y)
    del x, want_x
    # The book's conv.py asks for a file that is not there: it gets the
    # cached expanded set, and the bundled validation and test data.
    training, validation, test = network3.load_data_shared(
        "../data/mnist_expanded.pkl.gz")
    assert training[0].shape == (250000, 784) and training[1].dtype == np.int32
    assert np.array_equal(training[1], want_y)
    assert np.array_equal(validation[0], mnist[1][0])
    assert np.array_equal(test[1], mnist[2][1])
