"""figures.py
~~~~~~~~~~~~~

The book's figure scripts that train networks (the ``fig/`` folder of
mnielsen/neural-networks-and-deep-learning), run on gpunn's network2:

    overfitting            chapter 3  fig/overfitting.py
    multiple_eta           chapter 3  fig/multiple_eta.py
    weight_initialization  chapter 3  fig/weight_initialization.py
    more_data              chapter 3  fig/more_data.py (with an SVM)
    vanishing_gradient     chapter 5  fig/generate_gradient.py

Each figure is a row of ``FIGURES``: the book's settings as data, what
``--quick`` changes, a function that trains with ``network2.Network.SGD``
(its ``monitor_*`` lists are the book's per-epoch data) and returns the
results, and the function of ``gpunn.plots`` that draws them as the
script did.  ``run`` trains a figure's networks from its settings alone
(it seeds gpunn's generator with ``settings["seed"]``); ``FigureFolder``
is the one reader and writer of a figure's files, ``NAME.json`` (the
settings, the results, where and how long it ran) and ``NAME.png``.

The scripts seed Python's and NumPy's generators with 12345678 (all but
generate_gradient.py, which seeds none); gpunn's seed is that number for
every figure, given to its own generator, so the book's draws are not
repeated, only the settings.
"""

import contextlib
import copy
import json
import os
from dataclasses import dataclass
from typing import Callable

import numpy

from gpunn import mnist_loader, network2
from gpunn.compute import backend
from gpunn.errors import ConfigError, DataError, number, positive_int

BOOK_SEED = 12345678
REPOSITORY = "mnielsen/neural-networks-and-deep-learning"


@dataclass(frozen=True)
class Figure:
    """One of the book's figure scripts: ``settings`` are the script's,
    ``quick`` the changes of ``--quick``; ``train(settings, data, say)``
    returns the results (JSON-able), ``draw(record, path)`` the PNG.
    ``fixed``: why --epochs, --eta or --lmbda does not apply, for those
    the script sets network by network (formatted with the settings)."""
    name: str
    chapter: int
    script: str
    shows: str
    settings: dict
    quick: dict
    train: Callable
    draw: Callable
    fixed: dict = None


# ---------------------------------------------------------------- data

class Data:
    """MNIST for network2 as the figures use it, sliced as the scripts
    slice ``load_data_wrapper()``'s lists: ``training(n)`` the first n
    training images with one-hot labels (SGD's training monitors need
    them), ``evaluation(part, n)`` the first n (None: all) validation or
    test images with their digits, as arrays of the active backend and
    dtype; ``host_part(part, n)`` the same images as ``load_host()``
    gives them, NumPy arrays with digits (the SVM's).  ``host``: what
    ``load_host()`` returns (default: loaded here)."""

    PARTS = {"training": 0, "validation": 1, "test": 2}

    def __init__(self, host=None):
        self.host = host if host is not None else mnist_loader.load_host()

    def host_part(self, part, n=None):
        x, y = self.host[self.PARTS[part]]
        if n is not None and n > len(x):
            raise ConfigError("{} {} images asked for; MNIST has {}".format(
                n, part, len(x)))
        return x[:n], y[:n]

    def training(self, n):
        x, y = self.host_part("training", n)
        return backend.asarray(x), backend.asarray(numpy.eye(10)[y])

    def evaluation(self, part, n=None):
        x, y = self.host_part(part, n)
        return backend.asarray(x), backend.asarray(y, dtype="int32")


@contextlib.contextmanager
def _book_lines(verbose):
    """network2.SGD prints the book's lines for each epoch: shown when
    ``verbose``, else dropped (a figure trains tens of thousands of
    epochs)."""
    if verbose:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def _network(sizes, init):
    """A network2 network with the cross-entropy cost (the figures' cost)
    and the book's initializer: "default" N(0, 1/n_in), or "large"."""
    net = network2.Network(sizes, cost=network2.CrossEntropyCost)
    if init == "large":
        net.large_weight_initializer()
    return net


def _percent(count, n):
    return 100.0 * count / n


# ---------------------------------------------------------------- chapter 3

