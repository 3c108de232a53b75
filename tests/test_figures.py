"""Tests of gpunn.figures and ``gpunn figure``: each figure's --quick run
replayed step by step with network2 (and, for more_data, scikit-learn)
called directly in the test, in the book's list-of-columns format; the
speed of learning of a tiny network against per-example backprop and
central differences; the PNGs' pixel sizes; the command in subprocesses
and its one-line errors."""

import json
import os

import numpy
import pytest

import gpunn
from gpunn import backend, figures, network2
from gpunn.errors import ConfigError, DataError
from tests.helpers import numerical_gradient, relative_error
from tests.test_cli import gpunn as run_gpunn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SILENT = lambda line: None  # noqa: E731

#: Each figure's PNG, (height, width) in pixels.
PNG_SIZES = {"overfitting": (900, 1200), "multiple_eta": (500, 800),
             "weight_initialization": (500, 800), "more_data": (500, 1800),
             "vanishing_gradient": (500, 1800)}


@pytest.fixture(scope="module")
def host():
    """The bundled MNIST, as load_host gives it (NumPy arrays)."""
    return gpunn.mnist_loader.load_host()


def book_lists(host, settings, training_size=None):
    """The book's ``load_data_wrapper()`` lists, made here from the host
    arrays: training (x column, one-hot column), validation and test
    (x column, digit), the test and validation parts cut to the
    figure's evaluation size."""
    (tx, ty), (vx, vy), (ex, ey) = host
    n = training_size or settings["training_size"]
    m = settings.get("evaluation_size")
    training = [(x.reshape(784, 1).astype(float),
                 numpy.eye(10)[y].reshape(10, 1)) for x, y in zip(tx[:n], ty[:n])]
    validation = [(x.reshape(784, 1).astype(float), int(y))
                  for x, y in zip(vx[:m], vy[:m])]
    test = [(x.reshape(784, 1).astype(float), int(y))
            for x, y in zip(ex[:m], ey[:m])]
    return training, validation, test


def quick(name, host):
    """The --quick settings and results of figure ``name`` on NumPy in
    float64."""
    gpunn.use("numpy", "float64")
    s = figures.settings(name, quick=True)
    return s, figures.run(name, s, figures.Data(host), say=SILENT)


def book_net(sizes, init):
    net = network2.Network(sizes, cost=network2.CrossEntropyCost)
    if init == "large":
        net.large_weight_initializer()
    return net


def silent_sgd(net, *args, **kwargs):
    with figures._book_lines(False):
        return net.SGD(*args, **kwargs)


# ---------------------------------------------------------------- settings

def test_the_default_settings_are_the_scripts():
    s = {name: figures.settings(name) for name in figures.FIGURES}
    assert (s["overfitting"]["training_size"], s["overfitting"]["epochs"],
            s["overfitting"]["eta"], s["overfitting"]["init"],
            s["overfitting"]["evaluation"]) == (1000, 400, 0.5, "large", "test")
    assert s["multiple_eta"]["etas"] == [0.025, 0.25, 2.5]
    assert (s["multiple_eta"]["epochs"], s["multiple_eta"]["lmbda"]) == (30, 5.0)
    assert (s["weight_initialization"]["eta"],
            s["weight_initialization"]["lmbda"]) == (0.1, 5.0)  # the text's
    assert s["more_data"]["training_sizes"][0] == 100
    assert s["more_data"]["training_sizes"][-1] == 50000
    assert s["more_data"]["epoch_budget"] // 100 == 15000
    assert s["vanishing_gradient"]["sizes"][-1] == [784, 30, 30, 30, 30, 10]
    assert (s["vanishing_gradient"]["epochs"],
            s["vanishing_gradient"]["mini_batch_size"]) == (500, 1000)
    assert {v["seed"] for v in s.values()} == {12345678}


def test_settings_refuse_what_does_not_apply():
    with pytest.raises(ConfigError, match="did you mean overfitting"):
        figures.settings("overfit")
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        figures.settings("overfitting", epochs=0)
    with pytest.raises(ConfigError, match="does not apply to more_data"):
        figures.settings("more_data", epochs=3)
    with pytest.raises(ConfigError, match="lmbda = size [*] 0.0001"):
        figures.settings("more_data", lmbda=1.0)
    with pytest.raises(ConfigError, match="--eta does not apply to multiple"):
        figures.settings("multiple_eta", eta=0.1)
    with pytest.raises(ConfigError, match="--eta must be a finite number > 0"):
        figures.settings("overfitting", eta=0.0)
    assert figures.settings("overfitting", lmbda=0.1)["lmbda"] == 0.1
    s = figures.settings("overfitting", quick=True, epochs=2, seed=5)
    assert (s["epochs"], s["seed"], s["training_size"]) == (2, 5, 100)
    assert figures.FIGURES["overfitting"].settings["epochs"] == 400  # untouched


# ---------------------------------------------------------------- the runs, replayed

