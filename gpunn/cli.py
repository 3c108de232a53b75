"""cli.py
~~~~~~~~~

The ``gpunn`` command (also ``python -m gpunn``): run the book's
experiments from the command line.

    gpunn list                      the experiments of the book's conv.py
    gpunn train NAME [options]      train one, with the book's settings
    gpunn evaluate MODEL_FILE       accuracy on validation and test data
    gpunn ensemble MODEL_FILE...    the book's vote of several networks
    gpunn plot RUN                  the book's figures of a run
    gpunn reproduce [CHAPTER...]    the book's accuracies, run again
    gpunn sweep NAME --lmbda L...   the book's sweeps of lmbda
    gpunn bench                     seconds per epoch, to compare hardware

A run lives in a folder (``--out``, default runs/NAME-DATE-TIME):
``network.npz`` (the network and its metadata, rewritten atomically at the
end of every epoch: the checkpoint), ``log.jsonl`` (one line per epoch)
and ``run.json`` (the settings).  ``gpunn train --resume RUN`` goes on from
the checkpoint and ends with the weights an uninterrupted run gives.

``python -m gpunn [--epochs N ...]`` with no command is ``gpunn train
dbl_conv_relu [--epochs N ...]``.
"""

import argparse
import datetime
import json
import contextlib
import difflib
import os
import shutil
import sys
import time

import gpunn
from gpunn import backend, bench, errors, experiments, mnist_loader, saving
from gpunn.activations import ACTIVATIONS

COMMANDS = ("list", "train", "evaluate", "ensemble", "plot", "reproduce",
            "sweep", "bench")
