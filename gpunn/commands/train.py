"""train.py
~~~~~~~~~~~

``gpunn train NAME [options]``: train one of the book's networks, with
the book's settings unless overridden, in a run folder of its own
(gpunn.run_folder): a chapter-6 experiment of conv.py here, with a
checkpoint after every epoch and ``--resume RUN`` to go on from it; the
networks of chapters 1 and 3 in train_chapters_1_3.py.

Options that do not apply to the model (or, with --resume, that would
change the run's settings) are refused, not ignored.
"""

import argparse
import datetime
import difflib
import os
import sys

import gpunn
from gpunn import mnist_loader
from gpunn.compute import backend
from gpunn.activations import ACTIVATIONS
from gpunn.commands import common, train_chapters_1_3
from gpunn.commands.common import (CHAPTERS_1_3, CONV_PY, nonnegative_float,
                                   positive_float, positive_int, probability)
from gpunn.run_folder import Interrupted, RunFolder


def add_parser(subparsers):
    c = subparsers.add_parser(
        "train", help="train one of the book's networks",
        description="Train an experiment of the book's conv.py (chapter 6), "
        "or the network of chapter 1 or 3, with the book's settings unless "
        "overridden.")
    c.add_argument("name", nargs="?", metavar="NAME",
                   help="the model: one of {} (chapter 6; gpunn list shows "
                   "them), or network, network2 (chapters 1 and 3); not "
                   "with --resume".format(", ".join(CONV_PY)))
    c.add_argument("--epochs", type=positive_int,
                   help="epochs to train (default: the book's, e.g. 60 for "
                   "dbl_conv_relu, 30 for chapters 1 and 3)")
    c.add_argument("--eta", type=positive_float,
                   help="learning rate (default: the book's for the model, "
                   "e.g. 0.03 for dbl_conv_relu; gpunn list shows them)")
    c.add_argument("--lmbda", type=nonnegative_float,
                   help="L2 regularization (default: the book's for the "
                   "model, e.g. 0.1 for dbl_conv_relu)")
    c.add_argument("--mini-batch-size", type=positive_int, default=10,
                   help="default 10, the book's")
    c.add_argument("--n", type=positive_int, default=None,
                   help="neurons per fully connected layer (expanded_data, "
                        "expanded_data_double_fc; default 100); hidden "
                        "neurons of network, network2 (default 30)")
    c.add_argument("--init", choices=("large", "default"),
                   help="network, network2: the large initializer, N(0, 1) "
                        "weights (default), or chapter 3's N(0, 1/n_in)")
    c.add_argument("--activation", choices=sorted(ACTIVATIONS),
                   help="dbl_conv's activation function (default sigmoid)")
    c.add_argument("--p-dropout", type=probability, nargs=3, metavar="P",
                   help="double_fc_dropout's three dropout probabilities, "
                   "each in [0, 1) (default 0.5 0.5 0.5)")
    c.add_argument("--runs", type=positive_int, default=1,
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
    c.add_argument("--limit", type=positive_int, metavar="N",
                   help="train on the first N training images only")
    c.add_argument("--eval-limit", type=positive_int, metavar="N",
                   help="validate and test on the first N images only")
    common.backend_options(c)
    c.add_argument("--seed", type=int, help="seed of the run (default: random)")
    c.add_argument("--threads", type=positive_int, metavar="N",
                   help="gpunn's CPU threads (default: $GPUNN_THREADS, else "
                   "the cores this process may use)")
    common.data_option(c, "train on")
    c.set_defaults(command=run)


def run(args):
    _refuse_what_does_not_apply(args)
    if args.resume:
        return _resume(args)
    if args.name is None:
        raise gpunn.ConfigError("train needs an experiment NAME (or --resume RUN)")
    if args.name not in CONV_PY + CHAPTERS_1_3:
        close = difflib.get_close_matches(args.name, CONV_PY + CHAPTERS_1_3,
                                          n=1)
        raise gpunn.ConfigError("no model named {!r}{}; the models are {} "
                                "(chapter 6) and {} (chapters 1 and 3)".format(
                                    args.name, " (did you mean {}?)".format(
                                        close[0]) if close else "",
                                    ", ".join(CONV_PY),
                                    ", ".join(CHAPTERS_1_3)))
    seed, out = seed_and_folder(args)
    if args.name in CHAPTERS_1_3:
        return train_chapters_1_3.train(args, seed, out)
    data = _own_data(args.data) if args.data else None
    for j in range(args.runs):
        folder = out if args.runs == 1 else os.path.join(out, "run-{}".format(j))
        settings = {
            "experiment": args.name,
            "mini_batch_size": args.mini_batch_size, "seed": seed + j,
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
        common.use(args, seed=settings["seed"])
        settings["dtype"] = backend.floatX.name
        net = e.network(settings["mini_batch_size"])
        with RunFolder(folder).new() as run_folder:
            # run.json, then at once the training that Ctrl-C stops with
            # the --resume line: no network to build between them.
            run_folder.write_settings(settings)
            _train(net, settings, run_folder, [], args.quiet)
    return 0


def seed_and_folder(args):
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


def _resume(args):
    run_folder = RunFolder(args.resume)
    try:
        settings = run_folder.settings()
    except (OSError, ValueError) as e:
        raise gpunn.ConfigError("{}: cannot read the run's settings ({})"
                                .format(run_folder.settings_path, e)) from None
    if settings.get("experiment") in CHAPTERS_1_3:
        raise gpunn.ConfigError("{}: runs of {} keep no checkpoint and cannot "
                                "be resumed; train again".format(
                                    args.resume, settings["experiment"]))
    run_folder.remove_partial_saves()
    if args.dtype is None:  # go on in the run's dtype
        args.dtype = settings.get("dtype")
    if run_folder.has_checkpoint():
        common.use(args)
        net, metadata = run_folder.load_checkpoint()
        history = metadata.get("history", [])
    else:  # stopped in its first epoch: the run starts over, as it began
        common.use(args, seed=settings["seed"])
        net, history = _experiment(settings).network(
            settings["mini_batch_size"]), []
    if args.epochs:
        settings["epochs"] = args.epochs
    if args.no_graph:
        settings["graph"] = False
    _train(net, settings, run_folder, history, args.quiet)
    return 0


def _experiment(settings):
    from gpunn import experiments
    return experiments.experiment(
        settings["experiment"], n=settings.get("n", 100),
        activation_fn=ACTIVATIONS[settings.get("activation", "sigmoid")],
        p_dropout=settings.get("p_dropout", (0.5, 0.5, 0.5)))


# ---------------------------------------------------------------- refusing options

# The options of train, and the runs they apply to: anything else is
# refused rather than ignored (and recorded as if used).
_OPTION_USERS = {
    "activation": ("dbl_conv",), "p_dropout": ("double_fc_dropout",),
    "n": ("expanded_data", "expanded_data_double_fc", "network", "network2"),
    "init": ("network", "network2"),
    "monitor_gradients": CONV_PY, "no_graph": CONV_PY, "data": CONV_PY,
}
# What --resume takes: the rest is the run's, in its run.json.
_RESUME_OPTIONS = {"resume", "epochs", "quiet", "backend", "dtype", "no_graph",
                   "threads"}


def _defaults():
    """Each option of train and its default."""
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers())
    return {k: v for k, v in vars(p.parse_args(["train"])).items()
            if k not in ("name", "command")}


def _refuse_what_does_not_apply(args):
    defaults = _defaults()
    given = {name for name, value in vars(args).items()
             if name in defaults and value != defaults[name]}
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
                if users == CONV_PY else " and ".join(users), args.name))


