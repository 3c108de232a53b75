"""Chapter 1's baselines (gpunn.baselines, gpunn baseline): the average
darkness against a plain loop written as the book's is, and the book's
2,225 of 10,000 on the real MNIST; the SVM against scikit-learn's SVC
used directly; the command as a user runs it (the system tier)."""

import os
import signal
import subprocess
import sys
from collections import defaultdict

import numpy
import pytest

from gpunn import baselines, mnist_loader
from tests.helpers import ctrl_c_as_at_a_terminal
from tests.test_cli import gpunn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mnist():
    """The book's MNIST on the host: (training, validation, test)."""
    return mnist_loader.load_host()


def book_guesses(training_data, x):
    """The book's avg_darknesses and guess_digit, loop by loop: a dict of
    the average darkness of each digit seen, then for each image the
    digit of the smallest distance, the first of equals in the order
    0..9 (Python 2's, for these keys)."""
    counts, sums = defaultdict(int), defaultdict(float)
    for image, digit in zip(*training_data):
        counts[int(digit)] += 1
        sums[int(digit)] += sum(float(p) for p in image)
    avgs = {d: sums[d] / counts[d] for d in sorted(counts)}
    guesses = []
    for image in x:
        dark = sum(float(p) for p in image)
        distances = {k: abs(v - dark) for k, v in avgs.items()}
        guesses.append(min(distances, key=distances.get))
    return numpy.array(guesses)


def test_darkness_guesses_are_the_books_loops(mnist):
    (x, y), _, (tx, ty) = mnist
    training = (x[:3000], y[:3000])
    assert numpy.array_equal(baselines.darkness_guesses(training, tx[:500]),
                             book_guesses(training, tx[:500]))
    # The fraction counts those guesses.
    assert baselines.average_darkness(training, (tx[:500], ty[:500])) == \
        numpy.mean(book_guesses(training, tx[:500]) == ty[:500])


def test_average_darkness_on_the_books_mnist_is_the_books_2225(mnist):
    training, _, (tx, ty) = mnist
    assert int((baselines.darkness_guesses(training, tx) == ty).sum()) == 2225
    assert baselines.average_darkness(training, (tx, ty)) == 0.2225 == \
        baselines.BOOK_ACCURACY["darkness"]


def test_darkness_ties_and_missing_digits():
    # Images of darkness 1, 3 and 5 (one pixel each); digit 7 is 1 on
    # average, digit 2 is 5, no other digit occurs.
    x = numpy.zeros((3, 784), numpy.float32)
    x[:, 0] = (1.0, 5.0, 5.0)
    training = (x, numpy.array([7, 2, 2]))
    test = numpy.zeros((3, 784), numpy.float32)
    test[:, 0] = (1.0, 3.0, 5.0)
    # 3 is as near 1 as 5: the smaller digit, 2, as the book's min gives.
    assert baselines.darkness_guesses(training, test).tolist() == [7, 2, 2]
    assert baselines.darkness_guesses(training, test).tolist() == \
        book_guesses(training, test).tolist()
    digits, averages = baselines.average_darknesses(training)
    assert digits.tolist() == [2, 7] and averages.tolist() == [5.0, 1.0]


def test_darkness_refuses_empty_data():
    empty = (numpy.zeros((0, 784), numpy.float32), numpy.zeros(0, int))
    one = (numpy.ones((1, 784), numpy.float32), numpy.array([3]))
    with pytest.raises(baselines.ConfigError, match="at least one training"):
        baselines.average_darkness(empty, one)
    with pytest.raises(baselines.ConfigError, match="no test images"):
        baselines.average_darkness(one, empty)


def test_svm_accuracy_is_sklearns_svc_with_the_books_gamma(mnist):
    svm = pytest.importorskip("sklearn.svm")
    (x, y), (vx, vy), _ = mnist
    training, evaluation = (x[:1000], y[:1000]), (vx[:300], vy[:300])
    accuracy = baselines.svm_accuracy(training, evaluation)
    # The book's SVC(): scikit-learn of 2015 took gamma = 1/n_features.
    direct = svm.SVC(gamma=1 / 784).fit(*training).predict(vx[:300])
    assert isinstance(accuracy, float) and 0.7 < accuracy <= 1
    assert accuracy == numpy.mean(direct == vy[:300])
    assert baselines.svm_classifier().get_params() == \
        svm.SVC(gamma="auto").get_params()


def test_svm_refuses_a_single_digit_and_says_what_to_install(monkeypatch):
    pytest.importorskip("sklearn")
    x = numpy.ones((5, 784), numpy.float32)
    with pytest.raises(baselines.ConfigError, match="at least two digits"):
        baselines.svm_fit((x, numpy.full(5, 4)))
    monkeypatch.setitem(sys.modules, "sklearn.svm", None)  # not installed
    with pytest.raises(baselines.ConfigError,
                       match=r"pip install 'gpunn\[svm\]'"):
        baselines.svm_accuracy((x, numpy.arange(5)), (x, numpy.arange(5)))