CHAPTERS_1_3 = ("network", "network2")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["train", "dbl_conv_relu"] + argv  # the main job
    args = parser().parse_args(argv)
    args.argv = argv  # as typed, for the records of reproduce
    try:
        return args.command(args) or 0
    except Interrupted as e:
        print("\ngpunn: interrupted. {}".format(e), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ngpunn: interrupted.", file=sys.stderr)
        return 130
    except gpunn.DivergenceError as e:
        checkpoint = os.path.join(getattr(args, "resume", None) or
                                  getattr(args, "out", None) or "the run folder",
                                  "network.npz")
        print("gpunn: error: {} The last good checkpoint, if an epoch "
              "finished, is {}.".format(e, checkpoint), file=sys.stderr)
        return 3
    except (gpunn.GpunnError, ValueError, OSError) as e:
        print("gpunn: error: {}".format(e), file=sys.stderr)
        return 2
    except Exception as e:
        if not backend.is_out_of_memory(e):
            raise
        print("gpunn: error: out of memory training {} with mini-batches of {} "
              "on {}: try a smaller --mini-batch-size, or --backend numpy"
              .format(getattr(args, "name", "?"),
                      getattr(args, "mini_batch_size", "?"), backend.name()),
              file=sys.stderr)
        return 2


def parser():
    p = argparse.ArgumentParser(
        prog="gpunn", description="Run the networks of Nielsen's Neural "
        "Networks and Deep Learning on NumPy or CuPy.",
        epilog="Without a command: train dbl_conv_relu (the main job).")
    p.add_argument("--version", action="version",
                   version="gpunn {}".format(gpunn.__version__))
    commands = p.add_subparsers(metavar="COMMAND", required=True)

    c = commands.add_parser("list", help="the book's chapter-6 experiments")
    c.set_defaults(command=list_command)

    c = commands.add_parser(
        "train", help="train one of the book's networks",
        description="Train an experiment of the book's conv.py (chapter 6), "
        "or the network of chapter 1 or 3, with the book's settings unless "
        "overridden.")
    c.add_argument("name", nargs="?", metavar="NAME",
                   help="the model: one of {} (chapter 6; gpunn list shows "
                   "them), or network, network2 (chapters 1 and 3); not "
                   "with --resume".format(", ".join(experiments.CONV_PY)))
    c.add_argument("--epochs", type=_positive_int,
                   help="epochs to train (default: the book's, e.g. 60 for "
                   "dbl_conv_relu, 30 for chapters 1 and 3)")
    c.add_argument("--eta", type=_positive_float,
                   help="learning rate (default: the book's for the model, "
                   "e.g. 0.03 for dbl_conv_relu; gpunn list shows them)")
    c.add_argument("--lmbda", type=_nonnegative_float,
                   help="L2 regularization (default: the book's for the "
                   "model, e.g. 0.1 for dbl_conv_relu)")
    c.add_argument("--mini-batch-size", type=_positive_int, default=10,
                   help="default 10, the book's")
    c.add_argument("--n", type=_positive_int, default=None,
                   help="neurons per fully connected layer (expanded_data, "
                        "expanded_data_double_fc; default 100); hidden "
                        "neurons of network, network2 (default 30)")
    c.add_argument("--init", choices=("large", "default"),
                   help="network, network2: the large initializer, N(0, 1) "
                        "weights (default), or chapter 3's N(0, 1/n_in)")
    c.add_argument("--activation", choices=sorted(ACTIVATIONS),
                   help="dbl_conv's activation function (default sigmoid)")
    c.add_argument("--p-dropout", type=_probability, nargs=3, metavar="P",
                   help="double_fc_dropout's three dropout probabilities, "
                   "each in [0, 1) (default 0.5 0.5 0.5)")
    c.add_argument("--runs", type=_positive_int, default=1,
                   help="train this many networks, one folder each "
                   "(default 1)")
    c.add_argument("--out", help="the run's folder (default runs/NAME-DATE-TIME)")
    c.add_argument("--resume", metavar="RUN",
                   help="go on with the run in this folder from its checkpoint")
    c.add_argument("--monitor-gradients", action="store_true",
                   help="log each layer's mean gradient norm per epoch")
    c.add_argument("--no-graph", action="store_true",
                   help="on CuPy, run each training step eagerly rather than "
                   "as a captured CUDA graph (the default for mini-batches "
                   "of at most 64)")
    c.add_argument("--quiet", action="store_true",
                   help="no progress bar and none of the book's lines")
    c.add_argument("--limit", type=_positive_int, metavar="N",
                   help="train on the first N training images only")
    c.add_argument("--eval-limit", type=_positive_int, metavar="N",
                   help="validate and test on the first N images only")
    _backend_options(c)
    c.add_argument("--seed", type=int, help="seed of the run (default: random)")
    c.add_argument("--threads", type=_positive_int, metavar="N",
                   help="gpunn's CPU threads (default: $GPUNN_THREADS, else "
                   "the cores this process may use)")
    c.add_argument("--data", metavar="PATH",
                   help="train on this data set rather than the book's MNIST: "
                   "a file in the book's format (mnist.pkl.gz's), or an .npz "
                   "with the arrays " + ", ".join(mnist_loader.NPZ_ARRAYS))
    c.set_defaults(command=train_command)

    c = commands.add_parser("evaluate", help="accuracy of a saved network")
    c.add_argument("model_file")
    c.add_argument("--eval-limit", type=_positive_int, metavar="N")
    _backend_options(c)
    c.set_defaults(command=evaluate_command)

    c = commands.add_parser("ensemble", help="the book's vote of networks")
    c.add_argument("model_files", nargs="+", metavar="MODEL_FILE")
    c.add_argument("--png", help="draw the misclassified test digits here")
    c.add_argument("--list", metavar="FILE",
                   help="write every misclassified test image here, a line "
                   "each: its index, true digit and the vote")
    _backend_options(c)
    c.set_defaults(command=ensemble_command)

    c = commands.add_parser("plot", help="the book's figures of a run")
    c.add_argument("run", metavar="RUN", help="a run's folder")
    _backend_options(c)
    c.set_defaults(command=plot_command)

    c = commands.add_parser(
        "reproduce", help="run the book's reported accuracies again",
        description="Train every network whose accuracy the book reports, "
        "with the book's settings, several runs side by side, and write the "
        "results table (the book's number, gpunn's best run, the "
        "difference, epochs, wall time, backend, device) to OUT/table.md. "
        "Runs already finished in OUT are kept; a chapter-6 run cut short "
        "goes on from its checkpoint.")
    c.add_argument("chapters", nargs="*", metavar="CHAPTER", default=["all"],
                   help="chapter1, chapter3, chapter6, all (default), or "
                        "rows of the table by name (shallow, ch1-30, ...)")
    c.add_argument("--runs", type=_positive_int, default=3,
                   help="runs per row (default 3, as the book; the vote "
                        "trains five double_fc_dropout networks)")
    _cluster_options(c)
    c.add_argument("--out", default=os.path.join("runs", "reproduce"),
                   help="the results folder (default runs/reproduce)")
    _quick_options(c)
    _backend_options(c, dtype_default="float64 for chapters 1 and 3, as the "
                     "book's NumPy code; float32 for chapter 6, as its Theano "
                     "on a GPU")
    c.set_defaults(command=reproduce_command)

    c = commands.add_parser(
        "sweep", help="the book's sweeps of lmbda",
        description="Train a chapter-6 network for each value of lmbda (L2 "
        "regularization), several runs each, as the book's conv.py did, and "
        "write OUT/sweep.md and OUT/sweep.png: the best validation accuracy "
        "and its test accuracy against lmbda.  Runs already finished in OUT "
        "are kept; a run cut short goes on from its checkpoint.")
    c.add_argument("name", metavar="NAME", help="the network: one of " +
                   ", ".join(experiments.CONV_PY))
    c.add_argument("--lmbda", type=_nonnegative_float, nargs="+",
                   metavar="L", help="the values (default, for "
                   "regularized_dbl_conv and dbl_conv_relu: the book's)")
    c.add_argument("--runs", type=_positive_int, default=3,
                   help="runs per value (default 3, as the book)")
    _cluster_options(c)
    c.add_argument("--out", help="the results folder (default "
                   "runs/sweep-NAME)")
    _quick_options(c)
    _backend_options(c, dtype_default="float32, as the book's Theano on a "
                     "GPU")
    c.set_defaults(command=sweep_command)

    c = commands.add_parser(
        "bench", help="compare hardware: seconds per training epoch",
        description="Run the benchmark suite (a checkout's benchmarks/) and "
        "write one JSON file; 'gpunn bench compare FILE...' puts the files "
        "of several machines side by side.")
    c.add_argument("--models", nargs="+", metavar="MODEL",
                   default=["dbl_conv_relu"],
                   help="chapter-6 models (default dbl_conv_relu; 'all' for "
                   "every one)")
    c.add_argument("--batch", nargs="+", type=_positive_int, metavar="M",
                   default=[10, 64, 256], help="mini-batch sizes "
                   "(default 10 64 256)")
    c.add_argument("--backend", nargs="+", metavar="B", dest="backends",
                   help="of " + ", ".join(bench.BACKENDS) + " (default: "
                   "all; those this machine cannot run are skipped)")
    c.add_argument("--quick", action="store_true",
                   help="{} steps per timed round: a rough figure, fast"
                   .format(bench.QUICK_STEPS))
    c.add_argument("--name", help="the machine's name in the results "
                   "(default: its GPU's name, or its CPU's model and cores)")
    c.add_argument("--out", help="the JSON file (default bench-NAME.json); "
                   "with --each-worker, the folder of the files (default .)")
    c.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a worker of this Dask scheduler "
                   "(e.g. tcp://host:8786)")
    c.add_argument("--each-worker", action="store_true",
                   help="with --scheduler: run on one worker of every "
                   "machine, a result file each")
    c.set_defaults(command=bench_command)
    sub = c.add_subparsers(metavar="compare", dest="bench_command")
    compare = sub.add_parser(
        "compare", help="seconds per epoch of several machines side by side",
        description="Seconds per epoch for each model, mini-batch size and "
        "backend, a column per machine, and each machine's ratio to the "
        "first file given.")
    compare.add_argument("files", nargs="+", metavar="FILE")
    compare.add_argument("--markdown", metavar="PATH",
                         help="also write the table to this file")
    compare.add_argument("--png", metavar="PATH",
                         help="also draw a bar chart (needs matplotlib)")
    compare.set_defaults(command=bench_compare_command)
    return p