# ---------------------------------------------------------------- training

def _train(net, settings, run_folder, history, quiet):
    """Train ``net`` as ``settings`` say, from epoch len(history), keeping
    the log and the checkpoint of ``run_folder`` up to date.  Ctrl-C
    stops it with an ``Interrupted`` saying what the folder keeps."""
    done = list(history)
    try:
        _train_epochs(net, settings, run_folder, done, quiet)
    except KeyboardInterrupt:
        kept = "The checkpoint {} holds its {} epoch{}.".format(
            run_folder.checkpoint_path, len(done),
            "" if len(done) == 1 else "s") if done else \
            "It stopped in its first epoch: there is no checkpoint yet."
        raise Interrupted("{} Go on with: gpunn train --resume {}".format(
            kept, run_folder.path)) from None


def _train_epochs(net, settings, run_folder, done, quiet):
    """``_train``; ``done``, the records of the epochs done, grows as
    each is saved."""
    history = list(done)
    e = _experiment(settings)
    training, validation, test = common.data(
        e.expanded_data, settings["limit"], settings["eval_limit"],
        settings.get("data"))
    # The log says what the checkpoint holds (a kill between the two left
    # it a line short).
    run_folder.start_log(history)

    def on_epoch(record):
        record = dict(record, backend=backend.name(), dtype=backend.floatX.name,
                      device=common.device(), threads=backend.threads())
        run_folder.save_epoch(net, e.name, settings, done + [record])
        done.append(record)

    progress = None if quiet else common.progress_bar
    log = (lambda line: None) if quiet else common.write_line
    if not quiet:
        log("{}: {} on {} ({}), {} training images, run folder {}".format(
            e.name, e.description, backend.name(), backend.floatX.name,
            len(training[0]), run_folder.path))
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
                  len(done), "" if len(done) == 1 else "s", run_folder.path))
