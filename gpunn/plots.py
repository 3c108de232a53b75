"""plots.py
~~~~~~~~

The figures of ``gpunn plot``: the book's pictures of a training run.

    plot_history         chapter 3: accuracy and cost per epoch
    plot_gradient_norms  chapter 5: the speed of learning of each layer
    plot_errors          chapter 6 (conv.py): the misclassified digits
    plot_filters         chapter 6 (conv.py): a conv layer's filters
    plot_sweep           chapter 6 (conv.py): accuracy against lmbda

and those of ``gpunn figure`` (gpunn.figures), drawn as the book's
figure scripts (its fig/ folder) drew them:

    plot_overfitting            chapter 3: fig/overfitting.py
    plot_multiple_eta           chapter 3: fig/multiple_eta.py
    plot_weight_initialization  chapter 3: fig/weight_initialization.py
    plot_more_data              chapter 3: fig/more_data.py
    plot_speed_of_learning      chapter 5: fig/generate_gradient.py

Every function takes host NumPy data (move CuPy arrays with
``backend.to_numpy`` or ``.get()`` first), writes a PNG of a fixed pixel
size to ``path``, and returns ``path``.  The size is fixed (figsize times
dpi, no ``bbox_inches="tight"``) so that the pictures of two runs line up
and tests can check it.

matplotlib is optional (``pip install 'gpunn[bench]'``); it is imported
only when a figure is drawn.  The figures are drawn on a ``Figure`` with
its own Agg canvas rather than through pyplot: no display is needed, the
caller's pyplot backend is left alone, and no figure stays registered
after the function returns.
"""

import math

import numpy

DPI = 100
MISSING_MATPLOTLIB = "gpunn plot needs matplotlib: pip install 'gpunn[bench]'"


class MatplotlibMissing(ImportError):
    """matplotlib is not installed; the message says how to install it."""