def train_overfitting(s, data, say, verbose=False):
    """fig/overfitting.py: [784, 30, 10], large initial weights, on the
    first 1,000 training images; all four of SGD's monitors, the
    evaluation data being the test set."""
    training = data.training(s["training_size"])
    test = data.evaluation(s["evaluation"], s["evaluation_size"])
    net = _network(s["sizes"], s["init"])
    with _book_lines(verbose):
        test_cost, test_accuracy, training_cost, training_accuracy = net.SGD(
            training, s["epochs"], s["mini_batch_size"], s["eta"],
            lmbda=s["lmbda"], evaluation_data=test,
            monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
            monitor_training_cost=True, monitor_training_accuracy=True)
    best = int(numpy.argmax(test_accuracy))
    say("test accuracy {:.2f}% after epoch {} (best {:.2f}% at epoch {}); "
        "training accuracy {:.2f}%".format(
            _percent(test_accuracy[-1], len(test[0])), len(test_accuracy) - 1,
            _percent(test_accuracy[best], len(test[0])), best,
            _percent(training_accuracy[-1], len(training[0]))))
    return {"test_size": len(test[0]), "training_size": len(training[0]),
            "test_cost": test_cost, "test_accuracy": test_accuracy,
            "training_cost": training_cost,
            "training_accuracy": training_accuracy}


def train_multiple_eta(s, data, say, verbose=False):
    """fig/multiple_eta.py: [784, 30, 10] (default initial weights)
    trained for each eta on the 50,000 training images, lmbda 5.0;
    the training cost per epoch."""
    training = data.training(s["training_size"])
    runs = []
    for eta in s["etas"]:
        net = _network(s["sizes"], s["init"])
        with _book_lines(verbose):
            _, _, training_cost, _ = net.SGD(
                training, s["epochs"], s["mini_batch_size"], eta,
                lmbda=s["lmbda"], monitor_training_cost=True)
        say("eta {:g}: training cost {:.4g} after epoch 0, {:.4g} after "
            "epoch {}".format(eta, training_cost[0], training_cost[-1],
                              len(training_cost) - 1))
        runs.append({"eta": eta, "training_cost": training_cost})
    return {"runs": runs}


def train_weight_initialization(s, data, say, verbose=False):
    """fig/weight_initialization.py: one [784, 30, 10] network trained
    from the default initial weights, then, drawn again with the large
    initializer, trained again; the validation accuracy per epoch.  With
    the chapter's eta 0.1 and lmbda 5.0 ("we will decrease the learning
    rate slightly from eta = 0.5 to 0.1"), not the script's 0.01 and
    0.002: those give --eta 0.01 --lmbda 0.002."""
    training = data.training(s["training_size"])
    validation = data.evaluation(s["evaluation"], s["evaluation_size"])
    net = _network(s["sizes"], "default")
    results = {"evaluation_size": len(validation[0])}
    for init in ("default", "large"):
        if init == "large":
            net.large_weight_initializer()
        with _book_lines(verbose):
            _, accuracy, _, _ = net.SGD(
                training, s["epochs"], s["mini_batch_size"], s["eta"],
                lmbda=s["lmbda"], evaluation_data=validation,
                monitor_evaluation_accuracy=True)
        say("{} initialization: validation accuracy {:.2f}% after epoch 0, "
            "{:.2f}% after epoch {}".format(
                init, _percent(accuracy[0], len(validation[0])),
                _percent(accuracy[-1], len(validation[0])), len(accuracy) - 1))
        results[init] = {"evaluation_accuracy": accuracy}
    return results


