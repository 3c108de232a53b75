"""common.py
~~~~~~~~~~~~

What several of gpunn's commands share: their options (backend, cluster,
quick), the argument checks, the backend they use, the screen's lines
and progress bars, the data, and reading a network file of any chapter.

Nothing heavy is imported here at the top (numba, CuPy, Dask): ``gpunn
--help`` builds every command's parser, and needs none of them.
"""

import argparse
import json
import os
import sys

import gpunn
from gpunn import errors, experiments, mnist_loader
from gpunn.compute import backend

#: The models of ``gpunn train NAME``: conv.py's (chapter 6), and the
#: networks of chapters 1 and 3.
CONV_PY = experiments.CONV_PY
CHAPTERS_1_3 = tuple(experiments.NETWORKS)


# ---------------------------------------------------------------- argument checks
# argparse types: the same checks as the networks' (gpunn.errors), with
# argparse's wording, so the command refuses what training would refuse.

def _argument(check, wording):
    def convert(text):
        try:
            return check("value", text)
        except gpunn.ConfigError:
            try:
                float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    "not a number: {}".format(text)) from None
            raise argparse.ArgumentTypeError(
                "must be {}, got {}".format(wording, text)) from None
    return convert


def _check_probability(name, text):
    p = errors.number(name, text)
    if p >= 1:
        raise gpunn.ConfigError("{} must be below 1".format(name))
    return p


def _number(text):
    try:
        return int(text)
    except ValueError:
        return text  # positive_int refuses it, naming the text


positive_int = _argument(lambda n, t: errors.positive_int(n, _number(t)),
                         "at least 1")
positive_float = _argument(lambda n, t: errors.number(n, t, 0.0, False),
                           "positive")
nonnegative_float = _argument(lambda n, t: errors.number(n, t), "0 or more")
probability = _argument(_check_probability, "in [0, 1)")


# ---------------------------------------------------------------- options

def backend_options(c, dtype_default="$GPUNN_DTYPE or float32"):
    c.add_argument("--backend", choices=backend.BACKENDS,
                   help="numpy, cupy or auto (default: $GPUNN_BACKEND or auto)")
    c.add_argument("--dtype", choices=backend.DTYPES,
                   help="float32 or float64 (default: {})".format(dtype_default))


def data_option(c, what):
    """--data PATH: ``what`` (e.g. "train on") a data set of one's own."""
    c.add_argument("--data", metavar="PATH",
                   help="{} this data set rather than the book's MNIST: a "
                   "file in the book's format (mnist.pkl.gz's), or an .npz "
                   "with the arrays {}".format(
                       what, ", ".join(mnist_loader.NPZ_ARRAYS)))


def cluster_options(c):
    """The options of the commands whose runs go to Dask workers."""
    c.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. "
                        "tcp://scheduler-host:8786, whose workers run the "
                        "runs (default: a cluster on this machine)")
    c.add_argument("--checkpoints", metavar="PATH",
                   help="the runs' folders, where a run cut short goes on "
                        "from (default OUT/runs; with --scheduler, a folder "
                        "every worker can reach)")
    c.add_argument("--jobs", type=positive_int,
                   help="runs side by side on this machine (default: one "
                        "per CPU core on numpy, four per GPU on cupy)")
    c.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads of each run (default: its share of its "
                        "machine's cores)")


def quick_options(c):
    """The options that make a table's runs shorter, or make none."""
    c.add_argument("--epochs", type=positive_int,
                   help="train every run this many epochs: a quick check, "
                        "marked so in the table")
    c.add_argument("--limit", type=positive_int, metavar="N",
                   help="train on the first N images only (marked so)")
    c.add_argument("--eval-limit", type=positive_int, metavar="N",
                   help="validate and test on the first N images only")
    c.add_argument("--report", action="store_true",
                   help="train nothing: make the table again from OUT/logs")


# ---------------------------------------------------------------- the backend

def use(args, seed=None):
    """The backend and dtype of ``args`` (else $GPUNN_BACKEND and
    $GPUNN_DTYPE, else auto and float32), seeded with ``seed``."""
    gpunn.use(args.backend or os.environ.get("GPUNN_BACKEND") or "auto",
              args.dtype or os.environ.get("GPUNN_DTYPE") or "float32",
              seed=seed, quiet=getattr(args, "quiet", False))
    # The command's default, unlike the library's: no more threads than
    # the cores this process may use.
    backend.set_threads(getattr(args, "threads", None))


def device():
    """What a log names the device: "cpu", or the GPU's name."""
    if backend.name() == "numpy":
        return "cpu"
    props = backend.xp.cuda.runtime.getDeviceProperties(0)
    return props["name"].decode()


# ---------------------------------------------------------------- the screen

def progress_bar(epoch, images):
    """An epoch's bar, on stderr: network3's ``progress``."""
    from tqdm import tqdm
    return tqdm(total=images, desc="Epoch {}".format(epoch), unit="img",
                unit_scale=True, leave=False, file=sys.stderr)


def write_line(line):
    """A line on stdout, above the progress bar."""
    from tqdm import tqdm
    tqdm.write(line, file=sys.stdout)


# ---------------------------------------------------------------- data and networks

def data(expanded, limit, eval_limit, path=None):
    """The book's MNIST (or the data set in the file ``path``), its
    training part expanded if ``expanded``, cut to the limits: three
    pairs ``(x, y)`` of the active backend's arrays."""
    training, validation, test = gpunn.load_data(path)
    if expanded:
        from gpunn import expand_mnist
        x, y = expand_mnist.expanded_training_data(path)
        training = (backend.asarray(x), backend.asarray(y, dtype="int32"))
    if limit:
        training = tuple(a[:limit] for a in training)
    if eval_limit:
        validation = tuple(a[:eval_limit] for a in validation)
        test = tuple(a[:eval_limit] for a in test)
    return training, validation, test


class BookNetwork:
    """A network of chapters 1 or 3 (network2's) as the commands use a
    chapter-6 one: ``accuracy`` a fraction, ``predict`` the digits."""

    def __init__(self, net):
        self.net = net

    def accuracy(self, data):
        return self.net.accuracy(data) / len(data[0])

    def predict(self, x):
        return self.net._feedforward(self.net._inputs(x)).argmax(axis=1)


def load_network(path):
    """``(net, metadata)`` of a network file: a chapter-6 network (.npz,
    what ``gpunn train NAME`` saves) or one of chapters 1 and 3 (the
    book's JSON, what ``gpunn train network|network2`` saves, wrapped in
    BookNetwork, with empty metadata); anything else is a ConfigError
    saying what was expected."""
    from gpunn import network2, saving
    try:
        with open(path, "rb") as f:
            start = f.read(64).lstrip()
    except OSError as e:
        raise gpunn.ConfigError("{}: cannot read: {}".format(
            path, e.strerror or e)) from None
    if start.startswith(b"{"):
        try:
            with open(path) as f:
                data = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            data = e
        if isinstance(data, dict) and {"sizes", "weights", "biases",
                                       "cost"} <= set(data):
            return BookNetwork(network2.load(path)), {}
    elif start.startswith(b"PK"):
        return saving.load(path)
    raise gpunn.ConfigError(
        "{}: not a network file. Expected a chapter-6 network (.npz, saved "
        "by gpunn train NAME) or a network of chapters 1 and 3 (the book's "
        "JSON with sizes, weights, biases and cost, saved by gpunn train "
        "network or network2)".format(path))
