"""The gpunn command, run as real subprocesses on small slices of MNIST."""

import json
import os
import shutil
import subprocess
import sys

import numpy
import pytest

from tests.helpers import ctrl_c_as_at_a_terminal

#: These run gpunn as a user does (subprocesses): the system tier.
pytestmark = pytest.mark.system

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--limit", "500", "--eval-limit", "200", "--backend", "numpy"]


def gpunn(*args, cwd=None):
    """Run ``python -m gpunn ARGS``; return the CompletedProcess."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GPUNN_") or k == "GPUNN_CACHE"}
    # The repository first; a test's own entries (the CuPy double's hook)
    # stay behind it.
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return subprocess.run([sys.executable, "-m", "gpunn", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def ok(p):
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def weights(path):
    with numpy.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k != "metadata"}


def test_list_names_every_experiment_with_the_books_numbers():
    out = ok(gpunn("list"))
    for name in ("shallow", "basic_conv", "omit_FC", "dbl_conv",
                 "regularized_dbl_conv", "dbl_conv_relu", "expanded_data",
                 "expanded_data_double_fc", "double_fc_dropout", "network",
                 "network2"):
        assert "\n{}: ".format(name) in "\n" + out
    assert "eta 0.03, lmbda 0.1, 60 epochs" in out
    assert "99.23%" in out and "99.60%" in out
    assert "conv 40x5x5 ReLU pool 2x2" in out


def test_help_on_every_command():
    for command in ("list", "train", "evaluate", "ensemble", "plot", "reproduce"):
        out = ok(gpunn(command, "--help"))
        assert out.startswith("usage: gpunn {}".format(command))


def test_train_evaluate_plot_ensemble(tmp_path):
    run = tmp_path / "run"
    out = ok(gpunn("train", "basic_conv", "--epochs", "2", "--seed", "1",
                   "--out", run, "--monitor-gradients", *QUICK))
    assert "Epoch 1: validation accuracy" in out
    assert "Finished training network." in out
    records = [json.loads(line) for line in open(run / "log.jsonl")]
    assert [r["epoch"] for r in records] == [0, 1]
    assert all(len(r["gradient_norms"]) == 3 and r["backend"] == "numpy"
               for r in records)
    settings = json.load(open(run / "run.json"))
    assert settings["experiment"] == "basic_conv" and settings["eta"] == 0.1

    # evaluate reads it back, on either dtype, with the same accuracy.
    accuracy = {}
    for dtype in ("float32", "float64"):
        out = ok(gpunn("evaluate", run / "network.npz", "--dtype", dtype,
                       "--eval-limit", "200", "--backend", "numpy"))
        assert "2 epochs, trained on numpy" in out
        accuracy[dtype] = out.split("Validation accuracy ")[1].split()[0]
    assert accuracy["float32"] == accuracy["float64"]
    assert float(accuracy["float32"].rstrip("%")) == pytest.approx(
        100 * records[-1]["validation_accuracy"])

    # plot draws the book's figures of the run.
    out = ok(gpunn("plot", run, "--backend", "numpy"))
    import matplotlib.image
    for name, shape in (("accuracy_cost.png", (500, 1200)),
                        ("gradient_norms.png", (500, 800)),
                        ("errors.png", (500, 800)),
                        ("filters_layer0.png", (500, 800))):
        assert "Wrote {}".format(run / name) in out
        assert matplotlib.image.imread(run / name).shape[:2] == shape

    # ensemble: the vote of two networks, and the misclassified digits.
    run2 = tmp_path / "run2"
    ok(gpunn("train", "shallow", "--epochs", "1", "--seed", "2", "--out", run2,
             "--quiet", *QUICK))
    png = tmp_path / "ensemble_errors.png"
    listed = tmp_path / "wrong.txt"
    out = ok(gpunn("ensemble", run / "network.npz", run2 / "network.npz",
                   "--png", png, "--list", listed, "--backend", "numpy"))
    accuracy = float(out.split("Accuracy is ")[1].split("%")[0])
    wrong = int(out.split("Misclassified test images (")[1].split(")")[0])
    assert accuracy == pytest.approx(100 * (1 - wrong / 10000), abs=0.005)
    assert matplotlib.image.imread(png).shape[:2] == (500, 800)
    # A summary on the screen (a few), every one in the file.
    assert wrong > 10 and len(out.splitlines()) <= 4
    assert out.split("index:vote: ")[1].split(" ...")[0].count(":") == 10
    rows = listed.read_text().splitlines()
    assert rows[0] == "index true vote" and len(rows) == wrong + 1
    j, true, vote = map(int, rows[1].split())
    assert true != vote and 0 <= j < 10000


def whole_and_resumed(folder, train):
    """Run the ``train`` arguments for 2 epochs into folder/whole, and for
    1 into folder/stopped, then resume that to 2; return the weights of
    both networks."""
    ok(gpunn(*train, "--epochs", "2", "--out", folder / "whole"))
    ok(gpunn(*train, "--epochs", "1", "--out", folder / "stopped"))
    ok(gpunn("train", "--resume", folder / "stopped", "--epochs", "2",
             "--quiet"))
    return tuple(weights(folder / name / "network.npz")
                 for name in ("whole", "stopped"))


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    """double_fc_dropout (dropout in three layers, expanded data): a run
    stopped after epoch 1 of 2 and resumed equals a 2-epoch run."""
    args = ("train", "double_fc_dropout", "--seed", "5", "--quiet", *QUICK)
    whole, resumed = whole_and_resumed(tmp_path, args)
    assert whole.keys() == resumed.keys() and len(whole) == 10
    for key in whole:
        numpy.testing.assert_array_equal(resumed[key], whole[key])
    log = [json.loads(line) for line in open(tmp_path / "stopped" / "log.jsonl")]
    assert [r["epoch"] for r in log] == [0, 1]
    # Another seed gives other dropout masks, so other weights: the
    # equality above is not one of networks that ignore their masks.
    ok(gpunn(*args[:2], "--seed", "6", "--quiet", *QUICK, "--epochs", "2",
             "--out", tmp_path / "other"))
    other = weights(tmp_path / "other" / "network.npz")
    assert not numpy.array_equal(other["w2"], whole["w2"])


def test_chapter_1_and_3_networks(tmp_path):
    out = ok(gpunn("train", "network", "--epochs", "1", "--out", tmp_path / "n1",
                   "--limit", "1000", "--eval-limit", "500", "--seed", "1",
                   "--backend", "numpy"))
    assert "Epoch 0: " in out and " / 500" in out
    saved = json.load(open(tmp_path / "n1" / "network.json"))
    assert saved["sizes"] == [784, 30, 10] and saved["cost"] == "QuadraticCost"
    out = ok(gpunn("train", "network2", "--epochs", "1", "--n", "20",
                   "--out", tmp_path / "n2", "--limit", "1000",
                   "--eval-limit", "500", "--backend", "numpy"))
    assert "Epoch 0: validation " in out and ", test " in out
    assert json.load(open(tmp_path / "n2" / "network.json"))["sizes"] == [784, 20, 10]
    record, = [json.loads(line) for line in open(tmp_path / "n2" / "log.jsonl")]
    assert record["epoch"] == 0 and 0.3 < record["test_accuracy"] <= 1
    # --init: chapter 3's default initializer starts elsewhere than the large
    # one, from the same seed; chapter 1 has only the large one.
    for init in ("large", "default"):
        ok(gpunn("train", "network2", "--epochs", "1", "--init", init,
                 "--seed", "3", "--out", tmp_path / init, "--limit", "100",
                 "--eval-limit", "100", "--backend", "numpy", "--quiet"))
    large, default = (json.load(open(tmp_path / init / "network.json"))
                      for init in ("large", "default"))
    assert numpy.std(default["weights"][0]) < 0.2 < numpy.std(large["weights"][0])
    p = gpunn("train", "network", "--init", "default", "--backend", "numpy")
    assert p.returncode == 2 and "only the large initializer" in p.stderr
    p = gpunn("train", "--resume", tmp_path / "n2")
    assert p.returncode == 2 and "cannot be resumed" in p.stderr


def test_errors_are_clear_and_early(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    p = gpunn("train", "shallow", "--out", blocker / "run", *QUICK)
    assert p.returncode == 2 and "gpunn: error:" in p.stderr
    assert "Epoch" not in p.stdout  # refused before training
    p = gpunn("evaluate", tmp_path / "missing.npz", "--backend", "numpy")
    assert p.returncode == 2 and "missing.npz" in p.stderr
    p = gpunn("train", "--epochs", "1", "--backend", "numpy", "shallow",
              "--eta", "-1")
    assert p.returncode == 2 and "--eta: must be positive" in p.stderr
    p = gpunn("train", "--resume", tmp_path / "nowhere")
    assert p.returncode == 2 and "run.json" in p.stderr
    p = gpunn("train", "network2", "--no-graph", "--backend", "numpy")
    assert p.returncode == 2 and "--no-graph is for chapter 6" in p.stderr


def test_console_script_where_installed():
    script = shutil.which("gpunn", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("gpunn is not installed as a console script here")
    p = subprocess.run([script, "list"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and "dbl_conv_relu: " in p.stdout


def test_a_diverging_run_stops_with_exit_code_3(tmp_path):
    """eta 100 on the ReLU net: with seed 2 the cost is NaN by mini-batch 5
    (seeds 3 and 5 diverge too; some seeds only kill every ReLU, which
    stays finite and is not a divergence)."""
    p = gpunn("train", "dbl_conv_relu", "--eta", "100", "--epochs", "2",
              "--out", tmp_path / "run", "--seed", "2", "--quiet", *QUICK)
    assert p.returncode == 3
    assert "gpunn: error: training diverged in epoch 0, mini-batch " in p.stderr
    assert "Try a smaller eta (it is 100.0; say 10)." in p.stderr
    # No epoch finished, so no checkpoint was written over a good one.
    assert not (tmp_path / "run" / "network.npz").exists()


@pytest.mark.gpu
def test_the_command_line_on_cupy(tmp_path, cupy_kind):
    """train, --resume, evaluate, ensemble and plot with --backend cupy:
    on a GPU, and in the default run on the CuPy test double (its hook
    reaches these subprocesses; see tests/conftest.py)."""
    if cupy_kind == "gpu":
        from tests.helpers import skip_without_cupy
        skip_without_cupy()
    quick = ["--limit", "200", "--eval-limit", "100", "--backend", "cupy"]
    whole, resumed = whole_and_resumed(
        tmp_path, ("train", "basic_conv", "--seed", "5", "--quiet", *quick))
    for key in whole:
        numpy.testing.assert_array_equal(resumed[key], whole[key])
    records = [json.loads(line) for line in open(tmp_path / "whole" / "log.jsonl")]
    assert all(r["backend"] == "cupy" and r["cuda_graph"] for r in records)
    # --no-graph: each step eager; the same network, to rounding.
    ok(gpunn("train", "basic_conv", "--seed", "5", "--quiet", *quick,
             "--epochs", "2", "--no-graph", "--out", tmp_path / "eager"))
    eager_records = [json.loads(line)
                     for line in open(tmp_path / "eager" / "log.jsonl")]
    assert not any(r["cuda_graph"] for r in eager_records)
    assert json.load(open(tmp_path / "eager" / "run.json"))["graph"] is False
    eager = weights(tmp_path / "eager" / "network.npz")
    for key in whole:
        numpy.testing.assert_allclose(eager[key], whole[key], rtol=1e-4,
                                      atol=1e-5)

    # A network trained on CuPy evaluates on CuPy and on NumPy alike.
    model = tmp_path / "whole" / "network.npz"
    accuracy = {}
    for name in ("cupy", "numpy"):
        out = ok(gpunn("evaluate", model, "--eval-limit", "100",
                       "--backend", name))
        assert "2 epochs, trained on cupy" in out
        accuracy[name] = float(out.split("Validation accuracy ")[1].split("%")[0])
    assert accuracy["cupy"] == pytest.approx(accuracy["numpy"], abs=0.5)
    assert accuracy["cupy"] == pytest.approx(
        100 * records[-1]["validation_accuracy"], abs=0.01)

    out = ok(gpunn("ensemble", model, tmp_path / "stopped" / "network.npz",
                   "--backend", "cupy"))
    assert "Accuracy is " in out
    out = ok(gpunn("plot", tmp_path / "whole", "--backend", "cupy"))
    assert "Wrote {}".format(tmp_path / "whole" / "errors.png") in out


def test_plot_and_evaluate_networks_of_chapters_1_and_3(tmp_path):
    """What gpunn train network2 saves (the book's JSON, a log without
    training costs) plots and evaluates; a file that is no network says
    what was expected."""
    ok(gpunn("train", "network2", "--epochs", "2", "--n", "20", "--out",
             tmp_path / "n2", "--limit", "1000", "--eval-limit", "300",
             "--backend", "numpy", "--quiet"))
    out = ok(gpunn("plot", tmp_path / "n2", "--backend", "numpy"))
    for name in ("accuracy_cost.png", "errors.png"):
        assert "Wrote {}".format(tmp_path / "n2" / name) in out
    out = ok(gpunn("evaluate", tmp_path / "n2" / "network.json",
                   "--eval-limit", "300", "--backend", "numpy"))
    assert "a [784, 20, 10] network of chapters 1 and 3" in out
    logged = [json.loads(line) for line in open(tmp_path / "n2" / "log.jsonl")]
    shown = float(out.split("Test accuracy ")[1].split("%")[0])
    assert shown == pytest.approx(100 * logged[-1]["test_accuracy"], abs=0.01)
    for not_a_network in (os.path.join(REPO, "README.md"),
                          tmp_path / "n2" / "log.jsonl",
                          tmp_path / "n2" / "run.json"):
        p = gpunn("evaluate", not_a_network, "--backend", "numpy")
        assert p.returncode == 2 and "not a network file. Expected a " \
            "chapter-6 network (.npz" in p.stderr and "Traceback" not in p.stderr


def test_plot_numbers_layers_and_epochs_as_gpunn_does(tmp_path, monkeypatch):
    """Whole epochs on the axes; gradient norms of layer 0, 1, ... as
    the filter figures (filters_layer0.png) and the messages number them."""
    import matplotlib.pyplot
    from gpunn import plots
    records = [{"epoch": e, "training_cost": 1.0 / (e + 1),
                "validation_accuracy": 0.9, "test_accuracy": None,
                "gradient_norms": [0.1, 0.2, 0.3]} for e in range(3)]
    seen = {}
    save = plots._save

    def look(fig, path):  # saves as ever, after noting ticks and legends
        fig.canvas.draw()
        seen[os.path.basename(path)] = [
            ([t for t in ax.get_xticks() if 0 <= t <= 2],
             [t.get_text() for t in ax.get_legend().get_texts()])
            for ax in fig.axes]
        return save(fig, path)
    monkeypatch.setattr(plots, "_save", look)
    plots.plot_history(records, str(tmp_path / "h.png"))
    plots.plot_gradient_norms(records, str(tmp_path / "g.png"))
    assert len(seen["h.png"]) == 2 and len(seen["g.png"]) == 1
    for ticks, _ in seen["h.png"] + seen["g.png"]:
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert seen["g.png"][0][1] == ["layer 0", "layer 1", "layer 2"]
    matplotlib.pyplot.close("all")


def interrupt(args, ready, timeout=300):
    """Start ``python -m gpunn ARGS``, send it SIGINT (Ctrl-C) once
    ``ready()`` holds; return its exit code and standard error."""
    import signal
    import time
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GPUNN_") or k == "GPUNN_CACHE"}
    env["PYTHONPATH"] = REPO
    proc = subprocess.Popen([sys.executable, "-m", "gpunn", *map(str, args)],
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_as_at_a_terminal)
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "it finished before the interrupt"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_ctrl_c_stops_cleanly_and_resume_goes_on(tmp_path):
    """Interrupted after an epoch: exit 130, the checkpoint kept, the
    --resume command printed, and resuming ends as an uninterrupted run.
    Interrupted in the first epoch (no checkpoint yet): --resume starts
    the run over."""
    run = tmp_path / "run"
    train = ["train", "shallow", "--epochs", "40", "--limit", "2000",
             "--eval-limit", "200", "--backend", "numpy", "--seed", "3",
             "--quiet", "--out", run]

    def epochs_logged():
        try:
            return sum(1 for _ in open(run / "log.jsonl"))
        except OSError:
            return 0
    code, err = interrupt(train, lambda: epochs_logged() >= 2)
    assert code == 130, err
    assert "Traceback" not in err and "gpunn: interrupted." in err
    assert "Go on with: gpunn train --resume {}".format(run) in err
    assert "holds its" in err
    kept = epochs_logged()
    ok(gpunn("train", "--resume", run, "--epochs", str(kept + 1), "--quiet"))
    ok(gpunn(*train[:-3], "--quiet", "--epochs", str(kept + 1), "--out",
             tmp_path / "whole"))
    whole, resumed = (weights(folder / "network.npz")
                      for folder in (tmp_path / "whole", run))
    for key in whole:
        numpy.testing.assert_array_equal(resumed[key], whole[key])

    first = tmp_path / "first"
    train[-1] = first
    code, err = interrupt(train, lambda: (first / "run.json").exists())
    assert code == 130 and "no checkpoint yet" in err, err
    assert not (first / "network.npz").exists()
    ok(gpunn("train", "--resume", first, "--epochs", "1", "--quiet"))
    ok(gpunn(*train[:-3], "--quiet", "--epochs", "1", "--out",
             tmp_path / "first-whole"))
    for key, w in weights(tmp_path / "first-whole" / "network.npz").items():
        numpy.testing.assert_array_equal(
            weights(first / "network.npz")[key], w)


def test_options_that_do_not_apply_are_refused_and_leave_nothing(tmp_path):
    """Refused before anything is made, with what the option is for;
    ranges checked as the command line is read; run.json records the
    options used; a run that fails before its first checkpoint takes
    its folder away."""
    refused = [
        (["shallow", "--p-dropout", "1.5", "0", "0"],
         "--p-dropout: must be in [0, 1), got 1.5"),
        (["shallow", "--p-dropout", "0.5", "0", "0"],
         "--p-dropout is for double_fc_dropout, not shallow"),
        (["shallow", "--activation", "tanh"],
         "--activation is for dbl_conv, not shallow"),
        (["shallow", "--n", "30"], "--n is for expanded_data"),
        (["network", "--limit", "1000", "--resume", tmp_path / "x"],
         "not --limit, an experiment NAME"),
        (["--resume", tmp_path / "x", "--eta", "0.1"], "not --eta"),
        (["network2", "--monitor-gradients"],
         "--monitor-gradients is for chapter 6's networks"),
        (["shallow", "--eta", "abc"], "--eta: not a number: abc"),
        (["shallow", "--init", "large"], "--init is for network and network2"),
        (["shallow", "--limit", "5"], "mini_batch_size 10 is larger than"),
    ]
    for k, (args, message) in enumerate(refused):
        out = [] if "--resume" in args else \
            ["--out", tmp_path / "runs" / str(k) / "run"]
        p = gpunn("train", *args, *out, "--backend", "numpy", "--epochs", "1")
        assert p.returncode == 2 and message in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr
        assert not (tmp_path / "runs" / str(k)).exists(), args
    from gpunn import backend
    if backend._usable_cupy()[0] is None:  # a CuPy that cannot run here
        p = gpunn("train", "shallow", "--backend", "cupy", "--out",
                  tmp_path / "runs" / "cupy" / "run")
        assert p.returncode == 2 and "cupy backend cannot run" in p.stderr
        assert not (tmp_path / "runs" / "cupy").exists()
    # The main job (dbl_conv_relu) took no option: none is recorded.
    ok(gpunn("--epochs", "1", *QUICK, "--quiet", "--out", tmp_path / "main"))
    ok(gpunn("train", "dbl_conv", "--activation", "ReLU", "--epochs", "1",
             *QUICK, "--quiet", "--out", tmp_path / "dbl_conv"))
    main, dbl_conv = (json.load(open(tmp_path / name / "run.json"))
                      for name in ("main", "dbl_conv"))
    assert not {"activation", "p_dropout", "n"} & set(main)
    assert "ReLU" in main["description"]
    assert dbl_conv["activation"] == "ReLU"
    assert "100 ReLU neurons" in dbl_conv["description"]


def test_the_command_line_says_little_and_to_the_point(tmp_path):
    """--version; a misspelt model; --quiet's one line of result; the
    "auto" notice once per command, none with --quiet."""
    assert ok(gpunn("--version")).startswith("gpunn ")
    p = gpunn("train", "shalow")
    assert p.returncode == 2 and "did you mean shallow?" in p.stderr
    assert len(p.stderr.splitlines()) == 1 and "usage:" not in p.stderr
    quick = ["--epochs", "1", "--limit", "200", "--eval-limit", "100"]
    out = ok(gpunn("train", "shallow", *quick, "--quiet", "--backend",
                   "numpy", "--out", tmp_path / "q"))
    assert len(out.splitlines()) == 1 and "best validation accuracy" in out
    out = ok(gpunn("train", "network", *quick, "--quiet", "--backend",
                   "numpy", "--out", tmp_path / "n"))
    assert len(out.splitlines()) == 1 and "test accuracy" in out
    from gpunn import backend
    if backend._usable_cupy()[0] is not None:
        return  # "auto" picks CuPy here: no notice to count
    p = gpunn("train", "shallow", *quick, "--runs", "3", "--backend", "auto",
              "--out", tmp_path / "three")
    assert p.returncode == 0 and p.stderr.count("using NumPy on the CPU") == 1
    p = gpunn("train", "shallow", *quick, "--runs", "2", "--backend", "auto",
              "--quiet", "--out", tmp_path / "quiet")
    assert p.returncode == 0 and "using NumPy" not in p.stderr


def test_own_data_in_the_books_format_or_npz(tmp_path):
    """--data: a pickle as the book's, or an .npz; a notice that it is not
    the book's MNIST; recorded, and used again by --resume; a file that
    is no data set refused before anything is made."""
    from gpunn import mnist_loader
    (x, y), (vx, vy), (tx, ty) = mnist_loader.load_host()
    rng = numpy.random.default_rng(0)
    pick = rng.permutation(len(x))[:600]
    own = {"training_x": x[pick], "training_y": y[pick],
           "validation_x": vx[:100], "validation_y": vy[:100],
           "test_x": tx[:100], "test_y": ty[:100]}
    numpy.savez(tmp_path / "own.npz", **own)
    p = gpunn("train", "shallow", "--data", tmp_path / "own.npz", "--epochs",
              "1", "--backend", "numpy", "--quiet", "--out", tmp_path / "run")
    assert p.returncode == 0, p.stderr
    assert "own.npz (600 training, 100 validation, 100 test images), not " \
        "the book's MNIST" in p.stderr
    settings = json.load(open(tmp_path / "run" / "run.json"))
    assert settings["data"] == str(tmp_path / "own.npz")
    ok(gpunn("train", "--resume", tmp_path / "run", "--epochs", "2",
             "--quiet"))
    log = [json.loads(line) for line in open(tmp_path / "run" / "log.jsonl")]
    assert [r["epoch"] for r in log] == [0, 1]
    # 100 test images: accuracies are whole percents.
    assert all(round(100 * r["validation_accuracy"], 6).is_integer()
               for r in log)
    del own["test_y"]
    numpy.savez(tmp_path / "bad.npz", **own)
    p = gpunn("train", "shallow", "--data", tmp_path / "bad.npz", "--out",
              tmp_path / "bad", "--backend", "numpy")
    assert p.returncode == 2 and "no array test_y" in p.stderr
    assert not (tmp_path / "bad").exists()


def test_threads_as_asked_and_by_default_the_cores_this_process_may_use(
        tmp_path):
    """--threads, $GPUNN_THREADS, and the default (the process's CPU
    affinity): gpunn's threads, logged per epoch."""
    quick = ["--epochs", "1", "--limit", "200", "--eval-limit", "100",
             "--backend", "numpy", "--quiet"]

    def logged_threads(folder):
        record, = [json.loads(line) for line in open(folder / "log.jsonl")]
        return record["threads"]
    ok(gpunn("train", "shallow", *quick, "--threads", "1", "--out",
             tmp_path / "one"))
    assert logged_threads(tmp_path / "one") == 1
    ok(gpunn("train", "network2", *quick, "--threads", "1", "--out",
             tmp_path / "n2"))
    assert logged_threads(tmp_path / "n2") == 1
    ok(gpunn("train", "shallow", *quick, "--out", tmp_path / "default"))
    assert logged_threads(tmp_path / "default") == len(os.sched_getaffinity(0))
    env = dict(os.environ, GPUNN_THREADS="1", PYTHONPATH=REPO)
    subprocess.run([sys.executable, "-m", "gpunn", "train", "shallow", *quick,
                    "--out", tmp_path / "env"], env=env, check=True)
    assert logged_threads(tmp_path / "env") == 1
    p = gpunn("train", "shallow", "--threads", "0")
    assert p.returncode == 2 and "--threads: must be at least 1" in p.stderr
    env["GPUNN_THREADS"] = "many"
    p = subprocess.run([sys.executable, "-m", "gpunn", "train", "shallow",
                        *quick, "--out", tmp_path / "bad"], env=env,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "GPUNN_THREADS" in p.stderr
    assert not (tmp_path / "bad").exists()