def train_more_data(s, data, say, verbose=False):
    """fig/more_data.py: for each training-set size, the first ``size``
    images, [784, 30, 10] drawn again with the large initializer and
    trained for epoch_budget // size epochs with lmbda = size *
    lmbda_per_image; its validation accuracy.  Then an SVM (scikit-learn's
    SVC with its defaults, gpunn.baselines) on the same images."""
    from gpunn import baselines
    baselines.svm_classifier()  # without scikit-learn, fail before training
    validation = data.evaluation(s["evaluation"], s["evaluation_size"])
    net = _network(s["sizes"], "default")
    epochs, network_accuracy, svm_accuracy = [], [], []
    for size in s["training_sizes"]:
        net.large_weight_initializer()
        epochs.append(s["epoch_budget"] // size)
        with _book_lines(verbose):
            net.SGD(data.training(size), epochs[-1], s["mini_batch_size"],
                    s["eta"], lmbda=size * s["lmbda_per_image"])
        network_accuracy.append(_percent(net.accuracy(validation),
                                         len(validation[0])))
        say("{} images, {} epochs: network {:.2f}%".format(
            size, epochs[-1], network_accuracy[-1]))
    svm_validation = data.host_part(s["evaluation"], s["evaluation_size"])
    for size in s["training_sizes"]:
        svm_accuracy.append(100.0 * baselines.svm_accuracy(
            data.host_part("training", size), svm_validation))
        say("{} images: SVM {:.2f}%".format(size, svm_accuracy[-1]))
    return {"evaluation_size": len(validation[0]),
            "training_sizes": list(s["training_sizes"]), "epochs": epochs,
            "network_accuracy": network_accuracy,
            "svm_accuracy": svm_accuracy}


# ---------------------------------------------------------------- chapter 5

def speed_of_learning(net, x, y):
    """generate_gradient.py's measure of how fast each hidden layer
    learns: ||mean over the examples of dC_x/db^l||, for each hidden
    layer l (the output layer left out).  ``x`` (n, n_in), ``y`` (n,
    n_out) one-hot, rows of the active backend.  network2's backprop of
    the n examples at once gives their summed gradient (BP3: dC/db is
    delta), so the mean is that over n."""
    nabla_b, _ = net.backprop(x.T, y.T)
    return [float((nb * nb).sum()) ** 0.5 / len(x) for nb in nabla_b[:-1]]


def train_vanishing_gradient(s, data, say, verbose=False):
    """fig/generate_gradient.py: networks of two, three and four hidden
    layers of 30 neurons, default initial weights, trained on the first
    1,000 training images one epoch at a time (full-batch: mini-batches
    of 1,000, eta 0.1, lmbda 5.0), the speed of learning of each hidden
    layer measured before each epoch, as the script does."""
    x, y = data.training(s["training_size"])
    runs = []
    for sizes in s["sizes"]:
        net = _network(sizes, s["init"])
        norms = []
        for _ in range(s["epochs"]):
            norms.append(speed_of_learning(net, x, y))
            with _book_lines(verbose):
                net.SGD((x, y), 1, s["mini_batch_size"], s["eta"],
                        lmbda=s["lmbda"])
        say("{}: initial speed of learning {}; first hidden layer {:.0f} "
            "times slower than the last".format(
                sizes, ", ".join("{:.3g}".format(n) for n in norms[0]),
                norms[0][-1] / norms[0][0]))
        runs.append({"sizes": sizes, "initial_norms": norms[0],
                     "norms": norms})
    return {"runs": runs}


# ---------------------------------------------------------------- drawing

def _draw(function):
    """A Figure's ``draw``: gpunn.plots' ``function`` of the record's
    results, with the record's title."""
    def draw(record, path):
        from gpunn import plots
        return getattr(plots, function)(record["results"], path,
                                        title=title(record))
    draw.__doc__ = "Draw with gpunn.plots.{}.".format(function)
    return draw


def title(record):
    """The PNG's title: the figure, the settings one can change (epochs,
    eta, lmbda), whether it is a --quick run, the backend and seed."""
    s = record["settings"]
    gist = ", ".join("{} {:g}".format(key, s[key])
                     for key in ("epochs", "eta", "lmbda") if key in s)
    return "gpunn figure {}{}{} ({}, {}, seed {})".format(
        record["figure"], ": " + gist if gist else "",
        ", --quick: not the book's run" if record["quick"] else "",
        record["backend"], record["dtype"], s["seed"])


# ---------------------------------------------------------------- the figures

_MNIST_3 = dict(sizes=[784, 30, 10], mini_batch_size=10)

FIGURES = {f.name: f for f in (
    Figure("overfitting", 3, "fig/overfitting.py",
           "training cost falls all along; test accuracy stops improving "
           "near epoch 280",
           dict(_MNIST_3, init="large", training_size=1000, epochs=400,
                eta=0.5, lmbda=0.0, evaluation="test", evaluation_size=None),
           dict(training_size=100, epochs=4, evaluation_size=200),
           train_overfitting, _draw("plot_overfitting")),
    Figure("multiple_eta", 3, "fig/multiple_eta.py",
           "the training cost for eta 0.025, 0.25 and 2.5",
           dict(_MNIST_3, init="default", training_size=50000, epochs=30,
                etas=[0.025, 0.25, 2.5], lmbda=5.0),
           dict(training_size=200, epochs=3),
           train_multiple_eta, _draw("plot_multiple_eta"),
           fixed={"eta": "it trains eta {etas}, as the book"}),
    Figure("weight_initialization", 3, "fig/weight_initialization.py",
           "validation accuracy from the default and the large initial "
           "weights",
           # The chapter's eta and lmbda: the script's (0.01, 0.002)
           # start the large weights below its own y limits of 85 to 100.
           dict(_MNIST_3, training_size=50000, epochs=30, eta=0.1,
                lmbda=5.0, evaluation="validation", evaluation_size=None),
           dict(training_size=200, epochs=3, evaluation_size=200),
           train_weight_initialization, _draw("plot_weight_initialization")),
    Figure("more_data", 3, "fig/more_data.py",
           "validation accuracy against the training-set size, with an SVM's",
           dict(_MNIST_3, training_sizes=[100, 200, 500, 1000, 2000, 5000,
                                          10000, 20000, 50000],
                epoch_budget=1500000, eta=0.5, lmbda_per_image=0.0001,
                evaluation="validation", evaluation_size=None),
           dict(training_sizes=[20, 50], epoch_budget=200,
                evaluation_size=200),
           train_more_data, _draw("plot_more_data"),
           fixed={"epochs": "it trains each size for {epoch_budget:,} / size "
                            "epochs, as the book",
                  "lmbda": "it trains each size with lmbda = size * "
                           "{lmbda_per_image:g}, as the book"}),
    Figure("vanishing_gradient", 5, "fig/generate_gradient.py",
           "the speed of learning of each hidden layer, for 2, 3 and 4 "
           "hidden layers",
           dict(sizes=[[784, 30, 30, 10], [784, 30, 30, 30, 10],
                       [784, 30, 30, 30, 30, 10]], init="default",
                training_size=1000, epochs=500, mini_batch_size=1000,
                eta=0.1, lmbda=5.0),
           dict(training_size=20, epochs=3, mini_batch_size=20),
           train_vanishing_gradient, _draw("plot_speed_of_learning")),
)}


def figure(name):
    """The Figure called ``name``; a ConfigError naming them all if none is."""
    if name not in FIGURES:
        import difflib
        close = difflib.get_close_matches(name, FIGURES, n=1)
        raise ConfigError("no figure named {!r}{}; the figures are {}".format(
            name, " (did you mean {}?)".format(close[0]) if close else "",
            ", ".join(FIGURES)))
    return FIGURES[name]


def settings(name, quick=False, epochs=None, seed=None, eta=None,
             lmbda=None):
    """The settings of figure ``name``: the book's, changed by ``quick``
    (a tiny run for tests), then by ``epochs``, ``eta``, ``lmbda`` and
    ``seed`` (default BOOK_SEED) where given.  A ConfigError where one
    does not apply to the figure (``Figure.fixed``) or is out of range."""
    f = figure(name)
    s = copy.deepcopy(f.settings)
    if quick:
        s.update(copy.deepcopy(f.quick))
    checks = {"epochs": positive_int,
              "eta": lambda n, v: number(n, v, 0.0, allow_minimum=False),
              "lmbda": number}
    for key, value in (("epochs", epochs), ("eta", eta), ("lmbda", lmbda)):
        if value is None:
            continue
        if key not in s:
            raise ConfigError("--{} does not apply to {}: {}".format(
                key, name, f.fixed[key].format(**s)))
        s[key] = checks[key]("--" + key, value)
    s["seed"] = BOOK_SEED if seed is None else int(seed)
    return s


def run(name, s, data=None, say=print, verbose=False):
    """Train figure ``name``'s networks with the settings ``s`` on the
    active backend, gpunn's generator seeded with ``s["seed"]``; return
    the results.  ``data``: a ``Data`` (default: loaded here); ``say``
    gets a line per network trained; ``verbose`` lets SGD print."""
    data = data if data is not None else Data()
    backend.reseed(s["seed"])
    return figure(name).train(s, data, say, verbose)


class FigureFolder:
    """A figure's folder: ``NAME.json`` (the record: figure, script,
    settings, quick, backend, dtype, device, seconds, results) and
    ``NAME.png``.  The only reader and writer of those files."""

    def __init__(self, path, name):
        self.path, self.name = path, name
        self.json_path = os.path.join(path, name + ".json")
        self.png_path = os.path.join(path, name + ".png")

    def make(self):
        """Make the folder, and fail now, not after training, where it
        cannot be written to."""
        probe = os.path.join(self.path, ".gpunn-figure-probe")
        try:
            os.makedirs(self.path, exist_ok=True)
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as e:
            raise ConfigError("--out {}: cannot write there: {}".format(
                self.path, e.strerror or e)) from None
        return self

    def write(self, record):
        """Write the record as JSON (atomically) and draw it; return the
        two paths."""
        tmp = self.json_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.json_path)
        return self.json_path, self.draw(record)

    def read(self):
        """The record in NAME.json; a DataError if there is none."""
        try:
            with open(self.json_path) as f:
                record = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError("{}: cannot read the figure's data ({}); train "
                            "it first, without --replot".format(
                                self.json_path, getattr(e, "strerror", e)
                                or e)) from None
        if not isinstance(record, dict) or record.get("figure") != self.name:
            raise DataError("{}: not the data of figure {}".format(
                self.json_path, self.name))
        return record

    def draw(self, record):
        """Draw the record's PNG, as the book's script drew it."""
        return figure(self.name).draw(record, self.png_path)


def record(name, s, quick, results, seconds, device):
    """What NAME.json holds."""
    import gpunn
    f = figure(name)
    return {"figure": name, "chapter": f.chapter,
            "book_script": "{}: {}".format(REPOSITORY, f.script),
            "shows": f.shows, "quick": bool(quick), "settings": s,
            "backend": backend.name(), "dtype": backend.floatX.name,
            "device": device, "gpunn_version": gpunn.__version__,
            "seconds": round(seconds, 3), "results": results}
