"""baselines.py
~~~~~~~~~~~~~~

Chapter 1's two baselines, what a network must beat: the book's
``mnist_average_darkness.py`` (guess the digit whose training images
are, on average, about as dark as this one: 22.25% of the test images)
and ``mnist_svm.py`` (scikit-learn's SVM with its defaults: 94.35%).

Both take the data as ``gpunn.mnist_loader.load_host`` gives it: pairs
``(x, y)`` of NumPy host arrays, x of shape (n, 784), one image per row,
y of shape (n,), the digits.  The SVM needs scikit-learn (``pip install
'gpunn[svm]'``), imported only when an SVM is made.
"""

import contextlib

import numpy

from gpunn.errors import ConfigError

#: The book's numbers: the fraction of its 10,000 test images each
#: baseline gets right, trained on the 50,000 training images.
BOOK_ACCURACY = {"darkness": 0.2225, "svm": 0.9435}

#: The SVM's kernel width.  The book's scikit-learn (2015) took gamma =
#: 1/n_features when none was given, what later versions call "auto";
#: since 0.22 SVC() defaults to "scale", 1/(n_features * x.var()), a
#: different classifier.  With "auto" gpunn gets the book's 9,435 of
#: 10,000 (docs/RESULTS.md).
BOOK_GAMMA = "auto"


# ---------------------------------------------------------------- average darkness

def darkness(x):
    """The darkness of each image of ``x`` (n, 784): the sum of its
    pixels, shape (n,), float64.  MNIST's pixels are k/256, so the sum is
    exact in float64 whatever the order of the additions, as the book's
    ``sum(image)`` is."""
    return numpy.asarray(x).sum(axis=1, dtype=numpy.float64)


def average_darknesses(training_data):
    """The book's ``avg_darknesses``: ``(digits, averages)``, the digits
    that occur in ``training_data`` = (x, y), ascending, shape (k,), and
    the mean darkness of their images, shape (k,), float64.  A digit with
    no training image has no average, and is never guessed (the book's
    defaultdict holds only the digits it has seen)."""
    x, y = training_data
    y = numpy.asarray(y)
    counts = numpy.bincount(y, minlength=10)
    totals = numpy.bincount(y, weights=darkness(x), minlength=10)
    digits = numpy.flatnonzero(counts)
    return digits, totals[digits] / counts[digits]


def darkness_guesses(training_data, x):
    """The book's ``guess_digit`` for every image of ``x`` (n, 784): the
    digit whose average darkness in ``training_data`` is nearest the
    image's, shape (n,).  Of two digits equally near, the smaller: the
    book's ``min`` over a dict of the keys 0..9 takes the first it meets,
    and Python 2 met small integer keys in ascending order."""
    digits, averages = average_darknesses(training_data)
    if not len(digits):
        raise ConfigError("the average-darkness baseline needs at least one "
                          "training image")
    distances = numpy.abs(averages[None, :] - darkness(x)[:, None])  # (n, k)
    return digits[distances.argmin(axis=1)]  # argmin: the first of equals


def average_darkness(training_data, test_data):
    """The average-darkness baseline: the fraction of ``test_data`` =
    (x, y) it gets right, trained on ``training_data`` = (x, y); each x
    of shape (n, 784), y of shape (n,).  On the book's MNIST (training,
    test) it is 0.2225, 2,225 of 10,000."""
    x, y = test_data
    if not len(y):
        raise ConfigError("no test images to classify")
    return float(numpy.mean(darkness_guesses(training_data, x) == y))


# ---------------------------------------------------------------- the SVM

def svm_classifier(*, gamma=BOOK_GAMMA):
    """scikit-learn's ``SVC`` with its defaults, as the book makes it
    (an RBF kernel, C = 1, one-vs-one over the ten digits), the kernel
    width as the book's version chose it (BOOK_GAMMA)."""
    try:
        from sklearn.svm import SVC
    except ImportError:
        raise ConfigError("the SVM baseline needs scikit-learn: pip install "
                          "'gpunn[svm]'") from None
    return SVC(gamma=gamma)


def svm_fit(training, *, gamma=BOOK_GAMMA, fitting=contextlib.nullcontext):
    """An SVM (svm_classifier) fitted to ``training`` = (x, y), x of
    shape (n, 784), y of shape (n,): minutes on the full 50,000 images.
    The fit runs inside ``with fitting():`` (a progress display, say),
    once the data and scikit-learn have been found good to go."""
    x, y = training
    if len(numpy.unique(y)) < 2:
        raise ConfigError("an SVM needs training images of at least two "
                          "digits, got {} image(s) of {}".format(
                              len(y), ", ".join(map(str, numpy.unique(y)))
                              or "none"))
    clf = svm_classifier(gamma=gamma)
    with fitting():
        return clf.fit(x, y)


def svm_accuracy(training, evaluation, *, gamma=BOOK_GAMMA):
    """The book's SVM baseline: the fraction of ``evaluation`` = (x, y)
    that an SVM fitted to ``training`` = (x, y) gets right, a float in
    [0, 1]; each x of shape (n, 784), y of shape (n,).  Trained on the
    book's 50,000 training images and tested on its 10,000 test images
    the book got 0.9435."""
    x, y = evaluation
    if not len(y):
        raise ConfigError("no images to evaluate the SVM on")
    return float(numpy.mean(svm_fit(training, gamma=gamma).predict(x) == y))