# ---------------------------------------------------------------- the command

@pytest.mark.system
def test_baseline_darkness_prints_the_books_lines():
    p = gpunn("baseline", "darkness")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "Baseline classifier using average darkness of image.",
        "2225 of 10000 values correct.",
        "22.25% correct (the book: 22.25%)."]
    p = gpunn("baseline", "darkness", "--limit", "3000", "--eval-limit", "500")
    assert p.returncode == 0, p.stderr
    (x, y), _, (tx, ty) = mnist_loader.load_host()
    correct = (book_guesses((x[:3000], y[:3000]), tx[:500]) == ty[:500]).sum()
    assert p.stdout.splitlines()[1:] == [
        "{} of 500 values correct.".format(correct),
        "{:.2%} correct (the book's 22.25% is on all of its MNIST).".format(
            correct / 500)]


@pytest.mark.system
def test_baseline_svm_on_a_slice_and_on_own_data(tmp_path):
    svm = pytest.importorskip("sklearn.svm")
    (x, y), (vx, vy), (tx, ty) = mnist_loader.load_host()
    p = gpunn("baseline", "svm", "--limit", "1000", "--eval-limit", "700")
    assert p.returncode == 0, p.stderr
    correct = (svm.SVC(gamma=1 / 784).fit(x[:1000], y[:1000])
               .predict(tx[:700]) == ty[:700]).sum()
    assert p.stdout.splitlines()[:2] == [
        "Baseline classifier using an SVM.",
        "{} of 700 values correct.".format(correct)]
    assert p.stderr.splitlines()[::2] == [
        "gpunn: fitting on 1,000 images...", "gpunn: predicting 700 images..."]
    assert "the SVM is slow" not in p.stderr  # said for the full data only
    # A data set of one's own, as gpunn train --data takes it.
    numpy.savez(tmp_path / "own.npz", training_x=x[-800:],
                training_y=y[-800:], validation_x=vx[:10],
                validation_y=vy[:10], test_x=tx[-300:], test_y=ty[-300:])
    p = gpunn("baseline", "svm", "--data", tmp_path / "own.npz")
    assert p.returncode == 0, p.stderr
    correct = (svm.SVC(gamma=1 / 784).fit(x[-800:], y[-800:])
               .predict(tx[-300:]) == ty[-300:]).sum()
    assert "{} of 300 values correct.".format(correct) in p.stdout
    assert "own.npz (800 training, 300 test images), not the book's MNIST" \
        in p.stderr


@pytest.mark.system
@pytest.mark.parametrize("args, message", [
    (["svn"], "no baseline named 'svn' (did you mean svm?); the baselines "
              "are darkness and svm"),
    (["darkness", "--data", "/nonexistent/digits.pkl.gz"],
     "/nonexistent/digits.pkl.gz: no such file"),
    (["svm", "--data", "/nonexistent/digits.npz"],
     "/nonexistent/digits.npz: cannot read as an .npz file"),
    (["svm", "--limit", "1"], "an SVM needs training images of at least two "
                              "digits, got 1 image(s) of 5"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    p = gpunn("baseline", *args)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.startswith("gpunn: error: " + message), p.stderr
    assert len(p.stderr.splitlines()) == 1, p.stderr


@pytest.mark.system
@pytest.mark.parametrize("option", ["--limit", "--eval-limit"])
def test_a_limit_below_1_is_refused_by_the_parser(option):
    p = gpunn("baseline", "darkness", option, "0")
    assert p.returncode == 2
    # argparse's usage line, then its one line of error.
    assert p.stderr.splitlines()[-1] == \
        "gpunn baseline: error: argument {}: must be at least 1, got 0".format(
            option)
    assert p.stderr.count("error") == 1


@pytest.mark.system
def test_ctrl_c_stops_the_svm_while_it_fits():
    """scikit-learn's fit holds the process in C for minutes; Ctrl-C
    (SIGINT) ends it at once all the same."""
    pytest.importorskip("sklearn")
    env = dict(os.environ, PYTHONPATH=REPO)
    p = subprocess.Popen([sys.executable, "-m", "gpunn", "baseline", "svm",
                          "--eval-limit", "10"], env=env, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         preexec_fn=ctrl_c_as_at_a_terminal)
    try:
        said = [p.stderr.readline() for _ in range(2)]
        assert "minutes to fit" in said[0]
        assert said[1] == "gpunn: fitting on 50,000 images...\n", said
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=20) == -signal.SIGINT
    finally:
        p.kill()
        p.wait()
