"""gpunn.commands
~~~~~~~~~~~~~~~~~

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
    gpunn baseline darkness|svm     chapter 1's baselines
    gpunn figure NAME               the book's figures that train networks

A module per command, each with ``add_parser(subparsers)`` and
``run(args)``; common.py holds what several share, runs.py the runs of
reproduce and sweep.  A run lives in a folder (gpunn.run_folder):
``network.npz`` (the checkpoint), ``log.jsonl`` (one line per epoch) and
``run.json`` (the settings); ``gpunn train --resume RUN`` goes on from
the checkpoint and ends with the weights an uninterrupted run gives.

``python -m gpunn [--epochs N ...]`` with no command is ``gpunn train
dbl_conv_relu [--epochs N ...]``.

Only what the parser needs is imported at the top of these modules:
each command imports the networks, Dask or the benchmarks when it runs,
so that ``gpunn --help`` stays quick.
"""

import argparse
import sys

import gpunn
from gpunn.compute import backend
from gpunn.commands import (baseline, bench, ensemble, evaluate, figure,
                            list_experiments, plot, reproduce, sweep, train)
from gpunn.run_folder import Interrupted, RunFolder

#: The commands, in the order of ``gpunn --help``.
COMMANDS = (list_experiments, train, evaluate, ensemble, plot, reproduce,
            sweep, bench, baseline, figure)


def main(argv=None):
    """Run the command of ``argv`` (default: sys.argv's); returns its exit
    status: 0, 1 (runs or benchmark cases failed), 2 (bad arguments,
    settings or files), 3 (training diverged), 130 (Ctrl-C)."""
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
        checkpoint = RunFolder(getattr(args, "resume", None) or
                               getattr(args, "out", None) or
                               "the run folder").checkpoint_path
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
    """The parser of the ``gpunn`` command: a subparser per command."""
    p = argparse.ArgumentParser(
        prog="gpunn", description="Run the networks of Nielsen's Neural "
        "Networks and Deep Learning on NumPy or CuPy.",
        epilog="Without a command: train dbl_conv_relu (the main job).")
    p.add_argument("--version", action="version",
                   version="gpunn {}".format(gpunn.__version__))
    subparsers = p.add_subparsers(metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return p