def test_overfitting_is_network2_with_its_four_monitors(host):
    s, results = quick("overfitting", host)
    training, _, test = book_lists(host, s)
    backend.reseed(s["seed"])
    net = book_net(s["sizes"], "large")
    expected = silent_sgd(net, training, s["epochs"], 10, s["eta"],
                          lmbda=s["lmbda"], evaluation_data=test,
                          monitor_evaluation_cost=True,
                          monitor_evaluation_accuracy=True,
                          monitor_training_cost=True,
                          monitor_training_accuracy=True)
    assert [results["test_cost"], results["test_accuracy"],
            results["training_cost"], results["training_accuracy"]] == \
        list(expected)
    assert len(results["test_accuracy"]) == s["epochs"]
    assert (results["test_size"], results["training_size"]) == (200, 100)


def test_multiple_eta_trains_one_network_per_eta_in_turn(host):
    s, results = quick("multiple_eta", host)
    training, _, _ = book_lists(host, s)
    backend.reseed(s["seed"])
    for eta, run in zip(s["etas"], results["runs"], strict=True):
        net = book_net(s["sizes"], "default")
        _, _, cost, _ = silent_sgd(net, training, s["epochs"], 10, eta,
                                   lmbda=s["lmbda"], monitor_training_cost=True)
        assert run == {"eta": eta, "training_cost": cost}


def test_weight_initialization_retrains_the_same_network_drawn_large(host):
    s, results = quick("weight_initialization", host)
    training, validation, _ = book_lists(host, s)
    backend.reseed(s["seed"])
    net = book_net(s["sizes"], "default")
    _, default, _, _ = silent_sgd(net, training, s["epochs"], 10, s["eta"],
                                  lmbda=s["lmbda"], evaluation_data=validation,
                                  monitor_evaluation_accuracy=True)
    net.large_weight_initializer()
    _, large, _, _ = silent_sgd(net, training, s["epochs"], 10, s["eta"],
                                lmbda=s["lmbda"], evaluation_data=validation,
                                monitor_evaluation_accuracy=True)
    assert results == {"evaluation_size": 200,
                       "default": {"evaluation_accuracy": default},
                       "large": {"evaluation_accuracy": large}}