def _cluster_options(c):
    c.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. "
                        "tcp://scheduler-host:8786, whose workers run the "
                        "runs (default: a cluster on this machine)")
    c.add_argument("--checkpoints", metavar="PATH",
                   help="the runs' folders, where a run cut short goes on "
                        "from (default OUT/runs; with --scheduler, a folder "
                        "every worker can reach)")
    c.add_argument("--jobs", type=_positive_int,
                   help="runs side by side on this machine (default: one "
                        "per CPU core on numpy, four per GPU on cupy)")
    c.add_argument("--threads", type=_positive_int, metavar="N",
                   help="CPU threads of each run (default: its share of its "
                        "machine's cores)")


def _quick_options(c):
    c.add_argument("--epochs", type=_positive_int,
                   help="train every run this many epochs: a quick check, "
                        "marked so in the table")
    c.add_argument("--limit", type=_positive_int, metavar="N",
                   help="train on the first N images only (marked so)")
    c.add_argument("--eval-limit", type=_positive_int, metavar="N",
                   help="validate and test on the first N images only")
    c.add_argument("--report", action="store_true",
                   help="train nothing: make the table again from OUT/logs")


def _backend_options(c, dtype_default="$GPUNN_DTYPE or float32"):
    c.add_argument("--backend", choices=backend.BACKENDS,
                   help="numpy, cupy or auto (default: $GPUNN_BACKEND or auto)")
    c.add_argument("--dtype", choices=backend.DTYPES,
                   help="float32 or float64 (default: {})".format(dtype_default))


def _use(args, seed=None):
    gpunn.use(args.backend or os.environ.get("GPUNN_BACKEND") or "auto",
              args.dtype or os.environ.get("GPUNN_DTYPE") or "float32",
              seed=seed, quiet=getattr(args, "quiet", False))
    # The command's default, unlike the library's: no more threads than
    # the cores this process may use.
    backend.set_threads(getattr(args, "threads", None))


# ---------------------------------------------------------------- list

def list_command(args):
    gpunn.use("numpy")  # only the layers' shapes are needed
    for name in experiments.CONV_PY:
        e = experiments.experiment(name)
        net = e.network(10)
        print("{}: {}".format(name, e.description))
        print("    layers: {}".format(" -> ".join(_short(l) for l in net.layers)))
        print("    eta {}, lmbda {}, {} epochs, mini-batch 10{}; book's test "
              "accuracy: {}".format(
                  e.eta, e.lmbda, e.epochs,
                  ", expanded training data" if e.expanded_data else "",
                  "{:.2f}%".format(e.book_accuracy) if e.book_accuracy else "–"))
    print("network: chapter 1, [784, 30, 10] sigmoid, quadratic cost, eta 3.0, "
          "30 epochs; book: 95.42%")
    print("network2: chapter 3, [784, 30, 10] sigmoid, cross-entropy, eta 0.5, "
          "lmbda 5.0, large initializer, 30 epochs; book: 96.49%")


def _short(layer):
    spec = saving.layer_spec(layer)
    if spec["type"] == "ConvPoolLayer":
        return "conv {}x{}x{} {} pool {}x{}".format(
            spec["filter_shape"][0], *spec["filter_shape"][2:],
            spec["activation_fn"], *spec["poolsize"])
    dropout = " dropout {}".format(spec["p_dropout"]) if spec["p_dropout"] else ""
    if spec["type"] == "SoftmaxLayer":
        return "softmax {}{}".format(spec["n_out"], dropout)
    return "{} {}{}".format(spec["n_out"], spec["activation_fn"], dropout)


# ---------------------------------------------------------------- train

def train_command(args):
    _refuse_what_does_not_apply(args)
    if args.resume:
        return _resume(args)
    if args.name is None:
        raise gpunn.ConfigError("train needs an experiment NAME (or --resume RUN)")
    if args.name not in experiments.CONV_PY + CHAPTERS_1_3:
        close = difflib.get_close_matches(
            args.name, experiments.CONV_PY + CHAPTERS_1_3, n=1)
        raise gpunn.ConfigError("no model named {!r}{}; the models are {} "
                                "(chapter 6) and {} (chapters 1 and 3)".format(
                                    args.name, " (did you mean {}?)".format(
                                        close[0]) if close else "",
                                    ", ".join(experiments.CONV_PY),
                                    ", ".join(CHAPTERS_1_3)))
    if args.name in CHAPTERS_1_3:
        return _train_chapter_1_3(args)
    seed, out = _seed_and_folder(args)
    data = _own_data(args.data) if args.data else None
    for run in range(args.runs):
        folder = out if args.runs == 1 else os.path.join(out, "run-{}".format(run))
        settings = {
            "experiment": args.name,
            "mini_batch_size": args.mini_batch_size, "seed": seed + run,
            "limit": args.limit, "eval_limit": args.eval_limit,
            "monitor_gradients": args.monitor_gradients,
            "graph": "auto" if not args.no_graph else False}
        # The experiment's own option, and only it, as used.
        if args.name == "dbl_conv":
            settings["activation"] = args.activation or "sigmoid"
        elif args.name in ("expanded_data", "expanded_data_double_fc"):
            settings["n"] = args.n or 100
        elif args.name == "double_fc_dropout":
            settings["p_dropout"] = list(args.p_dropout or (0.5, 0.5, 0.5))
        if data:
            settings["data"] = data
        e = _experiment(settings)
        settings["description"] = e.description
        settings.update(epochs=args.epochs or e.epochs,
                        eta=args.eta if args.eta is not None else e.eta,
                        lmbda=args.lmbda if args.lmbda is not None else e.lmbda)
        _use(args, seed=settings["seed"])
        settings["dtype"] = backend.floatX.name
        with _new_run_folder(folder):
            _write_json(os.path.join(folder, "run.json"), settings)
            net = e.network(settings["mini_batch_size"])
            _train(net, settings, folder, [], args.quiet)
    return 0


