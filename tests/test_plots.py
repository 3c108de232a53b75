"""Tests of gpunn.plots: each figure is written as a real PNG file, read
back with matplotlib, and checked for its exact pixel size and for what
it shows (real MNIST digits for plot_errors)."""

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib.image  # noqa: E402

from gpunn import mnist_loader, plots  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def test_digits():
    """The first 100 images and labels of the bundled MNIST test set."""
    _, _, (x, y) = mnist_loader.load_host()
    return x[:100], y[:100].astype(int)


def read_png(path, height, width):
    """Check ``path`` is a PNG of ``height`` x ``width`` pixels that is not
    one flat colour; return its pixels, shape (height, width, 3), in
    [0, 1]."""
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0
    return pixels[:, :, :3]


def red_pixels(pixels):
    """How many pixels are clearly red (tab:red is about (0.84, 0.15, 0.16))."""
    r, g, b = pixels[:, :, 0], pixels[:, :, 1], pixels[:, :, 2]
    return int(np.sum((r > 0.7) & (g < 0.3) & (b < 0.3)))


def history(n_epochs=6, tested=(1, 4)):
    """Per-epoch records as a run's log holds them; test accuracy only in
    the epochs ``tested`` (None elsewhere), gradient norms in each."""
    return [{"epoch": e,
             "training_cost": 1.0 / (e + 1),
             "validation_accuracy": 0.9 + 0.01 * e,
             "test_accuracy": 0.9 + 0.011 * e if e in tested else None,
             "seconds": 2.5,
             "gradient_norms": [0.01 * 2.0 ** -e, 0.1, 1.0]}
            for e in range(n_epochs)]


# ---------------------------------------------------------------------------
# plot_history

def test_history_png_size_and_test_markers(tmp_path):
    path = tmp_path / "history.png"
    assert plots.plot_history(history(), path) == path
    pixels = read_png(path, 500, 1200)
    assert red_pixels(pixels) > 20  # the test-accuracy markers


def test_history_without_any_test_accuracy(tmp_path):
    path = str(tmp_path / "history.png")
    plots.plot_history(history(tested=()), path)
    assert red_pixels(read_png(path, 500, 1200)) == 0


def test_history_without_records_raises(tmp_path):
    with pytest.raises(ValueError, match="no epoch records"):
        plots.plot_history([], tmp_path / "history.png")


# ---------------------------------------------------------------------------
# plot_gradient_norms

def test_gradient_norms_png_size(tmp_path):
    path = tmp_path / "norms.png"
    records = history()
    del records[0]["gradient_norms"]  # an epoch without norms is left out
    names = ["conv 1", "full", "softmax"]
    assert plots.plot_gradient_norms(records, path, names) == path
    read_png(path, 500, 800)


def test_gradient_norms_missing_raise(tmp_path):
    records = [{k: v for k, v in r.items() if k != "gradient_norms"}
               for r in history()]
    with pytest.raises(ValueError, match="gradient_norms"):
        plots.plot_gradient_norms(records, tmp_path / "norms.png")
    assert not (tmp_path / "norms.png").exists()


def test_gradient_norms_wrong_number_of_names(tmp_path):
    with pytest.raises(ValueError, match="2 layer names for 3 layers"):
        plots.plot_gradient_norms(history(), tmp_path / "n.png", ["a", "b"])


# ---------------------------------------------------------------------------
# plot_errors, on real MNIST digits

def dark_pixels(pixels):
    return int(np.sum(pixels.mean(axis=2) < 0.5))


def test_errors_three_digits(tmp_path, test_digits):
    x, y = test_digits
    path = tmp_path / "errors3.png"
    assert plots.plot_errors(x[:3], y[:3], (y[:3] + 1) % 10, path) == path
    pixels = read_png(path, 500, 800)
    assert red_pixels(pixels) > 0  # the predictions are written in red


def test_errors_draws_at_most_forty(tmp_path, test_digits):
    x, y = test_digits
    wrong = (y + 1) % 10
    paths = [tmp_path / "errors{}.png".format(n) for n in (3, 40, 60)]
    for n, path in zip((3, 40, 60), paths):
        plots.plot_errors(x[:n], y[:n], wrong[:n], path)
    few, forty, sixty = (read_png(p, 500, 800) for p in paths)
    # 40 digits carry far more ink than 3; a 60th digit has nowhere to go.
    assert dark_pixels(forty) > 5 * dark_pixels(few)
    np.testing.assert_array_equal(sixty, forty)


def test_errors_lengths_must_agree(tmp_path, test_digits):
    x, y = test_digits
    with pytest.raises(ValueError, match="5 images, 4 labels"):
        plots.plot_errors(x[:5], y[:4], y[:5], tmp_path / "e.png")


# ---------------------------------------------------------------------------
# plot_filters

@pytest.mark.parametrize("n_filters, grid", [(20, (5, 4)), (40, (8, 5))])
def test_filters_grid_like_the_book(tmp_path, n_filters, grid):
    assert plots.filter_grid(n_filters) == grid
    w = np.random.default_rng(0).normal(size=(n_filters, 20, 5, 5))
    path = tmp_path / "filters.png"
    assert plots.plot_filters(w.astype(np.float32), path, "layer 2") == path
    read_png(path, 500, 800)


@pytest.mark.parametrize("n_filters", [1, 2, 3, 7, 16, 50])
def test_filter_grid_holds_every_filter(n_filters):
    columns, rows = plots.filter_grid(n_filters)
    assert columns * rows >= n_filters > columns * (rows - 1)


def test_filters_show_the_first_input_map(tmp_path):
    # Filters with a pattern in input map 0 and zeros in map 1: the picture
    # must show ink.  With the maps swapped, each filter drawn is flat, so
    # (scaled to its own range, as matshow does) it is blank.
    w = np.zeros((20, 2, 5, 5))
    w[:, 0] = np.random.default_rng(1).normal(size=(20, 5, 5))
    shown, hidden = tmp_path / "shown.png", tmp_path / "hidden.png"
    plots.plot_filters(w, shown)
    plots.plot_filters(w[:, ::-1], hidden)
    ink = dark_pixels(read_png(shown, 500, 800))
    assert ink > 2 * dark_pixels(read_png(hidden, 500, 800))


def test_filters_want_four_dimensions(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        plots.plot_filters(np.zeros((20, 5, 5)), tmp_path / "f.png")


# ---------------------------------------------------------------------------
# Without matplotlib

def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    # A None entry in sys.modules makes that import fail, as if missing.
    for name in ("matplotlib", "matplotlib.figure",
                 "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'gpunn\[bench\]'"):
        plots.plot_history(history(), tmp_path / "history.png")
    with pytest.raises(plots.MatplotlibMissing):
        plots.plot_filters(np.ones((20, 1, 5, 5)), tmp_path / "f.png")