def test_more_data_network_and_svm(host):
    svm = pytest.importorskip("sklearn.svm")
    s, results = quick("more_data", host)
    (tx, ty), (vx, vy), _ = host
    m = s["evaluation_size"]
    backend.reseed(s["seed"])
    net = book_net(s["sizes"], "default")
    expected = []
    for size in s["training_sizes"]:
        training, validation, _ = book_lists(host, s, training_size=size)
        net.large_weight_initializer()
        silent_sgd(net, training, s["epoch_budget"] // size, 10, s["eta"],
                   lmbda=size * 0.0001)
        expected.append(100.0 * net.accuracy(validation) / m)
    assert results["network_accuracy"] == expected
    assert results["epochs"] == [200 // 20, 200 // 50]
    # The book's SVM: scikit-learn's SVC, gamma as its 2015 default (1/784).
    svm_expected = [100.0 * numpy.mean(
        svm.SVC(gamma=1 / 784).fit(tx[:n], ty[:n]).predict(vx[:m]) == vy[:m])
        for n in s["training_sizes"]]
    assert results["svm_accuracy"] == pytest.approx(svm_expected)


def test_vanishing_gradient_measures_before_each_epoch(host):
    s, results = quick("vanishing_gradient", host)
    training, _, _ = book_lists(host, s)
    xs = numpy.hstack([x for x, _ in training])
    ys = numpy.hstack([y for _, y in training])
    backend.reseed(s["seed"])
    for sizes, run in zip(s["sizes"], results["runs"], strict=True):
        net = book_net(sizes, "default")
        for epoch in range(s["epochs"]):
            # The book's get_average_gradient: per-example backprop, summed.
            nabla_b = [sum(net.backprop(x, y)[0][l] for x, y in training)
                       for l in range(len(sizes) - 2)]
            norms = [numpy.linalg.norm(nb / len(training)) for nb in nabla_b]
            assert run["norms"][epoch] == pytest.approx(norms, rel=1e-10)
            silent_sgd(net, (xs.T, ys.T), 1, s["mini_batch_size"], s["eta"],
                       lmbda=s["lmbda"])
        assert run["initial_norms"] == run["norms"][0]
    # The chapter's point, already at the start: the first hidden layer of
    # four learns more slowly than the last.
    first, *_, last = results["runs"][-1]["initial_norms"]
    assert last > 10 * first


def test_speed_of_learning_is_the_norm_of_the_mean_bias_gradient():
    gpunn.use("numpy", "float64", seed=3)
    net = network2.Network([6, 5, 4, 3])
    rng = numpy.random.default_rng(1)
    x = rng.random((7, 6))
    y = numpy.eye(3)[rng.integers(0, 3, 7)]
    measured = figures.speed_of_learning(net, x, y)
    # total_cost with lmbda 0 is the mean cost over the examples: its
    # gradient in the hidden layers' biases, by central differences.
    expected = [numpy.linalg.norm(numerical_gradient(
        lambda: net.total_cost((x, y), 0.0), layer.b))
        for layer in net.layers[:-1]]
    assert len(measured) == 2
    assert relative_error(numpy.array(measured), numpy.array(expected)) < 1e-7


def test_a_figure_is_the_same_on_every_backend(host, backend_name):
    # vanishing_gradient's quick run: backprop and SGD on the backend.
    _, on_numpy = quick("vanishing_gradient", host)
    gpunn.use(backend_name, "float64")
    s = figures.settings("vanishing_gradient", quick=True)
    results = figures.run("vanishing_gradient", s, figures.Data(host),
                          say=SILENT)
    for a, b in zip(results["runs"], on_numpy["runs"], strict=True):
        assert numpy.array(a["norms"]) == pytest.approx(
            numpy.array(b["norms"]), rel=1e-9)


# ---------------------------------------------------------------- files

@pytest.mark.parametrize("name", ["overfitting", "vanishing_gradient"])
def test_a_figure_writes_its_json_and_a_png_of_its_size(name, host, tmp_path):
    # The others' PNGs: test_gpunn_figure_quick (system tier).
    matplotlib_image = pytest.importorskip("matplotlib.image")
    height, width = PNG_SIZES[name]
    s, results = quick(name, host)
    folder = figures.FigureFolder(str(tmp_path / "new"), name).make()
    record = figures.record(name, s, True, results, 1.5, "cpu")
    json_path, png_path = folder.write(record)
    assert folder.read() == json.loads(json.dumps(record))
    assert sorted(os.listdir(tmp_path / "new")) == [name + ".json",
                                                    name + ".png"]
    pixels = matplotlib_image.imread(png_path)
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0


def test_the_data_has_no_more_images_than_mnist(host):
    gpunn.use("numpy", "float64")
    data = figures.Data(host)
    x, y = data.training(3)
    assert x.shape == (3, 784) and (y.argmax(axis=1) == host[0][1][:3]).all()
    with pytest.raises(ConfigError, match="50001 training images asked for"):
        data.training(50001)


def test_the_folder_refuses_what_it_cannot_write_or_read(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write there"):
        figures.FigureFolder(str(blocker / "out"), "overfitting").make()
    with pytest.raises(DataError, match="train it first"):
        figures.FigureFolder(str(tmp_path), "overfitting").read()
    (tmp_path / "overfitting.json").write_text('{"figure": "more_data"}')
    with pytest.raises(DataError, match="not the data of figure overfitting"):
        figures.FigureFolder(str(tmp_path), "overfitting").read()


# ---------------------------------------------------------------- the command

@pytest.mark.system
@pytest.mark.parametrize("name", list(PNG_SIZES))
def test_gpunn_figure_quick(name, tmp_path):
    matplotlib_image = pytest.importorskip("matplotlib.image")
    p = run_gpunn("figure", name, "--quick", "--backend", "numpy",
                      cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    out = tmp_path / "runs" / ("figure-" + name)  # the default --out
    assert "Wrote {}".format(os.path.join("runs", "figure-" + name,
                                          name + ".png")) in p.stdout
    record = json.loads((out / (name + ".json")).read_text())
    assert (record["figure"], record["quick"], record["dtype"],
            record["backend"]) == (name, True, "float64", "numpy")
    assert record["settings"] == figures.settings(name, quick=True)
    assert matplotlib_image.imread(out / (name + ".png")).shape[:2] == \
        PNG_SIZES[name]
    if name == "overfitting":  # --replot draws the PNG again from the JSON
        os.remove(out / (name + ".png"))
        p = run_gpunn("figure", name, "--replot", "--out", out)
        assert p.returncode == 0, p.stderr
        assert matplotlib_image.imread(out / (name + ".png")).shape[:2] == \
            PNG_SIZES[name]


@pytest.mark.system
@pytest.mark.parametrize("args, words", [
    (["overfit"], "no figure named 'overfit' (did you mean overfitting?)"),
    (["overfitting", "--epochs", "0"], "epochs must be a positive integer"),
    (["more_data", "--epochs", "3"], "--epochs does not apply to more_data"),
    (["vanishing_gradient", "--lmbda", "-1"], "--lmbda must be a finite"),
    (["overfitting", "--out", "{file}/out"], "cannot write there"),
    (["overfitting", "--replot", "--out", "{empty}"], "train it first"),
])
def test_gpunn_figure_refuses_bad_input_in_one_line(args, words, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = [a.format(file=blocker, empty=tmp_path) for a in args]
    p = run_gpunn("figure", *args, "--quick", "--backend", "numpy")
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith("gpunn: error: ") and words in p.stderr
    assert p.stdout == ""