@contextlib.contextmanager
def _new_run_folder(folder):
    """Make the run's folder; if the run fails before its first
    checkpoint (bad data, a limit below one mini-batch, the device), take
    away what this command made there.  Ctrl-C keeps it: --resume starts
    such a run over."""
    made = []
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        made.append(path)
        path = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    _check_writable(folder)
    try:
        yield
    except Interrupted:
        raise
    except Exception:
        if made and not os.path.exists(os.path.join(folder, "network.npz")):
            shutil.rmtree(made[-1], ignore_errors=True)
        raise


def _seed_and_folder(args):
    """The run's seed (drawn and recorded when not given) and folder."""
    seed = args.seed if args.seed is not None else \
        int.from_bytes(os.urandom(4), "little")
    return seed, args.out or os.path.join("runs", "{}-{}".format(
        args.name, datetime.datetime.now().strftime("%Y%m%d-%H%M%S")))


def _own_data(path):
    """``path``, absolute, after reading it once as a data set (so that
    a bad file is refused before any folder is made) and a notice that
    it is not the book's MNIST."""
    path = os.path.abspath(path)
    (x, _), validation, test = mnist_loader.load_host(path)
    if mnist_loader.sha256_of(path) != mnist_loader.MNIST_SHA256:
        print("gpunn: training on {} ({} training, {} validation, {} test "
              "images), not the book's MNIST".format(
                  path, len(x), len(validation[0]), len(test[0])),
              file=sys.stderr)
    return path


class Interrupted(Exception):
    """Training stopped by Ctrl-C; the message says what was kept and
    how to go on."""


def _resume(args):
    folder = args.resume
    settings = _read_json(os.path.join(folder, "run.json"))
    if settings.get("experiment") in CHAPTERS_1_3:
        raise gpunn.ConfigError("{}: runs of {} keep no checkpoint and cannot "
                                "be resumed; train again".format(
                                    folder, settings["experiment"]))
    for name in os.listdir(folder):  # saves a kill cut short: never read
        if name.endswith(".tmp") and name.startswith((".network.npz.", "log.jsonl")):
            os.remove(os.path.join(folder, name))
    if args.dtype is None:  # go on in the run's dtype
        args.dtype = settings.get("dtype")
    if os.path.exists(os.path.join(folder, "network.npz")):
        _use(args)
        net, metadata = saving.load(os.path.join(folder, "network.npz"))
        history = metadata.get("history", [])
    else:  # stopped in its first epoch: the run starts over, as it began
        _use(args, seed=settings["seed"])
        net, history = _experiment(settings).network(
            settings["mini_batch_size"]), []
    if args.epochs:
        settings["epochs"] = args.epochs
    if args.no_graph:
        settings["graph"] = False
    _train(net, settings, folder, history, args.quiet)
    return 0


def _experiment(settings):
    return experiments.experiment(
        settings["experiment"], n=settings.get("n", 100),
        activation_fn=ACTIVATIONS[settings.get("activation", "sigmoid")],
        p_dropout=settings.get("p_dropout", (0.5, 0.5, 0.5)))


# The options of train, and the runs they apply to: anything else is
# refused rather than ignored (and recorded as if used).
_OPTION_USERS = {
    "activation": ("dbl_conv",), "p_dropout": ("double_fc_dropout",),
    "n": ("expanded_data", "expanded_data_double_fc", "network", "network2"),
    "init": ("network", "network2"),
    "monitor_gradients": experiments.CONV_PY, "no_graph": experiments.CONV_PY,
    "data": experiments.CONV_PY,
}
# What --resume takes: the rest is the run's, in its run.json.
_RESUME_OPTIONS = {"resume", "epochs", "quiet", "backend", "dtype", "no_graph",
                   "threads"}


def _refuse_what_does_not_apply(args):
    given = {name for name, value in vars(args).items()
             if name in _TRAIN_DEFAULTS and value != _TRAIN_DEFAULTS[name]}
    if args.resume:
        extra = sorted(given - _RESUME_OPTIONS) + (
            ["NAME"] if args.name else [])
        if extra:
            raise gpunn.ConfigError(
                "--resume goes on with the run's own settings (its run.json); "
                "it takes only --epochs, --quiet, --backend, --dtype and "
                "--no-graph, not {}".format(", ".join(
                    "--" + e.replace("_", "-") if e != "NAME" else
                    "an experiment NAME" for e in extra)))
        return
    for option in sorted(given & set(_OPTION_USERS)):
        users = _OPTION_USERS[option]
        if args.name is not None and args.name not in users:
            raise gpunn.ConfigError("--{} is for {}, not {}".format(
                option.replace("_", "-"), "chapter 6's networks (conv.py's)"
                if users == experiments.CONV_PY else " and ".join(users),
                args.name))


def _train(net, settings, folder, history, quiet):
    """Train ``net`` as ``settings`` say, from epoch len(history), keeping
    the log and the checkpoint of ``folder`` up to date.  Ctrl-C stops it
    with an ``Interrupted`` saying what the folder keeps."""
    done = list(history)
    try:
        _train_epochs(net, settings, folder, done, quiet)
    except KeyboardInterrupt:
        kept = "The checkpoint {} holds its {} epoch{}.".format(
            os.path.join(folder, "network.npz"), len(done),
            "" if len(done) == 1 else "s") if done else \
            "It stopped in its first epoch: there is no checkpoint yet."
        raise Interrupted("{} Go on with: gpunn train --resume {}".format(
            kept, folder)) from None


