"""baseline.py
~~~~~~~~~~~~~~

``gpunn baseline darkness|svm``: chapter 1's two baselines
(gpunn.baselines), trained on the training images and tested on the test
images, with the book's lines: "Baseline classifier using average
darkness of image." (22.25%) and "... using an SVM." (94.35%).
"""

import contextlib
import difflib
import os
import signal
import sys
import threading
import time

from gpunn import baselines, errors, mnist_loader
from gpunn.commands import common
from gpunn.commands.common import positive_int

BASELINES = ("darkness", "svm")
TITLES = {"darkness": "Baseline classifier using average darkness of image.",
          "svm": "Baseline classifier using an SVM."}

#: Minutes to fit the SVM on the 50,000 training images and to predict
#: the 10,000 test images, and the CPU minutes of the two, measured on a
#: 2-core AMD EPYC busy with other work (docs/RESULTS.md, "Chapter 1's
#: baselines").
SVM_MINUTES = {"fit": 8, "predict": 2, "cpu": 4.4}
#: Images the SVM predicts at a time, for the progress bar.
PREDICT_CHUNK = 500


def add_parser(subparsers):
    c = subparsers.add_parser(
        "baseline", help="chapter 1's baselines: average darkness, an SVM",
        description="Chapter 1's baselines, trained on the training images "
        "and tested on the test images: the average darkness of each digit "
        "(the book: 22.25%) or scikit-learn's SVM with the book's settings "
        "(the book: 94.35%; needs pip install 'gpunn[svm]', and minutes "
        "on the full data).")
    c.add_argument("name", metavar="BASELINE", help="darkness or svm")
    c.add_argument("--limit", type=positive_int, metavar="N",
                   help="train on the first N training images only")
    c.add_argument("--eval-limit", type=positive_int, metavar="N",
                   help="test on the first N test images only")
    common.data_option(c, "train and test on")
    c.set_defaults(command=run)


def run(args):
    if args.name not in BASELINES:
        close = difflib.get_close_matches(args.name, BASELINES, n=1)
        raise errors.ConfigError("no baseline named {!r}{}; the baselines are "
                                 "{}".format(args.name, " (did you mean {}?)"
                                             .format(close[0]) if close else "",
                                             " and ".join(BASELINES)))
    training, test = _data(args)
    print(TITLES[args.name], flush=True)
    if args.name == "darkness":
        guesses = baselines.darkness_guesses(training, test[0])
    else:
        guesses = _svm(training, test[0])
    correct = int((guesses == test[1]).sum())
    print("{} of {} values correct.".format(correct, len(test[1])))
    book = baselines.BOOK_ACCURACY[args.name]
    print("{:.2%} correct ({}).".format(correct / len(test[1]), (
        "the book's {:.2%} is on all of its MNIST" if args.limit or
        args.eval_limit or args.data else "the book: {:.2%}").format(book)))
    return 0


def _data(args):
    """The training and test pairs ``(x, y)`` on the host, cut to the
    limits; with a notice, on stderr, when they are not the book's."""
    training, _, test = mnist_loader.load_host(args.data)
    if args.data and mnist_loader.sha256_of(args.data) != \
            mnist_loader.MNIST_SHA256:
        print("gpunn: using {} ({} training, {} test images), not the book's "
              "MNIST".format(os.path.abspath(args.data), len(training[0]),
                             len(test[0])), file=sys.stderr)
    training = tuple(a[:args.limit] for a in training)
    test = tuple(a[:args.eval_limit] for a in test)
    if not len(test[1]):
        raise errors.DataError("{}: no test images".format(args.data))
    return training, test


def _svm(training, x):
    """The SVM's guesses for ``x``, fitted to ``training``; on stderr,
    what that takes, up front, then the seconds fitting and the images
    predicted so far."""
    import numpy
    n = len(training[1])
    if n > 10000:
        print("gpunn: the SVM is slow: on the 50,000 training images it took "
              "{fit} minutes to fit and {predict} to predict the 10,000 test "
              "images ({cpu} minutes of CPU) on a busy 2-core AMD EPYC; the "
              "time grows about as the square of the training images "
              "(--limit N for less)".format(**SVM_MINUTES), file=sys.stderr)
    clf = baselines.svm_fit(training, fitting=lambda: _fitting(n))
    guesses = []
    with _Elapsed("predicting {:,} images".format(len(x)),
                  lambda: "{:,} done, ".format(sum(map(len, guesses)))):
        for j in range(0, len(x), PREDICT_CHUNK):  # each image on its own
            guesses.append(clf.predict(x[j:j + PREDICT_CHUNK]))
    return numpy.concatenate(guesses)


@contextlib.contextmanager
def _fitting(n):
    """While the SVM fits on ``n`` images: the seconds so far, and
    Ctrl-C ends the process at once.  scikit-learn's fit runs in C and
    returns to Python only when done, so Python's KeyboardInterrupt would
    wait for the end of the fit; the system's default for SIGINT does not
    (nothing is written that could be left half done)."""
    handler = signal.getsignal(signal.SIGINT)
    ours = handler is signal.default_int_handler and \
        threading.current_thread() is threading.main_thread()
    if ours:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        with _Elapsed("fitting on {:,} images".format(n)):
            yield
    finally:
        if ours:
            signal.signal(signal.SIGINT, handler)


class _Elapsed:
    """``with _Elapsed("fitting on 50,000 images"):`` says so on stderr
    and, while the block runs, the seconds it has taken (after
    ``so_far()``'s words, if given): every second on a terminal, every
    minute in a log.  scikit-learn reports no progress of its own, but
    lets this thread run while it computes."""

    def __init__(self, what, so_far=lambda: ""):
        self.what, self.so_far, self.stop = what, so_far, threading.Event()
        self.tty = sys.stderr.isatty()

    def __enter__(self):
        self.start = time.monotonic()
        print("gpunn: {}...".format(self.what), end="" if self.tty else "\n",
              file=sys.stderr, flush=True)
        self.thread = threading.Thread(target=self._tick, daemon=True)
        self.thread.start()
        return self

    def _tick(self):
        while not self.stop.wait(1 if self.tty else 60):
            self._say("{}{:.0f} s".format(self.so_far(),
                                          time.monotonic() - self.start))

    def _say(self, text, end=""):
        line = "gpunn: {}... {}".format(self.what, text)
        if self.tty:  # over the line before, all of it
            self.width = max(len(line), getattr(self, "width", 0))
            print("\r" + line.ljust(self.width), end=end, file=sys.stderr,
                  flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._say("{} in {:.0f} s".format("done" if exc[0] is None else
                                          "stopped",
                                          time.monotonic() - self.start),
                  end="\n")
        return False