def _new_figure(width, height):
    """Return an empty Figure of ``width`` x ``height`` pixels on an Agg
    canvas.  Raises ``MatplotlibMissing`` without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise MatplotlibMissing(MISSING_MATPLOTLIB) from error
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)  # attaches itself to fig: savefig then writes Agg
    return fig


def _save(fig, path):
    """Write ``fig`` as a PNG to ``path`` at its own pixel size; return
    ``path``.  ``fig.clear()`` drops the artists now rather than at the
    next garbage collection (large image grids hold a lot of memory)."""
    fig.savefig(path, dpi=DPI, format="png")
    fig.clear()
    return path


def _no_ticks(ax):
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------
# Chapter 6: conv.py's sweeps of lmbda

def plot_sweep(sweep, path):
    """Draw a sweep of lmbda (``gpunn sweep``): the best validation
    accuracy of each value's runs and its test accuracy, against lmbda
    on a log scale; each run as a faint dot.  lmbda 0, which a log scale
    cannot place, is drawn as dashed horizontal lines.  800 x 500 pixels.

    ``sweep`` is ``gpunn.sweep.table``'s list: for each lmbda, ``lmbda``,
    ``validation`` and ``test`` (in %, the test accuracy None where not
    measured) and ``runs`` (the same, run by run).  Returns ``path``."""
    if not sweep:
        raise ValueError("plot_sweep: no values of lmbda to plot")
    fig = _new_figure(800, 500)
    ax = fig.subplots(1, 1)
    colors = {"validation": "tab:blue", "test": "tab:red"}
    labels = {"validation": "best validation accuracy",
              "test": "its test accuracy"}
    positive = [e for e in sweep if e["lmbda"] > 0]
    zero = [e for e in sweep if e["lmbda"] == 0]
    for part in ("validation", "test"):
        points = [(e["lmbda"], e[part]) for e in positive
                  if e[part] is not None]
        if points:
            ax.plot(*zip(*points), marker="o", color=colors[part],
                    label=labels[part])
        runs = [(e["lmbda"], r[part]) for e in positive for r in e["runs"]
                if r[part] is not None]
        if runs:
            ax.plot(*zip(*runs), linestyle="none", marker=".", alpha=0.35,
                    color=colors[part])
        for e in zero:
            if e[part] is not None:
                ax.axhline(e[part], linestyle="--", color=colors[part],
                           alpha=0.7, label="{}, lmbda 0".format(labels[part]))
    if positive:
        ax.set_xscale("log")
    ax.set_xlabel("lmbda (L2 regularization)")
    ax.set_ylabel("Accuracy (%)")
    ax.set_title("{}: {} epochs, {} run{} per value{}".format(
        sweep[0].get("name", "sweep"), sweep[0].get("epochs", "?"),
        len(sweep[0]["runs"]), "" if len(sweep[0]["runs"]) == 1 else "s",
        " (part of the images)" if any(e.get("limited") for e in sweep)
        else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Chapters 3 and 5: curves over epochs

def plot_history(records, path):
    """Draw a run's learning curves, as in chapter 3's figures: accuracy
    (%) per epoch on the left, training cost per epoch on the right.
    1200 x 500 pixels.

    ``records`` is a list of per-epoch dicts as in a run's log: ``epoch``
    (int), ``training_cost`` (float; runs of chapters 1 and 3 log none,
    and then only the accuracy is drawn), ``validation_accuracy`` (float
    in [0, 1]), ``test_accuracy`` (float or None: network3 measures it
    only when validation accuracy reaches a new best, so it is drawn as
    markers, not a line).  Returns ``path``."""
    if not records:
        raise ValueError("plot_history: no epoch records to plot")
    fig = _new_figure(1200, 500)
    has_cost = all("training_cost" in r for r in records)
    accuracy_ax, cost_ax = fig.subplots(1, 2) if has_cost else \
        (fig.subplots(1, 1), None)
    epochs = [r["epoch"] for r in records]

    accuracy_ax.plot(epochs, [100 * r["validation_accuracy"] for r in records],
                     color="tab:blue", label="validation accuracy")
    tested = [r for r in records if r.get("test_accuracy") is not None]
    if tested:
        accuracy_ax.plot([r["epoch"] for r in tested],
                         [100 * r["test_accuracy"] for r in tested],
                         linestyle="none", marker="o", color="tab:red",
                         label="test accuracy")
    accuracy_ax.set_title("Accuracy")
    accuracy_ax.set_xlabel("Epoch")
    accuracy_ax.set_ylabel("Accuracy (%)")
    accuracy_ax.grid(alpha=0.3)
    accuracy_ax.legend(loc="lower right")
    accuracy_ax.xaxis.get_major_locator().set_params(integer=True)
    if cost_ax is None:
        fig.tight_layout()
        return _save(fig, path)

    cost_ax.xaxis.get_major_locator().set_params(integer=True)
    cost_ax.plot(epochs, [r["training_cost"] for r in records],
                 color="tab:green", label="training cost")
    cost_ax.set_title("Cost on the training data")
    cost_ax.set_xlabel("Epoch")
    cost_ax.set_ylabel("Cost")
    cost_ax.grid(alpha=0.3)
    cost_ax.legend(loc="upper right")

    fig.tight_layout()  # moves axes inside the figure; the size stays fixed
    return _save(fig, path)


def plot_gradient_norms(records, path, layer_names=None):
    """Draw chapter 5's "speed of learning": for each layer, the mean norm
    of dC/dw over an epoch's mini-batches, per epoch, on a log scale (the
    vanishing gradient shows as lines far apart).  800 x 500 pixels.

    Uses the records that carry ``gradient_norms`` (a list of floats, one
    per layer, first layer first); ``layer_names`` labels the lines
    (default "layer 0", "layer 1", ...: network.layers[j], as the filter
    figures and gpunn's messages number them).  Raises ``ValueError`` if no
    record has gradient norms or their lengths disagree.  Returns
    ``path``."""
    normed = [r for r in records if r.get("gradient_norms")]
    if not normed:
        raise ValueError(
            "plot_gradient_norms: no epoch record has 'gradient_norms'; "
            "train with gradient norms recorded to draw this figure")
    n_layers = len(normed[0]["gradient_norms"])
    if any(len(r["gradient_norms"]) != n_layers for r in normed):
        raise ValueError("plot_gradient_norms: the records give gradient "
                         "norms for different numbers of layers")
    if layer_names is None:
        layer_names = ["layer {}".format(l) for l in range(n_layers)]
    elif len(layer_names) != n_layers:
        raise ValueError(
            "plot_gradient_norms: {} layer names for {} layers".format(
                len(layer_names), n_layers))

    fig = _new_figure(800, 500)
    ax = fig.subplots()
    epochs = [r["epoch"] for r in normed]
    for l, name in enumerate(layer_names):
        ax.plot(epochs, [r["gradient_norms"][l] for r in normed],
                marker=".", label=name)
    ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Speed of learning: mean norm of dC/dw per layer")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Mean gradient norm (log scale)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Chapter 6 (the book's conv.py): pictures of images and filters

#: The grid of the book's plot_errors: at most 5 x 8 = 40 digits.
ERROR_ROWS, ERROR_COLS = 5, 8


def plot_errors(images, labels, predictions, path):
    """Draw misclassified digits as the book's ``plot_errors`` does: up to
    40 of them in a 5 x 8 grid, the true label at the top right (blue) and
    the network's prediction at the bottom right (red).  800 x 500 pixels.

    ``images``: (n, 784) floats, one 28x28 digit per row; ``labels`` and
    ``predictions``: n ints.  The caller picks the misclassified ones;
    beyond the first 40 they are not drawn.  Returns ``path``."""
    images = numpy.asarray(images)
    labels, predictions = numpy.asarray(labels), numpy.asarray(predictions)
    if not len(images) == len(labels) == len(predictions):
        raise ValueError(
            "plot_errors: {} images, {} labels, {} predictions".format(
                len(images), len(labels), len(predictions)))
    fig = _new_figure(800, 500)
    axes = fig.subplots(ERROR_ROWS, ERROR_COLS).ravel()
    for j, ax in enumerate(axes):
        if j >= len(images):
            ax.axis("off")  # an empty cell, not an empty frame
            continue
        ax.matshow(images[j].reshape(28, 28), cmap="binary")
        # The book's places, in pixel coordinates of the 28x28 digit.
        ax.text(24, 5, str(int(labels[j])), color="tab:blue")
        ax.text(24, 24, str(int(predictions[j])), color="tab:red")
        _no_ticks(ax)
    fig.suptitle("Misclassified digits: true label (top, blue), "
                 "prediction (bottom, red)", fontsize=10)
    return _save(fig, path)


def filter_grid(n_filters):
    """Return (columns, rows) for ``n_filters`` pictures, a bit wider than
    tall like the book's calls: 20 -> (5, 4), 40 -> (8, 5)."""
    columns = min(n_filters, math.ceil(math.sqrt(n_filters * 1.25)))
    return columns, math.ceil(n_filters / columns)


def plot_filters(w, path, title=None):
    """Draw a conv layer's filters as the book's ``plot_filters`` does:
    for each filter j, its weights on the first input map, ``w[j, 0]``, as
    a small image (binary colormap: dark is a large weight).  800 x 500
    pixels.

    ``w``: the layer's weights, shape (F, C, KH, KW).  Returns ``path``."""
    w = numpy.asarray(w)
    if w.ndim != 4 or len(w) == 0:
        raise ValueError("plot_filters: want weights of shape "
                         "(F, C, KH, KW) with F > 0, got {}".format(w.shape))
    columns, rows = filter_grid(len(w))
    fig = _new_figure(800, 500)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for j, ax in enumerate(axes):
        if j < len(w):
            ax.matshow(w[j, 0], cmap="binary")
            _no_ticks(ax)
        else:
            ax.axis("off")
    fig.suptitle(title or "{} filters of {}x{}, first input map".format(
        len(w), w.shape[2], w.shape[3]))
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Chapters 3 and 5: the book's figure scripts (gpunn figure, gpunn.figures)
#
# Each takes a figure's results as gpunn.figures records them (the book's
# per-epoch lists: accuracies are counts of correct images, as network2's
# SGD returns them) and draws what the book's script drew: its axes, titles,
# colours, legends, log scales and axis limits.  Where a run's data fall
# outside the book's fixed limits (a --quick run), the limit widens so
# that no point is hidden.

#: The book's colours (fig/*.py).
BOOK_BLUE, BOOK_ORANGE = "#2A6EA6", "#FFA933"
BOOK_ETA_COLORS = ("#2A6EA6", "#FFCD33", "#FF7033")
BOOK_LAYER_COLORS = ("#2A6EA6", "#FFA933", "#FF5555", "#55FF55", "#5555FF")


def _book_limits(values, low, high):
    """The book's (low, high) axis limits, widened to hold ``values``."""
    values = [v for v in values if v is not None]
    return (min([low] + values), max([high] + values))


def _book_axes(ax, title, xlabel="Epoch"):
    ax.grid(True)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)