def _train_epochs(net, settings, folder, done, quiet):
    """``_train``; ``done``, the records of the epochs done, grows as
    each is saved."""
    history = list(done)
    e = _experiment(settings)
    training, validation, test = _data(e.expanded_data, settings["limit"],
                                       settings["eval_limit"],
                                       settings.get("data"))
    log_path = os.path.join(folder, "log.jsonl")
    # The log says what the checkpoint holds (a kill between the two left
    # it a line short), rewritten whole and renamed into place.
    with open(log_path + ".tmp", "w") as f:
        for record in history:
            f.write(json.dumps(record) + "\n")
    os.replace(log_path + ".tmp", log_path)

    def on_epoch(record):
        record = dict(record, backend=backend.name(), dtype=backend.floatX.name,
                      device=_device(), threads=backend.threads())
        saved = done + [record]
        saving.save(net, os.path.join(folder, "network.npz"),
                    experiment=e.name, settings=settings,
                    epochs_done=len(saved), history=saved,
                    best_validation_accuracy=max(
                        r["validation_accuracy"] for r in saved),
                    backend=backend.name())
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        done.append(record)

    progress = None if quiet else _progress_bar
    log = (lambda line: None) if quiet else _write_line
    if not quiet:
        log("{}: {} on {} ({}), {} training images, run folder {}".format(
            e.name, e.description, backend.name(), backend.floatX.name,
            len(training[0]), folder))
    net.SGD(training, settings["epochs"], settings["mini_batch_size"],
            settings["eta"], validation, test, lmbda=settings["lmbda"],
            history=history, seed=settings["seed"], on_epoch=on_epoch,
            progress=progress, log=log,
            monitor_gradients=settings["monitor_gradients"],
            graph=settings.get("graph", "auto"))
    if quiet and done:  # the book's lines are off: the result in one line
        best = max(reversed(done), key=lambda r: r["validation_accuracy"])
        print("{}: best validation accuracy {:.2%} (epoch {}), test accuracy "
              "{}; {} epoch{} in {}".format(
                  e.name, best["validation_accuracy"], best["epoch"],
                  "{:.2%}".format(best["test_accuracy"])
                  if best.get("test_accuracy") is not None else "not measured",
                  len(done), "" if len(done) == 1 else "s", folder))


def _data(expanded, limit, eval_limit, path=None):
    """The book's MNIST (or the data set in the file ``path``), its
    training part expanded if ``expanded``, cut to the limits."""
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


def _progress_bar(epoch, images):
    from tqdm import tqdm
    return tqdm(total=images, desc="Epoch {}".format(epoch), unit="img",
                unit_scale=True, leave=False, file=sys.stderr)


def _write_line(line):
    from tqdm import tqdm
    tqdm.write(line, file=sys.stdout)


def _device():
    if backend.name() == "numpy":
        return "cpu"
    props = backend.xp.cuda.runtime.getDeviceProperties(0)
    return props["name"].decode()


def _train_chapter_1_3(args):
    """Chapters 1 and 3: [784, n, 10] with the book's settings unless
    overridden.  network: quadratic cost, eta 3.0, N(0, 1) weights (the
    large initializer).  network2: cross-entropy, eta 0.5, lmbda 5.0 and
    the large initializer: the book's 96.49% run.  Each epoch's validation
    and test accuracy go to log.jsonl; network.json is saved at the end
    (these runs are minutes long on a CPU: no checkpoint, no --resume)."""
    from gpunn import network, network2
    if args.name == "network" and args.lmbda:
        raise gpunn.ConfigError("network (chapter 1) has no L2 regularization: "
                                "use network2 for --lmbda")
    if args.name == "network" and args.init == "default":
        raise gpunn.ConfigError("network (chapter 1) has only the large "
                                "initializer: use network2 for --init default")
    seed, out = _seed_and_folder(args)
    _use(args)
    training, validation, test = mnist_loader.load_data_wrapper()
    training = training[:args.limit] if args.limit else training
    if args.eval_limit:
        validation, test = validation[:args.eval_limit], test[:args.eval_limit]
    chapter_1 = args.name == "network"
    for run in range(args.runs):
        folder = out if args.runs == 1 else os.path.join(out, "run-{}".format(run))
        with _new_run_folder(folder):
            backend.reseed(seed + run)
            settings = {
                "experiment": args.name, "n": args.n or 30,
                "epochs": args.epochs or 30,
                "mini_batch_size": args.mini_batch_size,
                "eta": args.eta or (3.0 if chapter_1 else 0.5),
                "lmbda": 0.0 if chapter_1 else
                (args.lmbda if args.lmbda is not None else 5.0),
                "init": args.init or "large", "seed": seed + run,
                "limit": args.limit, "eval_limit": args.eval_limit,
                "dtype": backend.floatX.name}
            _write_json(os.path.join(folder, "run.json"), settings)
            sizes = [784, settings["n"], 10]
            if chapter_1:
                net = network.Network(sizes)
            else:
                net = network2.Network(sizes, cost=network2.CrossEntropyCost)
                if settings["init"] == "large":
                    net.large_weight_initializer()
            if not args.quiet:
                print("{}: [784, {}, 10] on {} ({}), {} training images, run "
                      "folder {}".format(args.name, settings["n"],
                                         backend.name(), backend.floatX.name,
                                         len(training), folder))
            _train_1_3(net, settings, (training, validation, test), folder,
                       args.quiet)
    return 0


