"""reproduce.py
~~~~~~~~~~~~~~~

``gpunn reproduce [CHAPTER...]``: train every network whose accuracy
the book reports, several runs side by side on a Dask cluster, and write
the results table (gpunn.reproduce holds the table and its folder;
runs.py trains the runs).
"""

import os
import time

import gpunn
from gpunn.commands import common, runs
from gpunn.commands.common import positive_int


def add_parser(subparsers):
    c = subparsers.add_parser(
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
    c.add_argument("--runs", type=positive_int, default=3,
                   help="runs per row (default 3, as the book; the vote "
                        "trains five double_fc_dropout networks)")
    common.cluster_options(c)
    c.add_argument("--out", default=os.path.join("runs", "reproduce"),
                   help="the results folder (default runs/reproduce)")
    common.quick_options(c)
    common.backend_options(c, dtype_default="float64 for chapters 1 and 3, as "
                           "the book's NumPy code; float32 for chapter 6, as "
                           "its Theano on a GPU")
    c.set_defaults(command=run)


def run(args):
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
    runs.prepare(out)
    planned = reproduce.plan(chapter_rows, args.runs, runs.checkpoints(args))
    started, start = reproduce.now(), time.perf_counter()
    with runs.cluster(args) as (client, backend_name, where):
        if backend_name == "numpy" and any(r.row.expanded for r in planned):
            print("gpunn reproduce: note: the expanded-data rows train on "
                  "250,000 images an epoch; on a CPU a run takes hours "
                  "(one AMD EPYC core: about 47 s an epoch, 60 epochs)",
                  flush=True)
        print("gpunn reproduce: {} runs of {} rows on {}, {}; results in {}"
              .format(len(planned), len(chapter_rows),
                      runs.backend_words(backend_name), where, out), flush=True)
        finished, failed, trained = runs.train_on(client, planned, args,
                                                  backend_name, out)
        if any(r.metric == "vote" for r in chapter_rows):
            _vote(client, finished, args.epochs, out)
    runs.record_invocation(args, out, started, start, planned, trained, failed,
                           where, backend_name)
    table = reproduce.report(out)
    print(reproduce.markdown(table), end="")
    print("Wall time {:.1f} min; table in {}".format(
        (time.perf_counter() - start) / 60, os.path.join(out, "table.md")))
    return runs.failures(failed)


def _vote(client, finished, epochs, out):
    """The vote of five double_fc_dropout networks, on a worker (it reads
    their folders), into out/logs/vote.json."""
    from gpunn import cluster, reproduce
    voters = reproduce.voters(finished)
    if voters is None:
        print("the vote: fewer than {} double_fc_dropout runs finished"
              .format(reproduce.VOTERS))
        return
    reproduce.write_vote(cluster.vote(client, voters, epochs), out)
