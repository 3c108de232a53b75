"""sweep.py
~~~~~~~~~~~

``gpunn sweep NAME --lmbda L...``: the book's sweeps of lmbda, a
chapter-6 network trained for each value, several runs each, on a Dask
cluster as reproduce's runs (runs.py); gpunn.sweep makes the table and
the plot.
"""

import os
import sys
import time

import gpunn
from gpunn.commands import common, runs
from gpunn.commands.common import CONV_PY, nonnegative_float, positive_int


def add_parser(subparsers):
    c = subparsers.add_parser(
        "sweep", help="the book's sweeps of lmbda",
        description="Train a chapter-6 network for each value of lmbda (L2 "
        "regularization), several runs each, as the book's conv.py did, and "
        "write OUT/sweep.md and OUT/sweep.png: the best validation accuracy "
        "and its test accuracy against lmbda.  Runs already finished in OUT "
        "are kept; a run cut short goes on from its checkpoint.")
    c.add_argument("name", metavar="NAME", help="the network: one of " +
                   ", ".join(CONV_PY))
    c.add_argument("--lmbda", type=nonnegative_float, nargs="+",
                   metavar="L", help="the values (default, for "
                   "regularized_dbl_conv and dbl_conv_relu: the book's)")
    c.add_argument("--runs", type=positive_int, default=3,
                   help="runs per value (default 3, as the book)")
    common.cluster_options(c)
    c.add_argument("--out", help="the results folder (default "
                   "runs/sweep-NAME)")
    common.quick_options(c)
    common.backend_options(c, dtype_default="float32, as the book's Theano "
                           "on a GPU")
    c.set_defaults(command=run)


def run(args):
    from gpunn import plots, reproduce, sweep
    rows = sweep.rows(args.name, args.lmbda)
    args.out = args.out or os.path.join("runs", "sweep-" + args.name)
    out = args.out
    if not args.report:
        runs.prepare(out)
        planned = reproduce.plan(rows, args.runs, runs.checkpoints(args))
        started, start = reproduce.now(), time.perf_counter()
        with runs.cluster(args) as (client, backend_name, where):
            print("gpunn sweep: {}, lmbda {}: {} runs on {}, {}; results in {}"
                  .format(args.name, " ".join("{:g}".format(float(r.train[2]))
                                              for r in rows),
                          len(planned), runs.backend_words(backend_name),
                          where, out), flush=True)
            _, failed, trained = runs.train_on(client, planned, args,
                                               backend_name, out)
        runs.record_invocation(args, out, started, start, planned, trained,
                               failed, where, backend_name)
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
    return 0 if args.report else runs.failures(failed)