def _train_1_3(net, settings, data, folder, quiet):
    """SGD as the book's chapters 1 and 3 run it; after each epoch, the
    validation and test accuracy go to folder/log.jsonl (and, unless
    ``quiet``, the screen).  The network is saved as folder/network.json."""
    training, validation, test = data
    log_path = os.path.join(folder, "log.jsonl")
    open(log_path, "w").close()
    start = time.perf_counter()
    epochs = net._train(training, settings["epochs"],
                        settings["mini_batch_size"], settings["eta"],
                        settings["lmbda"])
    try:
        for j in epochs:
            v, t = net.accuracy(validation), net.accuracy(test)
            record = {"epoch": j, "validation_accuracy": v / len(validation),
                      "test_accuracy": t / len(test),
                      "seconds": time.perf_counter() - start,
                      "backend": backend.name(), "dtype": backend.floatX.name,
                      "device": _device(), "threads": backend.threads()}
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if not quiet:
                print("Epoch {}: validation {} / {}, test {} / {}".format(
                    j, v, len(validation), t, len(test)))
            start = time.perf_counter()
    except KeyboardInterrupt:
        raise Interrupted("Runs of chapters 1 and 3 keep no checkpoint: train "
                          "again (the epochs done are logged in {})."
                          .format(log_path)) from None
    net.save(os.path.join(folder, "network.json"))
    if not quiet:
        print("Saved {}".format(os.path.join(folder, "network.json")))
    elif settings["epochs"]:  # the result in one line
        last = json.loads(open(log_path).read().splitlines()[-1])
        print("{}: validation accuracy {:.2%}, test accuracy {:.2%} after {} "
              "epoch{}; saved {}".format(
                  settings["experiment"], last["validation_accuracy"],
                  last["test_accuracy"], last["epoch"] + 1,
                  "" if last["epoch"] == 0 else "s",
                  os.path.join(folder, "network.json")))


# ---------------------------------------------------------------- evaluate, ensemble

class _BookNetwork:
    """A network of chapters 1 or 3 (network2's) as the commands use a
    chapter-6 one: ``accuracy`` a fraction, ``predict`` the digits."""

    def __init__(self, net):
        self.net = net

    def accuracy(self, data):
        return self.net.accuracy(data) / len(data[0])

    def predict(self, x):
        return self.net._feedforward(self.net._inputs(x)).argmax(axis=1)


def _load_network(path):
    """``(net, metadata)`` of a network file: a chapter-6 network (.npz,
    what ``gpunn train NAME`` saves) or one of chapters 1 and 3 (the
    book's JSON, what ``gpunn train network|network2`` saves, wrapped in
    _BookNetwork, with empty metadata); anything else is a ConfigError
    saying what was expected."""
    from gpunn import network2
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
            return _BookNetwork(network2.load(path)), {}
    elif start.startswith(b"PK"):
        return saving.load(path)
    raise gpunn.ConfigError(
        "{}: not a network file. Expected a chapter-6 network (.npz, saved "
        "by gpunn train NAME) or a network of chapters 1 and 3 (the book's "
        "JSON with sizes, weights, biases and cost, saved by gpunn train "
        "network or network2)".format(path))


def evaluate_command(args):
    _use(args)
    net, metadata = _load_network(args.model_file)
    _, validation, test = _data(False, None, args.eval_limit)
    if isinstance(net, _BookNetwork):
        print("{}: a [{}] network of chapters 1 and 3".format(
            args.model_file, ", ".join(map(str, net.net.sizes))))
    else:
        print("{}: {} epochs, trained on {}".format(
            args.model_file, metadata.get("epochs_done", "?"),
            metadata.get("backend", "?")))
    print("Validation accuracy {:.2%}".format(net.accuracy(validation)))
    print("Test accuracy {:.2%}".format(net.accuracy(test)))
    return 0


def ensemble_command(args):
    from gpunn.ensemble import ensemble
    _use(args)
    nets = [saving.load(path)[0] for path in args.model_files]
    _, _, test = gpunn.load_data()
    accuracy, error_locations, erroneous_predictions = ensemble(nets, test)
    print("Accuracy is {:.2%}".format(accuracy))
    shown = 10
    print("Misclassified test images ({}){}: {}{}".format(
        len(error_locations),
        ", the first {} as index:vote".format(shown)
        if len(error_locations) > shown else ", as index:vote",
        " ".join("{}:{}".format(j, p) for j, p in zip(
            error_locations[:shown], erroneous_predictions[:shown])),
        " ..." if len(error_locations) > shown else ""))
    if args.list:
        labels = backend.to_numpy(test[1])
        with open(args.list, "w") as f:
            f.write("index true vote\n")
            for j, p in zip(error_locations, erroneous_predictions):
                f.write("{} {} {}\n".format(j, labels[j], p))
        print("Wrote all of them to {}".format(args.list))
    elif len(error_locations) > shown:
        print("(--list FILE writes all of them)")
    if args.png:
        from gpunn import plots
        x, y = (backend.to_numpy(a) for a in test)
        plots.plot_errors(x[error_locations], y[error_locations],
                          erroneous_predictions, args.png)
        print("Wrote {}".format(args.png))
    return 0


# ---------------------------------------------------------------- plot

def plot_command(args):
    from gpunn import plots
    _use(args)
    folder = args.run
    records = [json.loads(line) for line in
               open(os.path.join(folder, "log.jsonl")) if line.strip()]
    written = [plots.plot_history(records, os.path.join(folder, "accuracy_cost.png"))]
    if any("gradient_norms" in r for r in records):
        written.append(plots.plot_gradient_norms(
            records, os.path.join(folder, "gradient_norms.png")))
    saved = [os.path.join(folder, name) for name in ("network.npz", "network.json")
             if os.path.exists(os.path.join(folder, name))]
    if not saved:
        raise gpunn.ConfigError("{}: no network.npz or network.json (a run "
                                "of chapters 1 and 3 saves its network at the "
                                "end)".format(folder))
    net, _ = _load_network(saved[0])
    _, _, (x, y) = gpunn.load_data()
    wrong = backend.to_numpy(net.predict(x) != backend.asarray(y, dtype="int32",
                                                               like=x))
    x, y = backend.to_numpy(x), backend.to_numpy(y)
    predictions = backend.to_numpy(net.predict(x[wrong]))
    written.append(plots.plot_errors(x[wrong], y[wrong], predictions,
                                     os.path.join(folder, "errors.png")))
    for j, layer in enumerate(getattr(net, "layers", [])):
        if saving.layer_spec(layer)["type"] == "ConvPoolLayer":
            written.append(plots.plot_filters(
                backend.to_numpy(layer.w),
                os.path.join(folder, "filters_layer{}.png".format(j)),
                title="layer {} filters".format(j)))
    for path in written:
        print("Wrote {}".format(path))
    return 0