def plot_overfitting(results, path, title=None):
    """fig/overfitting.py's four plots, in a 2 x 2 grid: the cost on the
    training data and the accuracy (%) on the test data from the middle
    epoch on (the book's 200 of 400), the cost on the test data and the
    accuracy (%) on the training data from epoch 0.  1200 x 900 pixels.

    ``results``: ``training_cost``, ``test_cost`` (per epoch),
    ``training_accuracy``, ``test_accuracy`` (per epoch, images right),
    ``training_size``, ``test_size``.  Returns ``path``."""
    epochs = len(results["training_cost"])
    if not epochs:
        raise ValueError("plot_overfitting: no epochs to plot")
    start = epochs // 2
    percent = {
        "test": [100.0 * a / results["test_size"]
                 for a in results["test_accuracy"]],
        "training": [100.0 * a / results["training_size"]
                     for a in results["training_accuracy"]]}
    panels = [
        (results["training_cost"], start, "Cost on the training data"),
        (percent["test"], start, "Accuracy (%) on the test data"),
        (results["test_cost"], 0, "Cost on the test data"),
        (percent["training"], 0, "Accuracy (%) on the training data")]
    fig = _new_figure(1200, 900)
    for ax, (values, first, name) in zip(fig.subplots(2, 2).ravel(), panels):
        ax.plot(numpy.arange(first, epochs), values[first:], color=BOOK_BLUE)
        ax.set_xlim([first, max(epochs, first + 1)])
        _book_axes(ax, name)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_multiple_eta(results, path, title=None):
    """fig/multiple_eta.py: the training cost per epoch for each eta,
    dots joined by lines, the book's colours.  800 x 500 pixels.

    ``results["runs"]``: dicts with ``eta`` and ``training_cost`` (per
    epoch).  Returns ``path``."""
    runs = results["runs"]
    if not runs:
        raise ValueError("plot_multiple_eta: no runs to plot")
    fig = _new_figure(800, 500)
    ax = fig.subplots()
    for j, r in enumerate(runs):
        ax.plot(numpy.arange(len(r["training_cost"])), r["training_cost"],
                "o-", color=BOOK_ETA_COLORS[j % len(BOOK_ETA_COLORS)],
                label=r"$\eta$ = {:g}".format(r["eta"]))
    ax.set_xlim([0, max(len(r["training_cost"]) for r in runs)])
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Cost")
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_weight_initialization(results, path, title=None):
    """fig/weight_initialization.py: the classification accuracy (%) on
    the validation data per epoch, from the default and from the large
    initial weights; y from 85 to 100 as the book.  800 x 500 pixels.

    ``results``: ``evaluation_size``, and ``default`` and ``large``, each
    with ``evaluation_accuracy`` (per epoch, images right).  Returns
    ``path``."""
    n = results["evaluation_size"]
    curves = [("default", BOOK_BLUE, "Default initialization"),
              ("large", BOOK_ORANGE, "Large initialization")]
    percents = {key: [100.0 * a / n for a in results[key]["evaluation_accuracy"]]
                for key, _, _ in curves}
    fig = _new_figure(800, 500)
    ax = fig.subplots()
    for key, color, label in curves:
        ax.plot(numpy.arange(len(percents[key])), percents[key], color=color,
                label=label)
    ax.set_xlim([0, max(len(p) for p in percents.values())])
    ax.set_ylim(_book_limits(sum(percents.values(), []), 85, 100))
    ax.set_xlabel("Epoch")
    ax.set_title("Classification accuracy" + ("\n" + title if title else ""),
                 fontsize=10 if title else None)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_more_data(results, path, title=None):
    """fig/more_data.py's three plots side by side: the network's
    accuracy (%) on the validation data against the training-set size,
    on a linear and on a log scale (y 60 to 100), and beside an SVM's
    (log scale, y 25 to 100).  1800 x 500 pixels.

    ``results``: ``training_sizes``, ``network_accuracy`` and
    ``svm_accuracy`` (in %, one per size).  Returns ``path``."""
    sizes = results["training_sizes"]
    network, svm = results["network_accuracy"], results["svm_accuracy"]
    if not sizes:
        raise ValueError("plot_more_data: no training-set sizes to plot")
    fig = _new_figure(1800, 500)
    linear, log, both = fig.subplots(1, 3)
    for ax in (linear, log):
        ax.plot(sizes, network, color=BOOK_BLUE)
        ax.plot(sizes, network, "o", color=BOOK_ORANGE)
        ax.set_ylim(_book_limits(network, 60, 100))
        _book_axes(ax, "Accuracy (%) on the validation data",
                   "Training set size")
    linear.set_xlim(0, max(sizes))
    both.plot(sizes, network, color=BOOK_BLUE)
    both.plot(sizes, network, "o", color=BOOK_BLUE,
              label="Neural network accuracy (%)")
    both.plot(sizes, svm, color=BOOK_ORANGE)
    both.plot(sizes, svm, "o", color=BOOK_ORANGE, label="SVM accuracy (%)")
    both.set_ylim(_book_limits(network + svm, 25, 100))
    _book_axes(both, "Neural network and SVM", "Training set size")
    both.legend(loc="lower right")
    for ax in (log, both):
        ax.set_xscale("log")
        ax.set_xlim(min(sizes), max(max(sizes), min(sizes) + 1))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_speed_of_learning(results, path, title=None):
    """fig/generate_gradient.py's plots, side by side, one per network:
    the speed of learning of each hidden layer (the norm of its mean
    dC/db) before each epoch of training, on a log scale.  600 pixels
    wide per network, 500 high.

    ``results["runs"]``: dicts with ``sizes`` (the network) and
    ``norms`` (per epoch, a list with one norm per hidden layer).
    Returns ``path``."""
    runs = results["runs"]
    if not runs:
        raise ValueError("plot_speed_of_learning: no networks to plot")
    fig = _new_figure(600 * len(runs), 500)
    axes = numpy.atleast_1d(fig.subplots(1, len(runs)))
    for ax, r in zip(axes, runs):
        epochs, hidden = len(r["norms"]), len(r["sizes"]) - 2
        for j in range(hidden):
            ax.plot(numpy.arange(epochs), [n[j] for n in r["norms"]],
                    color=BOOK_LAYER_COLORS[j % len(BOOK_LAYER_COLORS)],
                    label="Hidden layer {}".format(j + 1))
        ax.set_xlim([0, max(epochs, 1)])
        ax.set_yscale("log")
        _book_axes(ax, "Speed of learning: {} hidden layers".format(hidden),
                   "Number of epochs of training")
        ax.legend(loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
