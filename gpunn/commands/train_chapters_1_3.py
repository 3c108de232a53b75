"""train_chapters_1_3.py
~~~~~~~~~~~~~~~~~~~~~~~~~

``gpunn train network|network2``: the networks of the book's chapters
1 and 3, [784, n, 10], with the book's settings (gpunn.experiments'
NETWORKS) unless overridden: network has the quadratic cost and N(0, 1)
weights (the large initializer); network2 the cross-entropy cost, and
the large initializer unless --init default.

Each epoch's validation and test accuracy go to the run folder's
log.jsonl; network.json is saved at the end (these runs are minutes long
on a CPU: no checkpoint, no --resume).
"""

import os
import time

import gpunn
from gpunn import experiments, mnist_loader
from gpunn.compute import backend
from gpunn.commands import common
from gpunn.run_folder import Interrupted, RunFolder


def train(args, seed, out):
    """Train ``args.runs`` networks of ``args.name`` (network or
    network2), seeds ``seed``, ``seed`` + 1, ..., in the folder ``out``
    (``out``/run-R for several)."""
    from gpunn import network, network2
    book = experiments.NETWORKS[args.name]
    if args.name == "network" and args.lmbda:
        raise gpunn.ConfigError("network (chapter 1) has no L2 regularization: "
                                "use network2 for --lmbda")
    if args.name == "network" and args.init == "default":
        raise gpunn.ConfigError("network (chapter 1) has only the large "
                                "initializer: use network2 for --init default")
    common.use(args)
    training, validation, test = mnist_loader.load_data_wrapper()
    training = training[:args.limit] if args.limit else training
    if args.eval_limit:
        validation, test = validation[:args.eval_limit], test[:args.eval_limit]
    chapter_1 = args.name == "network"
    for j in range(args.runs):
        folder = out if args.runs == 1 else os.path.join(out, "run-{}".format(j))
        with RunFolder(folder).new() as run_folder:
            backend.reseed(seed + j)
            settings = {
                "experiment": args.name, "n": args.n or book.n,
                "epochs": args.epochs or book.epochs,
                "mini_batch_size": args.mini_batch_size,
                "eta": args.eta or book.eta,
                "lmbda": book.lmbda if args.lmbda is None else args.lmbda,
                "init": args.init or book.init, "seed": seed + j,
                "limit": args.limit, "eval_limit": args.eval_limit,
                "dtype": backend.floatX.name}
            run_folder.write_settings(settings)
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
            _train(net, settings, (training, validation, test), run_folder,
                   args.quiet)
    return 0


def _train(net, settings, data, run_folder, quiet):
    """SGD as the book's chapters 1 and 3 run it; after each epoch, the
    validation and test accuracy go to the log (and, unless ``quiet``,
    the screen).  The network is saved at the end, as network.json."""
    training, validation, test = data
    run_folder.start_log()
    start = time.perf_counter()
    epochs = net._train(training, settings["epochs"],
                        settings["mini_batch_size"], settings["eta"],
                        settings["lmbda"])
    try:
        for j in epochs:
            v, t = net.accuracy(validation), net.accuracy(test)
            run_folder.append({
                "epoch": j, "validation_accuracy": v / len(validation),
                "test_accuracy": t / len(test),
                "seconds": time.perf_counter() - start,
                "backend": backend.name(), "dtype": backend.floatX.name,
                "device": common.device(), "threads": backend.threads()})
            if not quiet:
                print("Epoch {}: validation {} / {}, test {} / {}".format(
                    j, v, len(validation), t, len(test)))
            start = time.perf_counter()
    except KeyboardInterrupt:
        raise Interrupted("Runs of chapters 1 and 3 keep no checkpoint: train "
                          "again (the epochs done are logged in {})."
                          .format(run_folder.log_path)) from None
    run_folder.save_book_network(net)
    if not quiet:
        print("Saved {}".format(run_folder.book_network_path))
    elif settings["epochs"]:  # the result in one line
        last = run_folder.records()[-1]
        print("{}: validation accuracy {:.2%}, test accuracy {:.2%} after {} "
              "epoch{}; saved {}".format(
                  settings["experiment"], last["validation_accuracy"],
                  last["test_accuracy"], last["epoch"] + 1,
                  "" if last["epoch"] == 0 else "s",
                  run_folder.book_network_path))