# ---------------------------------------------------------------- reproduce

def bench_command(args):
    models = list(experiments.EXPERIMENTS) if args.models == ["all"] \
        else args.models
    backends = args.backends or bench.BACKENDS
    bench.cases(models, args.batch, backends)  # refuse a wrong name here
    if args.scheduler or args.each_worker:
        return _bench_on_workers(args, models, backends)
    name = args.name
    out = args.out or bench.file_name(name or bench.machine_name())
    failed = bench.run(models, args.batch, backends, args.quick, name, out)
    print("Wrote {}{}".format(out, "; {} case(s) FAILED".format(failed)
                              if failed else ""))
    return 1 if failed else 0


def _bench_on_workers(args, models, backends):
    """gpunn bench --scheduler: on one worker, or (--each-worker) on one
    worker of each machine, all at once; a result file per machine, in
    the folder --out (with --each-worker) or the file --out."""
    import queue
    from gpunn import cluster
    if not args.scheduler:
        raise gpunn.ConfigError("--each-worker runs the benchmark on the "
                                "machines of a cluster: give its --scheduler")
    if args.each_worker and args.name:
        raise gpunn.ConfigError("--name names one machine; with "
                                "--each-worker each is named by its hardware")
    with cluster.connect(args.scheduler) as client:
        machines = {}
        workers = client.scheduler_info(n_workers=-1)["workers"]
        for address, info in sorted(workers.items()):
            machines.setdefault(info["host"], address)
        if not args.each_worker:
            machines = dict([next(iter(machines.items()))])
        print("gpunn bench: on {} machine{} of {}: {}".format(
            len(machines), "" if len(machines) == 1 else "s", args.scheduler,
            ", ".join(machines)), flush=True)

        def submit(topic):
            return {client.submit(bench.run_on_worker, models, args.batch,
                                  backends, args.quick, args.name, topic,
                                  workers=[address], allow_other_workers=False,
                                  pure=False): host
                    for host, address in machines.items()}

        def show(events, wait):  # the workers' progress lines
            try:
                while True:
                    print(events.get(timeout=wait)[1], flush=True)
                    wait = 0.01
            except queue.Empty:
                pass

        results, failed = [], 0
        with contextlib.closing(cluster.finished(client, submit,
                                                 show)) as ends:
            for host, result in ends:
                if isinstance(result, Exception):
                    failed += 1
                    print("{}: FAILED: {}".format(host, result),
                          file=sys.stderr)
                else:
                    results.append(result)
    folder = (args.out or ".") if args.each_worker else None
    if folder:
        os.makedirs(folder, exist_ok=True)
    names = [r["name"] for r in results]
    for r in results:
        name = r["name"]
        if names.count(name) > 1:  # machines of one kind: named by host too
            name = "{} ({})".format(name, r["host"])
            data = json.loads(r["results"])
            data["machine_info"]["gpunn"]["name"] = name
            r["results"] = json.dumps(data, indent=4)
        path = os.path.join(folder, bench.file_name(name)) if folder else \
            args.out or bench.file_name(name)
        with open(path, "w") as f:
            f.write(r["results"])
        failed += r["failed"]
        print("Wrote {} ({}){}".format(path, name, "; {} case(s) FAILED"
                                       .format(r["failed"]) if r["failed"]
                                       else ""))
    return 1 if failed else 0


def bench_compare_command(args):
    bench.compare(args.files, args.markdown, args.png)
    return 0


def reproduce_command(args):
    from gpunn import reproduce
    chapter_rows = reproduce.rows(args.chapters)
    out = args.out
    if args.report:
        if not os.path.isdir(os.path.join(out, "logs")):
            raise gpunn.ConfigError("{} has no logs folder: nothing to report"
                                    .format(out))
        table = reproduce.report(out)
        print(reproduce.markdown(table), end="")
        return 0
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    _check_writable(out)
    planned = reproduce.plan(chapter_rows, args.runs, _checkpoints(args))
    started, start = reproduce.now(), time.perf_counter()
    with _cluster(args) as (client, backend_name, where):
        if backend_name == "numpy" and any(r.row.expanded for r in planned):
            print("gpunn reproduce: note: the expanded-data rows train on "
                  "250,000 images an epoch; on a CPU a run takes hours "
                  "(one AMD EPYC core: about 47 s an epoch, 60 epochs)",
                  flush=True)
        print("gpunn reproduce: {} runs of {} rows on {}, {}; results in {}"
              .format(len(planned), len(chapter_rows),
                      _backend_words(backend_name), where, out), flush=True)
        finished, failed, trained = _train_on(client, planned, args,
                                              backend_name, out)
        if any(r.metric == "vote" for r in chapter_rows):
            _vote(client, finished, args.epochs, out)
    _record_invocation(args, out, started, start, planned, trained, failed,
                       where, backend_name)
    table = reproduce.report(out)
    print(reproduce.markdown(table), end="")
    print("Wall time {:.1f} min; table in {}".format(
        (time.perf_counter() - start) / 60, os.path.join(out, "table.md")))
    return _failures(failed)


def sweep_command(args):
    from gpunn import plots, reproduce, sweep
    rows = sweep.rows(args.name, args.lmbda)
    args.out = args.out or os.path.join("runs", "sweep-" + args.name)
    out = args.out
    if not args.report:
        os.makedirs(os.path.join(out, "logs"), exist_ok=True)
        _check_writable(out)
        planned = reproduce.plan(rows, args.runs, _checkpoints(args))
        started, start = reproduce.now(), time.perf_counter()
        with _cluster(args) as (client, backend_name, where):
            print("gpunn sweep: {}, lmbda {}: {} runs on {}, {}; results in {}"
                  .format(args.name, " ".join("{:g}".format(float(r.train[2]))
                                              for r in rows),
                          len(planned), _backend_words(backend_name), where,
                          out), flush=True)
            _, failed, trained = _train_on(client, planned, args,
                                           backend_name, out)
        _record_invocation(args, out, started, start, planned, trained, failed,
                           where, backend_name)
    elif not os.path.isdir(os.path.join(out, "logs")):
        raise gpunn.ConfigError("{} has no logs folder: nothing to report"
                                .format(out))
    try:
        table = sweep.report(out)
    except plots.MatplotlibMissing as e:
        table = sweep.table(os.path.join(out, "logs"))
        print("gpunn sweep: no plot: {}".format(e), file=sys.stderr)
    print(sweep.markdown(table), end="")
    print("Table in {}, plot in {}".format(
        os.path.join(out, "sweep.md"), os.path.join(out, "sweep.png")))
    return 0 if args.report else _failures(failed)


