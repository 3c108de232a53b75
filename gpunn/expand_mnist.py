"""expand_mnist.py
~~~~~~~~~~~~~~~~

The book's expand_mnist.py: grow the 50,000 MNIST training images to
250,000 by adding, for each image, copies shifted by one pixel down, up,
right and left (chapter 6 uses them to train its best convolutional nets).

The book wrote the result to data/mnist_expanded.pkl.gz.  gpunn instead
caches it as ``mnist_expanded.npz``, pixels stored as uint8 (x * 256,
exact since every pixel is k/256), read back without unpickling: next to
mnist.pkl.gz where that folder is writable (a checkout), else in the
user's cache folder (``$XDG_CACHE_HOME/gpunn`` or ``~/.cache/gpunn``, as
``mnist_expanded-<hash of the source>.npz``: an installed package's
folder is often read-only).  ``$GPUNN_CACHE``, when set, is the only
place (the test suite sets it, so that it never writes into the
repository).  ``network3.load_data_shared("../data/mnist_expanded.pkl.gz")``
(what the book's conv.py asks for) comes here when that file is absent.

    python -m gpunn.expand_mnist [path/to/mnist.pkl.gz]

makes the cache ahead of time.
"""

import os
import sys
import tempfile

import numpy as np

from gpunn import mnist_loader

CACHE_NAME = "mnist_expanded.npz"
#: Seed of the shuffle, so that every run builds the same expanded set.
SEED = 0


def shifted_images(x):
    """Return the images ``x``, shape (n, 784), with their one-pixel
    shifts: shape (n, 5, 784), holding for each image [original, down, up,
    right, left].  The pixels shifted in are zero, as in the book's
    ``np.roll`` followed by zeroing the wrapped row or column."""
    image = x.reshape(-1, 28, 28)
    out = np.zeros((image.shape[0], 5, 28, 28), dtype=x.dtype)
    out[:, 0] = image
    out[:, 1, 1:, :] = image[:, :-1, :]  # down:  roll 1 on rows, row 0 = 0
    out[:, 2, :-1, :] = image[:, 1:, :]  # up:    roll -1 on rows, row 27 = 0
    out[:, 3, :, 1:] = image[:, :, :-1]  # right: roll 1 on cols, col 0 = 0
    out[:, 4, :, :-1] = image[:, :, 1:]  # left:  roll -1 on cols, col 27 = 0
    return out.reshape(-1, 5, 784)


def expand(x, y, seed=SEED):
    """Return ``(x_expanded, y_expanded)`` of shapes (5n, 784) and (5n,):
    every image of ``x`` (n, 784) and its four shifts, labelled from ``y``
    (n,), shuffled by a permutation from ``numpy.random.default_rng(seed)``
    (the book shuffled too, so a mini-batch is not five copies of one
    digit)."""
    n = x.shape[0]
    order = np.random.default_rng(seed).permutation(5 * n)
    return shifted_images(x).reshape(5 * n, 784)[order], np.repeat(y, 5)[order]


def _read_cache(cache, source_sha):
    """Return ``(x8, y)`` from the cache file, or None if it is missing,
    unreadable, malformed or made from another source file."""
    try:
        with np.load(cache, allow_pickle=False) as f:
            x8, y, sha = f["x"], f["y"], str(f["source_sha256"])
    except Exception:  # missing, truncated, not a zip, a key missing...
        return None
    if (sha != source_sha or x8.dtype != np.uint8 or x8.ndim != 2
            or x8.shape[1] != 784 or y.shape != x8.shape[:1]):
        return None
    return x8, y


def _write_cache(cache, x8, y, source_sha):
    """Write the cache atomically (a reader never sees half a file).
    Return False, leaving nothing behind, if it cannot be written (the
    directory is read-only, the disk is full...)."""
    directory = os.path.dirname(cache)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".mnist_expanded.", suffix=".tmp",
                                   dir=directory)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=x8, y=y, source_sha256=np.array(source_sha))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private to its owner
        os.replace(tmp, cache)
    except OSError:
        return False
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return True


def cache_places(path, source_sha):
    """Where the expanded set of the file ``path`` may be cached, in the
    order tried: ``$GPUNN_CACHE`` alone when set; else next to the file,
    then the user's cache folder."""
    shared_name = "mnist_expanded-{}.npz".format(source_sha[:16])
    if os.environ.get("GPUNN_CACHE"):
        return [os.path.join(os.environ["GPUNN_CACHE"], shared_name)]
    user = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return [os.path.join(os.path.dirname(path), CACHE_NAME),
            os.path.join(user, "gpunn", shared_name)]


def _expanded(path=None):
    """Return ``(x, y, cache, what)``: the expanded training set as in
    ``expanded_training_data``, the cache's path and a few words saying
    whether it was read, written or could not be written."""
    bundled = path is None
    path = os.path.abspath(mnist_loader.default_path() if bundled else path)
    source_sha = mnist_loader.sha256_of(path)
    if bundled and source_sha != mnist_loader.MNIST_SHA256:
        mnist_loader.check_sha256(path)  # raises, saying how to restore it
    places = cache_places(path, source_sha)
    cache = places[0]
    for place in places:
        found = _read_cache(place, source_sha)
        if found is not None:
            cache = place
            break
    if found is not None:
        x8, y = found
        what = "read from the cache"
    else:
        (x, y), _, _ = mnist_loader.load_host(path)
        # Shift and shuffle in uint8: a quarter of the memory of float32.
        x8 = np.rint(x * 256).astype(np.uint8)
        if not np.array_equal(x8 / np.float32(256), x):
            # Not the book's pixels, so uint8 would lose them: no cache.
            x, y = expand(x.astype(np.float32, copy=False), y)
            return (x, y.astype(np.int64, copy=False), cache,
                    "computed (not cached: pixels are not k/256)")
        x8, y = expand(x8, y)
        what = "computed (the cache could not be written)"
        for place in places:
            if _write_cache(place, x8, y, source_sha):
                cache, what = place, "computed and written to the cache"
                break
    # 1/256 is exact in float32, so this gives back the original pixels.
    x = x8.astype(np.float32)
    x *= np.float32(1 / 256)
    return x, y.astype(np.int64, copy=False), cache, what


def expanded_training_data(path=None):
    """Return the expanded training set as NumPy arrays ``(x, y)``: x
    float32 of shape (250000, 784), y int64 of shape (250000,).

    ``path`` is the mnist.pkl.gz to expand (default: the bundled one).
    The result is cached next to it as mnist_expanded.npz, and recomputed
    when the cache is missing, unreadable or made from another file."""
    x, y, _, _ = _expanded(path)
    return x, y


def main(argv=None):
    """Create the cache: ``python -m gpunn.expand_mnist [mnist.pkl.gz]``."""
    args = sys.argv[1:] if argv is None else argv
    x, y, cache, what = _expanded(args[0] if args else None)
    print("Expanded MNIST training set: {:,} images ({:,} x 5), {}: {}"
          .format(len(y), len(y) // 5, what, cache))


if __name__ == "__main__":
    main()