def _record_invocation(args, out, started, start, planned, trained, failed,
                       where, backend_name):
    """A line of out/invocations.jsonl: the command, its runs, where they
    ran and its wall time."""
    with open(os.path.join(out, "invocations.jsonl"), "a") as f:
        f.write(json.dumps({
            "command": ["gpunn"] + args.argv,
            "started": started, "wall_seconds": round(
                time.perf_counter() - start, 1),
            "runs": len(planned), "trained": trained, "failed": len(failed),
            "where": where, "backend": backend_name},
            separators=(",", ":")) + "\n")


def _backend_words(name):
    return "each worker's own backend (auto)" if name == "auto" else name


def _checkpoints(args):
    """Where the runs' folders go: --checkpoints, else OUT/runs; absolute,
    as workers may run elsewhere."""
    return os.path.abspath(args.checkpoints or os.path.join(args.out, "runs"))


@contextlib.contextmanager
def _cluster(args):
    """(client, backend name, where the runs go, in words) for the runs
    of reproduce and sweep: the scheduler at --scheduler, or a cluster
    on this machine, --jobs runs side by side (default one per CPU core
    on numpy, four per GPU on cupy)."""
    from gpunn import cluster
    backend_name = args.backend or os.environ.get("GPUNN_BACKEND") or "auto"
    if args.scheduler:
        if args.jobs:
            raise gpunn.ConfigError(
                "--jobs sizes the cluster gpunn starts on this machine; with "
                "--scheduler, the workers' threads say how many runs go at "
                "once (dask worker --nthreads)")
        with cluster.connect(args.scheduler) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            yield client, backend_name, "{} side by side on the {} worker{} "\
                "of {}".format(sum(w["nthreads"] for w in workers.values()),
                               len(workers), "" if len(workers) == 1 else "s",
                               args.scheduler)
        return
    from gpunn import reproduce
    # Counted once (in a child process: this one holds no CUDA context).
    gpus = backend.gpu_count() if backend_name != "numpy" else 0
    if backend_name == "auto":
        backend_name = "cupy" if gpus else "numpy"
    jobs = args.jobs or reproduce.default_jobs(gpus)
    with cluster.connect(jobs=jobs, gpus=gpus) as client:
        yield client, backend_name, "{} side by side".format(jobs)


def _train_on(client, planned, args, backend_name, out):
    """Train ``planned`` on ``client``'s workers, writing each finished
    run's compact log into out/logs.  Returns the runs finished, those
    failed (with why) and the number trained (not done already)."""
    from gpunn import cluster, reproduce
    options = {"backend": backend_name, "dtype": args.dtype,
               "limit": args.limit, "eval_limit": args.eval_limit}
    finished, trained = [], []

    def on_done(run, result):
        reproduce.write_log(run, out, result)
        finished.append(run)
        if result["seconds"] is None:
            print("{}: done already".format(run.name), flush=True)
        else:
            trained.append(run)
            print("{}: done in {}".format(
                run.name, reproduce.duration(result["seconds"])), flush=True)

    try:
        failed = cluster.train_all(
            client, planned, args.epochs, options, threads=args.threads,
            on_done=on_done, say=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        raise Interrupted("The runs keep their checkpoints (in {}): the same "
                          "command goes on from them.".format(
                              _checkpoints(args))) from None
    return finished, failed, len(trained) + len(failed)


def _vote(client, finished, epochs, out):
    """The vote of five double_fc_dropout networks, on a worker (it reads
    their folders), into out/logs/vote.json."""
    from gpunn import reproduce
    voters = reproduce.voters(finished)
    if voters is None:
        print("the vote: fewer than {} double_fc_dropout runs finished"
              .format(reproduce.VOTERS))
        return
    try:
        vote = client.submit(reproduce.vote, voters, epochs,
                             pure=False).result()
    except (OSError, ValueError) as e:
        raise gpunn.ConfigError(
            "the vote could not read its five networks on one worker ({}): "
            "give the runs a --checkpoints folder every worker can read"
            .format(e)) from None
    reproduce.write_vote(vote, out)


def _failures(failed):
    if failed:
        print("gpunn: error: {} run(s) failed: {}".format(
            len(failed), ", ".join(run.name for run, _ in failed)),
            file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- helpers

def _check_writable(folder):
    """Fail before training, not after the first epoch."""
    probe = os.path.join(folder, ".gpunn-write-test")
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise OSError("cannot write to the run folder {}: {}".format(
            folder, e.strerror)) from None


def _write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise gpunn.ConfigError("{}: cannot read the run's settings ({})".format(
            path, e)) from None


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


_positive_int = _argument(lambda n, t: errors.positive_int(n, _number(t)),
                          "at least 1")
_positive_float = _argument(lambda n, t: errors.number(n, t, 0.0, False),
                            "positive")
_nonnegative_float = _argument(lambda n, t: errors.number(n, t), "0 or more")
_probability = _argument(_check_probability, "in [0, 1)")


def _number(text):
    try:
        return int(text)
    except ValueError:
        return text  # positive_int refuses it, naming the text


# Each option of train and its default.
_TRAIN_DEFAULTS = {k: v for k, v in
                   vars(parser().parse_args(["train"])).items()
                   if k not in ("name", "command")}
